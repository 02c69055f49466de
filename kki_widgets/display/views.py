"""How a turn looks, wherever it is shown: presentation only, no I/O beyond `os.path` checks.

One renderer per kind of thing, so the views cannot drift apart:

- `turn_html` / `turn_text`: one turn as a card (the `%%sora` cell, `Turn`'s repr, `%sora show`,
  each turn of VideoChat's static fallback, each tile of a batch gallery);
- `TurnTable`: `%sora history`;
- `Gallery`: the result of `Conversation.batch`;
- `chat_html`: VideoChat where the widget cannot run (nbconvert HTML, untrusted views, GitHub).

Everything here is built to survive sharing (issue 12 in the project's tracker):
- videos are `<video src=…>` with the copy next to the notebook as a relative URL: JupyterLab's
  untrusted view strips `src` from `<source>` children, and only relative URLs resolve in an
  exported HTML file beside `kki_media/`;
- the poster is an `<img>` beside the prompt: JupyterLab resolves the relative `src` of an
  `<img>` through its file server but leaves `poster` alone. The `<video>` carries the poster
  too, for every other view (an exported page, GitHub, a trusted notebook served as files);
- links to the relay's loopback simulator die with the kernel: they are left out once a turn is
  over (`durable_url`);
- everything from the relay is escaped; only http(s) or "./" URLs reach `src`/`href`.

Functions take duck-typed turns (`kki_widgets.conversation.session.Turn` or anything with the same fields) so
this module imports nothing of the package above it.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from ..protocol.transcript import STATUS_WORDS, TERMINAL

__all__ = [
    "Gallery",
    "TurnTable",
    "UsageReport",
    "chat_html",
    "chat_text",
    "compact_line",
    "durable_url",
    "gallery_html",
    "turn_html",
    "turn_text",
]

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})
_CARD_STYLE = (
    "border:1px solid rgba(128,128,128,.35);border-radius:6px;padding:8px 10px;margin:4px 0;"
    "max-width:660px;font-size:13px;line-height:1.4;overflow-wrap:anywhere"
)
_VIDEO_STYLE = "display:block;max-width:100%;max-height:420px;margin-top:6px;border-radius:4px"
_POSTER_STYLE = "height:56px;width:auto;border-radius:4px;flex:none"


# ---------------------------------------------------------------------------- URLs
def durable_url(url: Any, *, finished: bool = True) -> str | None:
    """`url` if a saved notebook may link to it: http(s) or "./relative", else None.

    A loopback host (the embedded simulator, a test relay) only lives as long as its process: it
    is kept while the turn runs and dropped once it is over.
    """
    if not isinstance(url, str) or not url:
        return None
    if url.startswith("./"):
        return None if ".." in url.split("/") or "\\" in url else url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if finished and parts.hostname in _LOOPBACK:
        return None
    return url


def _finished(turn: Any) -> bool:
    return getattr(turn, "status", None) in TERMINAL


def _kept_or_remote(turn: Any, path_attr: str, url_attr: str) -> str | None:
    from ..media.downloads import relative_media_url  # a path computation: no I/O beyond is_file()

    local = relative_media_url(getattr(turn, path_attr, None))
    return local or getattr(getattr(turn, "generation", None), url_attr, None)


def video_src(turn: Any) -> str | None:
    """What a saved view plays: the copy next to the notebook, else a durable relay URL."""
    if getattr(turn, "status", None) != "completed":
        return None
    return durable_url(_kept_or_remote(turn, "path", "video_url"))


def poster_src(turn: Any) -> str | None:
    url = _kept_or_remote(turn, "thumbnail_path", "thumbnail_url")
    return durable_url(url, finished=_finished(turn))


def _links(turn: Any) -> list[tuple[str, str, bool]]:
    """(label, url, is_download) for the relay's preview and raw data, and the video file."""
    generation = getattr(turn, "generation", None)
    finished = _finished(turn)
    links = []
    for label, attr in (("preview", "preview_url"), ("raw data", "raw_url")):
        url = durable_url(getattr(generation, attr, None), finished=finished)
        if url:
            links.append((label, url, False))
    download = video_src(turn)
    if download:
        links.append(("download", download, True))
    return links


