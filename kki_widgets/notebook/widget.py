"""`VideoChat`: a chat for video generation as an anywidget.

The widget is a thin front end over `kki_widgets.conversation.session.Conversation`: it renders `Turn`s and
turns UI events into the same `Conversation` calls a Python user makes. It holds no protocol
knowledge.

Design notes (why it looks like this):
- Durable state lives in traits (`turns` as plain dicts, `busy`, `error`, ...), so a second view,
  a re-displayed widget or a reopened notebook shows everything. One-off events (send, cancel,
  retry, resume, remix) are custom messages `{"type", "id", ...}`; failures answer with
  `{"type": "error", "id", "error"}`.
- A relay can stream hundreds of chunks per second; each trait assignment would be one comm
  message. Updates are therefore coalesced: at most one flush per `FLUSH_INTERVAL` (scheduled with
  `loop.call_later`), and terminal states are flushed at once so the final state always arrives.
- Relay text is untrusted. URLs are checked here (`safe_url`) and again in `js/widget.js`; the
  front end builds its DOM with `textContent` only.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import anywidget
import traitlets as t

from ..client.config import DEFAULT_MODEL
from ..conversation.turn import follow_blocker
from ..display.views import chat_html, chat_text, durable_url
from ..media.downloads import relative_media_url
from ..protocol.errors import ConfigurationError
from ..protocol.profiles import KNOWN_MODELS, ORIENTATIONS
from ..protocol.request import check_prompt
from ..protocol.transcript import RUNNING, STATUS_WORDS, TERMINAL

__all__ = ["FLUSH_INTERVAL", "VideoChat", "VideoChatHandle", "safe_url", "turn_to_dict"]

# At most ~10 state messages per second per widget, whatever the chunk rate.
FLUSH_INTERVAL = 0.1

DURATIONS = (10, 15, 25)
# The largest local copy sent over the comm when a view can reach no URL for it.
MAX_MEDIA_BYTES = 64 * 1024 * 1024


def _static_dir() -> Path:
    # Installed wheel: pyproject force-includes js/ as kki_widgets/static/. Source tree (editable
    # install, tests): the files live in the repository's js/.
    package = Path(__file__).parent.parent
    static = package / "static"
    return static if (static / "widget.js").exists() else package.parent / "js"


_STATIC = _static_dir()

_CONTROL = {chr(c) for c in range(0x20)} | {"\x7f"}


def safe_url(url: object) -> str | None:
    """Return `url` if it may be used as a link or media source, else None.

    Allowed: `http:`/`https:` with a host, `blob:`, and same-origin absolute paths (`/files/...`).
    Everything else (`javascript:`, `data:`, `vbscript:`, `file:`, `//other-host`) is dropped.
    Browsers delete tabs and newlines inside URLs and trim control characters at the ends before
    parsing ("java\\nscript:" runs as javascript:), so the check runs on that cleaned form.
    """
    if not isinstance(url, str):
        return None
    cleaned = url.replace("\t", "").replace("\n", "").replace("\r", "")
    cleaned = cleaned.strip("".join(sorted(_CONTROL)) + " ")
    if not cleaned or any(ch in _CONTROL for ch in cleaned):
        return None
    if cleaned.startswith("/"):
        # "//host/x" and "/\\host/x" leave the origin.
        return None if cleaned[1:2] in ("/", "\\") else cleaned
    scheme, sep, rest = cleaned.partition(":")
    if not sep:
        return None
    scheme = scheme.lower()
    if scheme in ("http", "https"):
        # Require a host: "http:foo" is not a link we want to follow.
        return cleaned if rest.startswith("//") and len(rest) > 2 and rest[2] not in "/\\" else None
    if scheme == "blob":
        return cleaned
    return None


def _unsafe_links(generation: Any) -> tuple:
    """Links the transcript parser dropped for not being http(s)."""
    return tuple(getattr(generation, "unsafe_urls", ()) or ())


def _epoch(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _media_urls(turn: Any, generation: Any, status: str, notices: list[str]) -> dict:
    """The turn's links and media, each checked (`safe_url`); a dropped one adds a notice."""
    finished = status in TERMINAL and getattr(turn, "finished_at", None) is not None
    local_url = relative_media_url(getattr(turn, "path", None))
    local_thumbnail = relative_media_url(getattr(turn, "thumbnail_path", None))

    def checked(label: str, url: Any, local: str | None = "") -> str | None:
        safe = safe_url(url)
        if url and safe is None:
            notices.append(f"Unsafe link removed ({label}).")
        # A finished turn's state is what a saved notebook keeps: links to a loopback relay (the
        # simulator) die with the kernel, so they are left out where the copy next to the
        # notebook plays instead (local=None: there is no copy, the URL is all we have).
        if safe and finished and local is not None and safe.startswith(("http://", "https://")):
            return durable_url(safe)
        return safe

    # The live widget plays the relay's URL: the browser can always fetch it, while a local copy
    # is only reachable through the server's /files/ route when we know the server root.
    download = getattr(generation, "download_url", None)
    if _unsafe_links(generation):
        notices.append("Unsafe link removed (in the relay's answer).")
    return {
        "preview_url": checked("preview", getattr(generation, "preview_url", None)),
        "raw_url": checked("raw data", getattr(generation, "raw_url", None)),
        "thumbnail_url": checked("thumbnail", getattr(generation, "thumbnail_url", None), local_thumbnail),
        "video_url": checked("video", getattr(generation, "video_url", None), local_url),
        "download_url": checked("download", download, local_url) if download else None,
        # Relative to the notebook's folder: an absolute path would put the user's home folder
        # into every saved notebook, and only the relative form resolves next to an exported one.
        "local_url": local_url,
        "local_thumbnail_url": local_thumbnail,
    }


