"""The relay's markdown, written (pure): the one writer of an answer's ending, used by the
simulator to speak like the relay and by the recovery to complete an answer that was cut (a
remix must send back an assistant message the relay can read its sid from)."""

from __future__ import annotations


def completion_text(sid: str | None, thumbnail_url: str | None, video_url: str) -> str:
    """The tail of a completed answer, as the relay writes it (its API page, the seed)."""
    lines = ["", "", "> Generation Complete ✅"]
    if sid:
        lines.append(f"> sid: {sid}")
    lines.append("")
    if thumbnail_url:
        lines.append(f"![{thumbnail_url}]({thumbnail_url})")
    lines.append(f"[Play Online▶️]({video_url})")
    return "\n".join(lines)


def failure_text(reason: str) -> str:
    """The tail of a failed answer."""
    return f"\n\n> Generation failed ❌\n> Failure reason: {reason}"