# ---------------------------------------------------------------------------- one turn
def compact_line(turn: Any) -> str:
    """model · orientation · length · status · task · "replayed, not paid" (plain text)."""
    options = getattr(turn, "options", None) or {}
    generation = getattr(turn, "generation", None)
    status = getattr(turn, "status", "queued")
    bits = [str(options[key]) for key in ("model", "orientation") if options.get(key)]
    if options.get("duration"):
        bits.append(f"{options['duration']} s")
    if status != "completed":
        progress = getattr(generation, "progress", 0) or 0
        words = STATUS_WORDS[status].lower() if status == "still_running" else status
        bits.append(f"{status} {progress}%" if status == "generating" and progress else words)
    task_id = getattr(generation, "task_id", None)
    if task_id:
        bits.append(f"task {task_id}")
    if getattr(turn, "cached", False):
        bits.append("replayed, not paid")
    elif getattr(turn, "cost_text", None):
        bits.append(turn.cost_text)  # "estimate $0.40" while it runs, "charged: $0.40" after
    if getattr(turn, "simulated", False):
        bits.append("simulated")
    return " · ".join(bits)


def _prompt(turn: Any) -> str:
    """The prompt as sent (with the words a relay profile added): what was paid for."""
    return str(getattr(turn, "sent_prompt", None) or getattr(turn, "prompt", "") or "")


def _warnings(turn: Any) -> list[str]:
    return [str(w) for w in (getattr(turn, "warnings", None) or ()) if w]


def _note(turn: Any) -> str | None:
    """How the turn was made when it is not the usual remix ("continued from the last frame …")."""
    note = getattr(turn, "note", None)
    return str(note) if note else None


def _remix_of(turn: Any) -> int | None:
    """The turn this one continues by remix (a frame continuation says so in its note)."""
    parent = getattr(turn, "parent", None)
    return parent if isinstance(parent, int) and not _note(turn) else None


def _error(turn: Any) -> str | None:
    if getattr(turn, "status", None) in ("failed", "cancelled", "still_running"):
        return getattr(turn, "error", None) or f"turn {getattr(turn, 'index', '?')} {turn.status}"
    return None


