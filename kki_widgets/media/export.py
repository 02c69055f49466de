"""One page to publish: the film, every shot with its prompt, and the tree of turns.

`export_page(conversation, "film.html")` writes a single HTML file that renders offline from
``file://`` and on any static host: no script, no CDN, inline CSS. Media are referenced by
relative URLs; files that do not already live under the page's folder are copied into
``<page>_files/`` beside it, so the page and that folder are the whole publication. With
``embed=True`` the media go inside the page as ``data:`` URLs instead (one file, larger).

Everything that came from a prompt or a relay is escaped, and only our own relative URLs,
http(s) URLs, or (when embedding) our own ``data:`` URLs reach ``src``/``href``.
"""

from __future__ import annotations

import base64
import html
import os
import re
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from ..protocol.errors import ConfigurationError
from ..store.atomic import replacing
from .downloads import keep_copy

__all__ = ["export_page"]

_SRT_TIMING = re.compile(r"^\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}$")
_MIME = {".mp4": "video/mp4", ".webp": "image/webp", ".png": "image/png", ".jpg": "image/jpeg",
         ".gif": "image/gif", ".webm": "video/webm", ".vtt": "text/vtt"}  # fmt: skip

_CSS = """
:root{color-scheme:light dark;--fg:#1d1d1f;--bg:#fafafa;--muted:#6b6b70;--card:#fff;--line:#d8d8dc}
@media (prefers-color-scheme:dark){:root{--fg:#ececf0;--bg:#151518;--muted:#9a9aa2;--card:#1f1f24;--line:#34343a}}
body{font:15px/1.5 system-ui,sans-serif;color:var(--fg);background:var(--bg);margin:0 auto;max-width:1100px;padding:24px}
h1{margin:0 0 4px}.kki-meta{color:var(--muted);margin:0 0 20px}
.kki-film video{width:100%;max-height:70vh;background:#000;border-radius:8px}
.kki-shots{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:16px;padding:0;list-style:none}
.kki-shot{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px}
.kki-shot video{width:100%;border-radius:6px;background:#000}
.kki-shot p{margin:6px 0;overflow-wrap:anywhere}.kki-node{overflow-wrap:anywhere}.kki-facts{color:var(--muted);font-size:13px}
.kki-tree ul{list-style:none;padding-left:20px;border-left:1px solid var(--line);margin:4px 0}
.kki-tree>ul{border-left:none;padding-left:0}
.kki-node{display:inline-block;padding:2px 8px;border-radius:6px;border:1px solid var(--line);background:var(--card);margin:2px 0}
.kki-node.kki-in-film{border-color:#3b82f6}.kki-node.kki-unpicked,.kki-node.kki-failed{opacity:.45}
.kki-how{color:var(--muted);font-size:12px;margin-right:6px}
"""


def export_page(
    conversation: Any,
    path: str | os.PathLike,
    *,
    film: Any = True,
    embed: bool = False,
    title: str | None = None,
) -> Path:
    """Write the page for `conversation` to `path` and return its path.

    `film`: True cuts the shots up to the head (crossfades, captions) for the page; a path (or
    a `film.Film`) uses that file; False leaves the film out.
    """
    page = Path(path)
    if page.suffix.lower() not in (".html", ".htm"):
        raise ConfigurationError(f"{page}: the page must be an .html file, e.g. film.html")
    turns = conversation.turns
    done = [t.index for t in turns if t.status == "completed"]
    # The cut follows the head; after a reset (no head), the latest finished shot's chain.
    end = conversation.head if conversation.head is not None else (done[-1] if done else None)
    chain = [t.index for t in conversation.chain(end) if t.status == "completed"]
    if not chain:
        raise ConfigurationError("there is no completed shot to publish yet: generate one first")
    page.parent.mkdir(parents=True, exist_ok=True)
    files = page.parent / f"{page.stem}_files"
    with tempfile.TemporaryDirectory(prefix=".export-", dir=page.parent) as work:
        media = _Media(page.parent, files, embed)
        film_html = _film_section(conversation, film, media, Path(work) if embed else files, page.stem, chain[-1])
        body = [
            _header(conversation, title or page.stem),
            film_html,
            "<h2>Shots</h2>",
            _shots([turns[i] for i in chain], media),
            "<h2>Every turn</h2><p class='kki-meta'>Which turn continued which; the cut follows "
            "the highlighted path. Greyed out: failed turns and takes not picked.</p>",
            _tree(conversation, set(chain)),
        ]
    document = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        # No script and no remote anything: a strict policy keeps the page inert wherever it is hosted.
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "media-src 'self' data: https: http:; img-src 'self' data: https: http:; style-src 'unsafe-inline'\">"
        f"<title>{html.escape(title or page.stem)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
    with replacing(page, prefix=f".{page.name}-", suffix=".part") as temp:
        Path(temp).write_text(document, encoding="utf-8")
    return page


