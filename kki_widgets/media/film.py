"""From clips to a film: the exact last frame of a clip, and the cut.

Continuity without remix: a relay or model that cannot remix (veo-family models, image-to-video
relays) still continues a shot when it is given the previous clip's *last* frame as the image of
the next request. The frame is decoded to the end of the clip (a thumbnail or keyframe is not the
last frame, and the seam shows), saved as a PNG next to the clip, and reused on reruns: the same
clip gives the same bytes, so the next request — and its cache key — is the same.

The cut (`make_film`) is one ffmpeg filter graph: every clip normalised to one size and frame
rate (scaled and letterboxed, never stretched), optional title cards, crossfades (``xfade`` and
``acrossfade``, so the film is the sum of the shots minus the overlaps), silence for clips without
sound when any clip has it, and captions as an ``.srt`` next to the film (or burned in). ffmpeg
runs with ``-progress`` and the caller gets the fraction done while it works.

Text never goes into the filter graph: titles reach ``drawtext`` through ``textfile=`` with
``expansion=none`` and captions through a ``.srt`` file, both under relative names in ffmpeg's
working folder, so no escaping of user (or relay) text is needed.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import tempfile
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..store.atomic import replacing
from .downloads import ClipInfo, MediaError, ffmpeg_exe, probe

__all__ = ["Film", "find_font", "fit_title", "last_frame", "libass_text", "make_film", "srt_text"]

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/local/share/fonts/DejaVuSans.ttf",
    "/Library/Fonts/DejaVuSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:/Windows/Fonts/arial.ttf",
)
# Characters that are safe inside an unquoted filter-graph option value.
_SAFE_FILTER_PATH = re.compile(r"^[\w/.\-]+$")
TRANSITIONS = ("crossfade", "cut")
Progress = Callable[[float], None]


def find_font() -> str | None:
    """A TrueType font ``drawtext`` can use, or ``None`` (then cards carry colour but no text)."""
    for candidate in FONT_CANDIDATES:
        if Path(candidate).is_file() and _SAFE_FILTER_PATH.match(candidate):
            return candidate
    return None


# ------------------------------------------------------------------------------ last frame
def last_frame(clip: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """The clip's last decoded frame as a PNG (default: ``frames/<clip stem>-last.png`` beside it).

    ``-sseof`` only chooses where decoding starts (a second before the end, or the keyframe
    before that); every frame from there to the end is decoded and the last one written
    (``-update 1``), so the result is the true last frame whatever the keyframe layout.
    An existing PNG newer than the clip is reused.
    """
    clip = Path(clip).absolute()  # ffmpeg runs in a work folder: a relative path would miss
    if not clip.is_file():
        raise MediaError(f"{clip} does not exist: keep the parent clip (media_dir) to continue from its last frame")
    target = Path(out) if out else clip.parent / "frames" / f"{clip.stem}-last.png"
    if target.is_file() and target.stat().st_mtime >= clip.stat().st_mtime:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        replacing(target, prefix=".frame-", suffix=".png") as png,
        tempfile.TemporaryDirectory(prefix=".frame-", dir=target.parent) as work,
    ):
        # Each decoded frame overwrites last.bmp (BMP: no compression work per frame); only the
        # survivor is converted to PNG. A clip shorter than its header says: decode it all.
        for seek in (["-sseof", "-1"], []):
            _ffmpeg([*seek, "-i", str(clip), "-map", "0:v:0", "-an", "-update", "1",
                     "-f", "image2", "-c:v", "bmp", "last.bmp"], "read the clip's last frame",
                    cwd=work, check=False)  # fmt: skip
            if (Path(work) / "last.bmp").is_file():
                break
        else:
            raise MediaError(f"ffmpeg found no video frame in {clip}: is it a video file?")
        # `-update 1`: the (absolute) name is a name, never an image2 pattern such as `%d`.
        _ffmpeg(["-i", "last.bmp", "-f", "image2", "-update", "1", "-c:v", "png", "-pix_fmt", "rgb24",
                 str(Path(png).absolute())], "save the last frame", cwd=work)  # fmt: skip
    return target


def _ffmpeg(arguments: list[str], what: str, *, cwd=None, check: bool = True) -> None:
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *arguments],
        capture_output=True, text=True, errors="replace", cwd=cwd, check=False,
    )  # fmt: skip
    if check and result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-8:])
        raise MediaError(f"ffmpeg could not {what}:\n{tail}")


# ------------------------------------------------------------------------------ the cut
@dataclass(frozen=True)
class Film:
    """A rendered cut: the mp4, its captions file, and where each shot shows."""

    path: Path
    srt_path: Path | None
    duration: float  # what the graph makes: sum of the segments minus the crossfades
    shot_times: tuple[tuple[float, float], ...]  # (start, end) of each clip in the film

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        captions = f", captions {self.srt_path.name}" if self.srt_path else ""
        return f"<Film {self.path.name}: {self.duration:.1f} s, {len(self.shot_times)} shots{captions}>"

    def _repr_html_(self) -> str:
        import html

        from .downloads import relative_media_url

        # Relative to the notebook (a saved notebook carries no path of this machine).
        src = relative_media_url(self.path)
        title = html.escape(repr(self))
        if not src:
            return f"<div>{title}</div>"
        return (f'<div><video controls preload="metadata" style="max-width:100%;max-height:480px" '
                f'src="{html.escape(src, quote=True)}"></video><div><small>{title}</small></div></div>')  # fmt: skip


@dataclass(frozen=True)
class _Segment:
    duration: float
    clip: ClipInfo | None = None  # None: a title card
    title: str | None = None
    caption: str | None = None
    font_size: int = 0  # a title card's, chosen so its wrapped lines fit the frame


def _segments(clips: list[ClipInfo], captions, titles, title_seconds: float) -> list[_Segment]:
    cards = _title_cards(titles, len(clips))
    segments: list[_Segment] = []
    for index, clip in enumerate(clips):
        if cards.get(index):
            segments.append(_Segment(title_seconds, title=cards[index]))
        caption = captions[index] if captions else None
        segments.append(_Segment(clip.duration, clip=clip, caption=caption))
    return segments


def _title_cards(titles, count: int) -> dict[int, str]:
    """``"text"``: an opening card; a list: a card before each shot (None skips); a dict by shot."""
    if titles is None:
        return {}
    if isinstance(titles, str):
        return {0: titles} if titles.strip() else {}
    if isinstance(titles, Mapping):
        cards = dict(titles)
    elif isinstance(titles, Sequence):
        if len(titles) > count:
            raise MediaError(f"{len(titles)} titles for {count} shots: give at most one per shot")
        cards = dict(enumerate(titles))
    else:
        raise MediaError("titles must be a string, a list (one per shot) or a dict {shot: text}")
    bad = [key for key in cards if not isinstance(key, int) or not 0 <= key < count]
    if bad:
        raise MediaError(f"title card positions {bad} are not shots 0..{count - 1}")
    return {key: str(text) for key, text in cards.items() if text and str(text).strip()}


def _layout(segments: list[_Segment], fade: float) -> tuple[list[float], float]:
    """Start time of each segment in the film, and the film's length."""
    starts, clock = [], 0.0
    for index, segment in enumerate(segments):
        clock -= fade if index else 0.0
        starts.append(clock)
        clock += segment.duration
    return starts, clock


