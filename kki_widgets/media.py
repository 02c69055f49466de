"""Keep the generated videos next to the notebook: resumable, verified downloads and stitching.

Relay CDNs expire their links within hours to days, so a film a notebook shows must live on disk.
Downloads are written to ``<name>.part`` and renamed into place only once verified, so a file
with the final name is always complete; an interrupted download resumes with an HTTP ``Range``
request instead of paying the bandwidth twice.

The media hosts are third parties: they get a plain client with no ``Authorization`` header, even
when the caller hands in the relay's client.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import httpx
from filelock import FileLock

__all__ = [
    "ClipInfo",
    "MediaError",
    "MediaVerificationError",
    "download",
    "ffmpeg_exe",
    "keep_copy",
    "probe",
    "stitch",
]

ProgressCallback = Callable[[int, "int | None"], None]

_KNOWN_SUFFIXES = {".mp4", ".webp", ".gif", ".png", ".jpg", ".jpeg", ".webm", ".mov"}
_CONTENT_TYPE_SUFFIX = {
    "video/mp4": ".mp4",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
}


def relative_media_url(path: str | os.PathLike | None) -> str | None:
    """A kept file as a URL relative to the notebook's folder (the kernel's cwd), or None.

    Relative URLs keep working wherever the notebook travels with its media folder: JupyterLab
    resolves them against the notebook, and so do nbconvert HTML and GitHub. No absolute path
    (the user's home folder) ever goes into a saved notebook. "./" keeps a name like "a:b.mp4"
    from reading as a URL scheme.
    """
    if not path or not Path(path).is_file():
        return None
    try:
        relative = os.path.relpath(path, os.getcwd())
    except ValueError:  # another drive on Windows
        return None
    if relative.startswith("..") or os.path.isabs(relative):
        return None
    return "./" + quote(relative.replace(os.sep, "/"))


class MediaError(RuntimeError):
    """A download or an ffmpeg run failed; the message says what to do."""


class MediaVerificationError(MediaError):
    """The downloaded bytes are not the expected media (empty, truncated, wrong format)."""


# ------------------------------------------------------------------------------ verification
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


_SIGNATURES: dict[str, tuple[str, Callable[[bytes], bool]]] = {
    "mp4": ("an MP4 (no 'ftyp' box)", _has_ftyp_box),
    "mov": ("a QuickTime movie (no 'ftyp' box)", _has_ftyp_box),
    "webp": ("a WebP image (no RIFF....WEBP header)", lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP"),
    "gif": ("a GIF image", lambda h: h[:6] in (b"GIF87a", b"GIF89a")),
    "png": ("a PNG image", lambda h: h[:8] == b"\x89PNG\r\n\x1a\n"),
    "jpg": ("a JPEG image", lambda h: h[:3] == b"\xff\xd8\xff"),
    "jpeg": ("a JPEG image", lambda h: h[:3] == b"\xff\xd8\xff"),
    "webm": ("a WebM video", lambda h: h[:4] == b"\x1a\x45\xdf\xa3"),
}


def _verify(path: Path, media_type: str | None, *, expected_size: int | None, url: str) -> None:
    size = path.stat().st_size
    if size == 0:
        raise MediaVerificationError(f"{url} returned an empty file; the link may have expired.")
    if expected_size is not None and size != expected_size:
        raise MediaVerificationError(
            f"{url}: got {size} bytes but the server announced {expected_size}; the transfer was "
            "cut. Call download() again to resume."
        )
    if media_type in _SIGNATURES:
        what, check = _SIGNATURES[media_type]
        with path.open("rb") as handle:
            head = handle.read(64 * 1024)
        if not check(head):
            preview = head[:80].decode("utf-8", "replace").replace("\n", " ")
            raise MediaVerificationError(
                f"{url} is not {what}; it starts with {preview!r}. The link probably points to an "
                "error page or has expired: open it in a browser, or fetch a fresh link with "
                "%sora resume TASK_ID."
            )


def _media_type(name: str, expected_type: str | None) -> str | None:
    if expected_type:
        return expected_type.lower().lstrip(".")
    suffix = Path(name).suffix.lower().lstrip(".")
    return suffix or None


# ------------------------------------------------------------------------------ naming
def _file_name(url: str, expected_type: str | None) -> str:
    """The URL's basename made safe for any filesystem, or a hash of the URL when it has none.

    The name must be known before the first byte arrives (the ``.part`` file is what makes a
    download resumable), so the fallback hashes the URL rather than the content.
    """
    basename = unquote(Path(urlsplit(url).path).name)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", basename).strip("._")[:120]
    suffix = Path(safe).suffix.lower()
    if not safe or suffix not in _KNOWN_SUFFIXES:
        digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:24]
        wanted = f".{expected_type.lower().lstrip('.')}" if expected_type else (suffix or "")
        safe = f"{Path(safe).stem[:60] + '-' if safe else ''}{digest}{wanted}"
    return safe


# ------------------------------------------------------------------------------ download
def download(
    url: str,
    dest_dir: str | os.PathLike,
    *,
    client: httpx.Client | None = None,
    progress: ProgressCallback | None = None,
    expected_type: str | None = None,
    retries: int = 3,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` into ``dest_dir`` and return the verified file's path.

    - Already there and valid → returned without a request.
    - Streams into ``<name>.part``; an existing ``.part`` is resumed with ``Range`` (appended on
      206, restarted on 200). A connection cut mid-transfer is resumed up to ``retries`` times.
    - Verified before the rename: non-empty, as long as announced, and the right magic bytes for
      mp4 (``ftyp``) / webp (``RIFF....WEBP``) / gif / png / jpeg.
    - ``expected_type`` ("mp4", "webp", ...) overrides the type guessed from the URL.
    - ``progress(done_bytes, total_bytes_or_None)`` is called as bytes arrive.
    - ``client``: an ``httpx.Client`` to reuse (connection pool, proxies); its ``Authorization``
      header is never sent to the media host.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / _file_name(url, expected_type)
    media_type = _media_type(target.name, expected_type)

    # Two kernels may fetch one clip; the lock is a dotfile so the media folder stays tidy.
    with FileLock(str(target.with_name(f".{target.name}.lock")), timeout=600):
        if target.exists():
            with contextlib.suppress(MediaVerificationError):
                _verify(target, media_type, expected_size=None, url=url)
                return target
            target.unlink()  # a bad file must not shadow the real one forever

        own_client = client is None
        http = client or httpx.Client(follow_redirects=True, timeout=timeout)
        part = target.with_name(target.name + ".part")
        try:
            attempt = 0
            while True:
                try:
                    expected_size = _fetch_into(http, url, part, progress)
                    break
                except (httpx.TransportError, _CutShort) as exc:
                    attempt += 1
                    if attempt > retries:
                        raise MediaError(
                            f"downloading {url} failed {attempt} times ({exc}); the partial file "
                            f"{part} is kept, call download() again to resume."
                        ) from exc
        finally:
            if own_client:
                http.close()

        try:
            _verify(part, media_type, expected_size=expected_size, url=url)
        except MediaVerificationError:
            part.unlink(missing_ok=True)  # resuming would only append to garbage
            raise
        os.replace(part, target)
    return target


class _CutShort(Exception):
    """The server closed the body before Content-Length bytes: resume from what we have."""


def _fetch_into(
    http: httpx.Client, url: str, part: Path, progress: ProgressCallback | None
) -> int | None:
    """One HTTP attempt; returns the total size the server announced (or None)."""
    have = part.stat().st_size if part.exists() else 0
    # ``identity``: Content-Length must describe the bytes we store, not a gzip of them.
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = http.build_request("GET", url, headers=headers)
    request.headers.pop("Authorization", None)  # the relay's key stays with the relay
    response = http.send(request, stream=True)
    try:
        if response.status_code == 416 and have:
            # Nothing left to send: either the .part is complete or it is longer than the file.
            total = _content_range_total(response.headers.get("Content-Range"))
            if total == have:
                return total
            part.unlink()
            raise _CutShort("the partial file did not match the server's; restarting")
        if response.status_code >= 400:
            raise MediaError(
                f"{url} answered HTTP {response.status_code}; the link may have expired "
                "(fetch a fresh one with %sora resume TASK_ID)."
            )
        if response.status_code == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != have:
                raise MediaError(f"{url} sent bytes from {start} when asked for {have}.")
            total = _content_range_total(response.headers.get("Content-Range"))
            mode = "ab"
        else:  # 200: the server ignored Range, start over
            have = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode = "wb"
        done = have
        with part.open(mode) as handle:
            # No chunk_size: httpx would buffer up to it and lose that buffer when the link drops.
            for chunk in response.iter_raw():
                handle.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            handle.flush()
            os.fsync(handle.fileno())
        if total is not None and done < total:
            raise _CutShort(f"got {done} of {total} bytes")
        return total
    finally:
        response.close()


def _content_range_start(value: str | None) -> int | None:
    match = re.match(r"bytes\s+(\d+)-\d+/", value or "")
    return int(match.group(1)) if match else None


def _content_range_total(value: str | None) -> int | None:
    match = re.search(r"/(\d+)\s*$", value or "")
    return int(match.group(1)) if match else None


# ------------------------------------------------------------------------------ ffmpeg
def ffmpeg_exe() -> str:
    """The ffmpeg shipped inside the imageio-ffmpeg wheel (no system ffmpeg needed)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class ClipInfo:
    path: Path
    duration: float
    video_codec: str | None
    width: int | None
    height: int | None
    pix_fmt: str | None
    fps: float | None
    has_audio: bool


def probe(path: str | os.PathLike) -> ClipInfo:
    """Duration and stream facts of a clip, read from ``ffmpeg -i`` (the wheel has no ffprobe)."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path} does not exist")
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    text = result.stderr
    duration_match = re.search(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)", text)
    if not duration_match:
        raise MediaError(f"ffmpeg cannot read {path}: {text.strip().splitlines()[-1:]}")
    hours, minutes, seconds = duration_match.groups()
    duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    video = re.search(r"Stream #\S+.*?: Video: (\w+)[^,]*, (\w+)[^,]*?(?:\([^)]*\))?, (\d+)x(\d+)", text)
    fps_match = re.search(r"Stream #\S+.*?: Video: .*?, ([\d.]+) fps", text)
    return ClipInfo(
        path=path,
        duration=duration,
        video_codec=video.group(1) if video else None,
        pix_fmt=video.group(2) if video else None,
        width=int(video.group(3)) if video else None,
        height=int(video.group(4)) if video else None,
        fps=float(fps_match.group(1)) if fps_match else None,
        has_audio=bool(re.search(r"Stream #\S+.*?: Audio:", text)),
    )


def _run_ffmpeg(arguments: list[str], what: str) -> None:
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *arguments],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-8:])
        raise MediaError(f"ffmpeg could not {what}:\n{tail}")


def stitch(paths: Sequence[str | os.PathLike], out_path: str | os.PathLike) -> Path:
    """Concatenate clips into one film (H.264, yuv420p, ``+faststart`` so browsers stream it).

    Clips that share codec, size, pixel format, frame rate and audio layout are joined losslessly
    with the concat demuxer. Otherwise (a landscape clip in a portrait film, a veo3 clip after a
    sora one) everything is re-encoded through the concat filter, scaled and padded to the first
    clip's size; clips without sound get silence so the audio track stays in sync.
    """
    clips = [probe(p) for p in paths]
    if not clips:
        raise MediaError("stitch() needs at least one clip")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Render next to the destination and rename: a half-written film never has the final name.
    fd, temp_name = tempfile.mkstemp(prefix=".stitch-", suffix=out_path.suffix or ".mp4", dir=out_path.parent)
    os.close(fd)
    try:
        first = clips[0]
        uniform = all(
            (c.video_codec, c.width, c.height, c.pix_fmt, c.fps, c.has_audio)
            == ("h264", first.width, first.height, "yuv420p", first.fps, first.has_audio)
            for c in clips
        )
        if uniform:
            _concat_copy(clips, temp_name)
        else:
            _concat_reencode(clips, temp_name)
        os.replace(temp_name, out_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
    return out_path


def _concat_copy(clips: list[ClipInfo], output: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as listing:
        for clip in clips:
            escaped = str(clip.path.resolve()).replace("'", "'\\''")
            listing.write(f"file '{escaped}'\n")
    try:
        _run_ffmpeg(
            ["-f", "concat", "-safe", "0", "-i", listing.name, "-c", "copy",
             "-movflags", "+faststart", output],
            "join the clips",
        )
    finally:
        os.unlink(listing.name)


def _concat_reencode(clips: list[ClipInfo], output: str) -> None:
    first = clips[0]
    width = (first.width or 720) // 2 * 2  # yuv420p needs even sizes
    height = (first.height or 1280) // 2 * 2
    fps = first.fps or 30
    with_audio = any(c.has_audio for c in clips)

    inputs: list[str] = []
    for clip in clips:
        inputs += ["-i", str(clip.path)]
    filters: list[str] = []
    pads: list[str] = []
    silence_index = len(clips)
    for i, clip in enumerate(clips):
        filters.append(
            f"[{i}:v:0]scale={width}:{height}:force_original_aspect_ratio=decrease,"
            f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={fps},format=yuv420p[v{i}]"
        )
        pads.append(f"[v{i}]")
        if with_audio:
            if clip.has_audio:
                audio = f"[{i}:a:0]"
            else:
                inputs += ["-f", "lavfi", "-t", f"{clip.duration:.3f}",
                           "-i", "anullsrc=r=48000:cl=stereo"]
                audio = f"[{silence_index}:a:0]"
                silence_index += 1
            filters.append(f"{audio}aresample=48000,aformat=channel_layouts=stereo[a{i}]")
            pads.append(f"[a{i}]")
    audio_flag = 1 if with_audio else 0
    filters.append(f"{''.join(pads)}concat=n={len(clips)}:v=1:a={audio_flag}[v]{'[a]' if with_audio else ''}")
    maps = ["-map", "[v]"] + (["-map", "[a]", "-c:a", "aac", "-b:a", "128k"] if with_audio else [])
    _run_ffmpeg(
        [*inputs, "-filter_complex", ";".join(filters), *maps,
         "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
         "-movflags", "+faststart", output],
        "re-encode the clips into one film",
    )


def keep_copy(source: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    """Copy a local clip into ``dest_dir`` (``%%sora --save DIR``); atomic, skipped when identical."""
    import shutil

    source = Path(source)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / source.name
    if target.exists() and _sha256(target) == _sha256(source):
        return target
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=dest_dir)
    os.close(fd)
    try:
        shutil.copyfile(source, temp_name)
        os.replace(temp_name, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
