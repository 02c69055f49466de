"""The words of the relay: identifiers, the assistant markdown and the SSE chunk framing.

Everything here is pure and deterministic given a ``random.Random``, so the exact text a real
relay sends (see the relay's API page) is written down in one place and the server only
decides *when* each piece goes out. The answer's ending is written by ``kki_widgets.protocol.relay_text``,
the same writer the client's recovery uses.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import re
import string

#: Crockford base32 (ULID alphabet), lower case, as in ``task_01k7dzptgwf2z87wj2c3t36qk0``.
CROCKFORD_BASE32 = "0123456789abcdefghjkmnpqrstvwxyz"
TASK_ID_PATTERN = re.compile(r"task_[0-9a-hjkmnp-tv-z]{26}")
SID_PATTERN = re.compile(r"\bs_[0-9a-f]{32}\b")

POLICY_REASON = "This content may violate our content policies."
CAPACITY_REASON = "No available capacity, please try again later (high load)."
FAILURE_REASON = "The video could not be generated due to network fluctuations upstream."


def new_task_id(rng: random.Random) -> str:
    return "task_" + "".join(rng.choice(CROCKFORD_BASE32) for _ in range(26))


def new_sid(rng: random.Random) -> str:
    return "s_" + "".join(rng.choice("0123456789abcdef") for _ in range(32))


def new_completion_id(rng: random.Random) -> str:
    return "chatcmpl-" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(29))


@dataclasses.dataclass(frozen=True)
class Piece:
    """One delta of the assistant message. ``text=None`` is the empty ``delta: {}`` chunk.

    ``kind`` tells the stream where it is (faults cut "after the task ID" or "mid progress").
    ``channel`` is ``content`` (the answer) or ``reasoning`` (``delta.reasoning_content``, the
    status channel of some dialects); ``last`` marks the final delta of a generation.
    """

    text: str | None
    kind: str
    channel: str = "content"
    last: bool = False


def spec_pieces(spec: dict[str, object]) -> list[Piece]:
    """The fenced JSON spec, cut into the same kind of tokens the relay sends."""
    pieces = ["```", "json", "\n", "{\n"]
    items = list(spec.items())
    for index, (key, value) in enumerate(items):
        pieces += [" ", " " + json.dumps(key, ensure_ascii=False), ":", " " + json.dumps(value, ensure_ascii=False)]
        pieces.append(",\n" if index < len(items) - 1 else "\n")
    pieces += ["}\n", "```"]
    return [Piece(text, "spec") for text in pieces] + [Piece(None, "spec_end")]


def task_header(task_id: str, origin: str) -> str:
    return (
        f"\n\n> ID: `{task_id}`\n"
        f">[Data Preview]({origin}/web/{task_id}) | [Raw Data]({origin}/source/{task_id})\n"
        "> Queuing."
    )


GENERATING = "\n> Generating"
PROGRESS_HEADER = "\n\n>🏃 Progress "


def progress_step(value: int) -> str:
    return f"{value}.."


def progress_values(rng: random.Random, count: int) -> list[int]:
    """``count`` strictly increasing percentages below 100, like ``36..44..61..69..81..``."""
    count = max(1, min(count, 90))
    return sorted(rng.sample(range(5, 96), count))


def chunk(
    completion_id: str, created: int, model: str, delta: dict[str, str], finish_reason: str | None = None
) -> dict[str, object]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def frame_event(payload: dict[str, object] | str, *, newline: str = "\n", style: str = "compact") -> str:
    """One SSE event. ``style``: ``compact`` (one ``data:`` line), ``pretty`` (indented JSON as
    several ``data:`` lines, which SSE joins back with ``\\n``) or ``pretty_raw`` (indented JSON
    with only the first line prefixed, exactly as printed on the relay's API page)."""
    if isinstance(payload, str):
        lines = [payload]
    elif style == "compact":
        lines = [json.dumps(payload, ensure_ascii=False, separators=(",", ":"))]
    else:
        lines = json.dumps(payload, ensure_ascii=False, indent=4).split("\n")
    if style == "pretty_raw" and not isinstance(payload, str):
        body = newline.join(["data: " + lines[0], *lines[1:]])
    else:
        body = newline.join("data: " + line for line in lines)
    return body + newline + newline


def split_text(text: str, rng: random.Random) -> list[str]:
    """Cut ``text`` at random points (inside URLs, numbers, anywhere) into 1..4 pieces."""
    if len(text) < 2:
        return [text]
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 3))))
    bounds = [0, *cuts, len(text)]
    return [text[start:end] for start, end in itertools.pairwise(bounds)]