# What continuing a finished turn does, in words: by remix on relays that remix it, else the next
# clip starts from its exact last frame (Veo relays; a sora2api parent without a share ID).
CONTINUE_WORDS = {
    True: ("Remix from here", "Remixing from #{n}"),
    False: ("Continue from its last frame", "Continuing from the last frame of #{n}"),
}


# Turns whose task the relay may still be making: following it again costs nothing.
RESUMABLE = ("still_running", "cancelled")


def resume_blocker(turn: Any) -> str | None:
    """Why `VideoChat.resume` cannot follow `turn`'s task, in words; None when it can.

    The Resume button is for a turn no longer running here; whether its task can be followed at
    all is the conversation's rule (`conversation.turn.follow_blocker`).
    """
    status = getattr(turn, "status", None)
    if status not in RESUMABLE:
        return (
            f"turn {int(getattr(turn, 'index', 0))} is {STATUS_WORDS.get(status, status).lower()}: "
            "only a turn still being made at the relay (or cancelled after the relay accepted "
            "it) can be resumed"
        )
    return follow_blocker(turn)


def _resume_words(turn: Any, status: str) -> dict:
    """Whether the turn offers Resume and, for a turn the relay still makes, why it cannot."""
    why = resume_blocker(turn) if status in RESUMABLE else "not resumable"
    return {
        "resumable": why is None,
        # A cancelled turn without a link simply offers Retry; only a video still being made
        # needs to say why nothing can fetch it.
        "resume_note": f"No Resume: {why}." if why and status == "still_running" else "",
    }


def turn_to_dict(turn: Any, remixes: bool = True) -> dict:
    """A `Turn` as the plain, JSON-safe dict the front end renders (and notebooks save);
    `remixes`: whether the relay would continue it by remix (`Conversation.can_remix`)."""
    generation = getattr(turn, "generation", None)
    options = dict(getattr(turn, "options", None) or {})
    status = getattr(turn, "status", None) or getattr(generation, "status", None) or "queued"
    notices: list[str] = []
    urls = _media_urls(turn, generation, status, notices)
    progress = 100 if status == "completed" else int(getattr(generation, "progress", 0) or 0)
    error = getattr(turn, "error", None) or getattr(generation, "error", None)
    return {
        "index": int(getattr(turn, "index", 0)),
        "prompt": str(getattr(turn, "prompt", "") or ""),
        # With the words a relay profile appended, e.g. "(landscape 16:9, …)": what was paid for.
        "sent_prompt": str(getattr(turn, "sent_prompt", None) or getattr(turn, "prompt", "") or ""),
        "warnings": [str(w) for w in (getattr(turn, "warnings", None) or [])],
        "model": str(options.get("model") or ""),
        "orientation": options.get("orientation"),
        "duration": options.get("duration"),
        "parent": getattr(turn, "parent", None),
        # The status, its words and whether it still runs: the JS shows them, never re-types them.
        "status": status,
        "status_text": STATUS_WORDS.get(status, str(status)),
        "running": status in RUNNING,
        "progress": max(0, min(100, progress)),
        "task_id": getattr(generation, "task_id", None),
        "sid": getattr(generation, "sid", None),
        **urls,
        "error": str(error) if error and status in ("failed", "cancelled", "still_running") else None,
        "cached": bool(getattr(turn, "cached", False)),
        # Price and takes (pricing.py, session.py): words from Python, the widget only shows them.
        "cost_text": str(getattr(turn, "cost_text", "") or ""),
        "take": getattr(turn, "take", None),
        "takes": getattr(turn, "takes", None),
        "take_group": getattr(turn, "take_group", None),
        "picked": bool(getattr(turn, "picked", False)),
        "created_at": _epoch(getattr(turn, "created_at", None)),
        "finished_at": _epoch(getattr(turn, "finished_at", None)),
        "notices": notices,
        # How it was made when that is not the usual remix (a claim picked up, a frame continuation).
        "note": str(getattr(turn, "note", None) or ""),
        **_resume_words(turn, status),
        "continue_text": CONTINUE_WORDS[remixes][0],
        "continuing_text": CONTINUE_WORDS[remixes][1].format(n=int(getattr(turn, "index", 0)) + 1),
    }


