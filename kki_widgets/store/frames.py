"""Images inside stored messages kept as files: ``kki_media/frames/<sha256>.<type>``, once each.

Why: a turn continued from its parent's last frame (``continue_from="last_frame"``) sends that
frame as a base64 ``data:image/png`` URL in its user message: about 18 KB on the simulator,
1–2 MB on real relays. Kept inline, the store (and every journal line and cache key computation
reading it) carries those bytes again for every such turn. Instead the store keeps a reference
in the image part, ``{"file": "kki_media/frames/<sha256>.png", "mime": "image/png"}`` in place of
``"url"``, and loading rebuilds the very same data URL, so the request cache key and the history
a remix sends are byte for byte what was sent the first time.

- Content-addressed: a file's name is the sha256 of its bytes, so an image is written once
  (atomically, checked with `sniff`) however many turns send it, and a missing or changed file is
  noticed on loading. The part then carries ``"missing"`` (what happened, the file, the fix)
  instead of a URL, and `request.normalize_messages` refuses it only when that history is sent.
- Only data URLs that decode and re-encode to themselves are moved out (anything else stays
  inline, exactly as sent); a media folder that is a link, or one that cannot be written, keeps
  the image inline too: a paid turn is never lost for want of a file.
- Stores written before this keep their inline images and load as they are.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import stat
from pathlib import Path
from typing import Any

from ..protocol.sniff import IMAGE_MIME, sniff
from .atomic import replacing

log = logging.getLogger("kki_widgets.store.notebook_store")

__all__ = ["FRAMES_FOLDER", "FrameFiles"]

FRAMES_FOLDER = "kki_media/frames"  # relative to the notebook's folder (the store's root)
_NAME = re.compile(r"[0-9a-f]{64}\.(png|jpeg|webp|gif)")
_MAX_BYTES = 32 * 1024 * 1024  # above what a relay accepts (20 MB): never read a huge plant
_REMEMBERED = 16  # data URLs remembered with their reference (a chain re-saves the same frame)


class FrameFiles:
    """The frame files of one store root: a message's stored form, and the stored form loaded."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._known: dict[str, dict] = {}  # data URL -> its reference (the file is written)

    @property
    def folder(self) -> Path:
        return self.root / FRAMES_FOLDER

    def __call__(self, message: Any) -> Any:
        """``message`` with each image data URL replaced by a reference to its (written) file."""
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            return message
        parts = [self._stored_part(part) for part in content]
        if all(new is old for new, old in zip(parts, content, strict=True)):
            return message
        return {**message, "content": parts}

    def inflate(self, messages: list, loaded: dict[str, str | None] | None = None) -> list:
        """Stored messages with their image references turned back into the data URLs sent.
        ``loaded`` (file name -> data URL or None) is shared by the turns of one load."""
        loaded = {} if loaded is None else loaded
        result = []
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list) and any(_reference(part) for part in content):
                message = {**message, "content": [self._loaded_part(p, loaded) for p in content]}
            result.append(message)
        return result

    # -- storing ----------------------------------------------------------------------------
    def _stored_part(self, part: Any) -> Any:
        image_url = part.get("image_url") if isinstance(part, dict) else None
        url = image_url.get("url") if isinstance(image_url, dict) else None
        if not isinstance(url, str) or not url.startswith("data:image/") or part.get("type") != "image_url":
            return part
        reference = self._known.get(url) or self._keep(url)
        if reference is None:
            return part
        rest = {k: v for k, v in image_url.items() if k != "url"}
        return {**part, "image_url": {**reference, **rest}}

    def _keep(self, url: str) -> dict | None:
        decoded = _decode(url)
        if decoded is None:
            return None
        mime, data = decoded
        kind = sniff(data[:64])
        if kind not in IMAGE_MIME:
            return None
        name = f"{hashlib.sha256(data).hexdigest()}.{kind}"
        try:
            self._write(name, data)
        except OSError as error:
            log.info("kki_widgets: an image stays inline in the store (%s)", error)
            return None
        if len(self._known) >= _REMEMBERED:
            self._known.clear()
        self._known[url] = reference = {"file": f"{FRAMES_FOLDER}/{name}", "mime": mime}
        return reference

    def _write(self, name: str, data: bytes) -> None:
        media = self.folder.parent
        for folder in (media, self.folder):
            if folder.is_symlink():
                raise OSError(f"{folder} is a symbolic link: nothing is written through it")
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / name
        if _verified(target, name) is not None:
            return  # content-addressed: the same name is the same bytes
        if self._link_to_twin(target, data):
            return
        with replacing(target, prefix=".tmp-frame-", suffix=target.suffix, durable=True) as temp, \
                open(temp, "wb") as handle:
            handle.write(data)

    def _link_to_twin(self, target: Path, data: bytes) -> bool:
        """A last frame (`film.last_frame` writes ``<clip>-last.png`` in this folder) becomes its
        hash copy too, by a hard link: one file on disk, 1-2 MB saved per continued turn on real
        relays. False when there is no such twin or the file system cannot link."""
        for candidate in self.folder.glob("*-last.png"):
            try:
                found = candidate.lstat()  # a plain file only: never a link, pipe or folder
                if stat.S_ISREG(found.st_mode) and found.st_size == len(data) and candidate.read_bytes() == data:
                    temp = self.folder / f".tmp-frame-{os.getpid()}-{target.name}"
                    os.link(candidate, temp)
                    os.replace(temp, target)
                    return True
            except OSError:
                return False
        return False

    # -- loading ----------------------------------------------------------------------------
    def _loaded_part(self, part: Any, loaded: dict[str, str | None]) -> Any:
        if not _reference(part):
            return part
        image_url = part["image_url"]
        file, mime = image_url.get("file"), image_url.get("mime")
        rest = {k: v for k, v in image_url.items() if k not in ("file", "mime")}
        name = file.rsplit("/", 1)[-1] if isinstance(file, str) else ""
        valid = file == f"{FRAMES_FOLDER}/{name}" and _NAME.fullmatch(name) is not None
        if valid and isinstance(mime, str) and mime.startswith("image/"):
            if name not in loaded:
                data = _verified(self.folder / name, name)
                loaded[name] = None if data is None else base64.b64encode(data).decode("ascii")
            if loaded[name] is not None:
                return {**part, "image_url": {"url": f"data:{mime};base64,{loaded[name]}", **rest}}
        path = self.folder / name if valid else file
        missing = (
            f"the image {path} that this turn's history sends is missing or was changed (its "
            "content no longer matches its name). Restore it from where the notebook came from "
            "(its original folder or git), or continue that clip with continue_from='last_frame' "
            "instead of sending its history again."
        )
        return {**part, "image_url": {"file": file, "missing": missing, **rest}}


def _reference(part: Any) -> bool:
    image_url = part.get("image_url") if isinstance(part, dict) else None
    return isinstance(image_url, dict) and "file" in image_url and "url" not in image_url


def _decode(url: str) -> tuple[str, bytes] | None:
    """(MIME type, bytes) of a base64 data URL that re-encodes to exactly itself, else None."""
    head, sep, payload = url.partition(";base64,")
    if not sep or not head.startswith("data:image/"):
        return None
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(data).decode("ascii") != payload:
        return None
    return head[len("data:") :], data


def _verified(path: Path, name: str) -> bytes | None:
    """The file's bytes if it is a plain file (not a link) whose sha256 and type match its name."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(_MAX_BYTES + 1)
    except OSError:
        return None
    digest, _, kind = name.partition(".")
    if len(data) > _MAX_BYTES or hashlib.sha256(data).hexdigest() != digest:
        return None
    return data if sniff(data[:64]) == kind else None
