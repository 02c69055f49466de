"""Reading a relay's raw-data answer (the task's state when the stream itself was cut). Pure.

The raw-data URL answers JSON whose shape differs between relays (or markdown, or junk): any
shape merges into what is already known and never raises (tests/test_raw_data.py, hypothesis).
"""

from __future__ import annotations

import dataclasses
import json
import logging

from .relay_text import completion_text
from .transcript import Generation, parse_transcript

log = logging.getLogger("kki_widgets.raw_data")

# The words relays use for a task's state, in our statuses.
RELAY_STATUS_WORDS = {
    "completed": "completed",
    "complete": "completed",
    "success": "completed",
    "succeeded": "completed",
    "done": "completed",
    "finished": "completed",
    "failed": "failed",
    "failure": "failed",
    "error": "failed",
    "cancelled": "failed",
    "canceled": "failed",
    "pending": "queued",
    "queued": "queued",
    "queuing": "queued",
    "waiting": "queued",
    "submitted": "queued",
    "processing": "generating",
    "running": "generating",
    "in_progress": "generating",
    "generating": "generating",
    "started": "generating",
}


def read_raw(text: str, generation: Generation) -> Generation | None:
    """A raw-data answer (already redacted) merged into `generation`; None: unreadable."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = text
    try:
        return generation_from_raw(data, generation)
    except Exception as error:  # hostile shapes: nesting, huge numbers, odd types
        log.debug("unreadable raw-data answer: %s", type(error).__name__)
        return None


def generation_from_raw(data, previous: Generation) -> Generation:
    """Merge a raw-data answer (whose shape differs between relays) into what we know."""
    if isinstance(data, str):
        parsed = parse_transcript(data)
        return previous.merge(parsed, take_text=bool(parsed.task_id or parsed.video_url))
    if not isinstance(data, dict):
        return previous
    content = data.get("content")
    nested = content if isinstance(content, dict) else {}
    markdown = content if isinstance(content, str) else data.get("markdown")
    parsed = parse_transcript(markdown) if isinstance(markdown, str) and markdown else None

    def pick(*names):
        for source in (data, nested):
            for name in names:
                value = source.get(name)
                if value not in (None, ""):
                    return value
        return None

    status = RELAY_STATUS_WORDS.get(str(pick("status", "state") or "").lower())
    video = pick("video_url", "url", "downloadable_url", "download_url")
    if not (isinstance(video, str) and video.startswith(("http://", "https://"))):
        video = parsed.video_url if parsed else None
    thumbnail = pick("thumbnail_url", "cover_url", "gif_url")
    error = pick("error", "fail_reason", "failure_reason", "message") if status == "failed" else None
    if isinstance(error, dict):
        error = error.get("message")
    merged = previous.merge(parsed, take_text=bool(parsed and parsed.video_url))
    if video and status != "failed":
        status = "completed"
    if status is None:
        status = merged.status
    sid = pick("sid")
    return dataclasses.replace(
        merged,
        task_id=merged.task_id or pick("id", "task_id"),
        status=status,
        progress=100 if status == "completed" else max(merged.progress, _percent(pick("progress"))),
        sid=merged.sid or (sid if isinstance(sid, str) else None),
        thumbnail_url=merged.thumbnail_url or (thumbnail if isinstance(thumbnail, str) else None),
        video_url=merged.video_url or video,
        error=(str(error) if error else merged.error) if status == "failed" else None,
    )


def _percent(progress) -> int:
    try:
        value = int(float(str(progress).rstrip("%"))) if progress is not None else 0
    except ValueError:  # "n/a", NaN; an infinite one raises: the answer is unreadable
        return 0
    return min(100, value)


def completed_text(generation: Generation) -> str:
    """The assistant message to send back for a remix when the stream itself was cut.

    A remix needs the sid in the history; when the relay's raw data has no markdown we write the
    missing tail in the relay's own format so the next turn can still continue this video.
    """
    text = generation.text
    if generation.video_url and generation.video_url in text:
        return text
    return text.rstrip() + completion_text(
        generation.sid, generation.thumbnail_url, generation.video_url
    )
