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

log = logging.getLogger("kki_widgets.protocol.raw_data")

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
    "in_queue": "queued",
    "not_start": "queued",
    "created": "queued",
    "in progress": "generating",
    "timeout": "failed",
    "expired": "failed",
    "rejected": "failed",
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
    markdown = content if isinstance(content, str) else data.get("markdown")
    parsed = parse_transcript(markdown) if isinstance(markdown, str) and markdown else None
    task = read_task(data)
    status, video = task["status"], task["video_url"]
    if not video:
        video = parsed.video_url if parsed else None
    merged = previous.merge(parsed, take_text=bool(parsed and parsed.video_url))
    if video and status != "failed":
        status = "completed"
    if status is None:
        status = merged.status
    return dataclasses.replace(
        merged,
        task_id=merged.task_id or task["task_id"],
        status=status,
        progress=100 if status == "completed" else max(merged.progress, task["progress"]),
        sid=merged.sid or task["sid"],
        thumbnail_url=merged.thumbnail_url or task["thumbnail_url"],
        video_url=merged.video_url or video,
        error=(task["error"] or merged.error) if status == "failed" else None,
    )


def read_task(data: dict) -> dict:
    """A task as JSON, read by its fields wherever a relay puts them (top level, `data`,
    `content`, `result`, `output`): task_id, status (ours), error (the relay's reason, nested or
    not), video_url, thumbnail_url, progress, sid. The one home of "a task as JSON": raw-data
    answers and task records a relay streams as its content both come here."""
    sources = [data] + [data[k] for k in ("data", "content", "result", "task", "output")
                        if isinstance(data.get(k), dict)]

    def pick(*names):
        for source in sources:
            for name in names:
                value = source.get(name)
                if value not in (None, "", [], {}):
                    return value
        return None

    status = RELAY_STATUS_WORDS.get(str(pick("status", "state", "task_status") or "").lower())
    error = pick("error", "fail_reason", "failure_reason", "error_message", "message", "reason")
    for _ in range(4):
        if isinstance(error, dict):
            error = error.get("message") or error.get("msg") or error.get("reason") or error.get("error")
    if status is None and isinstance(pick("error"), (dict, str)) and not pick("video_url", "url"):
        status = "failed"
    sid, task_id = pick("sid"), pick("id", "task_id", "taskId", "request_id")
    return {
        "task_id": str(task_id)[:200] if isinstance(task_id, (str, int)) and task_id != "" else None,
        "status": status,
        "error": str(error)[:2000] if error and status == "failed" else None,
        "video_url": _http_url(pick("video_url", "url", "downloadable_url", "download_url",
                                    "output", "video", "result_url")),
        "thumbnail_url": _http_url(pick("thumbnail_url", "thumbnail", "cover_url", "gif_url", "poster")),
        "progress": _percent(pick("progress")),
        "sid": sid if isinstance(sid, str) else None,
    }


def _http_url(value) -> str | None:
    if isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, dict):
        value = value.get("url")
    return value if isinstance(value, str) and value.startswith(("http://", "https://")) else None


def task_in_content(text: str) -> dict | None:
    """The task record a relay streamed as its whole content (fenced or not), or None."""
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rstrip().removesuffix("```")
    body = body.strip()
    if not (body.startswith("{") and body.endswith("}")) or len(body) > 200_000:
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    keys = {"id", "task_id", "status", "state", "error", "video_url", "url", "output", "data"}
    if not keys & set(data) or ("prompt" in data and "status" not in data):
        return None  # an echoed spec, not a task
    return data


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
