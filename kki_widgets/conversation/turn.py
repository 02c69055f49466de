"""A turn: one prompt and the video generated for it; the handles of running turns; the form
a turn is saved in (the store's turn records, the request cache's entries).

Pure data and waiting: what a turn *is*. Running one is `Conversation`'s job (kki_widgets.conversation.session).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..protocol import pricing
from ..protocol.errors import GenerationFailed, TurnFailed
from ..protocol.profiles import turn_warnings
from ..protocol.request import prompt_text
from ..protocol.transcript import TERMINAL, Generation


@dataclass
class Turn:
    """One prompt and the video generated for it."""

    index: int
    prompt: str
    options: dict = field(default_factory=dict)
    parent: int | None = None
    generation: Generation = field(default_factory=Generation)
    status: str = "queued"
    cached: bool = False
    path: str | None = None
    thumbnail_path: str | None = None
    messages: list = field(default_factory=list)
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    cache_key: str | None = None
    cell_id: str | None = None
    simulated: bool = False
    # Where the relay's echoed spec contradicts what was asked ("asked for landscape; …").
    warnings: list = field(default_factory=list)
    # Price (pricing.py): the estimate is known before sending, the cost once the turn ended.
    estimate: float | None = None
    cost: float | None = None
    cost_note: str | None = None
    # Takes: several generations of one request; `take_group` is the index of take 1.
    take: int | None = None
    takes: int | None = None
    take_group: int | None = None
    picked: bool = False
    note: str | None = None  # e.g. why this shot continues from a frame instead of a remix
    # The relay's answer had begun (its 200 came back): a turn that then ends without a task ID
    # or the relay's own words of failing may have been charged (pricing.accepted).
    answer_began: bool = False

    @property
    def cost_text(self) -> str:
        """Its estimate while it runs, its charge after ("$0.00 — replayed from the store")."""
        return pricing.cost_line(self)

    @property
    def video_url(self) -> str | None:
        """The local copy when there is one (it outlives the relay's CDN links), else the URL."""
        if self.path and Path(self.path).is_file():
            return self.path
        return self.generation.video_url

    @property
    def thumbnail_url(self) -> str | None:
        if self.thumbnail_path and Path(self.thumbnail_path).is_file():
            return self.thumbnail_path
        return self.generation.thumbnail_url

    @property
    def task_id(self) -> str | None:
        return self.generation.task_id

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def sent_prompt(self) -> str:
        """The prompt as sent: with the words a relay profile added, e.g. "(landscape 16:9, …)"."""
        return prompt_text(self.messages[-1]["content"]) if self.messages else self.prompt

    @property
    def assistant_message(self) -> dict:
        return {"role": "assistant", "content": self.generation.text}

    def raise_for_status(self) -> Turn:
        """Raise `TurnFailed` (with the turn's own message) if it failed or was cancelled."""
        if self.status in ("failed", "cancelled"):
            raise TurnFailed(
                self.error or f"turn {self.index} {self.status}",
                task_id=self.task_id,
                generation=self.generation,
                turn=self,
            )
        return self

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["generation"] = self.generation.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Turn:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in names}
        values["generation"] = Generation.from_dict(data.get("generation") or {})
        return cls(**values)

    @property
    def playable_url(self) -> str | None:
        """What a saved notebook should play: the local copy (relative), else the http(s) URL."""
        from ..media.downloads import relative_media_url

        url = relative_media_url(self.path) or self.generation.video_url
        return url if url and url.startswith(("./", "http://", "https://")) else None

    @property
    def poster_url(self) -> str | None:
        from ..media.downloads import relative_media_url

        url = relative_media_url(self.thumbnail_path) or self.generation.thumbnail_url
        return url if url and url.startswith(("./", "http://", "https://")) else None

    def follow(self, generation: Generation) -> None:
        """Take the relay's latest snapshot of this turn's generation."""
        # A followed task may answer without the markdown: keep what we already had.
        self.generation = generation if generation.text_length else generation.with_text_of(self.generation)
        self.status = generation.status
        self.warnings = turn_warnings(self.options, self.generation.spec, self.generation.notices)

    def end(self, status: str, error: str | None) -> None:
        """The turn is over: `status` and the message that says why (None when completed)."""
        self.status = status
        self.error = error
        self.finished_at = time.time()
        if status != self.generation.status and status in ("cancelled", "failed"):
            self.generation = self.generation.with_status(status, self.generation.error)

    def failure_message(self) -> str:
        """Why the relay's generation failed, in `GenerationFailed`'s words."""
        reason = self.generation.error or "the relay reported a failed generation"
        return str(GenerationFailed(reason, task_id=self.task_id))

    def cancel_message(self) -> str:
        """What a cancelled wait means for the bill, and how to fetch an accepted task."""
        if self.task_id:
            return (
                f"Cancelled. The relay accepted task {self.task_id} and may still finish it: "
                f"%sora resume {self.task_id} (or Conversation.resume) fetches it without paying again."
            )
        return "Cancelled before the relay accepted the prompt; nothing was charged."

    def unexpected_message(self, error: Exception, redact) -> str:
        """An error nobody foresaw (its text `redact`ed), and whether the task can be resumed."""
        detail = redact(str(error))[:200]
        message = f"Unexpected {type(error).__name__}{': ' + detail if detail else ''}. "
        if self.task_id:
            return message + (
                f"The relay accepted task {self.task_id}: %sora resume {self.task_id} (or "
                "Conversation.resume) fetches it without paying again."
            )
        return message + (
            "No task ID was seen; if the relay accepted the prompt anyway it may charge for it: "
            "check its dashboard before sending it again."
        )

    def keep_own_files(self, video, thumbnail, media_dir) -> None:
        """Use these paths (from the store, data in the notebook's folder) only where they are
        our own media files (`media.kept_file`); else the relay's URLs are used."""
        from ..media.downloads import kept_file

        self.path = _str_or_none(kept_file(video, media_dir))
        self.thumbnail_path = _str_or_none(kept_file(thumbnail, media_dir))

    def cache_entry(self) -> dict:
        """What the request cache keeps of a completed turn; `replay` rebuilds a turn from it."""
        return {
            "generation": self.generation.to_dict(),
            "assistant_message": self.generation.text,
            "paths": {"video": self.path, "thumbnail": self.thumbnail_path},
        }

    def replay(self, entry: dict, media_dir) -> None:
        """Become the free replay of an identical earlier request's cache entry."""
        self.generation = Generation.from_dict(entry["generation"])
        self.status = self.generation.status
        self.warnings = turn_warnings(self.options, self.generation.spec, self.generation.notices)
        self.cached = True
        paths = entry.get("paths") or {}
        self.keep_own_files(paths.get("video"), paths.get("thumbnail"), media_dir)
        self.finished_at = time.time()
        self.cost, self.cost_note = 0.0, pricing.REPLAYED

    def __repr__(self) -> str:
        # The local copy relative to the notebook: a saved notebook must not carry home paths.
        where = self.playable_url or self.error or ""
        cached = ", cached" if self.cached else ""
        return f"<Turn {self.index} {self.status}{cached}: {self.prompt[:40]!r} {where}>"

    def _repr_html_(self) -> str:
        from ..display.views import (
            turn_html,  # presentation lives in one renderer (kki_widgets.display.views)
        )

        return turn_html(self)


