"""Takes: several generations of one request, shown side by side (kki_widgets.display.takes_view). Each
take is a turn with `take` k of `takes` N; they share a `take_group` (the index of take 1).

Pure: `Conversation` (kki_widgets.conversation.session) keeps the turns and moves its head.
"""

from __future__ import annotations

from ..protocol.errors import ConfigurationError


def take_numbers(takes: int) -> list[int | None]:
    """[None] for a plain request (no take number), else 1..N."""
    return [None] if takes == 1 else list(range(1, takes + 1))


def join_group(takes: list) -> None:
    """The takes of one request share the group of the first (an earlier group when take 1 was
    replayed from one)."""
    if takes:
        group = takes[0].take_group or takes[0].index
        for turn in takes:
            turn.take_group = group


def group_of(turns: list, turn) -> list:
    """The takes of the request `turn` belongs to, in take order."""
    group = turn.take_group if turn.take_group is not None else turn.index
    return sorted((t for t in turns if t.take_group == group), key=lambda t: t.take or 0)


def takes_of(turns: list, turn) -> list:
    """`group_of`, or just `turn` when it is not a take."""
    return group_of(turns, turn) if turn.take is not None else [turn]


def latest_with_takes(turns: list):
    latest = [t for t in turns if t.take is not None]
    if not latest:
        raise ConfigurationError("no request with takes yet: send(prompt, takes=3)")
    return latest[-1]


def settled(group: list):
    """Once every take of a request ended: the picked take, else the first completed one
    (deterministic, so a rerun continues the same take); None while any runs or none completed."""
    if not group or not all(t.done for t in group):
        return None
    done = [t for t in group if t.status == "completed"]
    return next((t for t in done if t.picked), done[0] if done else None)
