"""What a generation costs: prices from the relay or from configuration, estimates, balances.

Where a price comes from, first match wins:

1. the relay itself, when it publishes prices. Relays built on the open-source gateways
   new-api / one-api answer ``GET {origin}/api/pricing`` with
   ``{"success": true, "data": [{"model_name", "quota_type", "model_price", "model_ratio", ...}],
   "group_ratio": {...}}`` where ``quota_type`` 1 means "``model_price`` US dollars per call" and 0
   means "token ratio" (meaningless for a video: we leave it unknown). Newer new-api rows add
   ``billing_mode: "per_second"`` (then ``model_price`` is per second of video).
   Source: QuantumNous/new-api-docs, ``docs/*/api/fei-public-info.md`` (public pricing) and the
   new-api ratio-sync tests that replay real answers (``tests/fixtures/newapi_pricing.json`` is
   written from those shapes). The price is multiplied by the ``default`` group's ratio when the
   answer has one (the group a new key gets; other groups pay other ratios: configure yours);
2. the configuration: ``Conversation(prices=...)``, ``%config SoraMagics.prices = {...}``, or a JSON
   file named by the ``KKI_PRICES`` environment variable, mapping model → price::

       {"sora-2": 0.40,                                 # dollars per generation
        "sora-2-pro": {"per_second": 0.10},             # dollars per second of video
        "veo3": {"per_generation": 1.2, "charges_failures": false}}

3. nothing: the price is **unknown** and says so. We never guess a price.

The key's balance comes from the OpenAI-style billing endpoints the same gateways answer:
``GET {base}/dashboard/billing/subscription`` → ``hard_limit_usd`` (the key's whole quota) and
``GET {base}/dashboard/billing/usage`` → ``total_usage`` in cents (one-api/new-api compute the
subscription as remaining + used), so balance = ``hard_limit_usd - total_usage / 100``.
Source: QuantumNous/new-api-docs ``docs/en/api/fei-account-billing-panel.md``.

Discovery is tried once per relay per process; any failure (404, HTML, timeout, odd JSON) is
silent and remembered, so a relay without these endpoints costs one request per session.
This module does no I/O itself: the relay client fetches (``AsyncRelayClient.get_json``), which
sends the key only to the base URL's own origin.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigurationError
from .transcript import TERMINAL

log = logging.getLogger("kki_widgets.protocol.pricing")

PER_GENERATION = "generation"
PER_SECOND = "second"
# The length a model sells when the request does not choose one (DESIGN.md: relays sell the
# length by model). Used only to turn a per-second price into an estimate.
MODEL_SECONDS = {"sora-2-pro": 15, "sora-2": 10, "veo3": 8}
UNKNOWN = "unknown"
HOW_TO_CONFIGURE = (
    "configure prices with Conversation(prices={'sora-2': 0.40}), "
    "%config SoraMagics.prices = {'sora-2': 0.40}, or a JSON file named by KKI_PRICES"
)


@dataclass(frozen=True)
class Price:
    """A model's price in US dollars, per generation or per second of video."""

    amount: float
    per: str = PER_GENERATION
    source: str = "configuration"
    charges_failures: bool = True  # most relays charge a failed generation: count it, to be safe

    def for_request(self, model: str, duration: int | None) -> float | None:
        if self.per == PER_GENERATION:
            return self.amount
        seconds = duration or model_seconds(model)
        return None if seconds is None else self.amount * seconds

    def describe(self) -> str:
        unit = "generation" if self.per == PER_GENERATION else "second"
        return f"{money(self.amount)} per {unit} ({self.source})"


def model_seconds(model: str) -> int | None:
    if model.endswith("-15s"):
        return 15
    for prefix, seconds in MODEL_SECONDS.items():
        if model.startswith(prefix):
            return seconds
    return None


