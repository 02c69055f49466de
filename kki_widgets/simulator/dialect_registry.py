"""Every dialect the simulator speaks, by name: the first relays' (`dialects`) and the families
collected for issue 19 (`families`, which subclass `dialects.Dialect`)."""

from __future__ import annotations

from .dialects import DIALECTS as FIRST_DIALECTS
from .dialects import PROMPT_MARKER, Dialect, DialectError
from .families import FAMILY_DIALECTS

DIALECTS: dict[str, Dialect] = {**FIRST_DIALECTS, **{d.name: d for d in FAMILY_DIALECTS}}
DIALECT_NAMES = tuple(DIALECTS)


def get_dialect(name: str | None) -> Dialect:
    """The dialect called ``name`` (``None`` or "" → ``seed``); :class:`DialectError` if unknown."""
    key = (name or "seed").strip().lower().replace("-", "_")
    if key not in DIALECTS:
        raise DialectError(f"unknown dialect {name!r}; valid dialects: {', '.join(DIALECT_NAMES)}")
    return DIALECTS[key]


def dialect_in_text(text: str) -> str | None:
    """The last ``[[dialect:name]]`` marker of a prompt, if any."""
    found = PROMPT_MARKER.findall(text)
    return found[-1] if found else None
