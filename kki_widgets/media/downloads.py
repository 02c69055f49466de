"""Keep the generated videos next to the notebook: resumable, verified downloads and stitching.

Relay CDNs expire their links within hours to days, so a film a notebook shows must live on disk.
Downloads are written to ``<name>.part`` and renamed into place only once verified, so a file
with the final name is always complete; an interrupted download resumes with an HTTP ``Range``
request instead of paying the bandwidth twice.

Media URLs come from the relay's answer and media hosts are third parties, so a download is a
hostile-input boundary: names that cannot collide, no writing through links, a type check, a
size cap, a deadline, an address policy on every hop, no key, and errors that never quote the
bytes that came back (see "Threat model: disk and media" in docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import httpcore
import httpx
from filelock import FileLock

from ..net.addresses import (
    AddressPolicy,
    AddressRefused,
    GuardedBackend,
    environment_proxy,
    resolve,
)
from ..net.http_transport import PoolTransport, shared_ssl_context
from ..protocol.errors import KkiError
from ..protocol.sniff import sniff
from ..store.atomic import replacing

__all__ = [
    "ClipInfo",
    "MediaError",
    "MediaRefusedError",
    "MediaVerificationError",
    "download",
    "ffmpeg_exe",
    "keep_copy",
    "kept_file",
    "probe",
    "stitch",
]

ProgressCallback = Callable[[int, "int | None"], None]

# Generous for a video (a 20 s 1080p clip is ~10-40 MB), small enough that a hostile host cannot
# fill the disk. Override with download(max_bytes=...) or the environment.
DEFAULT_MAX_BYTES = 1 << 30
MAX_BYTES_ENV = "KKI_MEDIA_MAX_BYTES"
DEFAULT_DEADLINE_SECONDS = 900.0
MAX_REDIRECTS = 10

# type -> (suffix, family). The family is what a caller may ask for ("video", "image").
_TYPES = {
    "mp4": (".mp4", "video"),
    "mov": (".mov", "video"),
    "webm": (".webm", "video"),
    "webp": (".webp", "image"),
    "png": (".png", "image"),
    "jpeg": (".jpg", "image"),
    "gif": (".gif", "image"),
}
_SUFFIX_TYPES = {".mp4": "mp4", ".mov": "mov", ".webm": "webm", ".webp": "webp", ".png": "png",
                 ".jpg": "jpeg", ".jpeg": "jpeg", ".gif": "gif"}


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


def kept_file(path: str | os.PathLike | None, media_dir: str | os.PathLike | None) -> Path | None:
    """``path`` if it is a plain file inside ``media_dir``, else None.

    Paths come back from the store, which sits in the notebook's folder and may have been edited
    or shared: a path outside the media folder (``/etc/passwd``, ``notes/.env``) or a symbolic
    link must be neither played, linked nor copied.
    """
    if not path or not media_dir:
        return None
    try:
        candidate = Path(path)
        if candidate.is_symlink() or not candidate.is_file():
            return None
        if candidate.resolve().parent != Path(media_dir).resolve():
            return None
        # Even inside the folder (itself perhaps a link to somewhere private), only media count.
        if _SUFFIX_TYPES.get(candidate.suffix.lower()) is None:
            return None
        fd = os.open(candidate, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            if sniff(handle.read(64)) is None:
                return None
    except (OSError, ValueError):
        return None
    return candidate


class MediaError(KkiError, RuntimeError):
    """A download or an ffmpeg run failed; the message says what to do. A `KkiError`, so one
    ``except KkiError`` catches media failures too; still a RuntimeError for older callers."""


class MediaVerificationError(MediaError):
    """The downloaded bytes are not the expected media (empty, truncated, wrong format, too big)."""


class MediaRefusedError(MediaError):
    """The media URL points where downloads may not go (see `kki_widgets.net.addresses`)."""


# ------------------------------------------------------------------------------ verification
def _allowed_types(url: str, expected_type: str | None) -> tuple[str, ...]:
    """What the file may be: the asked type or family, else the URL's suffix, else any media."""
    wanted = (expected_type or "").lower().lstrip(".")
    if wanted in ("video", "image"):
        return tuple(t for t, (_, family) in _TYPES.items() if family == wanted)
    if wanted:
        wanted = _SUFFIX_TYPES.get(f".{wanted}", wanted)
        if wanted not in _TYPES:
            raise ValueError(f"expected_type={expected_type!r}: use one of video, image, {', '.join(_TYPES)}")
        return ("mp4", "mov") if wanted in ("mp4", "mov") else (wanted,)
    from_url = _SUFFIX_TYPES.get(Path(urlsplit(url).path).suffix.lower())
    if from_url:
        return ("mp4", "mov") if from_url in ("mp4", "mov") else (from_url,)
    return tuple(_TYPES)