def money(amount: float | None) -> str:
    """``$0.40``; amounts under a cent keep their digits (``$0.004``)."""
    if amount is None:
        return UNKNOWN
    amount = round(amount, 6) + 0.0  # float sums: no "$-0.00"
    if amount and abs(amount) < 0.01:
        return f"${amount:.4f}".rstrip("0")
    return f"${amount:,.2f}"


# -- configuration --------------------------------------------------------------------------


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(f"{where}: a price must be a number of dollars, got {value!r}")
    if value < 0:
        raise ConfigurationError(f"{where}: a price cannot be negative, got {value!r}")
    return float(value)


def parse_price(model: str, value) -> Price:
    """One entry of a price table: a number (per generation) or a dict."""
    where = f"price of {model!r}"
    if not isinstance(value, Mapping):
        return Price(_number(value, where))
    known = {"per_generation", "per_second", "charges_failures"}
    unknown = set(value) - known
    if unknown or ("per_generation" in value) == ("per_second" in value):
        raise ConfigurationError(
            f"{where}: use a number (dollars per generation) or a dict with exactly one of "
            f"per_generation / per_second (and optionally charges_failures), got {dict(value)!r}"
        )
    per = PER_SECOND if "per_second" in value else PER_GENERATION
    amount = _number(value["per_second" if per == PER_SECOND else "per_generation"], where)
    return Price(amount, per, charges_failures=bool(value.get("charges_failures", True)))


def parse_price_table(table) -> dict[str, Price]:
    """A model → price mapping (see the module docstring) checked entry by entry."""
    if table is None:
        return {}
    if not isinstance(table, Mapping):
        raise ConfigurationError(
            f"prices must be a dict of model name → price, got {type(table).__name__}; "
            + HOW_TO_CONFIGURE
        )
    prices = {}
    for model, value in table.items():
        if not isinstance(model, str) or not model:
            raise ConfigurationError(f"prices: model names must be non-empty strings, got {model!r}")
        prices[model] = value if isinstance(value, Price) else parse_price(model, value)
    return prices


def prices_from_environment() -> dict[str, Price]:
    """The table in the JSON file named by ``KKI_PRICES`` (empty when unset)."""
    name = os.environ.get("KKI_PRICES")
    if not name:
        return {}
    path = Path(name).expanduser()
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigurationError(
            f"KKI_PRICES={name!r}: cannot read a JSON price table there ({error}); "
            "write e.g. {\"sora-2\": 0.40} into that file or unset KKI_PRICES"
        ) from None
    return parse_price_table(table)


# -- what relays publish ----------------------------------------------------------------------


