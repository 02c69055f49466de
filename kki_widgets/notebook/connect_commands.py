"""``%sora connect URL``, ``%sora models`` and ``%%sora --size``: what a relay sells, in words.

`connect` takes the key from KKI_API_KEY or a masked prompt (getpass), never from the command
line (it would be saved in the notebook), reads what the relay publishes (models, prices, the
key's balance) and pings the chat endpoint with a request that generates nothing. Presentation
only: the conclusions are `relay_models`' and `discovery`'s.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, replace

from ..client.loop import block_on
from ..protocol.errors import ConfigurationError
from ..protocol.pricing import money
from ..protocol.relay_models import sized_model

# A model name no relay sells: a relay that checks names against its list refuses it before
# anything is generated, after it has checked the key.
PING_MODEL = "kki-connect-check-no-such-model"


def offer_rows(relay) -> list[tuple[str, ...]]:
    """One row per video model the relay sells: name, lengths, orientations, sizes, price, and
    how the options travel (the relay's names, or words)."""
    rows = []
    for offer in relay.offers:
        lengths = ", ".join(f"{n}" for n in offer.durations) + " s" if offer.durations else "any (relay decides)"
        sent = f"names like {offer.wire_names[0]}" if offer.family else "words after the prompt"
        rows.append((offer.name, lengths, ", ".join(offer.orientations) or "-",
                     ", ".join(offer.sizes) or "-", relay.price_of(offer), sent))  # fmt: skip
    return rows


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]  # fmt: skip
    return "\n".join(lines)


def offer_label(offer, price: str, title: str | None = None) -> dict:
    """A picker's choice for the widget: the offer, its price, and one line that says both."""
    # A plain name says no lengths: the relay decides, and the length picker stays as it is.
    lengths = " · " + "/".join(str(n) for n in offer.durations) + " s" if offer.durations else ""
    sizes = f" · {'/'.join(offer.sizes)}" if offer.sizes else ""
    label = f"{title or offer.name}{lengths}{sizes} · {price}"
    return {**offer.to_dict(), "price": price, "label": label}


def picker_entries(relay) -> list[dict]:
    """The widget's model choices: each offer, then each of its other sizes as a choice of its own
    (the family's stem that sells it, e.g. sora2pro-hd as "sora-2-pro hd"), with its lengths."""
    entries = []
    for offer in relay.offers:
        entries.append(offer_label(offer, relay.price_of(offer)))
        for size in offer.sizes[1:]:
            stem = sized_model(relay.profile, offer.name, size)
            sized = replace(
                offer, name=stem, sizes=(),
                durations=relay.profile.durations(stem) or offer.durations,
                wire_names=tuple(name for name in offer.wire_names if name.startswith(stem)),
            )  # fmt: skip
            entries.append(offer_label(sized, relay.price_of(sized), f"{offer.name} {size}"))
    return entries


MODEL_HEADER = ("model", "lengths", "orientations", "sizes", "price", "sent as")


def models_text(relay) -> str:
    """`%sora models`: the relay's video models, and how options reach it."""
    lines = [f"relay {relay.base_url}: {relay.summary}"]
    rows = offer_rows(relay)
    if rows:
        lines.append(table(rows, MODEL_HEADER))
    else:
        lines.append("no video models listed: any name is sent as given (--model NAME)")
    detection = relay.detection
    others = [f"{len(detection.chat)} chat", f"{len(detection.image)} image"]
    if detection.listed:
        lines.append(f"also listed: {', '.join(others)} models (not offered for video)")
    return "\n".join(lines)


def models_command(conversation, rest: list[str]) -> str:
    refresh = "--refresh" in rest
    relay = block_on(conversation.adiscover(refresh=refresh))
    text = models_text(relay)
    print(text)
    return None


def size_option(conversation, model: str, size: str | None) -> str:
    """The model a ``--size`` asks for (the family's stem that sells it); refused before sending
    where the relay's family does not sell that size."""
    if size is None:
        return model
    relay = block_on(conversation.adiscover())  # the profile may come from the relay's list
    return sized_model(relay.profile, model, size)