class _Media:
    """Turns local files into URLs the page can use: relative (copied if needed) or embedded."""

    def __init__(self, root: Path, files: Path, embed: bool):
        self.root, self.files, self.embed = root.resolve(), files, embed

    def url(self, local: str | os.PathLike | None, remote: str | None = None) -> str | None:
        if local and Path(local).is_file():
            source = Path(local)
            if self.embed:
                mime = _MIME.get(source.suffix.lower(), "application/octet-stream")
                return f"data:{mime};base64,{base64.b64encode(source.read_bytes()).decode('ascii')}"
            resolved = source.resolve()
            if not resolved.is_relative_to(self.root):
                resolved = keep_copy(resolved, self.files).resolve()
                resolved.chmod(0o644)  # a published file: readable by the web server
            return "./" + quote(resolved.relative_to(self.root).as_posix())
        # No local copy: the relay's link, only when it is plain http(s).
        if remote and urlsplit(remote).scheme in ("http", "https"):
            return remote
        return None


def _header(conversation: Any, title: str) -> str:
    settings = conversation.client.settings
    relay = "the embedded simulator (nothing was charged)" if settings.simulated else urlsplit(
        settings.base_url
    ).hostname or "?"  # the host only: no path, no user info
    models = sorted({str(t.options.get("model") or conversation.model) for t in conversation.turns})
    made = time.strftime("%Y-%m-%d", time.localtime())
    return (
        f"<h1>{html.escape(title)}</h1>"
        f"<p class='kki-meta'>Relay: {html.escape(relay)} · model{'s' if len(models) > 1 else ''}: "
        f"{html.escape(', '.join(models))} · {len(conversation.turns)} turns · made {made} with kki_widgets</p>"
    )


def _film_section(conversation: Any, film: Any, media: _Media, folder: Path, stem: str, last: int) -> str:
    if film is False or film is None:
        return ""
    if film is True:
        folder.mkdir(parents=True, exist_ok=True)
        film = conversation.film(folder / f"{stem}.mp4", last)
    film_path = Path(getattr(film, "path", film))
    if not film_path.is_file():
        raise ConfigurationError(f"film={film_path}: no such file; pass True to cut one")
    src = media.url(film_path)
    srt = getattr(film, "srt_path", None)
    track = ""
    if srt is not None and Path(srt).is_file():
        # Inside the page: chromium refuses a <track> file next to a page opened from file://.
        vtt = _srt_to_vtt(Path(srt).read_text(encoding="utf-8")).encode("utf-8")
        data = f"data:text/vtt;base64,{base64.b64encode(vtt).decode('ascii')}"
        track = f"<track kind='captions' srclang='en' label='Prompts' default src='{data}'>"
    return (
        "<section class='kki-film'><h2>The film</h2>"
        f"<video id='kki-film' controls preload='metadata' playsinline src='{html.escape(src or '', quote=True)}'>"
        f"{track}</video></section>"
    )


def _srt_to_vtt(srt: str) -> str:
    """WebVTT (what <track> reads) from SubRip: a header, dots for decimal commas, and cue text
    escaped (VTT reads tags in cues; a prompt's "<b>" must show as written)."""
    lines = []
    for line in srt.splitlines():
        if _SRT_TIMING.match(line):
            line = line.replace(",", ".")
        elif line and not line.isdigit():
            line = line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        lines.append(line)
    return "WEBVTT\n\n" + "\n".join(lines) + "\n"


