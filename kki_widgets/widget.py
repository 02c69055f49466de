"""`VideoChat`: a chat for video generation as an anywidget.

The widget is a thin front end over `kki_widgets.session.Conversation`: it renders `Turn`s and
turns UI events into the same `Conversation` calls a Python user makes. It holds no protocol
knowledge.

Design notes (why it looks like this):
- Durable state lives in traits (`turns` as plain dicts, `busy`, `error`, ...), so a second view,
  a re-displayed widget or a reopened notebook shows everything. One-off events (send, cancel,
  retry, remix) are custom messages `{"type", "id", ...}`; failures answer with
  `{"type": "error", "id", "error"}`.
- A relay can stream hundreds of chunks per second; each trait assignment would be one comm
  message. Updates are therefore coalesced: at most one flush per `FLUSH_INTERVAL` (scheduled with
  `loop.call_later`), and terminal states are flushed at once so the final state always arrives.
- Relay text is untrusted. URLs are checked here (`safe_url`) and again in `js/widget.js`; the
  front end builds its DOM with `textContent` only.
"""

from __future__ import annotations

import asyncio
import html
import os
import threading
from pathlib import Path
from typing import Any

import anywidget
import traitlets as t

from .config import DEFAULT_MODEL, KNOWN_MODELS
from .media import relative_media_url

__all__ = ["FLUSH_INTERVAL", "VideoChat", "VideoChatHandle", "safe_url", "turn_to_dict"]

# At most ~10 state messages per second per widget, whatever the chunk rate.
FLUSH_INTERVAL = 0.1

TERMINAL = frozenset({"completed", "failed", "cancelled"})
RUNNING = frozenset({"queued", "generating"})
STATUS_WORDS = {
    "queued": "Queued",
    "generating": "Generating",
    "completed": "Completed",
    "failed": "Failed",
    "cancelled": "Cancelled",
}
ORIENTATIONS = ("portrait", "landscape")
DURATIONS = (10, 15, 25)


def _static_dir() -> Path:
    # Installed wheel: pyproject force-includes js/ as kki_widgets/static/. Source tree (editable
    # install, tests): the files live in ../js/.
    here = Path(__file__).parent
    static = here / "static"
    return static if (static / "widget.js").exists() else here.parent / "js"


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


def turn_to_dict(turn: Any) -> dict:
    """A `Turn` as the plain, JSON-safe dict the front end renders (and notebooks save)."""
    generation = getattr(turn, "generation", None)
    options = dict(getattr(turn, "options", None) or {})
    status = getattr(turn, "status", None) or getattr(generation, "status", None) or "queued"
    notices: list[str] = []

    def checked(label: str, url: Any) -> str | None:
        safe = safe_url(url)
        if url and safe is None:
            notices.append(f"Unsafe link removed ({label}).")
        return safe

    # The live widget plays the relay's URL: the browser can always fetch it, while a local copy
    # is only reachable through the server's /files/ route when we know the server root.
    video = getattr(generation, "video_url", None)
    download = getattr(generation, "download_url", None)
    if _unsafe_links(generation):
        notices.append("Unsafe link removed (in the relay's answer).")
    progress = int(getattr(generation, "progress", 0) or 0)
    if status == "completed":
        progress = 100
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
        "status": status,
        "status_text": STATUS_WORDS.get(status, str(status)),
        "progress": max(0, min(100, progress)),
        "task_id": getattr(generation, "task_id", None),
        "sid": getattr(generation, "sid", None),
        "preview_url": checked("preview", getattr(generation, "preview_url", None)),
        "raw_url": checked("raw data", getattr(generation, "raw_url", None)),
        "thumbnail_url": checked("thumbnail", getattr(generation, "thumbnail_url", None)),
        "video_url": checked("video", video),
        "download_url": checked("download", download) if download else None,
        # Relative to the notebook's folder: an absolute path would put the user's home folder
        # into every saved notebook, and only the relative form resolves next to an exported one.
        "local_url": relative_media_url(getattr(turn, "path", None)),
        "local_thumbnail_url": relative_media_url(getattr(turn, "thumbnail_path", None)),
        "error": str(error) if error and status in ("failed", "cancelled") else None,
        "cached": bool(getattr(turn, "cached", False)),
        "created_at": _epoch(getattr(turn, "created_at", None)),
        "finished_at": _epoch(getattr(turn, "finished_at", None)),
        "notices": notices,
    }