class VideoChatHandle:
    """A running turn started by `VideoChat.send`.

    `await handle` in a running loop (a notebook cell), or `handle.result()` / `handle.wait()` from
    plain code; both give the finished `Turn`.
    """

    def __init__(self, inner: Any, conversation: Any = None):
        self._inner = inner
        self._conversation = conversation

    @property
    def turn(self) -> Any:
        return self._inner.turn

    def __await__(self):
        return self._inner.__await__()

    def result(self, timeout: float | None = None) -> Any:
        return self._inner.result(timeout) if timeout is not None else self._inner.result()

    def wait(self, timeout: float | None = None) -> Any:
        return self.result(timeout)

    def cancel(self) -> Any:
        return self._inner.cancel()

    def done(self) -> bool:
        done = getattr(self._inner, "done", None)
        if callable(done):
            return bool(done())
        return getattr(self.turn, "status", None) in TERMINAL

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        turn = self.turn
        status = getattr(turn, "status", "?")
        return f"<VideoChatHandle turn #{getattr(turn, 'index', -1) + 1}: {STATUS_WORDS.get(status, status)}>"

    def _ipython_display_(self) -> None:
        """The handle's line, kept true as the turn moves on (a cell's value is drawn once, when
        the cell ends: a saved "queued" next to a finished video reads as a lie)."""
        from IPython.display import display

        text = repr(self)
        shown = display({"text/plain": text}, raw=True, display_id=True)
        if self._conversation is None or shown is None or self.done():
            return
        last = [text]

        def follow(turn: Any) -> None:
            if turn is not self.turn or repr(self) == last[0]:
                return
            last[0] = repr(self)
            shown.update({"text/plain": last[0]}, raw=True)
            if getattr(turn, "status", None) in TERMINAL:
                unsubscribe()

        unsubscribe = self._conversation.subscribe(follow)


