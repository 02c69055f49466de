"""Server-sent events → chat-completion deltas. Pure and incremental: bytes in, text out.

Written here rather than taken from httpx-sse because relays need leniency a strict SSE parser
does not give: pretty-printed JSON spread over several lines (as on the relay's own API page),
non-JSON junk lines, and chunks carrying `{"error": ...}`. It is also about twice as fast on the
tiny chunks relays send, which matters at thousands of chunks per second (see benchmarks/).
"""

from __future__ import annotations

import json
import json.scanner
from dataclasses import dataclass

_KNOWN_FIELDS = frozenset(("event", "id", "retry"))
DONE = "[DONE]"


# Caps on what one line and one event may hold. An honest line carries one chat chunk (a few KB;
# a relay that sends the whole answer at once, some hundred KB): past these the stream is hostile
# or broken, and the rest of the line or event is dropped as it arrives, so memory stays bounded
# whatever the relay sends and however long it sends it.
MAX_LINE_CHARS = 4 * 1024 * 1024
MAX_EVENT_CHARS = 4 * 1024 * 1024
# What an event that passed a cap is reported as: not JSON, so `decode_chunk` calls it malformed.
OVERSIZED = ""


class SSEDecoder:
    """Feed raw bytes as they arrive; get back the `data` payload of each complete event.

    Handles LF, CRLF and CR line ends (even a CRLF split across two reads), `:` comment and
    keep-alive lines, multi-line `data:` fields (joined by newlines) and a last event that ends
    without its blank line. Lines that are not SSE fields are kept aside so the chunk decoder can
    retry them as the continuation of a pretty-printed JSON payload.

    Bounded: an unfinished line is kept as a list of pieces (joined once, when its newline comes,
    so a line without one costs linear time), and a line or event past its cap is dropped and
    reported as one `OVERSIZED` event (`dropped` counts them).
    """

    __slots__ = (
        "_data", "_decoder", "_extra", "_held_cr", "_oversized", "_size", "_skipping",
        "_tail", "_tail_size", "dropped",
    )

    def __init__(self) -> None:
        self._tail: list[str] = []
        self._tail_size = 0
        self._skipping = False  # inside a line that passed MAX_LINE_CHARS: dropped until its end
        self._data: list[str] = []
        self._extra: list[str] = []
        self._size = 0  # characters held for the current event
        self._oversized = False  # the current event passed a cap: report it, drop its content
        self._held_cr = False
        self.dropped = 0
        # Incremental so a multi-byte character split across reads is decoded whole; invalid
        # bytes become U+FFFD instead of crashing the kernel.
        import codecs

        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, chunk: bytes) -> list[tuple[str, list[str]]]:
        text = self._decoder.decode(chunk)
        return self._feed_text(text)

    def _feed_text(self, text: str) -> list[tuple[str, list[str]]]:
        if self._held_cr:
            self._held_cr = False
            if text.startswith("\n"):
                text = text[1:]
        if "\r" in text:
            if text.endswith("\r"):
                # Might be the first half of a CRLF: treat as a line end, skip a following LF.
                self._held_cr = True
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if self._oversized:
            text = self._skip_to_blank_line(text)
        if "\n" not in text:
            self._hold(text)
            return []
        lines = text.split("\n")
        self._hold(lines[0])
        lines[0] = self._take_line()
        last = lines.pop()
        events: list[tuple[str, list[str]]] = []
        for line in lines:
            if line is None or len(line) > MAX_LINE_CHARS:
                self._drop_event()
            elif line:
                self._field(line)
            elif self._data or self._extra or self._oversized:
                events.append(self._dispatch())
        self._hold(last)
        return events

    def _skip_to_blank_line(self, text: str) -> str:
        """While an event is dropped, jump to the blank line that ends it (none: keep the tail)."""
        if text.startswith("\n") and not self._tail and not self._skipping:
            return text  # the previous read ended its line: this newline is the blank line
        at = text.find("\n\n")
        if at < 0:
            at = text.rfind("\n")
            if at < 0:
                return text
            self._take_line()
            return text[at + 1 :]  # the last, unfinished line: may be the blank one
        self._take_line()
        return text[at + 1 :]

    def _hold(self, text: str) -> None:
        """Keep the start of an unfinished line, unless it is past its cap."""
        if self._skipping or not text:
            return
        self._tail_size += len(text)
        if self._tail_size > MAX_LINE_CHARS:
            self._tail.clear()
            self._skipping = True
        else:
            self._tail.append(text)

    def _take_line(self) -> str | None:
        """The line whose newline just came (None: it passed its cap)."""
        line = None if self._skipping else "".join(self._tail)
        self._tail.clear()
        self._tail_size = 0
        self._skipping = False
        return line

    def _field(self, line: str) -> None:
        if line[0] == ":":
            return
        if self._oversized:
            return
        if line.startswith("data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(" ") else value)
        elif line.split(":", 1)[0] not in _KNOWN_FIELDS:
            self._extra.append(line)
        else:
            return
        self._size += len(line)
        if self._size > MAX_EVENT_CHARS:
            self._drop_event()

    def _drop_event(self) -> None:
        self._data.clear()
        self._extra = []
        self._size = 0
        if not self._oversized:
            self._oversized = True
            self.dropped += 1

    def _dispatch(self) -> tuple[str, list[str]]:
        event = (OVERSIZED, []) if self._oversized else ("\n".join(self._data), self._extra)
        self._data.clear()
        self._extra = []
        self._size = 0
        self._oversized = False
        return event

    def close(self) -> list[tuple[str, list[str]]]:
        """End of stream: flush the last event even if its blank line never came."""
        events = self._feed_text(self._decoder.decode(b"", final=True) + "\n\n")
        return events


@dataclass(frozen=True)
class ChatChunk:
    """What one SSE event means for the transcript."""

    content: str = ""
    finish_reason: str | None = None
    # The relay's status channel (`delta.reasoning_content`): progress, status and failure words
    # some relays send apart from the answer. Never part of the assistant message.
    reasoning: str = ""
    error: dict | None = None
    done: bool = False
    malformed: bool = False


_DONE_CHUNK = ChatChunk(done=True)
_MALFORMED = ChatChunk(malformed=True)
_EMPTY = ChatChunk()
_new = object.__new__

# `json.loads` goes through two Python frames before its C scanner; relays send thousands of
# tiny chunks per second, so call the scanner directly and fall back to `json.loads` (same
# result, same errors) for anything it does not take whole: leading blanks, trailing data.
_scan_once = json.scanner.make_scanner(json.JSONDecoder())


def _loads(data: str):
    try:
        obj, end = _scan_once(data, 0)
    except StopIteration:
        return json.loads(data)
    if end != len(data) and data[end:].strip():
        return json.loads(data)  # raises "Extra data" like json.loads
    return obj


def _content_chunk(content: str, finish_reason: str | None, reasoning: str = "") -> ChatChunk:
    """`ChatChunk(content=..., finish_reason=...)` without the frozen dataclass' slow __init__."""
    chunk = _new(ChatChunk)
    chunk.__dict__.update(content=content, finish_reason=finish_reason, reasoning=reasoning)
    return chunk


def _text_of(value) -> str:
    """A delta field as text: a string, or the text parts of a list; anything else is empty."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(part.get("text", "") for part in value if isinstance(part, dict))
    return ""


def decode_chunk(data: str, extra: list[str] | None = None) -> ChatChunk:
    """Interpret one event payload of an OpenAI-style chat-completion stream."""
    if data == DONE or data.strip() == DONE:
        return _DONE_CHUNK
    try:
        obj = _loads(data)
    except (ValueError, RecursionError):
        if not extra:
            return _MALFORMED
        try:
            obj = json.loads(data + "\n" + "\n".join(extra))
        except (ValueError, RecursionError):
            return _MALFORMED
    if not isinstance(obj, dict):
        return _MALFORMED
    error = obj.get("error")
    if error:
        return ChatChunk(error=error if isinstance(error, dict) else {"message": str(error)})
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices:
        # Usage-only and other bookkeeping chunks carry no text.
        return ChatChunk()
    choice = choices[0]
    if len(choices) > 1:
        # Some relays put the text in choices[1] (choices[0] an empty delta): read them all.
        return _all_choices(choices)
    if not isinstance(choice, dict):
        return _MALFORMED
    delta = choice.get("delta")
    if delta is None:
        # Non-streaming shape sneaking into a stream: take the whole message.
        delta = choice.get("message")
    if not isinstance(delta, dict):
        delta = {}
    content = delta.get("content")
    if type(content) is not str:  # the common case skips a call: thousands of chunks per second
        content = _text_of(content)
    # `reasoning_content` (sora2api, flow2api, DeepSeek-style gateways) or `reasoning` (OpenRouter).
    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
    if reasoning and type(reasoning) is not str:
        reasoning = _text_of(reasoning)
    reasoning = reasoning or ""
    finish = choice.get("finish_reason")
    if not content and not reasoning and finish is None:
        return _EMPTY
    return _content_chunk(content, finish if isinstance(finish, str) else None, reasoning)


def _all_choices(choices: list) -> ChatChunk:
    """One chunk of several choices: their text joined in order, the last finish_reason."""
    content, reasoning, finish = [], [], None
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        content.append(_text_of(delta.get("content")))
        reasoning.append(_text_of(delta.get("reasoning_content") or delta.get("reasoning")))
        if isinstance(choice.get("finish_reason"), str):
            finish = choice["finish_reason"]
    if not any(content) and not any(reasoning) and finish is None:
        return _EMPTY
    return _content_chunk("".join(content), finish, "".join(reasoning))
