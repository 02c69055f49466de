"""The image an image-to-video request starts from, kept as a file the renderer can open.

Real image-to-video models open the clip on the image they were given; the simulator does too,
so a shot continued from its parent's last frame visibly starts where the parent ended. Only
``data:`` images are used (the simulator makes no network calls: http(s) images are noted in the
caption, never fetched). Files are named by the image's hash, so a repeated request reuses one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path

_SIGNATURES = {b"\x89PNG": ".png", b"\xff\xd8\xff": ".jpg"}


def first_image(body: dict) -> bytes | None:
    """The bytes of the first ``data:`` image part of the last message, or None."""
    messages = body.get("messages") if isinstance(body, dict) else None
    content = messages[-1].get("content") if messages and isinstance(messages[-1], dict) else None
    for part in content if isinstance(content, list) else ():
        image = part.get("image_url") if isinstance(part, dict) else None
        url = image.get("url") if isinstance(image, dict) else image
        if isinstance(url, str) and url.startswith("data:image/") and "," in url:
            try:
                return base64.b64decode(url.split(",", 1)[1], validate=True)
            except (binascii.Error, ValueError):
                return None  # the request parser has already refused it
    return None


def keep_frame(data: bytes | None, media_dir: Path) -> str | None:
    """Save a PNG/JPEG under ``frames/`` in the media folder; returns its name relative to it.

    Other formats (WebP, GIF) are left out: the clip then starts on its usual background.
    """
    suffix = next((ext for magic, ext in _SIGNATURES.items() if data and data.startswith(magic)), None)
    if suffix is None:
        return None
    name = f"frames/{hashlib.sha256(data).hexdigest()[:24]}{suffix}"
    target = media_dir / name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        partial.write_bytes(data)
        partial.replace(target)
    return name