class VideoChat(anywidget.AnyWidget):
    """A chat that generates videos: type a prompt, watch it render, remix it.

    >>> chat = VideoChat()              # embedded simulator when no API key is set
    >>> chat                            # display it
    >>> turn = await chat.send("a cat surfing at sunset")   # or chat.send(...).result()
    """

    _esm = _STATIC / "widget.js"
    _css = _STATIC / "widget.css"

    # Durable state: everything a fresh view needs to show the whole conversation.
    # The turns as plain dicts (`turn_to_dict`). Named `turn_data` because `chat.turns` is the
    # Python API: the `Turn` objects themselves.
    turn_data = t.List(t.Dict(), default_value=[]).tag(sync=True)
    model = t.Unicode(DEFAULT_MODEL).tag(sync=True)
    models = t.List(t.Unicode(), default_value=list(KNOWN_MODELS)).tag(sync=True)
    orientation = t.Unicode("portrait").tag(sync=True)
    orientations = t.List(t.Unicode(), default_value=list(ORIENTATIONS)).tag(sync=True)
    duration = t.Int(None, allow_none=True).tag(sync=True)
    durations = t.List(t.Int(), default_value=list(DURATIONS)).tag(sync=True)
    # The composer's takes picker; only prices the next send (the send message carries its takes).
    takes = t.Int(1).tag(sync=True)
    # What the next send would cost and the budget left, in words (pricing.next_send_line).
    price_text = t.Unicode("").tag(sync=True)
    simulated = t.Bool(False).tag(sync=True)
    busy = t.Bool(False).tag(sync=True)
    error = t.Unicode("").tag(sync=True)
    title = t.Unicode("Video chat").tag(sync=True)
    # The turn the next prompt continues (a picked take is marked by it).
    head = t.Int(None, allow_none=True).tag(sync=True)
    # What the relay sells (discovery): one dict per video model (name, label with lengths and
    # price, durations, orientations, sizes, price), and the profile chosen and why (the badge).
    offers = t.List(t.Dict(), default_value=[]).tag(sync=True)
    relay_badge = t.Unicode("").tag(sync=True)
    relay_text = t.Unicode("").tag(sync=True)
    # A base URL without a key: the view shows a password field. Its value reaches the kernel in
    # one custom message ("connect") and is never a trait: traits are saved with the notebook.
    needs_key = t.Bool(False).tag(sync=True)
    _connected_from: tuple | None = None  # what a typed key connected (undone if it is refused)
    _connection_words = ""  # the typed key's balance and ping, in words (the badge's tooltip)

    def __init__(
        self,
        model: str | None = None,
        conversation: Any = None,
        *,
        models: list[str] | None = None,
        budget: Any = None,
        **client_options: Any,
    ):
        conversation, made_here, self._pending = _conversation_for(model, conversation, budget, client_options)
        budget = None if self._pending else budget
        self.conversation = conversation
        if budget is not None:
            # A number, or a `Budget` shared with other widgets so they cannot overshoot together.
            from ..conversation.budget import as_budget

            conversation.budget = as_budget(budget, "VideoChat(budget=...)")
        chosen = model or getattr(conversation, "model", None) or _default_model()
        names = list(models or getattr(conversation, "models", None) or KNOWN_MODELS)
        if chosen not in names:
            names.insert(0, chosen)
        super().__init__(model=chosen, models=names)
        self.simulated = bool(getattr(conversation, "simulated", False))
        # A model-name profile sells some lengths only: offer those (the same profile refuses others).
        profile = getattr(conversation, "profile", None)
        sold = profile.durations(chosen) if profile is not None else None
        if sold:
            self.durations = list(sold)

        self._lock = threading.RLock()
        self._resuming: set[int] = set()  # turns whose follow was asked for and has not ended
        self._flush_handle: Any = None
        self._dirty = False
        self._closed = False
        self.flush_count = 0  # state flushes sent; tests and curious users read it
        self._head_seen: Any = getattr(conversation, "head", None)
        self._fallback_id = f"kki-chat-{self.model_id}"
        self._fallback_shown = False
        self._fallback_html = ""
        self.on_msg(self._on_custom)
        self._unsubscribe = conversation.subscribe(self._on_turn) if conversation is not None else None
        self.needs_key = conversation is None
        if made_here:  # a restarted kernel: show the turns claimed in the store and follow them
            self.resumed = conversation.resume_pending()
        self._discover_prices()
        self._discover_relay()
        self._flush()

    # ---- Python API (the UI goes through the same methods) -----------------------------------

    def send(self, prompt: str, *, parent: int | None = None, **options: Any) -> VideoChatHandle:
        """Start a turn in the background and return its handle (awaitable, or `.result()`).

        Options default to the widget's pickers (`model`, `orientation`, `duration`). By default
        the prompt remixes the conversation's head (the latest completed turn); `parent=i`
        continues from turn `i` instead (a branch). `chat.conversation.reset()` starts afresh.
        """
        return self._start(prompt, parent=parent, **options)

    def pick(self, index: int) -> Any:
        """Continue the next prompt from turn `index` (one of several takes); returns the turn."""
        turn = self.conversation.pick(index)
        self._schedule(urgent=True)
        return turn

    def remix(self, index: int, prompt: str, **options: Any) -> VideoChatHandle:
        """Start a branch that continues from turn `index`."""
        return self._start(prompt, parent=index, **options)

    def cancel(self, index: int | None = None) -> Any:
        """Cancel turn `index` (default: every running turn)."""
        result = self.conversation.cancel(index)
        self._schedule(urgent=True)
        return result

    def retry(self, index: int) -> VideoChatHandle:
        """Send turn `index` again (same prompt, options and parent) in the background.

        `force=True` skips the request cache: a retry must reach the relay even when an identical
        request was answered before.
        """
        options = dict(self.conversation.retry_options(index))
        prompt = options.pop("prompt")
        inner = self.conversation.start(prompt, force=True, **options)
        self.error = ""
        self._schedule(urgent=True)
        return VideoChatHandle(inner, self.conversation)

    def resume(self, index: int) -> VideoChatHandle:
        """Follow turn `index`'s task again, in the background: a turn still being made at the
        relay (or cancelled after the relay accepted it) gets its video under the original task
        ID. Nothing is sent again and nothing new is charged.

        Runs on the private loop, like the turns a restarted kernel picks up, so it moves on
        while a cell blocks the kernel. A turn without a task ID or raw-data link raises a
        `ConfigurationError` saying why.
        """
        from ..client.loop import background_loop, submit
        from ..conversation.turn import TurnHandle

        turn = self._resumable_turn(index)
        future = submit(self.conversation.aresume(turn.task_id))
        future.add_done_callback(lambda done: self._resumed(index, done))
        self.error = ""
        return VideoChatHandle(TurnHandle(turn, future, background_loop()), self.conversation)

    def _resumed(self, index: int, done: Any) -> None:
        """The follow ended; one that could not even start says why (the UI got "ok" already)."""
        with self._lock:
            self._resuming.discard(index)
            if not done.cancelled() and done.exception() is not None and not self._closed:
                self.error = str(done.exception()) or type(done.exception()).__name__

    def _resumable_turn(self, index: int) -> Any:
        turns = self.turns
        if not 0 <= index < len(turns):
            raise ConfigurationError(f"there is no turn {index} (this chat has {len(turns)})")
        turn = turns[index]
        why = resume_blocker(turn)
        if why is not None:
            raise ConfigurationError(why)
        with self._lock:
            # A second click before the first follow has begun would follow the task twice.
            if index in self._resuming or index in self.conversation.running:
                raise ConfigurationError(f"turn {index} is already being followed")
            self._resuming.add(index)
        return turn

    def __repr__(self) -> str:
        """The conversation as it is now, in one line (text front ends, logs, `print(chat)`)."""
        turns = list(getattr(self.conversation, "turns", []) or [])
        if not turns:
            return f"VideoChat {self.title!r}: no turns yet"
        status = getattr(turns[-1], "status", "queued")
        count = f"{len(turns)} turn{'s' if len(turns) != 1 else ''}"
        return f"VideoChat {self.title!r}: {count}, the last {STATUS_WORDS.get(status, status).lower()}"

    @property
    def turns(self) -> list:
        """The conversation's `Turn` objects (the UI renders `turn_data`, their dict form)."""
        return list(getattr(self.conversation, "turns", []))

    def refresh(self) -> None:
        """Send the whole state again now.

        Updates sent by a background task after its cell finished reach a live browser but not a
        notebook saved by nbclient (it records only the running cell's messages): call this in a
        later cell to put the final state on record.
        """
        self._flush()
        self.send_state()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._flush_handle is not None:
                self._flush_handle.cancel()
                self._flush_handle = None
        unsubscribe = getattr(self, "_unsubscribe", None)
        if callable(unsubscribe):
            unsubscribe()
        super().close()

    def _start(self, prompt: str, *, parent: int | None = None, **options: Any) -> VideoChatHandle:
        check_prompt(prompt)  # a ConfigurationError, which is a ValueError
        if self.conversation is None:
            raise ConfigurationError(
                "connect first: type the relay's API key into the key field (or pass api_key=, "
                "or set KKI_API_KEY)"
            )
        if parent is not None and not options.get("from_ui"):
            # A remix from Python continues its parent's settings (the conversation inherits
            # them); the pickers follow the head, which is not necessarily this parent.
            merged = {}
        else:
            merged = {"model": self.model, "orientation": self.orientation or None}
            if self.duration:
                merged["duration"] = self.duration
        options.pop("from_ui", None)
        merged.update({k: v for k, v in options.items() if v is not None})
        merged = {k: v for k, v in merged.items() if v is not None}
        if parent is not None:
            # A remix of an earlier turn: the conversation sends that turn's history verbatim.
            merged["parent"] = parent
        inner = self.conversation.start(prompt.strip(), **merged)
        self.error = ""
        self._schedule(urgent=True)
        return VideoChatHandle(inner, self.conversation)

    # ---- front-end messages ------------------------------------------------------------------

    def _on_custom(self, _widget: Any, content: Any, _buffers: Any = None) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        request_id = content.get("id")
        try:
            if kind in ("send", "remix"):
                index = content.get("index") if kind == "remix" else None
                self._start(
                    str(content.get("prompt") or ""),
                    parent=int(index) if index is not None else None,
                    model=content.get("model") or None,
                    orientation=content.get("orientation") or None,
                    duration=_int_or_none(content.get("duration")),
                    from_ui=True,  # the pickers the user saw (set to the parent's on "Remix")
                    takes=_int_or_none(content.get("takes")),
                )
            elif kind == "connect":
                self._connect(content.get("key"))
            elif kind == "pick":
                self.pick(int(content["index"]))
            elif kind == "media":
                self._send_media(content)
                return
            elif kind == "hello":
                pass  # a view checking that this kernel still holds its widget: "ok" says so
            elif kind == "cancel":
                self.cancel(_int_or_none(content.get("index")))
            elif kind == "retry":
                self.retry(int(content["index"]))
            elif kind == "resume":
                self.resume(int(content["index"]))
            else:
                raise ValueError(f"unknown message type {kind!r}")
        except Exception as exc:  # every failure is shown in the UI, never lost in a log
            message = str(exc) or type(exc).__name__
            self.error = message
            self.send_msg({"type": "error", "id": request_id, "error": message})
        else:
            self.send_msg({"type": "ok", "id": request_id})

    def send_msg(self, content: dict, buffers: list | None = None) -> None:
        # anywidget/ipywidgets `send` is the custom-message API; our `send` starts a turn.
        super().send(content, buffers=buffers)

    def _send_media(self, content: dict) -> None:
        """The last resort of a view that can reach neither the local copy nor the relay's URL
        (e.g. a server that does not serve the notebook's folder): the bytes, over the comm."""
        index, kind = int(content["index"]), content.get("kind")
        turn = self.conversation.turns[index]
        path = turn.path if kind == "video" else turn.thumbnail_path
        reply = {"type": "media", "id": content.get("id"), "index": index, "kind": kind}
        if not path or not Path(path).is_file() or Path(path).stat().st_size > MAX_MEDIA_BYTES:
            self.send_msg({**reply, "error": "no local copy to send"})
            return
        mime = "video/mp4" if kind == "video" else "image/webp"
        self.send_msg({**reply, "mime": mime}, buffers=[Path(path).read_bytes()])

    # ---- connecting, and what the relay sells ---------------------------------------------------

    def _connect(self, key: Any) -> None:
        """The key typed into the widget's password field: build the conversation with it (a
        masked `Secret`; it is in no trait, and the store refuses any write that contains it)."""
        from ..client.config import Secret

        if self.conversation is not None or self._pending is None:
            raise ConfigurationError("this chat is already connected to its relay")
        if not isinstance(key, str) or not key.strip():
            raise ConfigurationError("type the relay's API key into the key field, then press Connect")
        model, options, budget = self._pending
        conversation = _make_conversation(model, {**options, "api_key": Secret(key.strip())})
        conversation.reset()
        if budget is not None:
            from ..conversation.budget import as_budget

            conversation.budget = as_budget(budget, "VideoChat(budget=...)")
        with self._lock:
            self.conversation, self._pending = conversation, None
            self._connected_from = (model, options, budget)
            self._unsubscribe = conversation.subscribe(self._on_turn)
            self.needs_key = False
        self._discover_prices()
        self._discover_relay()
        self._schedule(urgent=True)
        from ..client.loop import submit

        submit(_connection_check(conversation)).add_done_callback(
            lambda done: self._show_connection(conversation, done)
        )

    def _show_connection(self, conversation: Any, done: Any) -> None:
        """The typed key's balance and the chat endpoint's ping, on the badge's tooltip (like
        `%sora connect`); a refused key brings the key field back."""
        if done.cancelled() or done.exception() is not None:
            return
        words, refused = done.result()
        if refused:
            self._refused(conversation)
            return
        with self._lock:
            if not self._closed and self.conversation is conversation:
                self._connection_words = words
                self.relay_text = self._relay_words()

    def _refused(self, conversation: Any) -> None:
        """The relay refused the typed key: back to the key field, saying so (nothing was sent)."""
        with self._lock:
            # Only the conversation that key built (a later key may have connected meanwhile).
            if self._closed or self.conversation is not conversation or conversation.turns:
                return
            self._unsubscribe()
            self.conversation, self._pending, self._connected_from = None, self._connected_from, None
            with self.hold_sync():
                self.needs_key = True
                self.relay_badge, self.relay_text = "key needed", "Type the relay's API key to connect."
                self.error = "the relay refused this key (HTTP 401/403 on its model list): type the key again"

    def _discover_relay(self) -> None:
        """Read the relay's model list in the background (bounded, quiet), then show what it
        sells in the model picker and why the profile was chosen on the badge."""
        adiscover = getattr(self.conversation, "adiscover", None)
        if adiscover is None:
            self.relay_badge = "key needed" if self.needs_key else ""
            self.relay_text = "Type the relay's API key to connect." if self.needs_key else ""
            return
        from ..client.loop import submit

        conversation = self.conversation
        submit(adiscover()).add_done_callback(lambda _done: self._show_relay(conversation))

    def _show_relay(self, conversation: Any) -> None:
        from .connect_commands import picker_entries

        if self.conversation is not conversation:
            return  # a refused key's conversation, replaced since
        relay = conversation.relay
        if relay.key_refused and self._connected_from is not None:
            self._refused(conversation)
            return
        offers = picker_entries(relay)
        with self._lock:
            if self._closed or self.conversation is not conversation:
                return
            with self.hold_sync():
                self.relay_badge = f"profile: {relay.profile.name}"
                self.relay_text = self._relay_words()
                self.offers = offers
                names = [offer["name"] for offer in offers]
                if names and self.model not in names and not self.turn_data:
                    self.model = names[0]  # a relay that does not sell the default model
                if names:
                    self.models = names if self.model in names else [self.model, *names]
                self._offer_choices()
            self.price_text = self._price_words()

    def _relay_words(self) -> str:
        relay = self.conversation.relay
        words = f"{relay.base_url} — {relay.summary} (chosen by {relay.chosen_by})"
        return f"{words}. {self._connection_words}" if self._connection_words else words

    def _offer_choices(self) -> None:
        """The lengths and orientations the relay sells for the picked model, if it says."""
        offer = next((o for o in self.offers if o["name"] == self.model), None)
        if offer is None:
            return
        if offer["durations"]:
            self.durations = list(offer["durations"])
            if self.duration is not None and self.duration not in self.durations:
                self.duration = None
        if offer["orientations"]:
            self.orientations = list(offer["orientations"])

    @t.observe("model")
    def _on_model_offer(self, _change: Any) -> None:
        if hasattr(self, "_lock"):
            self._offer_choices()

    # ---- the composer's price -----------------------------------------------------------------

    def _discover_prices(self) -> None:
        """Ask the relay for its price list in the background (once per relay per process, as a
        send would), so the composer shows an estimate before the first send."""
        prices = getattr(self.conversation, "prices", None)
        if prices is None or prices.discovered:
            return
        from ..client.loop import submit

        submit(prices.aload()).add_done_callback(lambda _done: self._refresh_price())

    def _price_words(self) -> str:
        """What the pickers' next send would cost, and the budget left (no I/O)."""
        conversation = self.conversation
        prices = getattr(conversation, "prices", None)
        if prices is None:
            return ""
        from ..protocol.pricing import Estimate, next_send_line

        model, duration = self.model, self.duration or None
        wire = None
        profile = getattr(conversation, "profile", None)
        if getattr(profile, "carrier", None) == "model":  # options in the model's name
            try:
                wire = profile.prepare([], model, self.orientation or None, duration).model
            except ConfigurationError:  # a length this model does not sell: the send will say so
                wire = None
        each = prices.estimate_request(wire, model, duration)
        budget = getattr(conversation, "budget", None)
        remaining = None if budget is None else budget.remaining
        return next_send_line(Estimate(max(1, self.takes), each, model), remaining, self.simulated)

    @t.observe("model", "orientation", "duration", "takes")
    def _on_picker(self, _change: Any) -> None:
        if hasattr(self, "_lock"):  # the constructor sets the pickers before the conversation
            self._refresh_price()

    def _refresh_price(self) -> None:
        with self._lock:
            if not self._closed:
                self.price_text = self._price_words()

    # ---- coalesced state updates -------------------------------------------------------------

    def _on_turn(self, turn: Any) -> None:
        status = getattr(turn, "status", None)
        self._schedule(urgent=status in TERMINAL)

    def _schedule(self, urgent: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            self._dirty = True
            if urgent:
                if self._flush_handle is not None:
                    self._flush_handle.cancel()
                    self._flush_handle = None
                self._flush()
                return
            if self._flush_handle is not None:
                return  # a flush is already due: this change rides along
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self._flush_handle = loop.call_later(FLUSH_INTERVAL, self._flush_due)
            else:
                # Called from a thread without a loop: a timer thread does the same job.
                timer = threading.Timer(FLUSH_INTERVAL, self._flush_due)
                timer.daemon = True
                self._flush_handle = timer
                timer.start()

    def _flush_due(self) -> None:
        with self._lock:
            self._flush_handle = None
            if self._dirty and not self._closed:
                self._flush()

    def _remixes(self, turn: Any) -> bool:
        """Whether continuing `turn` would remix it on this relay (else: from its last frame)."""
        can_remix = getattr(self.conversation, "can_remix", None)
        if can_remix is None or getattr(turn, "status", None) != "completed":
            return True
        try:
            return bool(can_remix((turn.options or {}).get("model"), parent=turn.index))
        except (AttributeError, IndexError, KeyError):  # a turn the conversation no longer holds
            return True

    def _flush(self) -> None:
        with self._lock:
            self._dirty = False
            turns = list(getattr(self.conversation, "turns", []) or [])
            # New list objects: traitlets compares by value and only a changed value is sent.
            new_turns = [turn_to_dict(turn, self._remixes(turn)) for turn in turns]
            # A completed generation is still being kept (media download) until finished_at is
            # set: the UI says "working" until the local copy is there too.
            busy = any(
                d["status"] in RUNNING or (d["status"] == "completed" and d["finished_at"] is None)
                for d in new_turns
            )
            head = getattr(self.conversation, "head", None)
            follow = head != self._head_seen and head is not None
            self._head_seen = head
            same = new_turns == self.turn_data and busy == self.busy and head == self.head
            if same and not follow and self._price_words() == self.price_text:
                return
            with self.hold_sync():
                self.turn_data = new_turns
                self.busy = busy
                self.head = head
                if follow:
                    self._follow_head(turns[head])
                self.price_text = self._price_words()  # after the pickers followed the head
            self.flush_count += 1
            self._update_fallback(turns)

    def _follow_head(self, turn: Any) -> None:
        """The pickers show what the next prompt continues: the head's model, orientation, length."""
        options = getattr(turn, "options", None) or {}
        if options.get("model"):
            if options["model"] not in self.models:
                self.models = [options["model"], *self.models]
            self.model = options["model"]
        if options.get("orientation"):
            self.orientation = options["orientation"]
        self.duration = options.get("duration") or None

    # ---- static fallback ---------------------------------------------------------------------

    def _ipython_display_(self) -> None:
        """The live widget, then its static twin as a separate output.

        nbconvert's HTML exporter draws a widget view whenever the notebook saved the widget's
        state, and drops the text/html of the same bundle; offline, the CDN renderer never loads
        and the cell is blank. As its own output the static HTML is always drawn there (and in
        untrusted views and GitHub); the widget's CSS hides it wherever the widget itself renders.
        """
        from IPython.display import display

        bundle = super()._repr_mimebundle_()
        if bundle is None:
            return
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        # Where the widget cannot draw (an untrusted copy), a front end shows this output's text:
        # nothing, since the twin below says it all, and as it is now (a repr would be frozen
        # at display time: "no turns yet" above two finished videos).
        widget = {**{k: v for k, v in data.items() if k != "text/html"}, "text/plain": ""}
        display(widget, metadata=metadata, raw=True)
        self._fallback_html = self._static_html()
        display(self._static_bundle(), raw=True, display_id=self._fallback_id)
        self._fallback_shown = True

    def _update_fallback(self, turns: list) -> None:
        if not self._fallback_shown:
            return
        text = self._static_html(turns)
        if text != self._fallback_html:
            from IPython.display import update_display

            self._fallback_html = text
            update_display(self._static_bundle(turns), raw=True, display_id=self._fallback_id)

    def _static_bundle(self, turns: list | None = None) -> dict:
        """The twin as HTML cards and, for text front ends, the same turns in words."""
        if turns is None:
            turns = list(getattr(self.conversation, "turns", []) or [])
        return {"text/html": self._fallback_html, "text/plain": chat_text(turns, self.title)}

    def _static_html(self, turns: list | None = None) -> str:
        """What GitHub / nbconvert / untrusted views show: every turn as a card (kki_widgets.display.views)."""
        if turns is None:
            turns = list(getattr(self.conversation, "turns", []) or [])
        return chat_html(turns, self.title)


def _int_or_none(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return int(value)


async def _connection_check(conversation: Any) -> tuple[str, bool]:
    """(balance and ping in words, whether the relay refused the key): `%sora connect`'s checks."""
    from ..protocol.pricing import money
    from .connect_commands import aping

    relay = await conversation.adiscover()
    balance = await conversation.prices.abalance()
    ping = await aping(conversation, relay)
    words = f"Balance: {money(balance) if balance is not None else 'not reported'}. Chat endpoint: {ping.words}."
    return words, relay.key_refused or "key was refused" in ping.words



def _conversation_for(model: str | None, conversation: Any, budget: Any, client_options: dict) -> tuple:
    """(conversation, made here, pending): the chat's conversation, whether the widget made it, and
    (model, client options, budget) of a chat whose key the user is still to type."""
    if conversation is None and _key_to_type(client_options):
        return None, False, (model, dict(client_options), budget)
    if conversation is not None:
        if client_options:
            raise TypeError(
                "pass either conversation= or client options (base_url, api_key, ...), not both: "
                "the conversation already has its client"
            )
        return conversation, False, None
    conversation = _make_conversation(model, client_options)
    # Like a kernel's first %%sora cell, a new widget starts a new video (earlier turns stay
    # listed; "Remix from here" continues one). That makes a rerun of the notebook send the same
    # requests as before, which the store replays without paying again. (reset() writes nothing
    # when there is no head: a bare VideoChat() creates no file.)
    conversation.reset()
    return conversation, True, None

def _key_to_type(client_options: dict) -> bool:
    """A relay is named (base_url=, KKI_BASE_URL) and no key is known: the widget asks for it."""
    named = client_options.get("base_url") or os.environ.get("KKI_BASE_URL")
    known = client_options.get("api_key") or os.environ.get("KKI_API_KEY")
    return bool(named) and not known and "client" not in client_options


def _default_model() -> str:
    return os.environ.get("KKI_MODEL") or DEFAULT_MODEL


def _make_conversation(model: str | None, client_options: dict) -> Any:
    # client_options (base_url, api_key, headers, store, name, media_dir, ...) go to the
    # Conversation, which builds its relay client from them.
    from ..conversation.session import Conversation

    return Conversation(model=model, **client_options)