def _finite(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def prices_from_gateway(data) -> dict[str, Price]:
    """Per-call (and per-second) prices in a new-api/one-api ``/api/pricing`` answer.

    Every field is optional and may be a string; token-ratio rows (``quota_type`` 0) carry no
    price for a generation, so they are left out (unknown), never converted with a guess.
    """
    rows = data.get("data") if isinstance(data, Mapping) else data
    if not isinstance(rows, list):
        return {}
    groups = data.get("group_ratio") if isinstance(data, Mapping) else None
    ratio = _finite(groups.get("default")) if isinstance(groups, Mapping) else None
    prices = {}
    for row in rows:
        if not isinstance(row, Mapping) or not isinstance(row.get("model_name"), str):
            continue
        if str(row.get("quota_type")) != "1":
            continue
        amount = _finite(row.get("model_price"))
        if amount is None:
            continue
        per = PER_SECOND if row.get("billing_mode") == "per_second" else PER_GENERATION
        prices[row["model_name"]] = Price(amount * (ratio if ratio is not None else 1.0), per, "relay")
    return prices


def balance_from_billing(subscription, usage) -> float | None:
    """Dollars left on the key: ``hard_limit_usd - total_usage / 100`` (None when unreadable)."""
    if not isinstance(subscription, Mapping) or not isinstance(usage, Mapping):
        return None
    limit = _finite(subscription.get("hard_limit_usd"))
    used = _finite(usage.get("total_usage"))
    if limit is None or used is None:
        return None
    return round(limit - used / 100, 6)


# -- the per-session price book -----------------------------------------------------------------

_discovered: dict[str, dict[str, Price] | None] = {}
_billing_absent: set[str] = set()
_discovery_lock = threading.Lock()


def forget_discoveries() -> None:
    """Forget what relays said (tests; a relay that changed its prices mid-session)."""
    with _discovery_lock:
        _discovered.clear()
        _billing_absent.clear()


class PriceBook:
    """The prices one conversation uses: the relay's (discovered once), then its configuration."""

    def __init__(self, client, prices=None):
        self.client = client
        configured = prices_from_environment()
        configured.update(parse_price_table(prices))
        self.configured = configured

    @property
    def _relay_key(self) -> str:
        return self.client.base_url

    @property
    def discovered(self) -> bool:
        return self._relay_key in _discovered

    async def aload(self) -> None:
        """Ask the relay for its prices once per process; failures are silent and remembered."""
        key = self._relay_key
        if key in _discovered:
            return
        try:
            found = prices_from_gateway(await self.client.get_json(pricing_url(key), timeout=5.0))
        except Exception as error:  # any failure means "this relay publishes no prices"
            log.debug("no price list at %s: %s", key, type(error).__name__)
            found = None
        with _discovery_lock:
            _discovered.setdefault(key, found or None)

    def price(self, model: str) -> Price | None:
        relay = _discovered.get(self._relay_key) or {}
        return relay.get(model) or self.configured.get(model)

    def estimate(self, model: str, duration: int | None = None) -> float | None:
        price = self.price(model)
        return None if price is None else price.for_request(model, duration)

    def estimate_request(self, wire_model: str | None, model: str, duration: int | None = None) -> float | None:
        """Priced by the name the relay is sent (a profile may put options in the model's name),
        else by the name the user chose (a configured table uses that one)."""
        each = self.estimate(wire_model, duration) if wire_model else None
        return each if each is not None else self.estimate(model, duration)

    async def abalance(self) -> float | None:
        """The key's balance in dollars if the relay reports it (asked every time; a relay
        that does not answer is not asked again)."""
        key = self._relay_key
        if key in _billing_absent:
            return None
        try:
            subscription = await self.client.get_json(f"{key}/dashboard/billing/subscription", timeout=5.0)
            usage = await self.client.get_json(f"{key}/dashboard/billing/usage", timeout=5.0)
            balance = balance_from_billing(subscription, usage)
        except Exception as error:
            log.debug("no balance at %s: %s", key, type(error).__name__)
            balance = None
        if balance is None:
            with _discovery_lock:
                _billing_absent.add(key)
        return balance


def gateway_root(base_url: str) -> str:
    """Where a gateway's web API sits: beside /v1, not under it."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


def pricing_url(base_url: str) -> str:
    return f"{gateway_root(base_url)}/api/pricing"



def remember_prices(base_url: str, prices: dict[str, Price]) -> None:
    """What `discovery` read of a relay's prices (empty: it publishes none), so the price book
    does not ask again in this process."""
    with _discovery_lock:
        _discovered[base_url] = dict(prices) or None


# -- what a turn cost, in words -------------------------------------------------------------------

REPLAYED = "replayed from the store"


ANSWERED_WITHOUT_VIDEO = "the relay answered without a video"
ANSWER_CUT = "the relay's answer stopped before it showed a task ID"
CANCELLED_ANSWERING = "cancelled after the relay began answering"


def accepted(status: str, generation, *, answer_began: bool = False) -> bool | None:
    """Whether the relay accepted the request (and may charge for it), from the evidence.

    True: it gave a task ID or a video, or says the video is still being made. None (unknown):
    it answered (200, words) and ended without a video, a task ID or a word of failing, the
    answer `evidence.decide` warns may have been charged; or its answer had begun
    (`answer_began`) when it was cut or cancelled, before a task ID or a word of failing: many
    relays charge when they take the request, not when they show its ID. False: it refused
    before accepting, an HTTP error before any answer or a refusal in its own words.
    """
    if getattr(generation, "task_id", None) or status in ("completed", "still_running"):
        return True
    if getattr(generation, "answered_without_video", False):
        return None
    if answer_began and not getattr(generation, "error", None):
        return None  # the relay's own words of failing (generation.error) would say "refused"
    return False


def unknown_note(status: str, generation) -> str:
    """Why the charge of a turn `accepted` calls unknown is unknown, in words."""
    if getattr(generation, "answered_without_video", False):
        return ANSWERED_WITHOUT_VIDEO
    return CANCELLED_ANSWERING if status == "cancelled" else ANSWER_CUT


def charge_for(status: str, accepted: bool | None, estimate: float | None, price: Price | None,
               unknown: str = ANSWERED_WITHOUT_VIDEO):
    """(dollars charged or None when unknown, a note) for a turn that ended in `status`;
    `accepted` as `accepted()` says (None: whether it charged is unknown, `unknown` says why)."""
    if status == "completed":
        return estimate, None
    if accepted is None:
        return None, unknown
    if not accepted:
        return 0.0, "not charged: the relay never accepted it"
    if status == "still_running":
        # Accepted and still being made: it will cost what a finished one costs (a cap counts it).
        return estimate, STILL_RUNNING_NOTE
    if price is not None and not price.charges_failures:
        return 0.0, f"not charged: {status} (this relay does not charge failures)"
    what = "failed generation" if status == "failed" else "cancelled after the relay accepted it"
    return estimate, what


def cost_line(turn) -> str:
    """One phrase for a turn's price: its estimate while it runs, its charge once it ended."""
    if turn.cached:
        return f"{money(0.0)} — {REPLAYED}"
    line = _cost_words(turn)
    # The embedded simulator's prices are an example: nobody pays them.
    return f"{line} (simulated relay)" if getattr(turn, "simulated", False) else line


STILL_RUNNING_NOTE = "still being made at the relay"


def _cost_words(turn) -> str:
    if turn.cost_note == STILL_RUNNING_NOTE:
        return f"estimate {money(turn.estimate)} — {STILL_RUNNING_NOTE}" if turn.estimate is not None else STILL_RUNNING_NOTE
    if turn.status in ("queued", "generating") or turn.finished_at is None:
        # Running, or completed but still being kept (the media download): not settled yet.
        return f"estimate {money(turn.estimate)}" if turn.estimate is not None else "price unknown"
    if turn.cost is None:
        # The estimate says what a charge would be, if the relay made one.
        estimate = f" (estimate {money(turn.estimate)})" if turn.estimate is not None else ""
        return f"charged: unknown{' — ' + turn.cost_note if turn.cost_note else ''}{estimate}"
    if turn.cost_note and turn.cost_note.startswith("not charged"):
        return f"{money(turn.cost)} — {turn.cost_note}"
    return f"charged: {money(turn.cost)}" + (f" — {turn.cost_note}" if turn.cost_note else "")


def cost_cell(turn) -> str:
    """A turn's price in a table (`%sora history`): what it was charged, "$0.00 (replayed, not
    paid)" for a turn made from the store, "unknown" when no price is known (never a guess),
    "est. …" while it runs. A paid turn that a later run replayed keeps its charge: the rows
    add up to what the notebook spent (`summarize`)."""
    if turn.cost_note == REPLAYED:
        return f"{money(0.0)} (replayed, not paid)"
    if turn.status in ("queued", "generating") or turn.finished_at is None:
        return f"est. {money(turn.estimate)}"
    note = turn.cost_note or ""
    if turn.cost is None:
        words = UNKNOWN + (f" ({note})" if note else "")
    elif note.startswith("not charged"):
        words = f"{money(turn.cost)} (not charged)"
    else:
        words = money(turn.cost) + (f" ({note})" if note else "")
    # Its one charge stays (the column adds up to the spend); its replays cost what a replay does.
    return words + (f", then {money(0.0)} (replayed, not paid)" if turn.cached else "")


@dataclass(frozen=True)
class Estimate:
    """What a batch (or the takes of one prompt) will cost before it starts."""

    count: int
    each: float | None
    model: str

    @property
    def total(self) -> float | None:
        return None if self.each is None else self.each * self.count

    def __repr__(self) -> str:
        if self.each is None:
            return f"{self.count} × {self.model}: price unknown ({HOW_TO_CONFIGURE})"
        return f"{self.count} × {self.model} at {money(self.each)} = {money(self.total)}"


def next_send_line(estimate: Estimate, remaining: float | None = None, simulated: bool = False) -> str:
    """What the next send would cost, before it is sent (VideoChat's composer):
    "estimate $0.30 for 3 takes · budget: $1.70 left"; unknown prices stay "price unknown"."""
    takes = f" for {estimate.count} takes" if estimate.count > 1 else ""
    if estimate.each is None:
        words = f"price unknown{takes}"
        if remaining is not None:
            return words + " · a budget refuses what it cannot price"
    else:
        words = f"estimate {money(estimate.total)}{takes}"
    if remaining is not None:
        words += f" · budget: {money(remaining)} left"
    # The embedded simulator's prices are an example: nobody pays them.
    return words + (" (simulated relay)" if simulated else "")


def summarize(turns) -> dict:
    """Spend by model over `turns` (each paid generation counted once; replays are free)."""
    by_model: dict[str, dict] = {}
    for turn in turns:
        if turn.status not in TERMINAL or turn.cost_note == REPLAYED:
            continue  # still running, or a free replay of a turn counted elsewhere
        if not turn.task_id and turn.cost is not None and not turn.cost:
            continue  # refused before the relay accepted it: nothing was charged
        model = str(turn.options.get("model") or "")
        row = by_model.setdefault(model, {"generations": 0, "spent": 0.0, "unknown": 0})
        row["generations"] += 1
        if turn.cost is None:
            row["unknown"] += 1
        else:
            row["spent"] = round(row["spent"] + turn.cost, 6)
    return by_model


def merge_usage(reports: list[dict]) -> dict:
    """Several conversations' `usage()` as one: spend by model summed, the balance of the first
    that reports one, the (shared) budget of the first that has one."""
    by_model: dict[str, dict] = {}
    for report in reports:
        for model, row in report["by_model"].items():
            total = by_model.setdefault(model, {"generations": 0, "spent": 0.0, "unknown": 0})
            total["generations"] += row["generations"]
            total["spent"] = round(total["spent"] + row["spent"], 6)
            total["unknown"] += row["unknown"]

    def first(key):
        return next((r[key] for r in reports if r.get(key) is not None), None)

    return {
        "by_model": by_model,
        "spent": round(sum(row["spent"] for row in by_model.values()), 6),
        "unknown": sum(row["unknown"] for row in by_model.values()),
        "budget": first("budget"),
        "balance_before": first("balance_before"),
        "balance_after": first("balance_after"),
    }


def usage_lines(report: Mapping) -> list[str]:
    """The spend part of a usage report in words."""
    lines = []
    for model, row in sorted(report.get("by_model", {}).items()):
        unknown = f" ({row['unknown']} at an unknown price)" if row["unknown"] else ""
        lines.append(f"  {model}: {row['generations']} generations, {money(row['spent'])}{unknown}")
    unknown = f" + {report['unknown']} at an unknown price" if report.get("unknown") else ""
    lines.append(f"spent: {money(report.get('spent', 0.0))}{unknown}")
    budget = report.get("budget")
    if budget:
        lines.append(
            f"budget: {money(budget['limit'])}, spent this kernel {money(budget['spent'])}, "
            f"left {money(budget['remaining'])}"
        )
    if report.get("balance_before") is not None:
        after = report.get("balance_after")
        lines.append(
            f"balance: {money(report['balance_before'])} before"
            + (f", {money(after)} now" if after is not None else "")
        )
    return lines