def _shots(turns: Iterable[Any], media: _Media) -> str:
    items = []
    for number, turn in enumerate(turns, 1):
        src = media.url(turn.path, turn.generation.video_url)
        poster = media.url(turn.thumbnail_path, turn.generation.thumbnail_url)
        poster_attr = f" poster='{html.escape(poster, quote=True)}'" if poster else ""
        video = (f"<video controls preload='none' src='{html.escape(src, quote=True)}'{poster_attr}></video>"
                 if src else "<p class='kki-facts'>(video not available)</p>")  # fmt: skip
        items.append(
            f"<li class='kki-shot' data-turn='{turn.index}'>{video}"
            f"<p><b>Shot {number}</b> · turn {turn.index}</p>"
            f"<p class='kki-prompt'>{html.escape(turn.prompt)}</p>"
            f"<p class='kki-facts'>{html.escape(_facts(turn))}</p></li>"
        )
    return f"<ol class='kki-shots'>{''.join(items)}</ol>"


def _facts(turn: Any) -> str:
    facts = [str(turn.options.get("model", ""))]
    if turn.options.get("duration"):
        facts.append(f"{turn.options['duration']} s")
    facts.append(turn.note or _how(turn))  # a note says how, and why
    cost = shot_cost(turn)
    if cost is not None:
        facts.append(cost)
    if turn.cached:
        facts.append("replayed from the store")
    return " · ".join(fact for fact in facts if fact)


def shot_cost(turn: Any) -> str | None:
    """What the shot cost, when the turn knows it (prices from the relay or configuration)."""
    cost = getattr(turn, "cost", None)
    if cost is None:
        return None
    words = getattr(turn, "cost_text", None)  # the price module's own phrasing, when present
    if isinstance(words, str) and words:
        return words
    return f"cost ${cost:.2f}" if isinstance(cost, (int, float)) else f"cost {cost}"


def is_unpicked_take(conversation: Any, turn: Any) -> bool:
    """A take of a request that is not the one continued: greyed out in the tree.

    Takes (several generations of one request) share a `take_group`; the chosen one is the
    picked take, else the first completed one (the one the next prompt continues).
    """
    if getattr(turn, "take", None) is None:
        return False
    group = [t for t in conversation.turns if getattr(t, "take_group", None) == turn.take_group]
    done = [t for t in group if t.status == "completed"]
    chosen = next((t for t in done if getattr(t, "picked", False)), done[0] if done else None)
    return chosen is not None and chosen.index != turn.index


def _how(turn: Any) -> str:
    if turn.parent is None:
        return "new video"
    if turn.options.get("continue_from") == "last_frame":
        return f"from the last frame of turn {turn.parent}"
    return f"remix of turn {turn.parent}"


def _tree(conversation: Any, in_film: set[int]) -> str:
    turns = conversation.turns
    children: dict[int | None, list[Any]] = {}
    for turn in turns:
        parent = turn.parent if turn.parent is not None and 0 <= turn.parent < len(turns) else None
        children.setdefault(parent, []).append(turn)

    def branch(parent: int | None, depth: int) -> str:
        if depth > 200:  # a corrupt store with a cycle must not recurse forever
            return ""
        nodes = []
        for turn in children.get(parent, []):
            classes = ["kki-node"]
            if turn.index in in_film:
                classes.append("kki-in-film")
            if turn.status != "completed":
                classes.append("kki-failed")
            if is_unpicked_take(conversation, turn):
                classes.append("kki-unpicked")
            label = f"{turn.index}: {turn.prompt}"
            status = "" if turn.status == "completed" else f" ({turn.status})"
            nodes.append(
                f"<li><span class='kki-how'>{html.escape(_how(turn))}</span>"
                f"<span class='{' '.join(classes)}' data-turn='{turn.index}'>{html.escape(label + status)}</span>"
                f"{branch(turn.index, depth + 1)}</li>"
            )
        return f"<ul>{''.join(nodes)}</ul>" if nodes else ""

    return f"<nav class='kki-tree'>{branch(None, 0)}</nav>"
