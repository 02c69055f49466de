"""Real, playable media for simulated generations, rendered by the ffmpeg of ``imageio-ffmpeg``.

Each clip is a short H.264 mp4 (yuv420p, ``+faststart``, so browsers play it while it downloads)
showing the prompt, the requested model/duration/orientation, the prompts it continues (smaller,
underneath) and a moving square so a player visibly advances. The clip is ~2 s whatever duration
was asked for: rendering stays cheap (about 0.1 s) while the text still says what was requested.
The thumbnail is a one-frame ``.webp`` encoded by ffmpeg's ``libwebp`` (checked present in the
imageio-ffmpeg build; if a build lacks it the thumbnail is encoded as PNG data under the same name
rather than failing, and browsers sniff it fine) — so Pillow is not a runtime dependency.

Files are named by a hash of what they show, so identical requests reuse the same files.
Text reaches ``drawtext`` through ``textfile=`` with ``expansion=none`` and ffmpeg runs inside the
media folder with relative names: no filter-graph escaping of user text or paths is needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import tempfile
import textwrap
import threading
from pathlib import Path

from ..media.film import find_font
from ..protocol.errors import KkiError
from ..store.atomic import replacing

SIZES = {"portrait": (320, 568), "landscape": (568, 320)}


class RenderError(KkiError, RuntimeError):
    """ffmpeg could not produce the media; the message carries the end of its stderr."""


@dataclasses.dataclass(frozen=True)
class ClipRequest:
    """What a clip shows. Everything here goes into the cache key."""

    prompt: str
    model: str
    orientation: str = "portrait"
    duration: int = 10
    chain: tuple[str, ...] = ()  # earlier prompts of the conversation, oldest first
    images: tuple[str, ...] = ()  # short descriptions of image inputs (digest or URL)
    # The n-th generation of the same request differs (a real model is stochastic): takes and
    # forced retries look different, while a first generation keeps its cached clip.
    variant: int = 0
    first_frame: str | None = None  # an input image kept in the media folder (first_frame.py)

    def key(self, clip_seconds: float) -> str:
        blob = json.dumps([dataclasses.asdict(self), clip_seconds], ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:30]


@dataclasses.dataclass(frozen=True)
class RenderedClip:
    video_name: str
    thumbnail_name: str
    cached: bool


def _colour(text: str, salt: str, *, bright: bool = False) -> str:
    digest = hashlib.sha256((salt + text).encode()).digest()
    # Backgrounds stay dark enough for white text; the moving square stays bright against them.
    low = 160 if bright else 40
    return "0x" + "".join(f"{low + byte % 96:02x}" for byte in digest[:3])


def _wrap(text: str, width: int, max_lines: int) -> list[str]:
    lines = textwrap.wrap(" ".join(text.split()), width=width) or [""]
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], textwrap.shorten(" ".join(lines[max_lines - 1 :]), width, placeholder="…")]
    return lines


def caption(request: ClipRequest, columns: int) -> tuple[str, str]:
    """The big text (header + prompt) and the small text (what the clip continues)."""
    header = f"{request.model} · {request.duration} s · {request.orientation}"
    if request.images:
        header += " · image-to-video"
    if request.variant:
        header += f" · variation {request.variant + 1}"
    big = "\n".join([header, "", *_wrap(request.prompt, columns, 9)])
    small_lines: list[str] = []
    if request.chain:
        small_lines.append(f"continues {len(request.chain)} earlier clip(s):")
        for index, earlier in enumerate(request.chain[-4:], start=max(1, len(request.chain) - 3)):
            small_lines += _wrap(f"{index}. {earlier}", int(columns * 1.5), 2)
    return big, "\n".join(small_lines)


class Renderer:
    """Renders :class:`ClipRequest` s into ``media_dir``; thread-safe, at most ``max_parallel``
    ffmpeg processes at once (rendering is CPU-bound; more would only slow every stream)."""

    def __init__(
        self,
        media_dir: str | os.PathLike[str],
        *,
        clip_seconds: float = 2.0,
        ffmpeg: str | None = None,
        font: str | None = "auto",
        max_parallel: int | None = None,
    ) -> None:
        if not clip_seconds > 0:
            raise ValueError(f"clip_seconds must be > 0, got {clip_seconds!r}")
        self.media_dir = Path(media_dir)
        self.media_dir.mkdir(parents=True, exist_ok=True)
        self.clip_seconds = float(clip_seconds)
        self._ffmpeg = ffmpeg
        self.font = find_font() if font == "auto" else font
        self._slots = threading.BoundedSemaphore(max_parallel or max(1, os.cpu_count() or 1))
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.renders = 0  # ffmpeg runs actually done (cache misses), for tests and benchmarks

    @property
    def ffmpeg(self) -> str:
        if self._ffmpeg is None:
            import imageio_ffmpeg

            self._ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
        return self._ffmpeg

    def render(self, request: ClipRequest) -> RenderedClip:
        if request.orientation not in SIZES:
            raise ValueError(f"orientation must be one of {sorted(SIZES)}, got {request.orientation!r}")
        key = request.key(self.clip_seconds)
        video, thumbnail = f"{key}.mp4", f"{key}.webp"
        with self._locks_guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if (self.media_dir / video).is_file() and (self.media_dir / thumbnail).is_file():
                return RenderedClip(video, thumbnail, cached=True)
            with self._slots:
                self._render_files(request, video, thumbnail)
            self.renders += 1
        return RenderedClip(video, thumbnail, cached=False)

    def _run(self, arguments: list[str], cwd: Path, timeout: float = 120) -> None:
        command = [self.ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *arguments]
        completed = subprocess.run(command, cwd=cwd, capture_output=True, timeout=timeout, check=False)
        if completed.returncode != 0:
            tail = completed.stderr.decode(errors="replace")[-600:]
            raise RenderError(f"ffmpeg exited with {completed.returncode}: {tail}")

    def _still(self, name: str, workdir: Path, width: int, height: int) -> bool:
        """The input image decoded once, at the clip's size, as ``still.png``; False when it
        does not decode (a header with garbage behind it): the clip then starts as usual."""
        try:
            self._run(["-i", f"../{name}", "-frames:v", "1", "-vf", f"scale={width}:{height}",
                       "-f", "image2", "-c:v", "png", "still.png"], workdir, timeout=20)  # fmt: skip
        except (RenderError, subprocess.TimeoutExpired):
            return False
        return (workdir / "still.png").is_file()

    def _render_files(self, request: ClipRequest, video: str, thumbnail: str) -> None:
        # Temporary names live in the media folder (same filesystem, so each rename is atomic);
        # ffmpeg runs in a scratch folder inside it and names them relatively (../name).
        with (
            replacing(self.media_dir / video, prefix=".render-", suffix=".mp4") as clip,
            replacing(self.media_dir / thumbnail, prefix=".render-", suffix=".webp") as thumb,
            tempfile.TemporaryDirectory(dir=self.media_dir, prefix=".render-") as work,
        ):
            clip, thumb = f"../{Path(clip).name}", f"../{Path(thumb).name}"
            self._encode_clip(request, Path(work), clip)
            try:
                self._run(["-ss", "0.5", "-i", clip, "-frames:v", "1", "-c:v", "libwebp", thumb], Path(work))
            except RenderError:
                # A build without libwebp: PNG data under the .webp name beats no thumbnail.
                self._run(["-ss", "0.5", "-i", clip, "-frames:v", "1", "-f", "image2", "-c:v", "png", thumb], Path(work))

    def _encode_clip(self, request: ClipRequest, workdir: Path, output: str) -> None:
        width, height = SIZES[request.orientation]
        seconds = f"{self.clip_seconds:g}"
        background = _colour(request.prompt, f"background{request.variant or ''}")
        accent = _colour(" ".join(request.chain) or request.prompt, "accent", bright=True)
        # The moving square: crosses the frame once per second so currentTime visibly advances.
        graph = (
            f"[0:v][1:v]overlay=x='mod(t*{width},W-w)':y='H-h-24'"
            if request.orientation == "portrait"
            else f"[0:v][1:v]overlay=x='mod(t*{width},W-w)':y='H-h-16'"
        )
        if self.font:
            graph += self._captions(request, workdir, width)
        still = []
        if request.first_frame and self._still(request.first_frame, workdir, width, height):
            # Image-to-video: the clip opens on the given image, which then fades into the
            # scene, so a shot continued from a frame visibly starts from that frame.
            graph += (
                "[scene];[2:v]setsar=1,format=yuva420p,fade=t=out:st=0.3:d=0.6:alpha=1[still];"
                "[scene][still]overlay=eof_action=pass"
            )
            still = ["-loop", "1", "-t", seconds, "-i", "still.png"]
        graph += "[out]"
        self._run(
            [
                "-f", "lavfi", "-i", f"color=c={background}:s={width}x{height}:d={seconds}:r=24",
                "-f", "lavfi", "-i", f"color=c={accent}:s=28x28:d={seconds}:r=24", *still,
                "-filter_complex", graph, "-map", "[out]", "-t", seconds,
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                "-movflags", "+faststart", output,
            ],
            workdir,
        )  # fmt: skip

    def _captions(self, request: ClipRequest, workdir: Path, width: int) -> str:
        """The drawtext part of the graph; the text itself goes to files it reads."""
        big_size = 17 if request.orientation == "portrait" else 19
        columns = int((width - 32) / (big_size * 0.58))
        big, small = caption(request, columns)
        (workdir / "big.txt").write_text(big, encoding="utf-8")
        (workdir / "small.txt").write_text(small or " ", encoding="utf-8")
        small_y = 40 + (big.count("\n") + 2) * (big_size + 6)
        return (
            f"[moving];[moving]drawtext=fontfile={self.font}:textfile=big.txt:expansion=none"
            f":fontsize={big_size}:fontcolor=white:line_spacing=6:x=16:y=40"
            f":box=1:boxcolor=black@0.25:boxborderw=6,"
            f"drawtext=fontfile={self.font}:textfile=small.txt:expansion=none"
            f":fontsize=11:fontcolor=white@0.8:line_spacing=4:x=16:y={small_y}"
        )