def turn_text(turn: Any) -> str:
    """The card's plain-text twin (terminals, logs, `text/plain`)."""
    lines = [f"[turn {getattr(turn, 'index', '?')}] {_prompt(turn)}"]
    lines.append(f"  {compact_line(turn)}")
    if _remix_of(turn) is not None:
        lines.append(f"  remix of #{_remix_of(turn)}")
    src = video_src(turn)
    if src:
        lines.append(f"  video: {src}")
    lines += [f"  warning: {w}" for w in _warnings(turn)]
    if _note(turn):
        lines.append(f"  note: {_note(turn)}")
    error = _error(turn)
    if error:
        lines.append(f"  error: {error}")
    return "\n".join(lines)


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def turn_html(turn: Any, *, video: bool = True, twin: bool = False) -> str:
    """One turn as a card: poster, prompt, one compact line, progress, links, player, notes.

    `twin`: the card of VideoChat's static twin, hidden wherever the live widget renders, so it
    fetches nothing until it is shown (its thumbnail loads lazily; a browser skips lazy images that
    are not displayed) or played (`preload="none"`, and no `poster`: a video's poster loads even
    inside a hidden output)."""
    index = getattr(turn, "index", 0)
    status = getattr(turn, "status", "queued")
    poster = poster_src(turn)
    head = []
    if poster:
        lazy = ' loading="lazy"' if twin else ""
        head.append(f'<img class="kki-poster" src="{_attr(poster)}"{lazy} alt="thumbnail" style="{_POSTER_STYLE}">')
    info = [
        f'<div class="kki-card-prompt"><b>{html.escape(_prompt(turn))}</b></div>',
        f'<div class="kki-card-line" style="opacity:.75">#{index} · {html.escape(compact_line(turn))}</div>',
    ]
    parent = _remix_of(turn)
    if parent is not None:
        info.append(f'<div class="kki-card-remix">remix of <a href="#kki-turn-{parent}">#{parent}</a></div>')
    if status in ("queued", "generating"):
        progress = int(getattr(getattr(turn, "generation", None), "progress", 0) or 0)
        info.append(f'<progress max="100" value="{progress}" style="width:220px"></progress>')
    links = [
        f'<a href="{_attr(url)}" target="_blank" rel="noopener noreferrer"'
        f'{" download" if is_download else ""}>{html.escape(label)}</a>'
        for label, url, is_download in _links(turn)
    ]
    if links:
        info.append(f'<div class="kki-card-links">{" · ".join(links)}</div>')
    head.append(f'<div style="min-width:0">{"".join(info)}</div>')
    parts = [
        f'<div class="kki-card" id="kki-turn-{int(index)}" data-status="{_attr(status)}" style="{_CARD_STYLE}">',
        f'<div style="display:flex;gap:10px;align-items:flex-start">{"".join(head)}</div>',
    ]
    src = video_src(turn) if video else None
    if src:
        poster_attr = f' poster="{_attr(poster)}"' if poster and not twin else ""
        preload = "none" if twin else "metadata"
        parts.append(
            f'<video class="kki-card-video" controls preload="{preload}" playsinline{poster_attr} '
            f'src="{_attr(src)}" style="{_VIDEO_STYLE}"></video>'
        )
    parts += [f'<div class="kki-card-warning">⚠ {html.escape(w)}</div>' for w in _warnings(turn)]
    if _note(turn):
        parts.append(f'<div class="kki-card-note" style="opacity:.75"><i>{html.escape(_note(turn))}</i></div>')
    error = _error(turn)
    if error:
        parts.append(f'<div class="kki-card-error" style="color:#b00020">{html.escape(error)}</div>')
    parts.append("</div>")
    return "".join(parts)


class TurnCard:
    """A turn as a display object (`display(TurnCard(turn))`), drawn by `turn_html`/`turn_text`."""

    def __init__(self, turn: Any):
        self.turn = turn

    def __repr__(self) -> str:
        return turn_text(self.turn)

    def _repr_html_(self) -> str:
        return turn_html(self.turn)


# ---------------------------------------------------------------------------- many turns
class TurnTable:
    """``%sora history``: every turn with its parent, status, cost and links.

    The cost column is what each turn was charged (`pricing.cost_cell`): "$0.00 (replayed, not
    paid)" for a replay, "unknown" when no price is known, never a guess; the last line sums the
    paid turns (`pricing.summarize`, the same sum as `%sora usage`).
    """

    HEADERS = ("#", "from", "status", "model", "prompt", "task", "cost", "video")

    def __init__(self, name: str, turns: list, head: int | None, note: str = ""):
        self.name, self.turns, self.head = name, turns, head
        self.note = note  # what the table covers, when that is not the whole notebook

    def _rows(self) -> list[tuple[str, ...]]:
        from ..protocol.pricing import cost_cell

        rows = []
        for turn in self.turns:
            rows.append(
                (
                    f"{turn.index}{'*' if turn.index == self.head else ''}",
                    "" if turn.parent is None else str(turn.parent),
                    turn.status + (" (replayed)" if turn.cached else ""),
                    str(turn.options.get("model", "")),
                    turn.prompt,
                    turn.generation.task_id or "",
                    cost_cell(turn),
                    video_src(turn) or "",
                )
            )
        return rows

    def total(self) -> str:
        """"total charged: $0.60 (+ 1 at an unknown price)" over the listed turns."""
        from ..protocol.pricing import money, summarize

        spent = summarize(self.turns)
        unknown = sum(row["unknown"] for row in spent.values())
        amount = money(round(sum(row["spent"] for row in spent.values()), 6))
        note = f" (+ {unknown} at an unknown price)" if unknown else ""
        simulated = " (simulated relay: nothing was paid)" if any(getattr(t, "simulated", False) for t in self.turns) else ""
        return f"total charged: {amount}{note}{simulated}"

    def __repr__(self) -> str:
        if not self.turns:
            return f"session {self.name!r}: no turns yet"
        rows = [self.HEADERS, *self._rows()]
        clipped = [tuple(c if len(c) <= 48 else c[:47] + "…" for c in row) for row in rows]
        widths = [max(len(row[i]) for row in clipped) for i in range(len(self.HEADERS))]
        lines = [f"session {self.name!r} (* = current)" + (f"; {self.note}" if self.note else "")]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in clipped]
        return "\n".join([*lines, self.total()])

    def _repr_html_(self) -> str:
        name = html.escape(self.name)
        if not self.turns:
            return f"<p>session <b>{name}</b>: no turns yet</p>"
        head = "".join(f"<th>{h}</th>" for h in self.HEADERS)
        body = []
        for turn, row in zip(self.turns, self._rows(), strict=True):
            cells = [f"<td>{html.escape(cell)}</td>" for cell in row[:-1]]
            poster = poster_src(turn)
            thumb = f'<img src="{_attr(poster)}" alt="" style="height:36px"> ' if poster else ""
            link = f'<a href="{_attr(row[-1])}" target="_blank" rel="noopener noreferrer">video</a>' if row[-1] else ""
            cells.append(f"<td>{thumb}{link}</td>")
            body.append(f"<tr>{''.join(cells)}</tr>")
        note = f"; {html.escape(self.note)}" if self.note else ""
        return (
            f"<p>session <b>{name}</b> (* = current){note}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f"<p>{html.escape(self.total())}</p>"
        )


