"""The notebook side of films: ``%%sora --storyboard`` cells, ``%sora film`` and ``%sora export``.

The magic only dispatches here; the work is in `storyboard` (the chain of shots), `film` (the
cut) and `export` (the page). What lives here is what a cell shows while that work runs: the
strip of shots filling in, and ffmpeg's progress.
"""

from __future__ import annotations

import argparse
import html
import time
from typing import Any

from IPython.core.error import UsageError
from IPython.display import HTML, display

from ..conversation.storyboard import Storyboard, board_parent, parse_shots
from ..media.downloads import MediaError, relative_media_url
from ..protocol.errors import ConfigurationError

__all__ = ["StripView", "export_command", "film_command", "storyboard_cell"]


class StripView:
    """A board's live view: one strip, updated in place through a display id."""

    def __init__(self, board: Storyboard):
        self.board = board
        self._handle = None
        self._last: str | None = None

    def show(self, _turn: Any = None) -> None:
        self._last = self.board._repr_html_()
        self._handle = display(HTML(self._last), display_id=True)

    def update(self, _turn: Any = None, *, final: bool = False) -> None:
        if self._handle is None:
            if not final:
                self.show()
            return  # a board replayed before any update: the cell's value shows it
        # At the end the cell's value (the board) shows the strip with videos: keep a summary.
        markup = f"<small>{html.escape(self.board.summary())}</small>" if final else self.board._repr_html_()
        if markup != self._last:
            self._last = markup
            self._handle.update(HTML(markup))


def storyboard_cell(magics: Any, args: Any, cell: str) -> Storyboard:
    """``%%sora --storyboard``: one shot per line (or markdown list item), chained."""
    from .cell_text import interpolate

    shots = parse_shots(interpolate(cell, magics.shell.user_ns))
    if not shots:
        raise UsageError("%%sora --storyboard needs shots: one line (or '- ' list item) per shot.")
    if args.image:
        raise UsageError("--image and --storyboard: start the board with an image in a %%sora cell before it.")
    if args.background or not magics.wait:
        raise UsageError("--storyboard runs in its cell (each shot waits for the one it continues); drop --background.")
    name = args.session or magics.session
    conversation = magics.conversation(name)
    cell_id = magics._cell_id()
    anchored = board_parent(conversation.turns, cell_id)
    explicit = args.from_turn is not None or args.new
    parent = anchored if anchored is not False and not explicit else magics._parent_for(conversation, name, args)
    options = {"model": args.model, "orientation": args.orientation, "duration": args.duration}
    if parent is None:  # as in a %%sora cell: only a new video starts from the configured defaults
        options = {key: options[key] or getattr(magics, key) or None for key in options}
    board = Storyboard(
        conversation, shots, parent=parent, cell_id=cell_id, force=args.force,
        continue_from="last_frame" if args.from_frame else None,
        **{k: v for k, v in options.items() if v is not None},
    )  # fmt: skip
    magics._continuing.add(name)
    result = magics._wait(conversation, board.owns, StripView(board), board.run)
    if result is not board:  # interrupted: the strip shows what was done
        return board
    if args.save:
        for turn in board.turns:
            if turn is not None and turn.status == "completed":
                magics._save_copy(turn, args.save)
    failed = board.failed
    if failed is not None and failed.status == "failed":
        display(board)
        failed.raise_for_status()
    return board


# ---------------------------------------------------------------------------- %sora film
def _parser(command: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"%sora {command}", description=description, add_help=False)

    def error(message: str) -> None:
        raise UsageError(f"%sora {command}: {message}; usage: {parser.format_usage().strip()}")

    parser.error = error  # type: ignore[method-assign]
    return parser


def film_command(conversation: Any, rest: list[str]) -> Any:
    """``%sora film PATH [--cut] [--fade S] [--no-captions] [--burn] [--title TEXT]``."""
    parser = _parser("film", "cut the shots up to the current turn into one film")
    parser.add_argument("path")
    parser.add_argument("--cut", action="store_true", help="hard cuts instead of crossfades")
    parser.add_argument("--fade", type=float, default=0.5, help="crossfade seconds")
    parser.add_argument("--no-captions", action="store_true", help="no .srt from the prompts")
    parser.add_argument("--burn", action="store_true", help="draw the captions onto the picture")
    parser.add_argument("--title", help="an opening title card")
    parser.add_argument("--upto", type=int, metavar="N", help="cut up to turn N (default: current)")
    args = parser.parse_args(rest)
    bar = _ProgressBar(f"cutting {args.path}")
    try:
        film = conversation.film(
            args.path, args.upto, transitions="cut" if args.cut else "crossfade", fade=args.fade,
            captions=not args.no_captions, burn_captions=args.burn, titles=args.title, progress=bar,
        )  # fmt: skip
    except (ConfigurationError, MediaError) as error:
        raise UsageError(str(error)) from None
    bar.done(f"{film.path} ({film.duration:.1f} s)" + (f", captions {film.srt_path}" if film.srt_path else ""))
    return film


class _ProgressBar:
    """ffmpeg's progress as an HTML bar updated in place (at most 5 updates a second)."""

    def __init__(self, label: str):
        self.label = label
        self._handle = display(HTML(self._markup(0.0)), display_id=True)
        self._shown_at = 0.0

    def _markup(self, fraction: float) -> str:
        return (f'<div><progress max="100" value="{round(fraction * 100)}"></progress> '
                f"<small>{html.escape(self.label)} · {round(fraction * 100)}%</small></div>")  # fmt: skip

    def __call__(self, fraction: float) -> None:
        now = time.monotonic()
        if now - self._shown_at >= 0.2 or fraction >= 1.0:
            self._shown_at = now
            self._handle.update(HTML(self._markup(fraction)))

    def done(self, text: str) -> None:
        self._handle.update(HTML(f"<small>{html.escape(text)}</small>"))


# ---------------------------------------------------------------------------- %sora export
def export_command(conversation: Any, rest: list[str]) -> Any:
    """``%sora export PAGE.html [--embed] [--no-film] [--title TEXT]``."""
    parser = _parser("export", "write one HTML page with the film, every shot and the tree")
    parser.add_argument("path")
    parser.add_argument("--embed", action="store_true", help="put the media inside the page")
    parser.add_argument("--no-film", action="store_true", help="shots and tree only, no cut")
    parser.add_argument("--title", help="the page's title")
    args = parser.parse_args(rest)
    if not args.path.lower().endswith((".html", ".htm")):
        raise UsageError(f"%sora export {args.path}: give an .html file, e.g. %sora export film.html")
    try:
        page = conversation.export(args.path, film=not args.no_film, embed=args.embed, title=args.title)
    except (ConfigurationError, MediaError) as error:
        raise UsageError(str(error)) from None
    link = relative_media_url(page)  # relative to the notebook, or None when outside it
    if link:
        display(HTML(f'<a href="{html.escape(link, quote=True)}" target="_blank" '
                     f'rel="noopener noreferrer">{html.escape(str(page))}</a>'))  # fmt: skip
    return page