def _shot_times(segments: list[_Segment], starts: list[float], fade: float) -> list[tuple[float, float]]:
    # A caption changes halfway through a crossfade, so neighbouring captions never overlap.
    last = len(segments) - 1
    times = []
    for index, (segment, start) in enumerate(zip(segments, starts, strict=True)):
        if segment.clip is not None:
            begin = start + (fade / 2 if index else 0.0)
            end = start + segment.duration - (fade / 2 if index < last else 0.0)
            times.append((round(begin, 3), round(end, 3)))
    return times


def srt_text(captions: Sequence[str | None], times: Sequence[tuple[float, float]]) -> str:
    """SubRip text: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, blank line between cues."""

    def stamp(seconds: float) -> str:
        millis = round(max(0.0, seconds) * 1000)
        hours, millis = divmod(millis, 3_600_000)
        minutes, millis = divmod(millis, 60_000)
        secs, millis = divmod(millis, 1000)
        return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"

    cues = []
    for caption, (begin, end) in zip(captions, times, strict=True):
        text = " ".join((caption or "").split())  # a blank line would end the cue early
        if text:
            cues.append(f"{len(cues) + 1}\n{stamp(begin)} --> {stamp(end)}\n{text}\n")
    return "\n".join(cues)


# libass (the `subtitles` filter) reads "{…}" in a cue as a styling block and hides it, and a
# backslash before N, n or h as a line break or space: a burned caption must show what was
# written. libass reads a backslash before a brace as the plain brace; a word joiner (invisible)
# after a backslash keeps it a backslash, and one after "{" keeps ffmpeg's SRT reader from taking
# "{\\…}" for a tag block and dropping it before libass sees it.
_LIBASS_ESCAPES = str.maketrans({"\\": "\\\u2060", "{": "\\{\u2060", "}": "\\}"})


