"""Writing a file so that its name only ever holds a whole file: a temp file in the same
directory, renamed over the target. The one home of that pattern: the store, stitched and cut
films and their captions, last frames, kept copies, exported pages and the simulator's clips
(a program such as ffmpeg writes straight to the temp name).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(
    target: str | os.PathLike, *, prefix: str, suffix: str, private: bool = False,
    durable: bool = False,
) -> Iterator[str]:
    """Yield a new empty temp file's name next to `target`; write it inside the block. On a clean
    exit it replaces `target` in one rename; on any error it is removed and `target` is untouched.

    `private`: readable by the owner only (the store); otherwise the permissions any file the user
    creates gets (umask applies: a film must be servable like the user's other files).
    `durable`: the data and the rename are on disk (fsync) before this returns.
    """
    directory = Path(target).parent
    if private:
        fd, temp_name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
        os.close(fd)
    else:
        temp_name = _new_file(directory, prefix, suffix)
    try:
        yield temp_name
        if durable:
            _fsync(temp_name, os.O_RDONLY)
        os.replace(temp_name, target)  # replaces a planted link itself, never its target
        if durable:
            # The rename is only durable once the directory entry is on disk.
            with contextlib.suppress(OSError):  # not supported on every platform/filesystem
                _fsync(directory, os.O_RDONLY)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)


def _fsync(path: str | os.PathLike, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_file(directory: Path, prefix: str, suffix: str) -> str:
    """An empty new file with umask permissions (``tempfile.mkstemp`` makes owner-only files and
    ``os.replace`` would keep that)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        name = os.path.join(directory, f"{prefix}{os.urandom(6).hex()}{suffix}")
        try:
            os.close(os.open(name, flags, 0o666))
        except FileExistsError:
            continue
        return name
    raise FileExistsError(f"cannot create a temporary file in {directory}")