class UsageReport(dict):
    """``%sora usage``: a dict for code, plain sentences when displayed."""

    def __repr__(self) -> str:
        from ..protocol.pricing import usage_lines

        note = " (simulated relay: nothing was charged)" if self.get("simulated") else ""
        first = (
            f"session {self['session']!r}: {self['turns']} turns; {self.get('counted', 'this notebook')}: "
            f"{self['paid_requests']} paid requests, {self['cache_hits']} replays from the store{note}"
        )
        return "\n".join([first, *usage_lines(self)])


def batch_summary(turns: Sequence[Any], total: int) -> str:
    """"5 / 8 clips ready (1 failed, 3 replayed, not paid)": the batch counter."""
    done = [t for t in turns if _finished(t)]
    ready = sum(t.status == "completed" for t in done)
    notes = []
    failed = len(done) - ready
    if failed:
        notes.append(f"{failed} failed")
    replayed = sum(bool(getattr(t, "cached", False)) for t in done)
    if replayed:
        notes.append(f"{replayed} replayed, not paid")
    note = f" ({', '.join(notes)})" if notes else ""
    return f"{ready} / {total} clips ready{note}"


def gallery_html(turns: Iterable[Any]) -> str:
    """Turns as a grid of cards (each drawn by `turn_html`)."""
    tiles = "".join(f'<div style="min-width:0">{turn_html(t)}</div>' for t in turns)
    return (
        '<div class="kki-gallery" style="display:grid;'
        'grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:10px">'
        f"{tiles}</div>"
    )


class Gallery(list):
    """The turns of `Conversation.batch`, in prompt order; shows as a grid of cards."""

    def __repr__(self) -> str:
        return batch_summary(self, len(self)) + "\n" + "\n".join(turn_text(t) for t in self)

    def _repr_html_(self) -> str:
        return gallery_html(self)  # the batch's live counter already says how many are ready


class Counter:
    """A live "n / N clips ready" line in a notebook (a no-op outside IPython)."""

    def __init__(self, total: int):
        self.total = total
        self._handle = None
        self._last = None

    def update(self, turns: Sequence[Any]) -> None:
        text = batch_summary(turns, self.total)
        if text == self._last:
            return
        self._last = text
        try:
            from IPython import get_ipython
            from IPython.display import HTML, display
        except ImportError:  # plain Python without IPython: nothing to draw
            return
        if get_ipython() is None:
            return
        body = HTML(f"<b>{html.escape(text)}</b>")
        if self._handle is None:
            self._handle = display(body, display_id=True)
        else:
            self._handle.update(body)


