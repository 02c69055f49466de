"""``%%sora`` and ``%sora``: video generation as notebook cells.

``%load_ext kki_widgets``, then::

    %%sora --orientation landscape
    a paper boat sailing down a rainy street

    %%sora
    now the boat reaches the sea          <- continues (remixes) the previous video

Each cell waits for its video, with live progress, so "Run All" and nbclient give a finished,
reproducible notebook (ipykernel only records output of the cell that is running). Every result is
stored next to the notebook (``.kki/<notebook>.json``, videos in ``kki_media/``); rerunning the
notebook — in this kernel or a fresh one — replays the stored videos without paying again.

Which video a cell continues from:

- ``--from N`` continues turn N; ``--new`` starts a new video;
- a cell that ran before (same cell id) continues what it continued the first time, so rerunning
  or editing a cell replaces its shot instead of appending after the last one;
- otherwise the previous ``%%sora`` cell's video. The first ``%%sora`` cell a kernel runs starts a
  new video (like the first cell of the notebook), unless ``%sora use/undo/reset/resume`` said
  where to continue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shlex
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, Dict, Enum, Float, Int, Unicode, observe

from ..display.views import LiveCard, TurnTable, UsageReport, WidgetView
from ..protocol.errors import ConfigurationError
from ..protocol.transcript import TERMINAL
from .cell_text import interpolate

__all__ = ["SoraMagics", "TurnTable", "interpolate", "load_ipython_extension"]

# The live card of a cell (kept under its old name: tests patch it to simulate an interrupt).
_CompactView = LiveCard

# %sora history in a kernel that cannot tell its notebook (nbconvert --execute, papermill).
HEADLESS_NOTE = (
    "this run's turns only: a headless run that does not name its notebook keeps them in memory "
    "(name it with KKI_NOTEBOOK=<name>, or papermill -p KKI_NOTEBOOK <name>)"
)

# How often the waiting cell refreshes its view (the generation itself runs on another thread).
POLL_SECONDS = 0.2
LINE_COMMANDS = {
    "history": "table of the turns of this session",
    "show": "show turn N (default: the current one)",
    "reset": "the next %%sora cell starts a new video",
    "undo": "step back to the parent of the current turn",
    "sessions": "list the conversations stored for this notebook",
    "use": "switch to conversation NAME",
    "resume": "fetch an accepted task by its ID (after an interrupt or a dead kernel)",
    "stitch": "join the clips from the first turn to the current one into PATH",
    "film": "cut the shots up to the current one into PATH: crossfades, captions (.srt)",
    "export": "write one HTML page with the film, every shot and the tree of turns",
    "usage": "spend by model, replays, budget left and the key's balance (also: cost)",
    "pick": "continue the next cell from take N of the latest --takes cell",
    "cost": "same as usage",
    "config": "the settings in use (the key is masked)",
    "models": "the relay's video models: lengths, orientations, sizes, prices (--refresh asks again)",
    "connect": "connect URL: read what the relay sells, its prices and your balance, and ping it",
}


# ---------------------------------------------------------------------------- the magics
@magics_class
class SoraMagics(Magics):
    """Generate videos with ``%%sora`` cells; manage the conversation with ``%sora``."""

    model = Unicode(None, allow_none=True, help="Model for new turns (None: KKI_MODEL or sora-2).").tag(config=True)
    orientation = Unicode(None, allow_none=True, help="'portrait' or 'landscape' (None: relay default).").tag(config=True)
    duration = Int(None, allow_none=True, help="Seconds per clip, e.g. 10 or 15 (None: model default).").tag(config=True)
    base_url = Unicode(None, allow_none=True, help="Relay base URL (None: KKI_BASE_URL, or the embedded simulator without a key).").tag(config=True)
    wait = Bool(True, help="Wait inside the cell until the video is ready (reproducible Run All).").tag(config=True)
    media_dir = Unicode("kki_media", allow_none=True, help="Where videos are kept, relative to the notebook (None: keep only URLs).").tag(config=True)
    max_history = Int(None, allow_none=True, help="Send at most this many earlier turns (None: the whole chain).").tag(config=True)
    session = Unicode("default", help="Conversation name; one notebook can hold several.").tag(config=True)
    # Compact by default: a live HTML card whose final video is a relative <video> tag, which
    # nbconvert and GitHub render too, and which costs a few hundred bytes per cell where a
    # widget per cell would save its whole front end (~34 KB) into the notebook each time.
    display = Enum(
        ["widget", "compact"], "compact", help="'compact' (HTML card) or 'widget' (VideoChat)."
    ).tag(config=True)
    store_path = Unicode(None, allow_none=True, help="Store file (None: .kki/<notebook>.json next to the notebook).").tag(config=True)
    profile = Unicode(None, allow_none=True, help="How the relay reads orientation/length: words, fields, sora2api, sora_video2, flow2api, veo_3_1 (None: KKI_RELAY_PROFILE or words).").tag(config=True)
    prices = Dict(None, allow_none=True, help="Model → dollars per generation, or {'per_second': dollars} (used where the relay publishes no prices).").tag(config=True)
    budget = Float(None, allow_none=True, help="Dollars this kernel may spend; a request past it is refused before it is sent (None: no cap).").tag(config=True)
    claim_hours = Float(24.0, help="A request sent this many hours ago that never finished is not waited for or sent again by a rerun (--force sends it).").tag(config=True)

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        self._lock = threading.RLock()
        self._backend_key: tuple | None = None
        self._client = None
        self._store = None
        self._conversations: dict[str, Any] = {}
        # Sessions this kernel has worked on: their next cell continues from the head.
        self._continuing: set[str] = set()
        self._views: dict[tuple[str, str], Any] = {}
        self._already_drawn: Any = None
        if shell is not None:
            # By module name: registering must not import the session (and httpx) at %load_ext.
            printers = shell.display_formatter.ipython_display_formatter
            for name in ("Turn", "TurnHandle"):
                printers.for_type_by_name("kki_widgets.conversation.turn", name, self._display_value)
            shell.events.register("post_run_cell", self._forget_drawn)
        self._budget: Any = None  # one ledger for every session of this kernel
        # The key `%sora connect` read (a masked Secret, kept in memory only; None: KKI_API_KEY).
        self._api_key: Any = None

    @observe("budget", "prices")
    def _money_settings_changed(self, change: Any) -> None:
        """A raised budget keeps what was spent; new prices reach the open conversations."""
        from ..protocol.pricing import PriceBook

        with self._lock:
            if change["name"] == "budget" and self._budget is not None and change["new"] is not None:
                self._budget.limit = float(change["new"])
            elif change["name"] == "budget":
                self._budget = None
            for conversation in self._conversations.values():
                if change["name"] == "prices":
                    conversation.prices = PriceBook(conversation.client, change["new"])
                else:
                    conversation.budget = self._shared_budget()

    def _shared_budget(self) -> Any:
        from ..conversation.budget import Budget

        if self.budget is None:
            return None
        if self._budget is None:
            self._budget = Budget(self.budget, how_to_raise="%config SoraMagics.budget = ...")
        return self._budget

    # ---- backend --------------------------------------------------------------------------
    def _backend(self) -> tuple[Any, Any]:
        """The relay client and the notebook's store, rebuilt when the settings change."""
        key = (
            self.base_url,
            self.store_path,
            self.profile,
            os.environ.get("KKI_BASE_URL"),
            os.environ.get("KKI_API_KEY"),
            os.environ.get("KKI_RELAY_PROFILE"),
            self._api_key,
        )
        with self._lock:
            if key != self._backend_key:
                from ..client.relay import AsyncRelayClient
                from ..store.notebook_store import NotebookStore

                try:
                    client = AsyncRelayClient(
                        base_url=self.base_url or None,
                        model=self.model or None,
                        profile=self.profile or None,
                        api_key=self._api_key,
                    )
                except ConfigurationError as error:
                    raise UsageError(str(error)) from None
                secret = client.settings.api_key
                if self.store_path:
                    store = NotebookStore(Path(self.store_path).expanduser(), secret=secret)
                else:
                    store = NotebookStore.for_notebook(None, secret=secret, user_ns=self.shell.user_ns)
                self._client, self._store = client, store
                self._conversations.clear()
                self._backend_key = key
            return self._client, self._store

    def _media_folder(self, store: Any) -> Path | None:
        if not self.media_dir:
            return None
        folder = Path(self.media_dir).expanduser()
        # The store lives in <notebook dir>/.kki/, and media paths are relative to the notebook.
        return folder if folder.is_absolute() else store.path.parent.parent / folder

    def conversation(self, name: str | None = None) -> Any:
        """The ``Conversation`` named ``name`` (default: the current session), restored from the store."""
        from ..conversation.session import Conversation

        name = name or self.session
        client, store = self._backend()
        with self._lock:
            conversation = self._conversations.get(name)
            if conversation is None or conversation.media_dir != self._media_folder(store) or (
                conversation.max_history != (self.max_history or None)
            ):
                conversation = Conversation(
                    model=self.model or None,
                    client=client,
                    store=store,
                    name=name,
                    media_dir=self._media_folder(store),
                    orientation=self.orientation or None,
                    duration=self.duration or None,
                    max_history=self.max_history or None,
                    prices=self.prices,
                    budget=self._shared_budget(),
                    claim_window=self.claim_hours * 3600,
                )
                self._conversations[name] = conversation
                self._resume_left_over(conversation)
            return conversation

    @staticmethod
    def _resume_left_over(conversation: Any) -> None:
        """Generations an earlier kernel paid for but never received are fetched, not lost (and
        not sent again: rerunning their cells picks up these same fetches)."""
        handles = conversation.resume_pending()
        if not handles:
            return
        ids = ", ".join(handle.turn.task_id for handle in handles)
        print(
            f"Fetching {len(handles)} unfinished generation(s) from an earlier kernel in the "
            f"background (no new charge): {ids}. Rerunning their cells picks them up; "
            "`%sora history` shows them when they arrive.",
            file=sys.stderr,
        )

    def _session_names(self) -> list[str]:
        _, store = self._backend()
        return sorted({*store.conversation_names(), *self._conversations})

    # ---- %sora / %%sora -------------------------------------------------------------------
    @magic_arguments()
    @argument("--model", "-m", help="model for this cell, e.g. sora-2-pro or veo3")
    @argument("--orientation", "-o", help="portrait or landscape")
    @argument("--duration", "-d", type=int, help="clip length in seconds, e.g. 10 or 15")
    @argument("--new", action="store_true", help="start a new video instead of continuing")
    @argument("--session", "-s", metavar="NAME", help="conversation to use (created if new)")
    @argument("--from", dest="from_turn", type=int, metavar="N", help="continue from turn N")
    @argument("--image", "-i", metavar="PATH_OR_URL_OR_VAR", help="start from this image")
    @argument("--from-frame", action="store_true", help="continue from the parent clip's last frame (no remix)")
    @argument("--storyboard", action="store_true", help="each line (or list item) is a shot; shots are chained")
    @argument("--force", action="store_true", help="ignore the stored result: generate (and pay) again")
    @argument("--background", "-b", action="store_true", help="return at once; the view updates live")
    @argument("--save", metavar="DIR", help="also copy the finished video into DIR")
    @argument("--takes", "-t", type=int, default=1, metavar="N", help="generate N takes at once; pick one with %%sora pick")
    @argument("--size", metavar="SIZE", help="hd / 1080p where the relay's models sell sizes (see %%sora models)")
    @line_cell_magic
    def sora(self, line: str, cell: str | None = None):
        """Generate a video from the cell's text; ``%sora COMMAND`` manages the conversation.

        ``{name}`` in the cell is replaced by the variable ``name`` (``{{`` for a literal brace).
        Line commands: history, show [N], reset, undo, sessions, use NAME, resume TASK_ID,
        stitch PATH, usage (cost), config. Settings: ``%config SoraMagics.model = "sora-2-pro"``
        (also orientation, duration, base_url, wait, media_dir, max_history, session, display).
        """
        if cell is None:
            return self._line_command(line)
        return self._generate(line, cell)

    def _generate(self, line: str, cell: str):
        args = parse_argstring(self.sora, line)
        if args.storyboard:
            from .film_commands import storyboard_cell

            return storyboard_cell(self, args, cell)
        prompt = interpolate(cell, self.shell.user_ns).strip()
        if not prompt:
            raise UsageError("%%sora needs a prompt: write what the video shows below the %%sora line.")
        name = args.session or self.session
        conversation = self.conversation(name)
        parent = self._parent_for(conversation, name, args)
        options: dict[str, Any] = {
            "model": args.model,
            "orientation": args.orientation,
            "duration": args.duration,
        }
        if parent is None:
            # A remix continues its parent's model, orientation and length (the conversation
            # fills them in); only a new video starts from the configured defaults.
            options = {key: options[key] or getattr(self, key) or None for key in options}
        options = {k: v for k, v in options.items() if v is not None}
        if args.size:
            options["model"] = self._sized(conversation, options.get("model") or self.model, args.size)
        if args.image:
            options["images"] = [self._image(args.image)]
        if args.from_frame:
            if parent is None:
                raise UsageError("--from-frame: this cell starts a new video; there is no clip to continue (use --from N).")
            options["continue_from"] = "last_frame"
        cell_id = self._cell_id()
        send_options = {"parent": parent, "force": args.force, "cell_id": cell_id, **options}

        self._continuing.add(name)
        if args.takes != 1:
            if args.background or not self.wait:
                raise UsageError("--takes waits in its cell (to show the takes side by side): drop --background.")
            return self._generate_takes(conversation, prompt, send_options, args.takes)
        view = self._make_view(conversation, name, cell_id)
        if args.background or not self.wait:
            return self._drawn(self._start_in_background(conversation, prompt, send_options, view))
        turn = self._wait(
            conversation,
            lambda turn: turn.prompt == prompt,
            view,
            lambda: conversation.asend(prompt, **send_options),
        )
        if turn is not None and args.save and turn.status == "completed":
            self._save_copy(turn, args.save)
        if turn is not None and turn.status == "failed":
            turn.raise_for_status()
        return self._drawn(turn)

    # ---- one output per cell ------------------------------------------------------------------
    def _drawn(self, value: Any) -> Any:
        """Return the cell's value (``_``, ``Out[n]``) without drawing it a second time.

        The cell's live card (or widget) already shows this turn; IPython would draw the returned
        value again below it. `_display_value` skips exactly this object once.
        """
        self._already_drawn = value
        return value

    def _display_value(self, value: Any) -> None:
        """IPython's display hook for `Turn`/`TurnHandle` in this shell."""
        if value is self._already_drawn:
            self._already_drawn = None
            return
        from IPython.display import publish_display_data

        from ..display.views import turn_html, turn_text

        turn = getattr(value, "turn", value)  # a TurnHandle shows its turn
        publish_display_data({"text/plain": turn_text(turn), "text/html": turn_html(turn)})

    def _forget_drawn(self, *_args: Any) -> None:
        self._already_drawn = None  # a cell ending in ";" never reached the display hook

    def _generate_takes(self, conversation: Any, prompt: str, send_options: dict, takes: int) -> Any:
        """N generations of the cell's request at once, shown side by side with pick buttons."""
        from ..display.takes_view import TakesCard, TakesLiveView, pick_buttons

        turns = self._wait(
            conversation,
            lambda turn: turn.prompt == prompt and turn.take is not None,
            TakesLiveView(conversation),
            lambda: conversation.asend(prompt, takes=takes, **send_options),
        )
        if not isinstance(turns, list):  # interrupted: the latest take seen, if any
            return turns
        buttons = pick_buttons(conversation, turns)
        if buttons is not None:
            from IPython.display import display

            display(buttons)
        return TakesCard(conversation, turns)

    # ---- choosing the parent ----------------------------------------------------------------
    def _parent_for(self, conversation: Any, name: str, args: Any) -> int | None:
        turns = conversation.turns
        if args.from_turn is not None:
            if not 0 <= args.from_turn < len(turns):
                available = f"0..{len(turns) - 1}" if turns else "none yet"
                raise UsageError(f"--from {args.from_turn}: session {name!r} has turns {available}; see %sora history.")
            if turns[args.from_turn].status != "completed":
                raise UsageError(f"--from {args.from_turn}: that turn is {turns[args.from_turn].status}; only a finished video can be continued.")
            return args.from_turn
        if args.new:
            return None
        cell_id = self._cell_id()
        if cell_id:
            for turn in reversed(turns):
                if turn.cell_id == cell_id:
                    return turn.parent
        if name in self._continuing:
            return conversation.head
        return None

    def _cell_id(self) -> str | None:
        """The notebook cell id JupyterLab sends with each execution (None outside a kernel)."""
        try:
            header = getattr(self.shell, "parent_header", None)
            if not header and getattr(self.shell, "kernel", None) is not None:
                header = self.shell.kernel.get_parent()
            return ((header or {}).get("metadata") or {}).get("cellId")
        except Exception:
            return None

    def _image(self, value: str) -> Any:
        if value in self.shell.user_ns:
            return self.shell.user_ns[value]
        if value.startswith(("http://", "https://", "data:image/")):
            return value
        path = Path(value).expanduser()
        if path.is_file():
            return str(path)
        raise UsageError(f"--image {value}: not a variable, an http(s) URL or an existing file.")

    # ---- running a turn ---------------------------------------------------------------------
    def _make_view(self, conversation: Any, name: str, cell_id: str | None) -> Any:
        if self.display == "widget":
            try:
                from .widget import VideoChat
            except ImportError:  # anywidget missing in a minimal install: the card still works
                return _CompactView()
            previous = self._views.pop((name, cell_id), None) if cell_id else None
            if previous is not None:
                previous.chat.close()  # a rerun cell replaces its view; stop the old one listening
            view = WidgetView(VideoChat(conversation=conversation))
            if cell_id:
                self._views[(name, cell_id)] = view
            return view
        return _CompactView()

    def _wait(
        self, conversation: Any, is_ours: Callable[[Any], bool], view: Any, make_coroutine: Callable
    ) -> Any:
        """Run the turn on the package's private loop and refresh the view from this thread.

        The kernel's own loop is blocked while a cell runs, and output sent from other threads
        may not be recorded as this cell's (nbclient), so the waiting cell itself does the
        display updates.
        """
        from ..client.loop import background_loop

        latest: list[Any] = []
        first: list[Any] = []  # the turn as it was when first announced (queued, its estimate)
        changed = threading.Event()

        def on_change(turn: Any) -> None:
            if is_ours(turn):
                if not first:
                    first.append(_as_it_is_now(turn))
                latest[:] = [turn]
                changed.set()

        unsubscribe = conversation.subscribe(on_change)
        shown = False
        future = asyncio.run_coroutine_threadsafe(make_coroutine(), background_loop())
        try:
            while True:
                try:
                    turn = future.result(timeout=POLL_SECONDS)
                    break
                except concurrent.futures.TimeoutError:
                    pass
                if changed.is_set():
                    changed.clear()
                    shown = self._show_or_update(view, shown, first, latest[0])
        except KeyboardInterrupt:
            return self._interrupted(future, latest)
        except ConfigurationError as error:
            raise UsageError(str(error)) from None
        finally:
            unsubscribe()
        if not shown and first:
            view.show(first[0])  # a turn faster than one poll still shows where it started
        view.update(turn, final=True)
        return turn

    @staticmethod
    def _show_or_update(view: Any, shown: bool, first: list, turn: Any) -> bool:
        """The first drawing is the first state announced, whenever the poll notices it."""
        if shown:
            view.update(turn)
        else:
            view.show(first[0] if first else turn)
            if first and first[0] is not turn:
                view.update(turn)
        return True

    def _interrupted(self, future: concurrent.futures.Future, latest: list) -> Any:
        """Ctrl-C / Interrupt Kernel: stop waiting, not the generation. The turn goes on in the
        background (its claim in the store says so), so rerunning the cell picks it up free."""
        turn = latest[0] if latest else None
        task_id = turn.generation.task_id if turn is not None else None
        if future.done() or turn is None:
            print("Stopped waiting; nothing was running for this cell.", file=sys.stderr)
        elif task_id:
            print(
                f"Stopped waiting. The generation keeps running at the relay (task {task_id}): "
                f"rerun this cell to pick it up at no charge (or  %sora resume {task_id}).",
                file=sys.stderr,
            )
        else:
            print(
                "Stopped waiting. The request was sent and keeps running in the background: "
                "rerun this cell to pick it up at no charge.",
                file=sys.stderr,
            )
        return turn

    def _start_in_background(self, conversation: Any, prompt: str, send_options: dict, view: Any) -> Any:
        try:
            handle = conversation.start(prompt, **send_options)
        except ConfigurationError as error:
            raise UsageError(str(error)) from None
        if isinstance(view, _CompactView):
            # Live browsers get these updates; a saved notebook keeps the first card (see the
            # module docstring: wait in the cell when the output must be recorded).
            def follow(turn: Any) -> None:
                if turn.prompt == prompt:
                    view.update(turn)
                    if turn.status in TERMINAL:
                        unsubscribe()

            unsubscribe = conversation.subscribe(follow)
        view.show(handle.turn)
        return handle

    def _save_copy(self, turn: Any, folder: str) -> None:
        from ..media.downloads import download, keep_copy

        if turn.path and Path(turn.path).is_file():  # only our own media files (checked on load)
            saved = keep_copy(turn.path, folder)
        else:
            relay_url = self._backend()[0].base_url  # decides which media hosts may be reached
            saved = download(turn.generation.video_url, folder, expected_type="video",
                             relay_url=relay_url, key=turn.task_id)
        print(f"saved {saved}")

    # ---- line commands ----------------------------------------------------------------------
    def _line_command(self, line: str):
        try:
            words = shlex.split(line)
        except ValueError as error:
            raise UsageError(f"%sora {line}: {error}") from None
        if not words:
            return self._help()
        command, rest = words[0].lower(), words[1:]
        handler = getattr(self, f"_cmd_{command}", None)
        if command not in LINE_COMMANDS or handler is None:
            known = ", ".join(LINE_COMMANDS)
            raise UsageError(f"unknown command %sora {words[0]}: use one of {known} (or a %%sora cell to generate).")
        return handler(rest)

    def _help(self) -> None:
        lines = ["%%sora [options]  — generate a video from the cell's text (%%sora? for options)"]
        lines += [f"%sora {name:<9} — {text}" for name, text in LINE_COMMANDS.items()]
        print("\n".join(lines))

    def _expect(self, rest: list[str], command: str, at_most: int) -> None:
        if len(rest) > at_most:
            raise UsageError(f"%sora {command}: unexpected {' '.join(rest[at_most:])!r}.")

    def _turn_index(self, text: str, conversation: Any) -> int:
        try:
            index = int(text)
        except ValueError:
            raise UsageError(f"{text!r} is not a turn number; see %sora history.") from None
        if not 0 <= index < len(conversation.turns):
            raise UsageError(f"there is no turn {index} in session {conversation.name!r}; see %sora history.")
        return index

    def _cmd_history(self, rest: list[str]) -> TurnTable:
        self._expect(rest, "history", 0)
        conversation = self.conversation()
        _, store = self._backend()
        note = HEADLESS_NOTE if getattr(store, "private_conversations", False) else ""
        return TurnTable(conversation.name, conversation.turns, conversation.head, note=note)

    def _cmd_show(self, rest: list[str]) -> Any:
        self._expect(rest, "show", 1)
        conversation = self.conversation()
        turns = conversation.turns
        if not turns:
            raise UsageError(f"session {conversation.name!r} has no turns yet: run a %%sora cell first.")
        if rest:
            index = self._turn_index(rest[0], conversation)
        else:
            index = conversation.head if conversation.head is not None else len(turns) - 1
        return turns[index]  # drawn once, as the cell's value, by the shared renderer

    def _cmd_reset(self, rest: list[str]) -> None:
        self._expect(rest, "reset", 0)
        self.conversation().reset()
        self._continuing.add(self.session)
        print(f"session {self.session!r}: the next %%sora cell starts a new video (earlier turns stay in %sora history).")

    def _cmd_undo(self, rest: list[str]) -> None:
        self._expect(rest, "undo", 0)
        conversation = self.conversation()
        undone = conversation.undo()
        self._continuing.add(self.session)
        if undone is None:
            print("nothing to undo: the next %%sora cell already starts a new video.")
        else:
            where = "a new video" if conversation.head is None else f"turn {conversation.head}"
            print(f"undid turn {undone.index}; the next %%sora cell continues from {where}.")

    def _cmd_sessions(self, rest: list[str]) -> None:
        self._expect(rest, "sessions", 0)
        names = self._session_names()
        if self.session not in names:
            names.append(self.session)
        for name in names:
            count = len(self.conversation(name).turns)
            marker = "*" if name == self.session else " "
            print(f"{marker} {name} ({count} turn{'s' if count != 1 else ''})")

    def _cmd_use(self, rest: list[str]) -> None:
        if len(rest) != 1:
            raise UsageError("%sora use NAME: give one session name (see %sora sessions).")
        name = rest[0]
        if name not in self._session_names():
            raise UsageError(
                f"there is no session {name!r} (have: {', '.join(self._session_names()) or 'none'}). "
                f"Start it with a cell:  %%sora --session {name}"
            )
        self.session = name
        self._continuing.add(name)
        print(f"using session {name!r}")

    def _cmd_resume(self, rest: list[str]):
        from ..conversation.turn import follow_blocker

        self._expect(rest, "resume", 1)
        task_id = rest[0] if rest else None
        conversation = self.conversation()
        if task_id is None:
            pending = conversation.pending
            if not pending:
                raise UsageError("there is no unfinished task to resume; give one: %sora resume TASK_ID")
            why = follow_blocker(pending[-1])
            if why is not None:
                raise UsageError(why)
        self._continuing.add(self.session)
        view = self._make_view(conversation, self.session, None)
        turn = self._wait(
            conversation,
            lambda turn: task_id is None or turn.task_id == task_id,
            view,
            lambda: conversation.aresume(task_id),
        )
        if turn is not None and turn.status == "failed":
            turn.raise_for_status()
        return self._drawn(turn)

    def _cmd_stitch(self, rest: list[str]) -> Path:
        if len(rest) != 1:
            raise UsageError("%sora stitch PATH: give the output file, e.g. %sora stitch film.mp4")
        try:
            return self.conversation().stitch(rest[0])
        except ConfigurationError as error:
            raise UsageError(str(error)) from None

    def _cmd_film(self, rest: list[str]) -> Any:
        from .film_commands import film_command

        return film_command(self.conversation(), rest)

    def _cmd_export(self, rest: list[str]) -> Any:
        from .film_commands import export_command

        return export_command(self.conversation(), rest)

    def _cmd_usage(self, rest: list[str]) -> UsageReport:
        self._expect(rest, "usage", 0)
        from ..protocol.pricing import merge_usage

        _, store = self._backend()
        counters = store.usage()
        conversation = self.conversation()
        spend = merge_usage([self.conversation(name).usage() for name in self._session_names()])
        headless = getattr(store, "private_conversations", False)
        report = {
            # What the counters cover: a kernel that cannot tell its notebook shares them with
            # every unnamed headless run in this folder (.kki/default.json).
            "counted": "this folder's headless runs" if headless else "this notebook",
            "session": conversation.name,
            "turns": len(conversation.turns),
            "paid_requests": counters.get("paid_requests", 0),
            "cache_hits": counters.get("cache_hits", 0),
            "simulated": conversation.simulated,
            **spend,
        }
        return UsageReport(report)

    def _cmd_pick(self, rest: list[str]) -> Any:
        if len(rest) != 1:
            raise UsageError("%sora pick N: give the take number, e.g. %sora pick 2 (see the --takes cell).")
        conversation = self.conversation()
        try:
            group = conversation.takes_of()
            number = int(rest[0])
            chosen = next((turn for turn in group if turn.take == number), None)
            if chosen is None:
                raise UsageError(f"%sora pick {rest[0]}: the latest --takes cell has takes 1..{len(group)}.")
            conversation.pick(chosen)
        except ValueError as error:  # ConfigurationError included: not a number, not completed
            raise UsageError(f"%sora pick {rest[0]}: {error}") from None
        self._continuing.add(conversation.name)
        print(f"picked take {number} (turn {chosen.index}); the next %%sora cell continues from it.")
        return None

    _cmd_cost = _cmd_usage

    def _sized(self, conversation: Any, model: str | None, size: str) -> str:
        from .connect_commands import size_option

        try:
            return size_option(conversation, model or conversation.model, size)
        except ConfigurationError as error:
            raise UsageError(str(error)) from None

    def _cmd_models(self, rest: list[str]) -> None:
        from .connect_commands import models_command

        self._expect(rest, "models", 1)
        return models_command(self.conversation(), rest)

    def _cmd_connect(self, rest: list[str]) -> None:
        """Point this kernel at a relay with only its URL: the key from KKI_API_KEY or a hidden
        prompt (never from the command line, which the notebook saves)."""
        from ..client.config import Secret, check_key, normalize_base_url
        from .connect_commands import ask_key, connect_report

        if len(rest) != 1:
            raise UsageError("%sora connect URL: give the relay's base URL, e.g. %sora connect "
                             "https://relay.example/v1 (the key comes from KKI_API_KEY or a hidden prompt)")  # fmt: skip
        try:
            normalize_base_url(rest[0])
            key = Secret(ask_key(rest[0]))
            check_key(key)
        except ConfigurationError as error:
            raise UsageError(str(error)) from None
        self._api_key, self.base_url = key, rest[0]
        try:
            print(connect_report(self.conversation()))
        except ConfigurationError as error:
            raise UsageError(str(error)) from None

    def _cmd_config(self, rest: list[str]) -> None:
        self._expect(rest, "config", 0)
        from ..client.loop import block_on

        client, store = self._backend()
        settings = client.settings
        relay = block_on(self.conversation().adiscover())  # bounded; the first send would ask too
        rows = [
            ("relay", settings.base_url + ("  (embedded simulator)" if settings.simulated else "")),
            ("key", repr(settings.api_key) if settings.api_key is not None else "none"),
            ("model", self.model or settings.model),
            ("orientation", self.orientation or "relay default"),
            ("duration", str(self.duration) if self.duration else "model default"),
            ("profile", f"{relay.profile.name} ({relay.profile.description})"),
            ("chosen by", f"{relay.chosen_by}: {relay.reason}"),
            ("session", self.session),
            ("wait", str(self.wait)),
            ("display", self.display),
            ("max_history", str(self.max_history) if self.max_history else "whole chain"),
            ("store", str(store.path)),
            ("media_dir", str(self._media_folder(store) or "off (URLs only)")),
        ]
        print("\n".join(f"{name:<12} {value}" for name, value in rows))


def _as_it_is_now(turn: Any) -> Any:
    """A shallow copy of a dataclass turn: the fields the card shows (status, generation, cost)
    are replaced, never changed in place, as the turn moves on. Other objects as they are."""
    import copy
    import dataclasses

    return copy.copy(turn) if dataclasses.is_dataclass(turn) else turn


def load_ipython_extension(ipython) -> None:
    """Register ``%%sora``/``%sora`` once per shell (``%load_ext`` and ``%reload_ext`` are safe)."""
    if "SoraMagics" in ipython.magics_manager.registry:
        return
    ipython.register_magics(SoraMagics(shell=ipython))
