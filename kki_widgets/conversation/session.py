"""A conversation of video turns: what to send next, running and cancelling turns, recovery.

The widget and the magic are thin views over `Conversation`. A turn continues ("remixes") the
video of its *parent* turn: the next request sends the parent's exact history plus its assistant
message verbatim (the relay finds the sid there). Branching is just choosing another parent.

Where generations run:
- `await conv.asend(...)` and `conv.start(...)` run on the caller's event loop (in Jupyter the
  kernel's loop, so other cells keep running while videos generate);
- `conv.send(...)` blocks; it runs the turn on a private loop thread and waits, which also works
  inside a notebook cell whose loop is already running (no nested loops).
Subscribers may therefore be called from either thread; state changes are guarded by a lock.

With a store, every completed generation is cached under (base URL, model, options, messages):
sending the same history again — a rerun cell, Restart & Run All, nbclient — replays it for free.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from ..client.discovery import RelayDescription, describe
from ..client.loop import background_loop, block_on, submit
from ..client.relay import AsyncRelayClient, RelayClient
from ..protocol import pricing
from ..protocol.errors import (
    ConfigurationError,
    KkiError,
    RelayError,
    StillRunning,
    StreamInterrupted,
    scrub,
)
from ..protocol.profiles import RelayProfile, get_profile
from ..protocol.request import check_prompt, normalize_messages
from ..protocol.transcript import Generation
from . import claims
from .batch import check_prompts, live_counter, run_all, wait_drawing
from .saved_turns import SavedTurns
from .spending import Spending
from .takes import group_of, join_group, latest_with_takes, settled, take_numbers, takes_of
from .turn import TakesHandle, Turn, TurnHandle
from .turn_claims import Claiming
from .turn_media import clip_of, keep_media
from .turn_request import (
    HEAD,
    cache_options,
    check_options,
    check_takes,
    choose_options,
    continuity,
    recorded_options,
)

# Turn and its handles live in kki_widgets.conversation.turn; they are imported from here too.
__all__ = ["Conversation", "TakesHandle", "Turn", "TurnHandle"]

log = logging.getLogger("kki_widgets.conversation.session")

_AUTO = "auto"


class Conversation(Claiming):
    """Prompts and their videos, each turn remixing its parent's video."""

    def __init__(
        self,
        model: str | None = None,
        client: AsyncRelayClient | RelayClient | None = None,
        store=_AUTO,
        name: str = "default",
        media_dir=_AUTO,
        *,
        orientation: str | None = None,
        duration: int | None = None,
        max_history: int | None = None,
        profile: RelayProfile | str | None = None,
        prices=None,
        budget=None,
        claim_window: float = claims.WINDOW_SECONDS,
        **client_options,
    ):
        if client is None:
            client = AsyncRelayClient(model=model, profile=profile, **client_options)
        elif client_options:
            raise ConfigurationError(
                f"pass either client= or client options ({', '.join(client_options)}), not both"
            )
        self.client: AsyncRelayClient = (
            client.async_client if isinstance(client, RelayClient) else client
        )
        self.model = model or self.client.model
        # How orientation and length reach this relay: the one asked for (here, or the client's
        # profile=/KKI_RELAY_PROFILE), else the one the relay's model list suggests (`relay`).
        settings = self.client.settings
        self._configured_profile: RelayProfile | None = (
            get_profile(profile) if profile else settings.profile if settings.profile_explicit else None
        )
        self._relay_description: tuple = (None, None)
        self.orientation = orientation
        self.duration = duration
        self.max_history = max_history
        self.name = name
        if store == _AUTO:
            from ..store.notebook_store import NotebookStore

            store = NotebookStore.for_notebook(secret=self.client.settings.api_key)
        self.store = store
        if media_dir == _AUTO:
            media_dir = (self.store.path.parent.parent / "kki_media") if self.store else None
        self.media_dir = Path(media_dir) if media_dir else None
        self._lock = threading.RLock()
        self._turns: list[Turn] = []
        self._head: int | None = None
        self._running: dict[int, tuple[object, asyncio.Future | concurrent.futures.Future]] = {}
        self._subscribers: list[Callable[[Turn], None]] = []
        self._spending = Spending(self.client, prices, budget)
        # A request sent longer ago than this (seconds) and never finished is not waited for.
        self.claim_window = float(claim_window)
        self._claim_ids: dict[int, str] = {}  # id(turn) -> the claim it sent or follows
        self._claim_seen: dict[int, tuple] = {}  # id(turn) -> what its claim records
        self._load()

    def __repr__(self) -> str:
        simulated = " (simulated relay)" if self.simulated else ""
        return (
            f"<Conversation {self.name!r}: {len(self._turns)} turns, head={self._head}, "
            f"model={self.model!r}{simulated}>"
        )

    # -- state --------------------------------------------------------------------------------

    @property
    def prices(self) -> pricing.PriceBook:
        """The prices turns are estimated and charged at (the relay's, else configured)."""
        return self._spending.prices

    @prices.setter
    def prices(self, book: pricing.PriceBook) -> None:
        self._spending.prices = book

    @property
    def budget(self):
        """The enforced cap (`budget.Budget`) every request is reserved against, or None."""
        return self._spending.budget

    @budget.setter
    def budget(self, budget) -> None:
        self._spending.budget = budget

    @property
    def simulated(self) -> bool:
        return self.client.simulated

    @property
    def relay(self) -> RelayDescription:
        """The relay in use: the profile chosen for it and why, the video models it sells and
        their discovered prices (read-only; `%sora config` and the widget's badge show it)."""
        key = (self._spending.relay_facts, self._configured_profile)
        cached_key, description = self._relay_description
        if description is None or cached_key[0] is not key[0] or cached_key[1] is not key[1]:
            description = describe(self.client.settings, self._configured_profile, key[0])
            self._relay_description = (key, description)
        return description

    @property
    def profile(self) -> RelayProfile:
        """How orientation and length reach this relay (`relay` says why this one)."""
        return self.relay.profile

    @profile.setter
    def profile(self, profile: RelayProfile | str) -> None:
        self._configured_profile = get_profile(profile)
        self._relay_description = (None, None)

    async def adiscover(self, refresh: bool = False) -> RelayDescription:
        """Read the relay's model list and prices now (bounded; never raises for the relay)."""
        await self._spending.adiscover(refresh)
        return self.relay

    @property
    def models(self) -> list[str]:
        from ..protocol.profiles import KNOWN_MODELS

        return list(dict.fromkeys([self.model, *self.profile.models(), *KNOWN_MODELS]))

    @property
    def turns(self) -> list[Turn]:
        with self._lock:
            return list(self._turns)

    @property
    def head(self) -> int | None:
        """The turn the next prompt continues from (None: a new video)."""
        return self._head

    @property
    def messages(self) -> list[dict]:
        """The history the next request sends before its prompt: exactly, byte for byte."""
        return self._history(self._head)

    def _history(self, parent: int | None) -> list[dict]:
        if parent is None:
            return []
        turn = self._turns[parent]
        history = [*turn.messages, turn.assistant_message]
        if self.max_history:
            # Keep whole user/assistant pairs, newest last; the remix needs the last pair.
            history = history[-2 * self.max_history :]
        return history

    def chain(self, index: int | None) -> list[Turn]:
        """The turns from the first of its video to `index`, in order (empty for None)."""
        chain = []
        while index is not None and len(chain) <= len(self._turns):  # a loop cannot run away
            turn = self._turns[index]
            chain.append(turn)
            index = turn.parent
        return chain[::-1]

    def branch(self, turn_index: int | None) -> None:
        """Continue the next prompt from `turn_index` (None: start a new video)."""
        with self._lock:
            if turn_index is not None:
                turn = self._turn(turn_index)
                if turn.status != "completed":
                    raise ConfigurationError(
                        f"turn {turn_index} is {turn.status}: only a completed video can be remixed"
                    )
            if turn_index == self._head:
                return  # nothing changes: no store write (a new VideoChat() writes nothing)
            self._head = turn_index
            self._persist()

    def reset(self) -> None:
        """Start a new video with the next prompt; earlier turns stay listed and cached."""
        self.branch(None)

    def undo(self) -> Turn | None:
        """Step the head back to the parent of the current head; returns the undone turn."""
        with self._lock:
            if self._head is None:
                return None
            undone = self._turns[self._head]
            self._head = undone.parent
            self._persist()
            return undone

    def _turn(self, index: int) -> Turn:
        if not isinstance(index, int) or not 0 <= index < len(self._turns):
            count = len(self._turns)
            raise ConfigurationError(
                f"there is no turn {index}: this conversation has turns 0..{count - 1}"
                if count
                else f"there is no turn {index}: this conversation has no turns yet"
            )
        return self._turns[index]

    def subscribe(self, callback: Callable[[Turn], None]) -> Callable[[], None]:
        """Call `callback(turn)` on every change; returns a function that unsubscribes."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _notify(self, turn: Turn) -> None:
        for callback in list(self._subscribers):
            try:
                callback(turn)
            except Exception:  # a broken view must not break the generation
                log.exception("a conversation subscriber failed")

    # -- sending ------------------------------------------------------------------------------

    def _prepare(self, prompt, parent, options: dict, cell_id: str | None, take: int | None = None):
        """The new turn of a request and the request it sends (checked; nothing registered)."""
        check_prompt(prompt)
        check_options(options)
        with self._lock:
            parent_index = self._head if parent is HEAD else parent
            inherited = self._turn(parent_index).options if parent_index is not None else {}
            chosen = choose_options(options, inherited, self._defaults)
        how, note = continuity(parent_index, chosen["model"], options.get("continue_from"), self.can_remix)
        images = options.get("images")
        if how == "last_frame":  # ffmpeg runs outside the lock: other turns keep updating
            images = [self._parent_frame(parent_index), *(images or [])]
        with self._lock:
            messages = normalize_messages(self._continuing(how, parent_index, prompt), images)
            # The profile says the options the relay's way (words, model name or fields) and
            # refuses what it cannot say, before anything is registered or sent.
            request = self.profile.prepare(messages, chosen["model"], chosen["orientation"], chosen["duration"])
            turn = Turn(
                index=len(self._turns), prompt=prompt, options=recorded_options(chosen, how),
                parent=parent_index, messages=request.messages, cell_id=cell_id,
                simulated=self.simulated, note=note,
            )  # fmt: skip
            turn.estimate = self.prices.estimate_request(request.model, chosen["model"], chosen["duration"])
            if self.store is not None:
                turn.cache_key = self.store.cache_key(
                    self.client.settings.cache_identity, request.model,
                    cache_options(turn.options, take), request.messages,
                )  # fmt: skip
        return turn, request

    def _continuing(self, how: str | None, parent: int | None, prompt: str) -> list[dict]:
        """The messages that carry `prompt` on from its parent (under the lock)."""
        if how != "remix":
            # From a frame, no history: the frame carries the continuity, and a relay without
            # remix may refuse a conversation it cannot continue.
            return [{"role": "user", "content": prompt}]
        # The profile says how the relay names the parent: history sent back, or the parent's
        # share ID in the prompt (a relay that reads only the last message).
        sid = self._turns[parent].generation.sid
        return self.profile.remix_messages(self._history(parent), prompt, sid)

    @property
    def _defaults(self) -> dict:
        """What a new video is made with unless the prompt says otherwise."""
        return {"model": self.model, "orientation": self.orientation, "duration": self.duration}

    # -- continuity: remix or last frame ----------------------------------------------------------

    def can_remix(self, model: str | None = None, parent: int | None = None) -> bool:
        """Whether `model` continues a video (turn `parent`, if given) by remix on this relay.

        The relay profile decides (`profile.can_remix(model, parent_sid)`): Veo relays never
        remix; a relay that remixes by share ID only a parent whose answer showed one.
        """
        if parent is None:
            return self.profile.can_remix(model or self.model)
        return self.profile.can_remix_parent(model or self.model, self._turns[parent].generation.sid)

    def _parent_frame(self, parent: int) -> str:
        """The parent clip's exact last frame as a PNG path (kept next to the clip, reused)."""
        from ..media.film import last_frame

        turn = self._turns[parent]
        if turn.status != "completed":
            raise ConfigurationError(
                f"turn {parent} is {turn.status}: only a finished video has a last frame"
            )
        # No local copy kept (media_dir=None): the clip is fetched where nobody looks.
        folder = self.media_dir or Path(tempfile.gettempdir()) / "kki_frames"
        return str(last_frame(clip_of(turn, folder, self.client.base_url)))

    def _begin(self, prompt, parent, force, cell_id, options) -> tuple[Turn, object]:
        """Validate, then replay an identical earlier request, pick up one that was sent
        already (another kernel, a dead one, an interrupted cell), or register a new turn."""
        return self._begin_takes(prompt, parent, force, cell_id, options, 1)[0]

    def _begin_takes(self, prompt, parent, force, cell_id, options, takes: int) -> list:
        """Replays are free and always allowed; a request already claimed in the store is
        picked up, never sent again; the fresh takes are claimed (written and fsynced before
        anything is sent), reserved against the budget together (all or none), then registered.
        Returns [(turn, run)] in take order: `run()` ends the turn (None: it is over already)."""
        check_takes(takes)
        numbered = take_numbers(takes)
        prepared = [self._prepare(prompt, parent, options, cell_id, take) for take in numbered]
        results = []
        for (turn, request), take in zip(prepared, numbered, strict=True):
            turn.take, turn.takes = take, (takes if take else None)
            results.append(self._begin_one(turn, request, force, take))
        fresh = [turn for turn, _, is_fresh in results if is_fresh]
        model = (fresh[0].options.get("model") if fresh else None) or self.model
        try:
            reservation = self._spending.reserve(fresh, prompt, model)
        except BaseException:  # refused before sending: the claims were never used
            for turn in fresh:
                self._settle_claim(turn, "refused")
            raise
        with self._lock:
            for turn in fresh:
                turn.index = len(self._turns)
                self._turns.append(turn)
                self._spending.hold(turn.index, reservation)
            join_group([turn for turn, _, _ in results if turn.take])
        for turn in fresh:
            self._notify(turn)
        if takes > 1 and not fresh:
            self._settle_takes(results[0][0])
        return [(turn, run) for turn, run, _ in results]

    async def _drive(self, turn: Turn, updates, *, newly_accepted: bool = True) -> Turn:
        """Apply a turn's `Generation` updates until it ends; the one place a turn is run.

        `newly_accepted`: a first task ID seen here is a new paid submission (False when
        resuming a task that was already counted).
        """
        with self._lock:
            self._running[turn.index] = (asyncio.get_running_loop(), asyncio.current_task())
        try:
            await self._follow_updates(turn, updates, newly_accepted)
        except asyncio.CancelledError:
            self._finish(turn, "cancelled", turn.cancel_message())
            raise
        except Exception as error:  # a bug or an answer nobody foresaw: never a turn left running
            log.error("turn %s ended by an unexpected error", turn.index, exc_info=True)
            self._finish(turn, "failed", turn.unexpected_message(error, getattr(self.client, "redact", scrub)))
        finally:
            with self._lock:
                self._running.pop(turn.index, None)
        return turn

    async def asend(
        self,
        prompt: str,
        *,
        parent=HEAD,
        force: bool = False,
        cell_id: str | None = None,
        takes: int = 1,
        **options,
    ) -> Turn:
        """Generate (or replay from the cache) a video for `prompt` and return its turn.

        A failed generation or relay error does not raise: the turn says what happened in
        `turn.error` (call `turn.raise_for_status()` to raise). Bad input raises at once, and so
        does a request the budget refuses (`BudgetExceeded`, before anything is sent).
        `takes=N` runs N generations of the request at once and returns their N turns.
        """
        check_takes(takes)
        await self._spending.aensure_prices()
        if takes != 1:
            return await self._asend_takes(prompt, parent, force, cell_id, options, takes)
        turn, run = self._begin(prompt, parent, force, cell_id, options)
        return turn if run is None else await run()

    async def _asend_takes(self, prompt, parent, force, cell_id, options, takes) -> list[Turn]:
        begun = self._begin_takes(prompt, parent, force, cell_id, options, takes)
        runs = [_done(turn) if run is None else run() for turn, run in begun]
        return list(await asyncio.gather(*runs))

    def send(self, prompt: str, **options) -> Turn:
        """Blocking `asend`: waits for the video (Ctrl-C / kernel interrupt cancels the wait).

        `takes=3` sends the request three times at once and returns the three turns.
        """
        return block_on(self.asend(prompt, **options))

    def start(
        self,
        prompt: str,
        *,
        parent=HEAD,
        force: bool = False,
        cell_id: str | None = None,
        takes: int = 1,
        **options,
    ) -> TurnHandle:
        """Start a turn in the background and return at once with its handle.

        It runs on the caller's event loop when there is one (the kernel's, in Jupyter), else on
        the private loop thread. Bad input and budget refusals raise here, before anything runs.
        `takes=N` starts N generations of the request and returns a `TakesHandle`.
        """
        self._spending.ensure_prices()
        begun = self._begin_takes(prompt, parent, force, cell_id, options, takes)
        if takes != 1:
            return TakesHandle([self._start_begun(*item) for item in begun])
        return self._start_begun(*begun[0])

    def _start_begun(self, turn: Turn, run) -> TurnHandle:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if run is None:
            done: concurrent.futures.Future = concurrent.futures.Future()
            done.set_result(turn)
            return TurnHandle(turn, done, loop)
        if loop is not None:
            return TurnHandle(turn, loop.create_task(run()), loop)
        return TurnHandle(turn, submit(run()), background_loop())

    # -- many prompts at once ------------------------------------------------------------------

    async def abatch(
        self,
        prompts,
        *,
        concurrency: int = 3,
        parent: int | None = None,
        progress: bool = True,
        **options,
    ):
        """Generate one clip per prompt, at most `concurrency` at a time; a `Gallery` of turns.

        Each prompt starts a new video (`parent=None`) unless `parent=i` makes every clip a remix
        of turn i. Options apply to all. A failed clip does not stop the others: its turn says
        what went wrong. In a notebook, `progress` shows a live "n / N clips ready" line.
        """
        prompts = check_prompts(prompts, concurrency)
        await self._spending.aensure_prices()
        shown = self._batch_counter(len(prompts), options, progress)
        send = functools.partial(self.asend, parent=parent, **options)
        return await run_all(send, prompts, concurrency, shown.update if shown else None)

    def batch(self, prompts, *, concurrency: int = 3, parent: int | None = None, progress: bool = True, **options):
        """Blocking `abatch`: the clips run on the private loop; this thread draws the counter.

        (A notebook records only output sent while its cell runs, from the cell itself.)
        """
        prompts = check_prompts(prompts, concurrency)
        self._spending.ensure_prices()
        shown = self._batch_counter(len(prompts), options, progress)
        finished: list[Turn] = []
        send = functools.partial(self.asend, parent=parent, **options)
        future = submit(
            run_all(send, prompts, concurrency, lambda turns: finished.__setitem__(slice(None), turns))
        )
        return wait_drawing(future, shown, finished)

    def _batch_counter(self, count: int, options: dict, progress: bool):
        """With `progress`, a batch says what it will cost before it starts (prices are known by
        now) and shows its live counter; without, nothing."""
        if not progress:
            return None
        print(f"batch of {count}: {self._estimate(count, options)!r}")
        return live_counter(count)

    def _replay(self, turn: Turn, move_head: bool = True) -> Turn | None:
        """An identical earlier request: reuse its turn or the store's cached answer.

        Replays are free: they never touch the budget. Takes do not move the head one by one
        (`_settle_takes` does, once the whole group is there).
        """
        if turn.cache_key is None:
            return None
        with self._lock:
            for existing in self._turns:
                if existing.cache_key == turn.cache_key and existing.status == "completed":
                    if move_head:
                        self._head = existing.index
                    if self.store is not None:
                        self.store.bump("cache_hits")
                    existing.cached = True
                    self._persist()
                    self._notify(existing)
                    return existing
        entry = self.store.cache_get(turn.cache_key) if self.store is not None else None
        if not entry:
            return None
        return self._replay_entry(turn, entry, move_head)

    async def _follow_updates(self, turn: Turn, updates, newly_accepted: bool) -> None:
        pending_recorded = not newly_accepted
        try:
            async for generation in updates:
                if newly_accepted:
                    claims.pause_point("sent")  # tests: the relay has it, the claim no task ID
                turn.answer_began = True
                turn.follow(generation)
                if generation.status == "completed" and turn.take is None:
                    # Move on at once, before the local copy is downloaded: a remix sent the
                    # moment the video shows must continue this turn.
                    with self._lock:
                        self._head = turn.index
                if generation.task_id and not pending_recorded:
                    pending_recorded = True
                    self._record_pending(turn)
                elif generation.status != "completed":  # a finished turn settles its claim
                    self._record_claim(turn)
                self._pause_at(generation)
                self._notify(turn)
        except RelayError as error:
            if error.generation is not None and error.generation.task_id:
                turn.generation = error.generation
            if isinstance(error, StreamInterrupted):
                turn.answer_began = True  # it stopped early: it had begun, maybe before any word
            # Following gave up while the relay still has the task: resumable, not a failure.
            ending = "still_running" if isinstance(error, StillRunning) else "failed"
            self._finish(turn, ending, str(error))
            return
        except KkiError as error:
            self._finish(turn, "failed", str(error))
            return
        if turn.generation.status == "completed":
            claims.pause_point("video")  # tests: the video URL is known, no local copy yet
            await keep_media(turn, self.media_dir, self.client.base_url)
            self._finish(turn, "completed", None)
        elif turn.generation.status == "still_running":
            # Not a failure: the relay still has the task; it stays pending (resumable).
            self._finish(turn, "still_running", turn.generation.error)
        else:
            self._finish(turn, "failed", turn.failure_message())

    def _finish(self, turn: Turn, status: str, error: str | None) -> None:
        with self._lock, self._batch():
            turn.end(status, error)
            self._spending.settle(turn, status, turn.options.get("model") or self.model)
            if status == "completed" and turn.take is None:
                self._head = turn.index
                if self.store is not None and turn.cache_key:
                    self.store.cache_put(turn.cache_key, turn.cache_entry())
            if self.store is not None and turn.task_id and status not in ("cancelled", "still_running"):
                self.store.remove_pending(turn.task_id)
            if turn.cache_key:
                self._settle_claim(turn, status)
            self._persist()
        self._notify(turn)
        if turn.take is not None:
            self._settle_takes(turn)

    # -- prices, budget, takes ------------------------------------------------------------------

    def _settle_takes(self, turn: Turn) -> None:
        """Once every take of a request ended, the head goes to the picked take, else to the
        first completed one: deterministic, so a rerun continues the same take."""
        with self._lock:
            chosen = settled(group_of(self._turns, turn))
            if chosen is not None:
                self._head = chosen.index
                self._persist()

    def pick(self, turn) -> Turn:
        """Continue the next prompt from this take (a `Turn` or its index); the other takes
        stay listed and can be picked later."""
        index = turn.index if isinstance(turn, Turn) else turn
        with self._lock:
            chosen = self._turn(index)
            if chosen.status != "completed":
                raise ConfigurationError(
                    f"turn {index} is {chosen.status}: only a completed video can be picked"
                )
            for other in takes_of(self._turns, chosen):
                other.picked = other.index == chosen.index
            self._head = chosen.index
            self._persist()
        self._notify(chosen)
        return chosen

    def takes_of(self, turn=None) -> list[Turn]:
        """All takes of the request `turn` belongs to (default: the latest request with takes)."""
        with self._lock:
            if turn is None:
                turn = latest_with_takes(self._turns)
            chosen = turn if isinstance(turn, Turn) else self._turn(turn)
            return takes_of(self._turns, chosen)

    def estimate(self, count: int = 1, *, takes: int = 1, **options) -> pricing.Estimate:
        """What `count` prompts (× `takes`) with these options would cost, before sending."""
        self._spending.ensure_prices()
        return self._estimate(count * takes, options)

    def _estimate(self, count: int, options: dict) -> pricing.Estimate:
        model = options.get("model") or self.model
        return self._spending.estimate(count, model, options.get("duration") or self.duration)

    def usage(self) -> dict:
        """Spend of this conversation by model, what the budget has left, and the key's balance
        before (first send of this session) and now, when the relay reports it."""
        return {**self._spending.usage(self.turns), "simulated": self.simulated}

    @staticmethod
    def _pause_at(generation: Generation) -> None:
        """Tests stop the process here (`claims.pause_point`): after the task ID, mid-progress."""
        if generation.task_id:
            claims.pause_point("task_id")
            if generation.progress:
                claims.pause_point("progress")

    def _record_pending(self, turn: Turn) -> None:
        if self.store is None:
            return
        with self._lock, self._batch():
            self.store.bump("paid_requests")
            self.store.add_pending(
                {
                    "task_id": turn.task_id,
                    "raw_url": turn.generation.raw_url,
                    "conversation": self.name,
                    "turn": turn.index,
                }
            )
            self._record_claim(turn)
            self._persist()

    # -- cancel, retry, resume ----------------------------------------------------------------

    def cancel(self, index: int | None = None) -> list[int]:
        """Cancel one running turn (or all); returns the indexes cancelled."""
        with self._lock:
            targets = list(self._running.items())
        cancelled = []
        for turn_index, (loop, task) in targets:
            if index is not None and turn_index != index:
                continue
            loop.call_soon_threadsafe(task.cancel)
            cancelled.append(turn_index)
        if index is not None and not cancelled:
            raise ConfigurationError(f"turn {index} is not running")
        return cancelled

    @property
    def running(self) -> list[int]:
        with self._lock:
            return sorted(self._running)

    def retry_options(self, index: int) -> dict:
        """How to send turn `index` again: same prompt, options and parent."""
        turn = self._turn(index)
        return {"prompt": turn.prompt, "parent": turn.parent, **turn.options}

    def retry(self, index: int) -> Turn:
        options = self.retry_options(index)
        return self.send(options.pop("prompt"), force=True, **options)

    async def aresume(self, task_id: str | None = None) -> Turn:
        """Fetch an accepted generation by task ID (cut stream, cancelled wait, dead kernel)."""
        turn = self._find_resumable(task_id)
        claim = self.store.claim_state(turn.cache_key)[1] if self.store and turn.cache_key else None
        if claim is not None and claims.verdict(claim, turn.cache_key, self.claim_window) == "follow":
            self._take_over(turn, claim)  # this follower settles the claim when the turn ends
        turn.status = "generating" if turn.status in ("cancelled", "failed", "still_running") else turn.status
        turn.error = None
        self._notify(turn)
        updates = self.client.follow(turn.task_id, turn.generation.raw_url)
        return await self._drive(turn, updates, newly_accepted=False)

    def resume(self, task_id: str | None = None) -> Turn:
        """Blocking `aresume`."""
        return block_on(self.aresume(task_id))

    def resume_pending(self) -> list[TurnHandle]:
        """Follow every accepted but unfinished turn in the background (e.g. the kernel died).

        They run on the private loop, so they progress even while a notebook cell blocks the
        kernel's loop; views see them through `subscribe` like any other turn.
        """
        loop = background_loop()
        handles = []
        for turn in self.pending:
            claim = self.store.claim_state(turn.cache_key)[1] if self.store and turn.cache_key else None
            if claim is None:  # a store from before claims
                future = submit(self.aresume(turn.task_id))
            elif claims.verdict(claim, turn.cache_key, self.claim_window) == "follow":
                future = submit(self._pick_up(turn, claim))
            else:
                continue  # another live kernel follows it, or it must not be fetched unasked
            handles.append(TurnHandle(turn, future, loop))
        return handles

    def _find_resumable(self, task_id: str | None) -> Turn:
        with self._lock:
            candidates = self.pending
            if task_id is not None:
                for turn in self._turns:
                    if turn.task_id == task_id:
                        if turn.status == "completed":
                            raise ConfigurationError(f"task {task_id} is already completed")
                        return turn
                # A task from elsewhere (another kernel, a copied ID): adopt it as a new turn.
                turn = Turn(
                    index=len(self._turns),
                    prompt=f"(resumed task {task_id})",
                    generation=Generation(task_id=task_id),
                    simulated=self.simulated,
                )
                self._turns.append(turn)
                return turn
            if not candidates:
                raise ConfigurationError("there is no unfinished task to resume")
            return candidates[-1]

    @property
    def pending(self) -> list[Turn]:
        """Accepted turns whose video we never got: cancelled waits, dead kernels, cut streams."""
        with self._lock:
            return [
                t
                for t in self._turns
                if t.task_id
                and t.status not in ("completed", "failed")
                and t.index not in self._running
            ]

    # -- the film -----------------------------------------------------------------------------

    def _clips(self, turn_index: int | None, folder) -> tuple[list[Turn], list[str]]:
        """The completed turns from the first to `turn_index` (default: head), and their files."""
        index = self._head if turn_index is None else turn_index
        chain = [t for t in self.chain(index) if t.status == "completed"]
        if not chain:
            raise ConfigurationError("there is no completed video to cut yet: generate one first")
        return chain, [clip_of(turn, self.media_dir or folder, self.client.base_url) for turn in chain]

    def stitch(self, path, turn_index: int | None = None) -> Path:
        """Concatenate the clips from the first turn to `turn_index` (default: head) into one film."""
        from ..media.downloads import stitch

        return stitch(self._clips(turn_index, Path(path).parent)[1], path)

    def film(
        self,
        path,
        turn_index: int | None = None,
        *,
        transitions: str = "crossfade",
        captions=True,
        titles=None,
        burn_captions: bool = False,
        progress=None,
        **cut_options,
    ):
        """Cut the shots from the first turn to `turn_index` (default: head) into one film.

        `captions`: True (the prompts), False, or one text per shot; they go to `<film>.srt`
        (and onto the picture with `burn_captions`). `titles`: an opening card's text, one per
        shot, or `{shot: text}`. `progress(fraction)` is called while ffmpeg works. Returns a
        `film.Film` (path, srt_path, duration, shot_times); see `film.make_film`.
        """
        from ..media.film import make_film

        chain, clips = self._clips(turn_index, Path(path).parent)
        if captions is True:
            captions = [turn.prompt for turn in chain]
        elif not captions:
            captions = None
        return make_film(
            clips, path, captions=captions, transitions=transitions, titles=titles,
            burn_captions=burn_captions, progress=progress, **cut_options,
        )  # fmt: skip

    def export(self, path, *, film=True, embed: bool = False, title: str | None = None):
        """Write one self-contained HTML page: the film, every shot and the tree of turns.

        See `export.export_page`: media are referenced relatively (copied beside the page when
        they live elsewhere), or embedded in the page with `embed=True`.
        """
        from ..media.export import export_page

        return export_page(self, path, film=film, embed=embed, title=title)

    # -- persistence --------------------------------------------------------------------------

    def _load(self) -> None:
        """Restore the conversation's turns from the store (merged from every kernel that wrote)."""
        self._saved = SavedTurns()
        data = self.store.load_conversation(self.name) if self.store is not None else None
        if data:
            self._turns, self._head = self._saved.restore(data, self.media_dir)

    def _batch(self):
        """One store write for the changes of one state change (always taken after `_lock`)."""
        return self.store.batch() if self.store is not None else contextlib.nullcontext()

    def _persist(self) -> None:
        """Write the turns that changed since the last write; other kernels' turns stay."""
        if self.store is None:
            return
        with self._lock:
            changed, head = self._saved.changes(self._turns, self._head)
        try:
            self.store.save_turns(self.name, [r for r, _ in changed], head=head, model=self.model)
        except Exception as error:
            log.warning("could not save conversation %r: %s", self.name, error)
            return
        with self._lock:
            self._saved.written(changed)


async def _done(turn: Turn) -> Turn:
    return turn

