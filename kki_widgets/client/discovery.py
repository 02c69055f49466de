"""What a relay publishes about itself, read once per base URL: its model list and its prices,
kept in the user's cache folder for `TTL_SECONDS`; and the description a user sees of it.

- Model list: ``GET {base}/models`` (the OpenAI list), else new-api's ``GET {origin}/api/models``
  (`relay_models` reads both and their variants).
- Prices: ``GET {origin}/api/pricing`` (`pricing.prices_from_gateway`); the balance is the key's
  own and is never cached (`pricing.PriceBook.abalance` asks for it).

Discovery never blocks or fails a send: the whole of it is bounded by `DISCOVERY_SECONDS`, each
answer by `LIST_BYTES`, and any failure (404, an HTML page, a timeout, junk JSON, a huge list)
means "the relay does not say", remembered for the process so it costs one bounded wait.

The cache file is named by a hash of the base URL alone and holds only what every key of that
relay is shown (names and prices): never the key, never the balance. It lives in
``$KKI_CACHE_DIR``, else ``$XDG_CACHE_HOME/kki_widgets``, else the platform's cache folder
(``~/.cache/kki_widgets``), never next to the notebook. Written through `atomic.replacing`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..protocol import pricing
from ..protocol.profiles import BUILTIN, RelayProfile
from ..protocol.relay_models import NO_FAMILY, Detection, detect, model_ids
from ..store.atomic import replacing

log = logging.getLogger("kki_widgets.client.discovery")

DISCOVERY_SECONDS = 4.0
LIST_BYTES = 2_000_000
TTL_SECONDS = 6 * 3600
CACHE_VERSION = 1


@dataclass(frozen=True)
class RelayFacts:
    """What one relay published (None: it did not say)."""

    base_url: str
    models: list | None = None
    prices: dict = field(default_factory=dict)  # model -> pricing.Price
    fetched_at: float = 0.0
    source: str = "relay"  # "relay", "cache" or "unavailable"
    # The relay refused the key (401/403 on its lists): nothing is remembered, so the next key
    # typed for this relay is asked about afresh.
    refused: bool = False

    def to_json(self) -> dict:
        prices = {name: {"amount": p.amount, "per": p.per, "charges_failures": p.charges_failures}
                  for name, p in self.prices.items()}  # fmt: skip
        return {"version": CACHE_VERSION, "base_url": self.base_url, "models": self.models,
                "prices": prices, "fetched_at": self.fetched_at}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict) -> RelayFacts:
        prices = {}
        for name, row in (data.get("prices") or {}).items():
            amount = row.get("amount") if isinstance(row, dict) else None
            if isinstance(name, str) and isinstance(amount, (int, float)) and amount >= 0:
                per = pricing.PER_SECOND if row.get("per") == pricing.PER_SECOND else pricing.PER_GENERATION
                prices[name] = pricing.Price(float(amount), per, "relay", bool(row.get("charges_failures", True)))
        models = data.get("models")
        models = model_ids(models) if isinstance(models, list) else None
        return cls(str(data["base_url"]), models, prices, float(data["fetched_at"]), "cache")


# -- the cache folder ---------------------------------------------------------------------------


def cache_folder() -> Path:
    """Where discoveries are kept: KKI_CACHE_DIR, XDG_CACHE_HOME/kki_widgets, or the platform's."""
    explicit = os.environ.get("KKI_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "kki_widgets"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "kki_widgets"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "kki_widgets" / "Cache"
    return Path.home() / ".cache" / "kki_widgets"


def cache_file(base_url: str) -> Path:
    digest = hashlib.sha256(base_url.encode("utf-8")).hexdigest()[:32]
    return cache_folder() / f"relay-{digest}.json"


def read_cached(base_url: str, now: float | None = None) -> RelayFacts | None:
    """The cached facts of `base_url` if fresh (any damage reads as "nothing cached")."""
    try:
        data = json.loads(cache_file(base_url).read_text(encoding="utf-8"))
        facts = RelayFacts.from_json(data)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    if data.get("version") != CACHE_VERSION or facts.base_url != base_url:
        return None
    age = (time.time() if now is None else now) - facts.fetched_at
    return facts if 0 <= age < TTL_SECONDS else None


def write_cached(facts: RelayFacts) -> None:
    target = cache_file(facts.base_url)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with replacing(target, prefix=".relay-", suffix=".tmp", private=True) as temp:
            Path(temp).write_text(json.dumps(facts.to_json()), encoding="utf-8")
    except OSError as error:  # a read-only home: discovery still works, once per process
        log.debug("cannot keep relay facts in %s: %s", target.parent, type(error).__name__)


# -- asking the relay -------------------------------------------------------------------------

_known: dict[str, RelayFacts] = {}
_said: set[str] = set()
_lock = threading.Lock()


def forget() -> None:
    """Forget this process's discoveries (tests; `%sora connect` asks again)."""
    with _lock:
        _known.clear()
        _said.clear()


def known(base_url: str) -> RelayFacts | None:
    return _known.get(base_url)


async def discover(client, *, refresh: bool = False, timeout: float | None = None) -> RelayFacts:
    """The relay's model list and prices: this process's, else the cache's, else asked (bounded).

    Never raises for what the relay does; `refresh` asks the relay even when cached."""
    base = client.base_url
    if not refresh:
        if base in _known:
            return _known[base]  # the price book already has (or asked again for) its prices
        facts = read_cached(base)
        if facts is not None:
            return _remember(facts)
    refusals: list[int] = []
    try:
        models, prices = await asyncio.wait_for(_ask(client, refusals), timeout or DISCOVERY_SECONDS)
    except Exception as error:  # the timeout, or anything odd: "the relay does not say"
        log.debug("discovery at %s gave up: %s", base, type(error).__name__)
        models, prices = None, {}
    source = "relay" if models or prices else "unavailable"
    facts = RelayFacts(base, models, prices, time.time(), source, refused=bool(refusals) and not models)
    if facts.refused:
        return facts
    if models or prices:
        write_cached(facts)
    return _remember(facts)


def _remember(facts: RelayFacts) -> RelayFacts:
    with _lock:
        _known[facts.base_url] = facts
    pricing.remember_prices(facts.base_url, facts.prices)
    detection = detect(facts.models)
    if not detection.recognised and facts.base_url not in _said:
        _said.add(facts.base_url)
        # Said once per relay, in the log: a %%sora cell has exactly one output (its card);
        # `%sora connect`, `%sora config`, `Conversation.relay` and the widget's badge say it too.
        log.info("%s: %s", facts.base_url, NO_FAMILY)
    return facts


async def _ask(client, refusals: list) -> tuple[list | None, dict]:
    models, prices = await asyncio.gather(_model_list(client, refusals), _price_list(client))
    return models, prices


async def _quiet_json(client, url: str, refusals: list | None = None):
    try:
        return await client.get_json(url, timeout=DISCOVERY_SECONDS, limit=LIST_BYTES)
    except Exception as error:  # 404, HTML, junk, too big, refused: the relay does not say
        log.debug("nothing readable at %s: %s", url, type(error).__name__)
        if refusals is not None and getattr(error, "status_code", None) in (401, 403):
            refusals.append(error.status_code)
        return None


async def _model_list(client, refusals: list) -> list | None:
    base = client.base_url
    names = model_ids(await _quiet_json(client, f"{base}/models", refusals))
    if not names:
        names = model_ids(await _quiet_json(client, f"{pricing.gateway_root(base)}/api/models"))
    return names or None


async def _price_list(client) -> dict:
    return pricing.prices_from_gateway(await _quiet_json(client, pricing.pricing_url(client.base_url)))


# -- what the user sees ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RelayDescription:
    """`Conversation.relay`: the relay in use, the profile chosen for it and why, what it sells."""

    base_url: str
    profile: RelayProfile
    reason: str
    chosen_by: str  # "configuration", "model list", "default" or "simulator"
    detection: Detection = field(default_factory=Detection)
    prices: dict = field(default_factory=dict)
    key_refused: bool = False  # the relay's model list refused the key (HTTP 401/403)

    @property
    def offers(self) -> tuple:
        return self.detection.offers

    def price_of(self, offer) -> str:
        """The discovered price of a picker's choice: its own name's, else its wire names'."""
        found = [self.prices[name] for name in (offer.name, *offer.wire_names) if name in self.prices]
        if not found:
            return pricing.UNKNOWN
        amounts = sorted({(p.amount, p.per) for p in found})
        unit = "/s" if amounts[0][1] == pricing.PER_SECOND else ""
        low, high = pricing.money(amounts[0][0]), pricing.money(amounts[-1][0])
        return f"{low}{unit}" if low == high else f"{low}–{high}{unit}"

    @property
    def summary(self) -> str:
        return f"profile {self.profile.name}: {self.reason}"

    def __repr__(self) -> str:
        names = ", ".join(offer.name for offer in self.offers) or "none listed"
        return f"<relay {self.base_url}: profile {self.profile.name!r} ({self.reason}); video models: {names}>"


def describe(settings, configured: RelayProfile | None, facts: RelayFacts | None) -> RelayDescription:
    """The profile a conversation uses and why: an explicit profile wins; else the relay's model
    list decides; else the words default."""
    detection = detect(facts.models) if facts is not None else Detection(listed=False)
    seen = {"detection": detection, "prices": dict(facts.prices) if facts is not None else {},
            "key_refused": bool(facts is not None and facts.refused)}  # fmt: skip
    if configured is not None:
        why = "set by configuration (profile=, KKI_RELAY_PROFILE or %config SoraMagics.profile)"
        return RelayDescription(settings.base_url, configured, why, "configuration", **seen)
    if settings.simulated:
        why = "the embedded simulator reads the words (and every family's names)"
        return RelayDescription(settings.base_url, BUILTIN["words"], why, "simulator", **seen)
    if facts is None:
        why = "the relay's model list is read before the first send (or %sora connect)"
        return RelayDescription(settings.base_url, BUILTIN["words"], why, "default", **seen)
    chosen_by = "model list" if detection.recognised else "default"
    return RelayDescription(settings.base_url, BUILTIN[detection.profile], detection.reason, chosen_by, **seen)
