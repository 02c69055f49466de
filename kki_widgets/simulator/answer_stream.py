"""One streamed chat answer as SSE bytes, misbehaving the way the request's fault plan says:
CRLF or pretty-printed events, bytes split across HTTP chunks (inside UTF-8 sequences too),
keep-alive pings, malformed events, a stall, an error chunk, and cuts at chosen places.

`server.Simulator` answers a streaming chat request with `AnswerStream(...).events(task)`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator

from . import dialects, script
from .faults import FaultPlan
from .tasks import Generation


class SimulatedCut(Exception):
    """Raised inside a streaming body: uvicorn then drops the connection without the final
    zero-length chunk, which is what a real cut looks like to the client."""


class AnswerStream:
    def __init__(self, plan: FaultPlan, rng: random.Random, completion_id: str, created: int, model: str):
        self.plan = plan
        self.rng = rng
        self.ids = (completion_id, created, model)
        self.newline = "\r\n" if plan.crlf else "\n"
        self.style = "pretty_raw" if plan.pretty_raw else "pretty" if plan.pretty else "compact"
        self.ping = f": ping{self.newline}{self.newline}".encode()
        self.events = 0  # events written so far (where the cuts are counted)
        self.finished = False  # a chunk with a finish_reason was written

    async def events_of(self, task: Generation) -> AsyncIterator[bytes]:
        """The whole answer: the opening chunk, every piece of the task, then its ending."""
        for data in self._opening(task.dialect):
            yield data
        async for piece in task.follow():
            for data in self._piece(piece, task.dialect):
                yield data
            if piece.kind == "task_id":
                if self.plan.cut_after_task_id:
                    raise SimulatedCut("cut after the task ID")
                if self.plan.stall_seconds:
                    await asyncio.sleep(self.plan.stall_seconds)
                if self.plan.error_chunk:
                    for data in self._error_chunk():
                        yield data
                    return
            if piece.kind == "progress" and self.plan.cut_mid_progress:
                raise SimulatedCut("cut in the middle of the progress")
        for data in self._ending(task):
            yield data

    def _framed(self, payload: dict[str, object] | str) -> list[bytes]:
        data = script.frame_event(payload, newline=self.newline, style=self.style).encode()
        if self.plan.split and len(data) > 2:
            # Also split the bytes, possibly inside a UTF-8 sequence, across HTTP chunks.
            cut = self.rng.randrange(1, len(data))
            return [data[:cut], data[cut:]]
        return [data]

    def _cut_if_due(self) -> None:
        if self.plan.cut_after_events is not None and self.events >= self.plan.cut_after_events:
            raise SimulatedCut(f"cut after {self.events} events" if self.events else "cut before the first event")

    def _opening(self, dialect: dialects.Dialect) -> Iterator[bytes]:
        self._cut_if_due()
        if self.plan.keepalive:
            yield self.ping
        opening = dialect.reshape(script.chunk(*self.ids, {"role": "assistant", "content": ""}), "opening")
        if opening is not None:
            yield from self._framed(opening)
        self.events += 1
        self._cut_if_due()

    def _piece(self, piece: script.Piece, dialect: dialects.Dialect) -> Iterator[bytes]:
        """The chunks of one piece, with the malformed events, pings and cuts due among them."""
        texts: list[str | None] = [piece.text]
        if self.plan.split and piece.text:
            texts = list(script.split_text(piece.text, self.rng))
        newline = self.newline
        for payload in piece_chunks(piece, texts, dialect, *self.ids):
            self.finished = self.finished or payload["choices"][0]["finish_reason"] is not None
            yield from self._framed(payload)
            self.events += 1
            if self.plan.malformed and self.events % 4 == 0:
                yield f"data: {{\"id\": \"{self.ids[0]}\", \"object\": {newline}{newline}".encode()
                yield f"data: upstream hiccup <html>502</html>{newline}{newline}".encode()
            if self.plan.keepalive and self.events % 3 == 0:
                yield self.ping
            self._cut_if_due()

    def _error_chunk(self) -> Iterator[bytes]:
        error = {"error": {"message": "upstream error: the video service reset the stream (simulated)",
                           "type": "server_error", "code": "upstream_error"}}  # fmt: skip
        yield from self._framed(error)
        yield f"data: [DONE]{self.newline}{self.newline}".encode()

    def _ending(self, task: Generation) -> Iterator[bytes]:
        if not self.finished and not task.dialect.finish_with_last:
            for payload in (script.chunk(*self.ids, {}), script.chunk(*self.ids, {}, task.dialect.finish_reason)):
                payload = task.dialect.reshape(payload, "end")
                if payload is not None:
                    yield from self._framed(payload)
        tail = task.dialect.tail(task.status == "failed", task.error, self.newline)
        if tail:
            yield tail.encode()


def piece_chunks(
    piece: script.Piece, texts: list[str | None], dialect: dialects.Dialect, completion_id: str, created: int, model: str
) -> list[dict[str, object]]:
    """The chunks carrying one piece (split into ``texts``) on its channel. In dialects that end
    that way, the answer's last delta carries ``finish_reason`` itself."""
    field = "reasoning_content" if piece.channel == "reasoning" else "content"
    chunks = []
    for number, text in enumerate(texts, 1):
        delta = {} if text is None else {field: text}
        finish = piece.last and number == len(texts) and dialect.finish_with_last and field == "content"
        chunk = script.chunk(completion_id, created, model, delta, dialect.finish_reason if finish else None)
        chunk = dialect.reshape(chunk, piece.kind)
        if chunk is not None:
            chunks.append(chunk)
    return chunks