def follow_blocker(turn: Turn) -> str | None:
    """Why `turn`'s task cannot be followed again, in words; None when it can.

    Following needs the task ID and the raw-data link the relay gave: without the link we would
    guess an address the relay never named (asyncdata-style relays serve it from another host).
    The widget's Resume button and a bare ``%sora resume`` both ask this. Any object with a
    `generation` will do (the widget takes any conversation's turns).
    """
    generation = getattr(turn, "generation", None)
    again = "look for it on the relay's dashboard (sending the prompt again would pay again)"
    task_id = getattr(generation, "task_id", None)
    if not task_id:
        return f"the relay gave no task ID to follow this video by: {again}"
    link = urlsplit(getattr(generation, "raw_url", None) or "")
    if link.scheme.lower() not in ("http", "https") or not link.hostname:
        return f"the relay gave task ID {task_id} but no raw-data link to follow it by: {again}"
    return None


class TurnHandle:
    """A turn running in the background: await it, block on `.result()`, or `.cancel()` it."""

    def __init__(self, turn: Turn, future: asyncio.Future | concurrent.futures.Future, loop):
        self.turn = turn
        self._future = future
        self._loop = loop

    def __await__(self):
        if isinstance(self._future, concurrent.futures.Future):
            return asyncio.wrap_future(self._future).__await__()
        return self._future.__await__()

    def done(self) -> bool:
        return self._future.done()

    def cancel(self) -> None:
        if isinstance(self._future, concurrent.futures.Future):
            self._future.cancel()
        else:
            self._loop.call_soon_threadsafe(self._future.cancel)

    def result(self, timeout: float | None = None) -> Turn:
        """Block until the turn ends (not from the loop that runs it: await it there)."""
        if isinstance(self._future, concurrent.futures.Future):
            return self._future.result(timeout)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            if self._future.done():
                return self._future.result()
            raise RuntimeError(
                "this turn runs on the current event loop: use `await handle` instead of "
                ".result(), or conv.send(...) to block"
            )
        waiter = concurrent.futures.Future()

        def relay_outcome(future):
            if future.cancelled():
                waiter.cancel()
            elif future.exception() is not None:
                waiter.set_exception(future.exception())
            else:
                waiter.set_result(future.result())

        self._loop.call_soon_threadsafe(self._future.add_done_callback, relay_outcome)
        return waiter.result(timeout)

    wait = result

    def __repr__(self) -> str:
        return f"<TurnHandle {self.turn!r}>"


class TakesHandle(list):
    """The handles of the takes of one request: `await` it or `.result()` for their turns."""

    @property
    def turns(self) -> list[Turn]:
        return [handle.turn for handle in self]

    @property
    def turn(self) -> Turn:
        return self[0].turn

    def __await__(self):
        async def gather():
            return [await handle for handle in self]

        return gather().__await__()

    def result(self, timeout: float | None = None) -> list[Turn]:
        return [handle.result(timeout) for handle in self]

    wait = result

    def done(self) -> bool:
        return all(handle.done() for handle in self)

    def cancel(self) -> None:
        for handle in self:
            handle.cancel()


def saved_form(turn: Turn) -> tuple:
    """What decides whether a turn must be written again: every field but its history (which never
    changes) and its index (not stored). Generations are immutable (an update is a new object),
    so comparing them is an identity check.
    """
    return (turn.generation, *(repr(getattr(turn, name)) for name in FORM_FIELDS))


FORM_FIELDS = tuple(
    f.name for f in dataclasses.fields(Turn) if f.name not in ("index", "messages", "generation")
)


def _str_or_none(path) -> str | None:
    return str(path) if path is not None else None