def libass_text(cues: str) -> str:
    """SubRip text as libass must read it to draw every character as written (only for burning:
    the ``.srt`` next to the film stays plain, players other than libass show it verbatim)."""
    return cues.translate(_LIBASS_ESCAPES)


# A title card's text: DejaVu Sans averages ~0.6 em per character; lines keep a 5 % margin.
_CHAR_EM = 0.6
_TITLE_LINES_MAX = 6


def fit_title(text: str, size: tuple[int, int]) -> tuple[str, int]:
    """The title wrapped to the frame's width, and the font size that fits its lines in the frame.

    The size starts at a fourteenth of the height (as a one-line card always had) and shrinks,
    down to 14 px, while the wrapped text is wider or taller than 90 % of the frame."""
    width, height = size
    paragraphs = [" ".join(line.split()) for line in text.splitlines()] or [""]
    font_size = max(14, height // 14)
    while True:
        per_line = max(4, int(width * 0.9 / (font_size * _CHAR_EM)))
        lines = [wrapped for p in paragraphs for wrapped in (textwrap.wrap(p, per_line) or [""])]
        tall = len(lines) * (font_size + 8) > height * 0.9 or len(lines) > _TITLE_LINES_MAX
        if not tall or font_size <= 14:
            return "\n".join(lines), font_size
        font_size = max(14, int(font_size * 0.85))


def _video_chain(index: int, segment: _Segment, size: tuple[int, int], fps: float, font) -> str:
    width, height = size
    if segment.clip is None:
        text = (
            f",drawtext=fontfile={font}:textfile=title{index}.txt:expansion=none:fontsize={segment.font_size or max(14, height // 14)}"
            ":fontcolor=white:line_spacing=8:x=(w-text_w)/2:y=(h-text_h)/2"
            if font
            else ""
        )
        return f"color=c=0x111111:s={width}x{height}:r={fps:g}:d={segment.duration:.3f}{text},setsar=1,format=yuv420p[v{index}]"
    return (
        f"[{index}:v:0]scale={width}:{height}:force_original_aspect_ratio=decrease,"
        f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={fps:g},format=yuv420p,"
        f"trim=duration={segment.duration:.3f},setpts=PTS-STARTPTS[v{index}]"
    )


def _audio_chain(index: int, segment: _Segment) -> str:
    # Every segment gets exactly its own length of sound, so the audio crossfades line up with
    # the video ones; clips without sound (and title cards) get silence.
    source = (
        f"[{index}:a:0]" if segment.clip is not None and segment.clip.has_audio
        else "anullsrc=r=48000:cl=stereo,"
    )
    return (
        f"{source}aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo,"
        f"apad,atrim=duration={segment.duration:.3f},asetpts=PTS-STARTPTS[a{index}]"
    )


def _graph(segments, size, fps, fade, with_audio, font, burn: bool) -> str:
    filters = [_video_chain(i, s, size, fps, font) for i, s in enumerate(segments)]
    if with_audio:
        filters += [_audio_chain(i, s) for i, s in enumerate(segments)]
    count = len(segments)
    if fade > 0 and count > 1:
        video, audio, clock = "[v0]", "[a0]", segments[0].duration
        for i in range(1, count):
            filters.append(f"{video}[v{i}]xfade=transition=fade:duration={fade:.3f}:offset={clock - fade:.3f}[xv{i}]")
            video = f"[xv{i}]"
            if with_audio:
                filters.append(f"{audio}[a{i}]acrossfade=d={fade:.3f}[xa{i}]")
                audio = f"[xa{i}]"
            clock += segments[i].duration - fade
        filters.append(f"{video}null[vcut]")
        if with_audio:
            filters.append(f"{audio}anull[acut]")
    else:
        pads = "".join(f"[v{i}]" + (f"[a{i}]" if with_audio else "") for i in range(count))
        filters.append(f"{pads}concat=n={count}:v=1:a={int(with_audio)}[vcut]" + ("[acut]" if with_audio else ""))
    fonts = f":fontsdir={Path(font).parent}" if font else ""
    filters.append("[vcut]subtitles=captions.srt" + fonts + "[vout]" if burn else "[vcut]null[vout]")
    return ";".join(filters)


def _inputs(segments: list[_Segment]) -> list[str]:
    arguments: list[str] = []
    for segment in segments:
        if segment.clip is not None:
            arguments += ["-i", str(segment.clip.path.resolve())]
        else:  # a placeholder input keeps input numbers equal to segment numbers
            arguments += ["-f", "lavfi", "-i", "nullsrc=s=16x16:d=0.04"]
    return arguments


def make_film(
    clips: Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    *,
    captions: Sequence[str | None] | None = None,
    transitions: str = "crossfade",
    fade: float = 0.5,
    titles=None,
    title_seconds: float = 2.0,
    burn_captions: bool = False,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    progress: Progress | None = None,
) -> Film:
    """Cut ``clips`` into one H.264/AAC mp4 (``+faststart``) and, with captions, an ``.srt``.

    - ``transitions``: "crossfade" (``fade`` seconds, clamped to under half the shortest shot)
      or "cut". The film lasts the sum of the shots (and title cards) minus the crossfades.
    - ``captions``: one text per clip (None/"" for none); written to ``<film>.srt`` and, with
      ``burn_captions``, drawn onto the picture.
    - ``titles``: an opening card's text, a list of one card per shot, or ``{shot: text}``.
    - ``size``/``fps``: the film's; default the first clip's. Other clips are scaled to fit and
      letterboxed, and resampled to that frame rate.
    - ``progress(fraction)``: called as ffmpeg works, from 0 to 1.
    """
    infos = _probe_clips(clips, captions, transitions)
    segments = _segments(infos, captions, titles, title_seconds)
    size, fps = _picture(infos[0], size, fps)
    segments = [_fitted(segment, size) for segment in segments]
    shortest = min(segment.duration for segment in segments)
    fade = min(max(0.0, fade), shortest * 0.45) if transitions == "crossfade" else 0.0
    starts, total = _layout(segments, fade)
    times = _shot_times(segments, starts, fade)
    cues = srt_text(captions, times) if captions else ""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with_audio = any(info.has_audio for info in infos)
    graph = _graph(segments, size, fps, fade, with_audio, find_font(), bool(burn_captions and cues))
    # Each file is written under a temporary name and renamed: a half-cut film never has its name.
    with replacing(out_path, prefix=".film-", suffix=".mp4") as film:
        _encode(segments, graph, with_audio, total, libass_text(cues), film, progress)
    srt_path = out_path.with_suffix(".srt") if cues else None
    if srt_path is not None:
        with replacing(srt_path, prefix=".film-", suffix=".srt") as srt:
            Path(srt).write_text(cues, encoding="utf-8")
    return Film(out_path, srt_path, round(total, 3), tuple(times))


def _fitted(segment: _Segment, size: tuple[int, int]) -> _Segment:
    """A title card with its text wrapped to the frame (clips pass through)."""
    if segment.title is None:
        return segment
    text, font_size = fit_title(segment.title, size)
    return dataclasses.replace(segment, title=text, font_size=font_size)


def _probe_clips(clips, captions, transitions: str) -> list[ClipInfo]:
    """The clips' facts, once the arguments are known to fit together."""
    if transitions not in TRANSITIONS:
        raise MediaError(f"transitions={transitions!r}: use one of {', '.join(TRANSITIONS)}")
    infos = [probe(path) for path in clips]
    if not infos:
        raise MediaError("make_film() needs at least one clip")
    if captions is not None and len(captions) != len(infos):
        raise MediaError(f"{len(captions)} captions for {len(infos)} clips: give one per clip (None to skip one)")
    return infos


def _picture(first: ClipInfo, size, fps) -> tuple[tuple[int, int], float]:
    """The film's size and frame rate: as given, else the first clip's."""
    width, height = size or (first.width or 720, first.height or 1280)
    return (width // 2 * 2, height // 2 * 2), float(fps or first.fps or 30)  # yuv420p: even sizes


def _encode(segments, graph: str, with_audio: bool, total: float, cues: str, output: str, progress) -> None:
    """Run the cut into `output`. ffmpeg works in a scratch folder beside it that holds the title
    cards' and captions' text under relative names (no escaping of user text in the graph)."""
    output = str(Path(output).absolute())  # ffmpeg runs in the scratch folder
    with tempfile.TemporaryDirectory(prefix=".film-", dir=Path(output).parent) as work:
        workdir = Path(work)
        for index, segment in enumerate(segments):
            if segment.title is not None:
                (workdir / f"title{index}.txt").write_text(segment.title, encoding="utf-8")
        (workdir / "captions.srt").write_text(cues, encoding="utf-8")
        maps = ["-map", "[vout]"] + (["-map", "[acut]", "-c:a", "aac", "-b:a", "128k"] if with_audio else [])
        arguments = [*_inputs(segments), "-filter_complex", graph, *maps,
                     "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
                     "-movflags", "+faststart", "-t", f"{total:.3f}", output]  # fmt: skip
        _run_with_progress(arguments, workdir, total, progress)


_PROGRESS_TIME = re.compile(r"^out_time_(?:us|ms)=(\d+)$")


def _run_with_progress(arguments: list[str], cwd: Path, total: float, progress: Progress | None) -> None:
    """Run ffmpeg with ``-progress pipe:1``, reporting the fraction of the film encoded so far."""
    command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
               "-progress", "pipe:1", "-nostats", *arguments]  # fmt: skip
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=errors, text=True)
        try:
            assert process.stdout is not None
            for line in process.stdout:
                match = _PROGRESS_TIME.match(line.strip())
                if match and progress is not None and total > 0:
                    # out_time_ms is in microseconds too (an old ffmpeg naming slip).
                    progress(min(1.0, int(match.group(1)) / 1e6 / total))
            code = process.wait()
        finally:
            if process.poll() is None:  # interrupted (Ctrl-C): do not leave ffmpeg running
                process.kill()
                process.wait()
        if code != 0:
            errors.seek(0)
            tail = "\n".join(errors.read().decode(errors="replace").strip().splitlines()[-8:])
            raise MediaError(f"ffmpeg could not cut the film:\n{tail}")
    if progress is not None:
        progress(1.0)