# ---------------------------------------------------------------------------- VideoChat
def chat_html(turns: Sequence[Any], title: str = "VideoChat") -> str:
    """VideoChat where widgets cannot run: every turn as a card, in order.

    Marked `kki-chat-fallback` so the widget's own CSS hides it wherever the live widget renders
    (the two are separate outputs of one cell; see `VideoChat._ipython_display_`).
    """
    body = "".join(turn_html(t, twin=True) for t in turns) if turns else "<p>No turns yet.</p>"
    return (
        f'{_NO_MODEL_ERROR}<div class="kki-chat-fallback"><div style="opacity:.75">{html.escape(title)} · '
        f"{len(turns)} turn{'s' if len(turns) != 1 else ''}</div>{body}</div>"
    )


# JupyterLab without saved widget state draws "Error displaying widget: model not found" in the
# widget's output (its renderer then carries the class jupyter-widgets and only that text), just
# above this twin, which shows the same turns: that output is hidden. Only where the notebook is
# trusted (untrusted HTML loses <style>, and an untrusted view draws no widget). A loading widget
# is left alone: hidden, JupyterLab would never render it.
# While that widget output is still loading (not yet an error, not yet a chat) the twin is hidden
# too: shown for that moment, it would fetch its thumbnail at a second address (the widget's CSS
# hides it once the chat renders; an error shows it again).
# (JupyterLab and Notebook 7 mark other outputs with their data-mime-type; a widget's renderer is
# a panel without one.)
_WIDGET_OUTPUT = ".jp-OutputArea-output.lm-Panel:not([data-mime-type])"
_NO_MODEL_ERROR = (
    "<style>.jp-OutputArea-child:has(> .jp-OutputArea-output.jupyter-widgets):not(:has(.kki-chat))"
    ":has(+ .jp-OutputArea-child .kki-chat-fallback){display:none}"
    f".jp-OutputArea-child:has(> {_WIDGET_OUTPUT}:not(.jupyter-widgets))"
    " + .jp-OutputArea-child .kki-chat-fallback{display:none}</style>"
)


def chat_text(turns: Sequence[Any], title: str = "VideoChat") -> str:
    """`chat_html`'s plain-text twin: the title, the count, each turn's `turn_text`."""
    count = f"{len(turns)} turn{'s' if len(turns) != 1 else ''}"
    return "\n".join([f"{title} · {count}", *(turn_text(t) for t in turns)])


# ---------------------------------------------------------------------------- live cell views
class LiveCard:
    """A `%%sora` cell's one output: a card updated in place (display id) from queued to video."""

    def __init__(self):
        self._handle = None
        self._last: tuple | None = None

    def show(self, turn: Any) -> None:
        from IPython.display import display

        self._last = self._signature(turn)
        self._handle = display(TurnCard(turn), display_id=True)

    def update(self, turn: Any, *, final: bool = False) -> None:
        signature = self._signature(turn)
        if signature == self._last:
            return  # terminals and logs print every update: only real changes
        self._last = signature
        if self._handle is None:
            self.show(turn)
        else:
            self._handle.update(TurnCard(turn))

    @staticmethod
    def _signature(turn: Any) -> tuple:
        generation = getattr(turn, "generation", None)
        return (
            turn.index,
            turn.status,
            getattr(generation, "progress", 0),
            getattr(generation, "task_id", None),
            turn.path,
            turn.thumbnail_path,
            turn.error,
            tuple(_warnings(turn)),
        )


class WidgetView:
    """A `%%sora --display widget` cell: the conversation's VideoChat, refreshed by the cell."""

    def __init__(self, chat: Any):
        self.chat = chat
        self._shown = False

    def show(self, turn: Any) -> None:
        from IPython.display import display

        self._shown = True
        display(self.chat)

    def update(self, turn: Any, *, final: bool = False) -> None:
        if not self._shown:
            self.show(turn)  # a replay finishes before any progress: show it once, finished
        self.chat.refresh()