def _verify(path: Path, allowed: tuple[str, ...], *, expected_size: int | None, url: str) -> str:
    """The file's media type, or `MediaVerificationError` (never quoting the bytes: untrusted)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        head = handle.read(64 * 1024)
    if size == 0:
        raise MediaVerificationError(f"{url} returned an empty file; the link may have expired.")
    if expected_size is not None and size != expected_size:
        raise MediaVerificationError(
            f"{url}: got {size} bytes but the server announced {expected_size}; the transfer was "
            "cut. Call download() again to resume."
        )
    found = sniff(head)
    if found not in allowed:
        what = " or ".join(sorted({_TYPES[t][0].lstrip('.') for t in allowed}))
        seen = f"a {found} file" if found else "no known video or image format"
        raise MediaVerificationError(
            f"{url} is not {what} (its bytes are {seen}). The link probably points to an error "
            "page or has expired: open it in a browser, or fetch a fresh link with "
            "%sora resume TASK_ID."
        )
    return found


# ------------------------------------------------------------------------------ naming
def _base_name(url: str, key: str | None) -> str:
    """A file name (without suffix) unique to ``key`` (a task ID) or to the whole URL.

    Two tasks whose links end in the same ``video.mp4`` must never share a file, so the name
    carries a hash of everything that identifies the clip; the readable part is for people.
    """
    source = key if key else url
    readable = key if key else Path(unquote(urlsplit(url).path)).stem
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", readable).strip("_")[:48]
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]
    return f"{safe}-{digest}" if safe else digest


def _private_lock(target: Path) -> FileLock:
    """A lock for one download, kept out of the media folder (which travels with the notebook).

    It lives in a per-user folder of the temp directory that only this account can write, so a
    planted link there cannot redirect it either.
    """
    uid = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    folder = Path(tempfile.gettempdir()) / f"kki_widgets-{uid}-locks"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
        raise MediaError(f"{folder} is not a private folder of this account; remove it and retry.")
    name = hashlib.sha256(str(target.resolve()).encode("utf-8")).hexdigest()[:32]
    return FileLock(str(folder / f"{name}.lock"), timeout=600)


def _refuse_link(path: Path) -> None:
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise MediaError(
            f"refusing to write through {path}: it is a symbolic link or not a plain file (it may "
            "have come with a copied folder). Delete it and run again."
        )


def _existing(dest_dir: Path, base: str, allowed: tuple[str, ...], url: str) -> Path | None:
    """A verified earlier download of this clip; a bad file or link there is removed."""
    for media_type in allowed:
        candidate = dest_dir / f"{base}{_TYPES[media_type][0]}"
        if candidate.is_symlink():
            candidate.unlink()  # the link, never its target
        elif candidate.exists():
            with contextlib.suppress(MediaVerificationError, OSError):
                _verify(candidate, allowed, expected_size=None, url=url)
                return candidate
            candidate.unlink()  # a bad file must not shadow the real one forever
    return None


# ------------------------------------------------------------------------------ download
@dataclass
class _Limits:
    max_bytes: int
    deadline: float
    ends_at: float

    def check_time(self, url: str) -> None:
        if time.monotonic() > self.ends_at:
            raise MediaError(
                f"downloading {url} did not finish within {round(self.deadline, 1):g} s; the host is too "
                "slow. Try again later or pass a longer download(deadline=...)."
            )

    def check_size(self, size: int, url: str, announced: bool) -> None:
        if size > self.max_bytes:
            how = "announces" if announced else "sent more than"
            raise MediaVerificationError(
                f"{url} {how} {size} bytes, over the {self.max_bytes}-byte cap for media. If you "
                f"trust it, raise the cap with {MAX_BYTES_ENV}=<bytes> or download(max_bytes=...)."
            )


def _limits(max_bytes: int | None, deadline: float | None) -> _Limits:
    if max_bytes is None:
        configured = os.environ.get(MAX_BYTES_ENV, "").strip()
        if configured and not configured.isdigit():
            raise ValueError(f"{MAX_BYTES_ENV}={configured!r}: give a number of bytes")
        max_bytes = int(configured) if configured else DEFAULT_MAX_BYTES
    deadline = DEFAULT_DEADLINE_SECONDS if deadline is None else deadline
    return _Limits(max_bytes, deadline, time.monotonic() + deadline)


def download(
    url: str,
    dest_dir: str | os.PathLike,
    *,
    client: httpx.Client | None = None,
    progress: ProgressCallback | None = None,
    expected_type: str | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    relay_url: str | None = None,
    allow: Sequence[str] = (),
    max_bytes: int | None = None,
    deadline: float | None = None,
    key: str | None = None,
) -> Path:
    """Download ``url`` into ``dest_dir`` and return the verified file's path.

    The URL comes from a relay's answer, so it is treated as hostile input:

    - The file name is derived from ``key`` (pass the task ID) or from the whole URL, never from
      its basename alone; an earlier valid copy under that name is returned without a request.
    - The address policy of `kki_widgets.net.addresses` applies to every redirect hop, after DNS:
      ``relay_url`` (the configured base URL) decides whether loopback/private hosts are fine,
      ``allow`` (or ``KKI_MEDIA_ALLOW``) widens it.
    - Bytes stream into ``<name>.part``, opened without following links; a leftover ``.part``
      is resumed with ``Range`` (appended on 206, restarted on 200); a connection cut is resumed
      up to ``retries`` times and then kept for the next call. Any other failure removes it.
    - At most ``max_bytes`` (default 1 GiB, ``KKI_MEDIA_MAX_BYTES``), checked from
      ``Content-Length`` and while streaming; all of it within ``deadline`` seconds (900).
    - Verified before the rename: non-empty, as long as announced, magic bytes of
      ``expected_type`` ("video", "image", "mp4", ...), else of the URL's suffix, else of any
      supported media; the kept file's suffix follows its real type.
    - ``client``: an ``httpx.Client`` to reuse (none of its headers reach the media host);
      without one, every connection is also checked at connect time.
    """
    if urlsplit(url).scheme not in ("http", "https"):
        raise MediaRefusedError(f"refused to download {url!r}: only http(s) media links are fetched.")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    allowed = _allowed_types(url, expected_type)
    base = _base_name(url, key)
    policy = AddressPolicy.for_relay(relay_url, allow)
    limits = _limits(max_bytes, deadline)
    with _private_lock(dest_dir / base):
        existing = _existing(dest_dir, base, allowed, url)
        if existing is not None:
            return existing
        return _fetch_and_keep(url, dest_dir, base, allowed, client, policy, limits, progress,
                               retries=retries, timeout=timeout)  # fmt: skip


def _fetch_and_keep(url, dest_dir: Path, base: str, allowed, client, policy, limits, progress, *,
                    retries: int, timeout: float) -> Path:  # fmt: skip
    """Fetch into ``<base>.part`` (resumable, so not `atomic.replacing`), verify it, and rename it
    to ``<base><suffix of its real type>``; a cut transfer that gave up keeps the part."""
    part = dest_dir / f"{base}.part"
    _refuse_link(part)
    try:
        expected_size = _fetch_with_retries(url, part, client, policy, limits, progress,
                                            retries=retries, timeout=timeout)
        found = _verify(part, allowed, expected_size=expected_size, url=url)
    except _KeepPart as kept:
        raise kept.error from kept.error.__cause__
    except BaseException:
        part.unlink(missing_ok=True)  # nothing to resume: do not leave the bytes behind
        raise
    target = dest_dir / f"{base}{_TYPES[found][0]}"
    os.replace(part, target)  # replaces a planted link itself, never its target
    return target


class _CutShort(Exception):
    """The server closed the body before Content-Length bytes: resume from what we have."""


class _KeepPart(Exception):
    """Wraps the error of a cut transfer that gave up: the ``.part`` stays to be resumed."""

    def __init__(self, error: MediaError):
        super().__init__(str(error))
        self.error = error


def _fetch_with_retries(url, part, client, policy, limits, progress, *, retries, timeout):
    own_client = client is None
    http = client or _Routes(policy, timeout)
    try:
        attempt = 0
        while True:
            limits.check_time(url)
            try:
                return _fetch_into(http, url, part, progress, policy, limits, timeout)
            except (httpx.TransportError, _CutShort) as exc:
                attempt += 1
                if attempt > retries:
                    error = MediaError(f"downloading {url} failed {attempt} times ({exc}); {_what_is_left(part)}")
                    error.__cause__ = exc
                    raise _KeepPart(error) from exc
    except AddressRefused as refused:
        raise MediaRefusedError(str(refused)) from None
    finally:
        if own_client:
            http.close()


def _what_is_left(part: Path) -> str:
    """The end of a gave-up message, true to the disk: a transfer cut before its first body byte
    (headers too large, connection refused) leaves no partial file to resume."""
    if part.is_file() and part.stat().st_size > 0:
        return f"the partial file {part} is kept, call download() again to resume."
    return "nothing was saved; call download() again to retry."


class _Routes:
    """The package's own media client: direct connections are checked at connect time (see
    `GuardedBackend`); a URL the environment sends through a proxy (as the relay client does)
    goes through it, its host judged by `AddressPolicy.check_through_proxy` before the request.
    Users behind a proxy (a company's, a local Clash) would otherwise keep no copy at all."""

    def __init__(self, policy: AddressPolicy, timeout: float):
        self.direct = _guarded_client(policy, timeout)
        self.timeout = timeout
        self._proxied: dict[str, httpx.Client] = {}

    def send(self, request: httpx.Request, **options) -> httpx.Response:
        proxy = environment_proxy(str(request.url))
        if proxy is None:
            return self.direct.send(request, **options)
        if proxy not in self._proxied:
            self._proxied[proxy] = httpx.Client(
                proxy=proxy, timeout=self.timeout, trust_env=False, follow_redirects=False
            )
        return self._proxied[proxy].send(request, **options)

    def close(self) -> None:
        for client in (self.direct, *self._proxied.values()):
            client.close()


def _guarded_client(policy: AddressPolicy, timeout: float) -> httpx.Client:
    """A client that checks the address of every connection it opens (see `GuardedBackend`;
    httpx takes no network backend, so its transport is `http_transport`'s, around our pool).

    Its transport ignores the environment's proxies: `_Routes` sends proxied URLs elsewhere.
    """
    transport = PoolTransport(httpcore.ConnectionPool(
        ssl_context=shared_ssl_context(), network_backend=GuardedBackend(policy)
    ))  # fmt: skip
    return httpx.Client(transport=transport, timeout=timeout, trust_env=False, follow_redirects=False)


def _open_response(http, url, headers, policy, limits, timeout) -> httpx.Response:
    """Send a GET, following redirects by hand so every hop passes the address policy."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MediaRefusedError(f"refused to follow a redirect to {url!r}: only http(s) links.")
        _check_host(http, url, parts, policy)
        # A bare request: no client default headers (the relay's key) reach a media host.
        request = httpx.Request("GET", url, headers=headers)
        remaining = max(0.1, limits.ends_at - time.monotonic())
        request.extensions["timeout"] = httpx.Timeout(min(timeout, remaining)).as_dict()
        try:
            response = http.send(request, stream=True, follow_redirects=False)
        except (httpx.RemoteProtocolError, httpx.InvalidURL) as error:
            if "location" not in str(error).lower():
                raise
            raise MediaError(f"{parts.hostname} answered with a redirect whose Location header is not "
                             "a valid address; it was not followed.") from None
        location = response.headers.get("Location")
        if not (response.is_redirect and location):
            return response
        response.close()
        try:
            url = str(httpx.URL(url).join(location))
        except httpx.InvalidURL:
            host = urlsplit(url).hostname
            raise MediaError(f"{host} answered with a redirect whose Location header is not a valid "
                             "address; it was not followed.") from None
    raise MediaError(f"{url} redirected more than {MAX_REDIRECTS} times; giving up.")


def _check_host(http, url: str, parts, policy: AddressPolicy) -> None:
    """The address policy for one hop, before anything is sent to it."""
    if isinstance(http, _Routes) and environment_proxy(url) is not None:
        policy.check_through_proxy(parts.hostname)
        return
    try:
        addresses = resolve(parts.hostname, parts.port or 80)
    except OSError as error:  # DNS hiccup: retried like any connection failure
        raise httpx.ConnectError(str(error)) from None
    policy.check(parts.hostname, addresses)


def _fetch_into(http, url, part: Path, progress, policy, limits, timeout) -> int | None:
    """One HTTP attempt; returns the total size the server announced (or None)."""
    have = part.lstat().st_size if part.exists() else 0
    # ``identity``: Content-Length must describe the bytes we store, not a gzip of them.
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    response = _open_response(http, url, headers, policy, limits, timeout)
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
        else:  # 200: the server ignored Range, start over
            have = 0
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
        if total is not None:
            limits.check_size(total, url, announced=True)
        done = _stream_to_part(response, part, have, total, progress, limits, url)
        if total is not None and done < total:
            raise _CutShort(f"got {done} of {total} bytes")
        return total
    finally:
        response.close()


def _stream_to_part(response, part: Path, have: int, total, progress, limits, url) -> int:
    # O_NOFOLLOW: a `.part` swapped for a link after the check is refused, not written through.
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_APPEND if have else os.O_TRUNC
    try:
        fd = os.open(part, flags, 0o666)
    except OSError as error:
        raise MediaError(f"cannot write {part} ({error.strerror}); is it a link? Delete it.") from None
    done = have
    with os.fdopen(fd, "wb") as handle:
        # No chunk_size: httpx would buffer up to it and lose that buffer when the link drops.
        for chunk in response.iter_raw():
            done += len(chunk)
            limits.check_size(done, url, announced=False)
            limits.check_time(url)
            handle.write(chunk)
            if progress is not None:
                progress(done, total)
        handle.flush()
        os.fsync(handle.fileno())
    return done


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
    with replacing(out_path, prefix=".stitch-", suffix=out_path.suffix or ".mp4") as temp_name:
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
    if source.is_symlink() or not source.is_file():
        raise MediaError(f"{source} is not a plain file (a link?); nothing was copied.")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / source.name
    if target.exists() and _sha256(target) == _sha256(source):
        return target
    with replacing(target, prefix=f".{target.name}.", suffix=".part") as temp_name:
        shutil.copyfile(source, temp_name)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
