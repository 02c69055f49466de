"""The takes of one request side by side: one HTML renderer, and pick buttons for a live kernel.

Used by the ``%%sora --takes N`` cell; the widget draws takes itself (js/widget.js) from the same
`Turn` fields (``take``, ``takes``, ``take_group``, ``picked``, ``cost_text``).

Playback is synchronised by a small inline script (play, pause and seek of one video are applied
to the others): it runs where the output is trusted (the live notebook, nbconvert HTML), and
where scripts are stripped the videos still play one by one.
"""

from __future__ import annotations

import html
import itertools
from typing import Any

from .views import video_src

_ids = itertools.count(1)

# Mirrors play/pause/seek of one <video> to its siblings; `syncing` stops the echo.
_SYNC_SCRIPT = """<script>(function(){var box=document.getElementById(%s);if(!box)return;
var vids=box.querySelectorAll('video'),syncing=false;
function mirror(src,act){if(syncing)return;syncing=true;vids.forEach(function(v){if(v===src)return;
if(Math.abs(v.currentTime-src.currentTime)>0.2)v.currentTime=src.currentTime;
if(act==='play')v.play().catch(function(){});if(act==='pause')v.pause();});syncing=false;}
vids.forEach(function(v){['play','pause','seeked'].forEach(function(e){
v.addEventListener(e,function(){mirror(v,e);});});});})();</script>"""


def takes_html(turns: list, head: int | None, *, with_video: bool = True) -> str:
    """The takes in a row, each with its status, cost and video; the picked one is marked."""
    box = f"kki-takes-{next(_ids)}"
    cells = [_take_cell(turn, head, with_video) for turn in turns]
    row = (
        f'<div id="{box}" class="kki-sora-takes" '
        'style="display:flex;gap:8px;flex-wrap:wrap;align-items:flex-start">'
        + "".join(cells)
        + "</div>"
    )
    prompt = html.escape(turns[0].prompt) if turns else ""
    script = _SYNC_SCRIPT % f'"{box}"' if with_video and any(t.status == "completed" for t in turns) else ""
    return f"<div><b>{prompt}</b></div>{row}{script}"


def _take_cell(turn: Any, head: int | None, with_video: bool) -> str:
    marker = " ✓ continues from here" if turn.index == head else ""
    label = f"take {turn.take} of {turn.takes} · turn {turn.index} · {turn.status}{marker}"
    parts = [
        '<div class="kki-sora-take" style="flex:1 1 200px;max-width:360px">',
        f"<div><small>{html.escape(label)}</small></div>",
        f"<div><small>{html.escape(turn.cost_text)}</small></div>",
    ]
    if turn.status in ("queued", "generating"):
        parts.append(f'<progress max="100" value="{int(turn.generation.progress or 0)}"></progress>')
    src = video_src(turn) if with_video else None
    if src:
        # The same kind of player as every card (views.py): <video src> with the kept copy.
        parts.append(
            f'<video controls preload="metadata" playsinline src="{html.escape(src, quote=True)}"'
            ' style="width:100%"></video>'
        )
    if turn.error:
        parts.append(f'<div style="color:#b00020">{html.escape(turn.error)}</div>')
    parts.append("</div>")
    return "".join(parts)


class TakesCard:
    """A ``%%sora --takes`` result: the takes (a list) shown side by side."""

    def __init__(self, conversation: Any, turns: list, *, with_video: bool = True):
        self.conversation = conversation
        self.turns = list(turns)
        self.with_video = with_video

    def __repr__(self) -> str:
        head = self.conversation.head
        lines = [f"[sora] {len(self.turns)} takes: {self.turns[0].prompt if self.turns else ''}"]
        for turn in self.turns:
            mark = "  <- continues from here" if turn.index == head else ""
            where = video_src(turn) or turn.error or ""
            lines.append(f"  take {turn.take}: turn {turn.index} {turn.status} · {turn.cost_text} {where}{mark}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return takes_html(self.turns, self.conversation.head, with_video=self.with_video)


def pick_buttons(conversation: Any, turns: list) -> Any:
    """ipywidgets buttons "Pick take N" that call `conversation.pick` (None without ipywidgets)."""
    try:
        import ipywidgets
    except ImportError:
        return None
    status = ipywidgets.Label()

    def show_choice() -> None:
        head = conversation.head
        chosen = next((t for t in turns if t.index == head), None)
        status.value = f"the next cell continues take {chosen.take}" if chosen else ""

    def picker(turn: Any):
        def on_click(_button: Any) -> None:
            conversation.pick(turn)
            show_choice()

        return on_click

    buttons = []
    for turn in turns:
        button = ipywidgets.Button(description=f"Pick take {turn.take}", disabled=turn.status != "completed")
        button.on_click(picker(turn))
        buttons.append(button)
    show_choice()
    return ipywidgets.HBox([*buttons, status])


class TakesLiveView:
    """The waiting ``%%sora --takes`` cell's card, updated in place (same protocol as the
    magic's single-turn views: ``show(turn)``, ``update(turn_or_turns, final=...)``)."""

    def __init__(self, conversation: Any):
        self.conversation = conversation
        self._handle: Any = None
        self._last: tuple | None = None

    def _card(self, turn: Any) -> TakesCard:
        turns = turn if isinstance(turn, list) else self.conversation.takes_of(turn)
        return TakesCard(self.conversation, turns, with_video=False)

    def show(self, turn: Any) -> None:
        self.update(turn)

    def update(self, turn: Any, *, final: bool = False) -> None:
        from IPython.display import display

        card = self._card(turn)
        signature = tuple((t.index, t.status, t.generation.progress, t.cost_text) for t in card.turns)
        if signature == self._last:
            return
        self._last = signature
        if self._handle is None:
            self._handle = display(card, display_id=True)
        else:
            self._handle.update(card)