# -- %sora connect ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ping:
    sent: str  # what was asked, in words
    words: str  # what the answer means


def ask_key(url: str) -> str:
    """The key from KKI_API_KEY, else typed into a masked prompt (never echoed, never saved)."""
    key = os.environ.get("KKI_API_KEY", "").strip()
    if key:
        return key
    key = getpass.getpass(f"API key for {url} (typed text is hidden): ").strip()
    if not key:
        raise ConfigurationError("no key given: type the relay's API key at the prompt, or set KKI_API_KEY")
    return key


def ping_body(relay) -> tuple[dict | None, str]:
    """A request that costs nothing, chosen from what the relay lists: max_tokens 1 on a chat model
    the price list says is free, else a made-up model name a relay with a model list refuses; a
    relay that lists nothing is not pinged (it might take any name for its default video)."""
    free_chat = [name for name in relay.detection.chat if name in relay.prices and relay.prices[name].amount == 0]
    messages = [{"role": "user", "content": "ping"}]
    if free_chat:
        body = {"model": free_chat[0], "messages": messages, "max_tokens": 1, "stream": False}
        return body, f"max_tokens 1 on {free_chat[0]} (free on this relay)"
    if relay.detection.listed:
        body = {"model": PING_MODEL, "messages": messages, "max_tokens": 1, "stream": False}
        return body, "a made-up model name, which a relay refuses before generating anything"
    return None, "skipped: the relay lists no models, so a made-up name might be taken for a paid default"


def read_ping(status: int, text: str, made_up: bool) -> str:
    snippet = " ".join(text.split())[:120]
    if status in (401, 403):
        return f"the key was refused (HTTP {status}: {snippet}): check KKI_API_KEY or the key you typed"
    if 200 <= status < 300:
        return f"reachable, key accepted (HTTP {status})" + (
            "; it answered a made-up model name: this relay takes any name" if made_up else ""
        )
    if 300 <= status < 400:
        return f"the chat endpoint redirects (HTTP {status}): check the base URL"
    return f"reachable, key accepted; the relay refused the ping as expected (HTTP {status}: {snippet})"


async def aping(conversation, relay) -> Ping:
    body, sent = ping_body(relay)
    if body is None:
        return Ping(sent, await _why_no_list(conversation))
    try:
        status, text = await conversation.client.probe(body)
    except Exception as error:  # unreachable: say what kind, never the key (redacted anyway)
        return Ping(sent, f"unreachable: {type(error).__name__}: {conversation.client.redact(str(error))[:160]}")
    return Ping(sent, read_ping(status, text, body["model"] == PING_MODEL))


async def _why_no_list(conversation) -> str:
    """What the model list's own address answers, when no list could be read: a refused key
    shows here (401) without sending anything to the chat endpoint."""
    client = conversation.client
    try:
        await client.get_json(f"{client.base_url}/models", timeout=5.0)
    except Exception as error:
        words = client.redact(str(error))[:160]
        if "HTTP 401" in words or "HTTP 403" in words:
            return f"not pinged; the key was refused ({words}): check KKI_API_KEY or the key you typed"
        return f"not pinged; the model list is not readable ({type(error).__name__}: {words})"
    return "not pinged"


def connect_text(conversation, relay, balance, ping: Ping) -> str:
    settings = conversation.client.settings
    lines = [f"connected to {settings.base_url} (key {settings.api_key!r})", "", models_text(relay), ""]
    lines.append(f"balance: {money(balance)}" if balance is not None else "balance: the relay does not report it")
    lines.append(f"chat endpoint: {ping.words} — ping: {ping.sent}")
    return "\n".join(lines)


def connect_report(conversation) -> str:
    """What `%sora connect` prints once the client is built: models, prices, balance, ping."""

    async def gather():
        relay = await conversation.adiscover(refresh=True)
        balance = await conversation.prices.abalance()
        return relay, balance, await aping(conversation, relay)

    return connect_text(conversation, *block_on(gather()))
