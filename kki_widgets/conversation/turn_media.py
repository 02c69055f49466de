"""A turn's files: the video and thumbnail kept next to the notebook when it completes, and the
clip a later step needs (a film's shots, a parent's last frame), fetched when no copy was kept.

The links come from the relay's answer: `media.download` names the files after the task, checks
their type and size, and only reaches hosts the relay's own address allows.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path

log = logging.getLogger(__name__)


async def keep_media(turn, media_dir: Path | None, relay_url: str) -> None:
    """Download a completed turn's video and thumbnail into `media_dir` (None: keep nothing);
    a failure keeps the relay's URLs, where the video is still reachable."""
    if media_dir is None:
        return
    from ..media.downloads import download

    generation = turn.generation
    task = generation.task_id
    fetch = functools.partial(download, relay_url=relay_url)
    try:
        if generation.video_url:
            path = await asyncio.to_thread(
                fetch, generation.video_url, media_dir, expected_type="video", key=task
            )
            turn.path = str(path)
        if generation.thumbnail_url:
            thumb = await asyncio.to_thread(
                fetch, generation.thumbnail_url, media_dir, expected_type="image",
                key=task and f"{task}-thumbnail",
            )
            turn.thumbnail_path = str(thumb)
    except Exception as error:  # the video is still reachable at its URL
        log.warning("could not keep a local copy of turn %s: %s", turn.index, error)


def clip_of(turn, folder: str | Path, relay_url: str) -> str:
    """A completed turn's clip on disk: its kept copy, else downloaded into `folder`."""
    if turn.path and Path(turn.path).is_file():
        return turn.path  # set by our own download or checked on load
    from ..media.downloads import download

    return str(download(
        turn.generation.video_url, Path(folder), expected_type="video",
        relay_url=relay_url, key=turn.task_id,
    ))  # fmt: skip
