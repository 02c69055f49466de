"""Storyboards: a list of shots generated as one chain, each continuing the previous one.

``%%sora --storyboard`` (or `Storyboard(conversation, shots).run()`) sends shot 1, then shot 2
continuing shot 1 (by remix, or by its last frame when the relay profile says the model cannot
remix, or always with ``continue_from="last_frame"``), and so on. Every shot is an ordinary turn,
cached under its exact request, so:

- rerunning the board replays every shot from the store (zero requests);
- editing shot 3 changes shot 3's request, and therefore shot 4's history (or frame): shots 1-2
  replay, shots 3 onwards are generated again — exactly the shots that changed.

A failed shot stops the chain: the shots after it would continue a video that does not exist.
"""

from __future__ import annotations

import html
import re
from typing import Any

__all__ = ["Storyboard", "board_parent", "parse_shots"]

_ITEM = re.compile(r"^\s{0,3}(?:[-*+]|\d{1,3}[.)])\s+(.*\S)\s*$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")


def parse_shots(text: str) -> list[str]:
    """The shots of a storyboard cell: its markdown list items, else its non-empty lines.

    In a list, indented lines continue the item above; other lines (a title, notes) are not
    shots. Markdown headings are never shots.
    """
    lines = text.splitlines()
    if any(_ITEM.match(line) for line in lines):
        shots: list[str] = []
        for line in lines:
            item = _ITEM.match(line)
            if item:
                shots.append(item.group(1))
            elif shots and line[:1].isspace() and line.strip():
                shots[-1] += " " + line.strip()
        return shots
    return [line.strip() for line in lines if line.strip() and not _HEADING.match(line)]


def board_parent(turns: list, cell_id: str | None) -> int | bool | None:
    """What the board of cell `cell_id` continued the first time (False: never ran).

    Its first shot is the earliest turn carrying the cell id; rerunning or editing the board
    must start from the same parent, or every shot would be a new request.
    """
    if not cell_id:
        return False
    for turn in turns:
        if turn.cell_id == cell_id:
            return turn.parent
    return False


class Storyboard:
    """A chain of shots on one conversation; shows as a strip of its shots."""

    def __init__(
        self,
        conversation: Any,
        shots: list[str],
        *,
        parent: int | None = None,
        cell_id: str | None = None,
        continue_from: str | None = None,
        force: bool = False,
        **options: Any,
    ):
        shots = [shot.strip() for shot in shots if shot and shot.strip()]
        if not shots:
            raise ValueError("a storyboard needs at least one shot: one line (or list item) per shot")
        self.conversation = conversation
        self.shots = shots
        self.parent = parent
        self.cell_id = cell_id
        self.continue_from = continue_from
        self.force = force
        self.options = options
        self.turns: list[Any] = [None] * len(shots)
        self._current: int | None = None

    def owns(self, turn: Any) -> bool:
        """Subscriber test: is `turn` the shot being generated? (records it for the strip)"""
        current = self._current
        if current is not None and turn.prompt == self.shots[current]:
            self.turns[current] = turn
            return True
        return False

    async def run(self) -> Storyboard:
        """Generate (or replay) the shots in order; stops at the first shot that fails."""
        parent = self.parent
        try:
            for index, shot in enumerate(self.shots):
                self._current = index
                turn = await self.conversation.asend(
                    shot, parent=parent, force=self.force, cell_id=self.cell_id,
                    continue_from=self.continue_from, **self.options,
                )  # fmt: skip
                self.turns[index] = turn
                if turn.status != "completed":
                    break
                parent = turn.index
        finally:
            self._current = None
        return self

    @property
    def failed(self) -> Any:
        """The shot that stopped the chain, or None."""
        return next((t for t in self.turns if t is not None and t.status != "completed"), None)

    def summary(self) -> str:
        done = [t for t in self.turns if t is not None and t.status == "completed"]
        replayed = sum(1 for t in done if t.cached)
        text = f"storyboard: {len(done)} of {len(self.shots)} shots ready"
        if done:
            text += f" ({replayed} replayed from the store, {len(done) - replayed} generated)"
        failed = self.failed
        if failed is not None:
            text += f"; shot {self.turns.index(failed) + 1} {failed.status}, so the chain stopped there"
        return text

    # -- display -----------------------------------------------------------------------------
    def __repr__(self) -> str:
        from ..display.views import video_src

        lines = [self.summary()]
        for number, (shot, turn) in enumerate(zip(self.shots, self.turns, strict=True), 1):
            state = _state(turn)
            where = (video_src(turn) or "") if turn is not None else ""
            lines.append(f"  {number}. [{state}] {shot} {where}".rstrip())
            if turn is not None and turn.error:
                lines.append(f"     {turn.error}")
        return "\n".join(lines)

    def _repr_html_(self, *, with_video: bool = True) -> str:
        cells = [
            _cell(number, shot, turn, with_video)
            for number, (shot, turn) in enumerate(zip(self.shots, self.turns, strict=True), 1)
        ]
        return (
            '<div class="kki-storyboard">'
            f"<div><small>{html.escape(self.summary())}</small></div>"
            '<div style="display:flex;gap:8px;overflow-x:auto;align-items:flex-start">'
            f"{''.join(cells)}</div></div>"
        )


def _state(turn: Any) -> str:
    if turn is None:
        return "waiting"
    if turn.status in ("queued", "generating") and turn.generation.progress:
        return f"{turn.status} {turn.generation.progress}%"
    return turn.status + (", replayed" if turn.cached else "")


def _cell(number: int, shot: str, turn: Any, with_video: bool) -> str:
    """A shot: its number and state over the package's one turn card (`views.turn_html`)."""
    from ..display.views import turn_html

    head = f"<div><b>{number}</b> · <small>{html.escape(_state(turn))}</small></div>"
    if turn is None:  # a grey frame keeps the strip's shape until the shot starts
        body = ('<div style="height:240px;background:rgba(127,127,127,.18);margin:4px 0;'
                f'border-radius:4px"></div><div>{html.escape(shot)}</div>')  # fmt: skip
    else:
        body = turn_html(turn, video=with_video)
    return f'<div class="kki-shot" style="width:260px;flex:none">{head}{body}</div>'
