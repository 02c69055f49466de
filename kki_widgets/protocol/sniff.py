"""What a file is, from its first bytes (pure): the one home of the magic numbers, used by the
downloads (media.py checks what arrived) and the request builder (an image's MIME type)."""

from __future__ import annotations

IMAGE_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}


def _has_ftyp_box(head: bytes) -> bool:
    # ISO BMFF: a sequence of [size:4][type:4] boxes; ``ftyp`` is normally first, but some muxers
    # put a ``free``/``skip``/``wide`` box in front of it.
    offset = 0
    for _ in range(8):
        if offset + 8 > len(head):
            return False
        size = int.from_bytes(head[offset : offset + 4], "big")
        box_type = head[offset + 4 : offset + 8]
        if box_type == b"ftyp":
            return True
        if size == 1 and offset + 16 <= len(head):  # 64-bit "largesize"
            size = int.from_bytes(head[offset + 8 : offset + 16], "big")
        if size < 8:
            return False
        offset += size
    return False


def sniff(head: bytes) -> str | None:
    """The media type the first bytes announce ("mp4", "webp", ...), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if _has_ftyp_box(head):
        return "mov" if b"ftypqt  " in head[:64] else "mp4"
    return None


def image_mime(data: bytes) -> str | None:
    """The MIME type of an image the bytes announce (PNG, JPEG, WebP, GIF), or None."""
    return IMAGE_MIME.get(sniff(data[:64]) or "")