class VideoChatHandle:
    """A running turn started by `VideoChat.send`.

    `await handle` in a running loop (a notebook cell), or `handle.result()` / `handle.wait()` from
    plain code; both give the finished `Turn`.
    """

    def __init__(self, inner: Any):
        self._inner = inner

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
        return f"<VideoChatHandle turn={getattr(turn, 'index', '?')} status={getattr(turn, 'status', '?')}>"


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
    simulated = t.Bool(False).tag(sync=True)
    busy = t.Bool(False).tag(sync=True)
    error = t.Unicode("").tag(sync=True)
    title = t.Unicode("Video chat").tag(sync=True)

    def __init__(
        self,
        model: str | None = None,
        conversation: Any = None,
        *,
        models: list[str] | None = None,
        **client_options: Any,
    ):
        if conversation is None:
            conversation = _make_conversation(model, client_options)
            # Like a kernel's first %%sora cell, a new widget starts a new video (earlier turns
            # stay listed; "Remix from here" continues one). That makes a rerun of the notebook
            # send the same requests as before, which the store replays without paying again.
            conversation.reset()
        elif client_options:
            raise TypeError(
                "pass either conversation= or client options (base_url, api_key, ...), not both: "
                "the conversation already has its client"
            )
        self.conversation = conversation
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
        self._flush_handle: Any = None
        self._dirty = False
        self._closed = False
        self.flush_count = 0  # state flushes sent; tests and curious users read it
        self.on_msg(self._on_custom)
        self._unsubscribe = conversation.subscribe(self._on_turn)
        self._flush()

    # ---- Python API (the UI goes through the same methods) -----------------------------------

    def send(self, prompt: str, *, parent: int | None = None, **options: Any) -> VideoChatHandle:
        """Start a turn in the background and return its handle (awaitable, or `.result()`).

        Options default to the widget's pickers (`model`, `orientation`, `duration`). By default
        the prompt remixes the conversation's head (the latest completed turn); `parent=i`
        continues from turn `i` instead (a branch). `chat.conversation.reset()` starts afresh.
        """
        return self._start(prompt, parent=parent, **options)

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
        return VideoChatHandle(inner)

    @property
    def turns(self) -> list:
        """The conversation's `Turn` objects (the UI renders `turn_data`, their dict form)."""
        return list(self.conversation.turns)

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
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("the prompt is empty: describe the video you want")
        merged = {"model": self.model, "orientation": self.orientation or None}
        if self.duration:
            merged["duration"] = self.duration
        merged.update({k: v for k, v in options.items() if v is not None})
        merged = {k: v for k, v in merged.items() if v is not None}
        if parent is not None:
            # A remix of an earlier turn: the conversation sends that turn's history verbatim.
            merged["parent"] = parent
        inner = self.conversation.start(prompt.strip(), **merged)
        self.error = ""
        self._schedule(urgent=True)
        return VideoChatHandle(inner)

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
                )
            elif kind == "cancel":
                self.cancel(_int_or_none(content.get("index")))
            elif kind == "retry":
                self.retry(int(content["index"]))
            else:
                raise ValueError(f"unknown message type {kind!r}")
        except Exception as exc:  # every failure is shown in the UI, never lost in a log
            message = str(exc) or type(exc).__name__
            self.error = message
            self.send_msg({"type": "error", "id": request_id, "error": message})
        else:
            self.send_msg({"type": "ok", "id": request_id})

    def send_msg(self, content: dict) -> None:
        # anywidget/ipywidgets `send` is the custom-message API; our `send` starts a turn.
        super().send(content)

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

    def _flush(self) -> None:
        with self._lock:
            self._dirty = False
            turns = list(getattr(self.conversation, "turns", []) or [])
            # New list objects: traitlets compares by value and only a changed value is sent.
            new_turns = [turn_to_dict(turn) for turn in turns]
            # A completed generation is still being kept (media download) until finished_at is
            # set: the UI says "working" until the local copy is there too.
            busy = any(
                d["status"] in RUNNING or (d["status"] == "completed" and d["finished_at"] is None)
                for d in new_turns
            )
            if new_turns == self.turn_data and busy == self.busy:
                return
            with self.hold_sync():
                self.turn_data = new_turns
                self.busy = busy
            self.flush_count += 1

    # ---- static fallback ---------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any):
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        data = dict(data)
        data["text/html"] = self._static_html()
        return data, metadata

    def _static_html(self) -> str:
        """What GitHub / nbconvert show where widgets cannot run: the last video and its prompt."""
        done = [d for d in self.turn_data if d["status"] == "completed" and d["video_url"]]
        if not done:
            count = len(self.turn_data)
            text = f"VideoChat: {count} turn(s), no finished video yet." if count else "VideoChat"
            return f"<p>{html.escape(text)}</p>"
        last = done[-1]
        url = html.escape(last["video_url"], quote=True)
        # The copy next to the notebook outlives the relay's CDN link.
        poster = last.get("local_thumbnail_url") or last["thumbnail_url"]
        poster_attr = f' poster="{html.escape(poster, quote=True)}"' if poster else ""
        prompt = html.escape(last.get("sent_prompt") or last["prompt"])
        warnings = "".join(
            f'<p style="color:#8a5300">⚠ {html.escape(str(w))}</p>' for w in last.get("warnings") or []
        )
        # <source> children are tried in order until one loads: the copy next to the notebook
        # (works in nbconvert HTML saved beside it, and outlives the relay's CDN), then the URL.
        sources = []
        local = last.get("local_url")
        if local:
            sources.append(f'<source src="{html.escape(local, quote=True)}" type="video/mp4">')
        sources.append(f'<source src="{url}" type="video/mp4">')
        local_link = (
            f' · <a href="{html.escape(local, quote=True)}">local copy</a>' if local else ""
        )
        return (
            '<div class="kki-static">'
            f"<p><b>{prompt}</b></p>"
            f'<video controls preload="metadata" style="max-width:100%"{poster_attr}>'
            f"{''.join(sources)}</video>"
            f'<p><a href="{url}" target="_blank" rel="noopener noreferrer">Open the video</a>'
            f"{local_link}</p>{warnings}</div>"
        )


def _int_or_none(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return int(value)


def _default_model() -> str:
    return os.environ.get("KKI_MODEL") or DEFAULT_MODEL


def _make_conversation(model: str | None, client_options: dict) -> Any:
    # client_options (base_url, api_key, headers, store, name, media_dir, ...) go to the
    # Conversation, which builds its relay client from them.
    from .session import Conversation

    return Conversation(model=model, **client_options)
