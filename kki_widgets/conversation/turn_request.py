"""The request of a new turn, decided before anything is registered, reserved or sent: the
caller's input checked, the options chosen (explicit, else the parent's, else the
conversation's), how the turn continues its parent (remix, or the parent's last frame as the
image) and the options its request-cache entry is keyed by.

Pure: `Conversation` (kki_widgets.conversation.session) gathers the state these functions need under its lock.
"""

from __future__ import annotations

from collections.abc import Callable

from ..protocol.errors import ConfigurationError

# `parent=HEAD`: continue from the conversation's head (`parent=None` starts a new video).
HEAD = object()
OPTION_NAMES = ("model", "orientation", "duration")
_OTHER_OPTIONS = ("images", "continue_from")
CONTINUATIONS = (None, "remix", "last_frame")
MAX_TAKES = 16


def check_options(options: dict) -> None:
    unknown = set(options) - {*OPTION_NAMES, *_OTHER_OPTIONS}
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(sorted(unknown))}: use model, orientation, "
            "duration, images or continue_from"
        )


def check_takes(takes) -> None:
    if isinstance(takes, bool) or not isinstance(takes, int) or not 1 <= takes <= MAX_TAKES:
        raise ConfigurationError(f"takes must be a whole number from 1 to {MAX_TAKES}, got {takes!r}")


def choose_options(options: dict, inherited: dict, defaults: dict) -> dict:
    """Explicit options win; a remix continues its parent's model, orientation and length
    (`inherited`); a new video takes the conversation's `defaults`."""
    return {
        name: options.get(name) or inherited.get(name) or defaults.get(name)
        for name in OPTION_NAMES
    }


def continuity(
    parent: int | None, model: str, asked: str | None, remixes: Callable[..., bool]
) -> tuple[str | None, str | None]:
    """How a turn continues its parent — "remix", "last_frame", or None for a new video — and
    the note that says why when it is not the one asked for. `remixes(model, parent=None)`:
    whether `model` remixes (turn `parent`) on this relay (`Conversation.can_remix`)."""
    if asked not in CONTINUATIONS:
        raise ConfigurationError(
            f"continue_from={asked!r}: use 'remix' (send the parent's answer back) or "
            "'last_frame' (send the parent's last frame as the image)"
        )
    if parent is None:
        return None, None
    if asked is None and not remixes(model, parent):
        why = "without a share ID" if remixes(model) else "on this relay"
        return "last_frame", (
            f"{model} cannot remix {why}: continued from the last frame of turn {parent}"
        )
    if asked == "last_frame":
        return asked, f"continued from the last frame of turn {parent}"
    return asked or "remix", None


def recorded_options(chosen: dict, how: str | None) -> dict:
    """The options a turn keeps: only the non-default way of continuing is recorded, so remix
    turns keep the cache keys they always had."""
    recorded = {**chosen, "continue_from": how if how == "last_frame" else None}
    return {name: value for name, value in recorded.items() if value is not None}


def cache_options(options: dict, take: int | None) -> dict:
    """The options a turn's request-cache entry is keyed by. Take k > 1 of a request is its own
    generation, keyed by its take number; take 1 shares the plain request's entry, so one
    earlier send is take 1."""
    return {**options, "take": take} if take and take > 1 else options
