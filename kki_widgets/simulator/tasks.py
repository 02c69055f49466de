"""A simulated generation: an asyncio task that writes the assistant markdown piece by piece.

The task runs on its own, independent of any HTTP connection: a stream only *observes* it
(:meth:`Generation.follow`), so a client that is cut off can poll ``/source/{task_id}`` and still
see the generation complete — exactly how a real relay behaves and how the client recovers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Callable

from . import catalog, script
from .dialects import DIALECTS, Dialect, Line
from .render import ClipRequest, RenderedClip


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds spent queuing and generating, and the pause between two progress deltas."""

    queue_seconds: float = 1.0
    generate_seconds: float = 3.0
    step_seconds: float = 0.3

    def __post_init__(self) -> None:
        for name in ("queue_seconds", "generate_seconds", "step_seconds"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 3600:
                raise ValueError(f"{name} must be a number of seconds between 0 and 3600, got {value!r}")

    def scaled(self, speed: float) -> Timing:
        if not isinstance(speed, (int, float)) or isinstance(speed, bool) or not speed > 0:
            raise ValueError(f"speed must be a number > 0 (2 = twice as fast), got {speed!r}")
        return Timing(self.queue_seconds / speed, self.generate_seconds / speed, self.step_seconds / speed)

    def steps(self, seconds: float, default: int, low: int, high: int) -> int:
        if self.step_seconds <= 0:
            return default
        return max(low, min(high, round(seconds / self.step_seconds)))


@dataclasses.dataclass
class Generation:
    """State of one simulated task; ``sim.tasks[task_id]`` holds these."""

    id: str
    sid: str
    parent_sid: str | None
    prompt: str
    chain: tuple[str, ...]
    model: str
    orientation: str
    duration: int
    origin: str  # http://127.0.0.1:PORT, the base of every link in the markdown
    images: tuple[str, ...] = ()
    variant: int = 0  # how many identical requests this simulator generated before this one
    first_frame: str | None = None  # the input image as a file in the media folder
    status: str = "pending"  # pending | processing | completed | failed
    progress: int = 0
    video_url: str | None = None
    thumbnail_url: str | None = None
    error: str | None = None
    cached_media: bool = False
    created_at: float = dataclasses.field(default_factory=time.time)
    finished_at: float | None = None
    pieces: list[script.Piece] = dataclasses.field(default_factory=list)
    dialect: Dialect = DIALECTS["seed"]

    def __post_init__(self) -> None:
        self._changed = asyncio.Condition()
        self.done = asyncio.Event()

    @property
    def spec(self) -> dict[str, object]:
        spec: dict[str, object] = {
            "prompt": self.prompt,
            "orientation": self.orientation,
            "duration": self.duration,
        }
        if self.parent_sid:
            spec["sid"] = self.parent_sid
        return spec

    @property
    def content(self) -> str:
        """The assistant message (the answer channel only, never the reasoning channel)."""
        return "".join(piece.text for piece in self.pieces if piece.text and piece.channel == "content")

    def clip_request(self) -> ClipRequest:
        return ClipRequest(
            self.prompt, self.model, self.orientation, self.duration, self.chain, self.images, self.variant,
            first_frame=self.first_frame,
        )

    def to_raw_data(self) -> dict[str, object]:
        """The ``/source/{task_id}`` document."""
        return {
            "id": self.id,
            "status": self.status,
            "progress": 100 if self.status == "completed" else self.progress,
            "url": self.video_url,
            "thumbnail_url": self.thumbnail_url,
            "sid": self.sid if self.status == "completed" else None,
            "parent_sid": self.parent_sid,
            "model": self.model,
            "prompt": self.prompt,
            "content": self.content,
            "error": self.error,
            "created_at": int(self.created_at),
            "finished_at": int(self.finished_at) if self.finished_at else None,
        }

    async def emit(self, text: str | None, kind: str, channel: str = "content", last: bool = False) -> None:
        async with self._changed:
            self.pieces.append(script.Piece(text, kind, channel, last))
            self._changed.notify_all()
        # Let observers run between pieces even when timing is zero.
        await asyncio.sleep(0)

    async def say(self, lines: list[Line] | Line | None, kind: str, last: bool = False) -> None:
        """Emit a dialect's lines; ``last`` marks the final one."""
        lines = [lines] if isinstance(lines, Line) else lines or []
        for index, line in enumerate(lines):
            await self.emit(line.text, kind, line.channel, last and index == len(lines) - 1)

    async def fail(self, reason: str) -> None:
        await self.say(self.dialect.failure_of(self.id, self.origin, reason), "failure", last=True)
        await self.finish("failed", reason)

    async def finish(self, status: str, error: str | None = None) -> None:
        async with self._changed:
            self.status, self.error, self.finished_at = status, error, time.time()
            self.done.set()
            self._changed.notify_all()

    async def follow(self) -> AsyncIterator[script.Piece]:
        """Every piece from the first one, then new ones as they come, until the task ends."""
        index = 0
        while True:
            async with self._changed:
                while index >= len(self.pieces) and not self.done.is_set():
                    await self._changed.wait()
                fresh, finished = self.pieces[index:], self.done.is_set()
            for piece in fresh:
                yield piece
            index += len(fresh)
            if finished and index >= len(self.pieces):
                return


async def run_generation(
    task: Generation,
    *,
    timing: Timing,
    rng: random.Random,
    render: Callable[[ClipRequest], RenderedClip],
    failure: str | None = None,
) -> None:
    """Write the whole answer of ``task`` in its dialect; ``failure`` is ``fail``/``policy``/``capacity``."""
    dialect = task.dialect
    try:
        notice, refusal = catalog.image_verdict(task.model, len(task.images))
        if refusal:
            await task.fail(refusal)  # before a task exists: nothing was submitted
            return
        if notice:
            # The relay drops the image and still makes (and bills) a text-only clip.
            await task.emit(notice, "notice", "reasoning")
            task.images, task.first_frame = (), None
        if dialect.echoes_spec:
            for piece in script.spec_pieces(task.spec):
                await task.emit(piece.text, piece.kind)
        await task.say(dialect.opening(task.id, task.origin), "task_id")

        queue_dots = timing.steps(timing.queue_seconds, 3, 1, 20)
        for _ in range(queue_dots):
            await asyncio.sleep(timing.queue_seconds / queue_dots)
            await task.say(dialect.tick(), "queue")
        if failure == "capacity":
            await task.fail(script.CAPACITY_REASON)
            return

        task.status = "processing"
        await task.say(dialect.generating(), "generating")
        rendering = asyncio.ensure_future(asyncio.to_thread(render, task.clip_request()))
        if failure == "policy":
            await task.say(dialect.tick(), "generating")
            rendering.cancel()
            await task.fail(script.POLICY_REASON)
            return
        if not await _progress(task, timing, rng, rendering, failure == "fail"):
            return
        try:
            clip = await rendering
        except Exception as error:  # ffmpeg broke: the generation fails, the server lives on
            await task.fail(f"rendering failed ({type(error).__name__}: {str(error)[:200]})")
            return
        task.cached_media = clip.cached
        task.video_url = dialect.video_url(task.origin, clip.video_name)
        task.thumbnail_url = f"{task.origin}/cdn/{clip.thumbnail_name}"
        task.progress = 100
        await task.say(dialect.complete(task.sid, task.thumbnail_url, task.video_url), "complete", last=True)
        await task.finish("completed")
    except asyncio.CancelledError:
        # The server is shutting down: observers must not wait forever.
        if not task.done.is_set():
            task.status, task.error, task.finished_at = "failed", "simulator stopped", time.time()
            task.done.set()
        raise


async def _progress(task: Generation, timing: Timing, rng: random.Random, rendering, fail: bool) -> bool:
    """The progress deltas; False when the generation failed midway (``fail``)."""
    steps = timing.steps(timing.generate_seconds, 5, 3, 15)
    values = script.progress_values(rng, steps)
    pause = timing.generate_seconds / (steps + 1)
    await asyncio.sleep(pause)
    await task.say(task.dialect.tick(), "generating")
    for index, value in enumerate(values):
        await asyncio.sleep(pause)
        task.progress = value
        lines = task.dialect.progress(value, first=index == 0)
        if index == 0 and len(lines) > 1:
            await task.say(lines[0], "progress_header")
            lines = lines[1:]
        await task.say(lines, "progress")
        if fail and index == len(values) // 2:
            rendering.cancel()
            await task.fail(script.FAILURE_REASON)
            return False
    return True
