"""The relay's streamed markdown → `Generation` state. Pure, incremental, O(total length).

Relays word their answers differently (English, Chinese, emoji, other labels), so this parser
reads *structure*: a fenced JSON spec, a backticked task ID, markdown links classified by their
URL (`.mp4`, `.webp`, `/web/ID`, `/source/ID`), the `src` of `<video>`/`<source>` tags (fenced
in ```` ```html ```` or not), a bare URL ending the answer, numbers followed by `..` or `%` for
progress, an `s_…` token for the sid. Words are used only where nothing else exists: to tell
"generating" from "queued", to recognise a failure, and to take an extension-less link labelled
"click here" / "在线观看" as the video.

Some relays send their status, progress and even the failure reason on a second channel,
`delta.reasoning_content`. `append_reasoning` reads it for those facts only: links there are not
the answer, and its text never joins `.text`, which stays the verbatim `content` a remix sends back.

Every complete line is read once. The unfinished last line is only scanned forward for progress
numbers and status words, so feeding a million one-character deltas stays linear. The derived
status is a function of the facts collected, never of the order they arrived in, so the final
`Generation` is the same however the text was split.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields, replace

# "still_running": the relay's answer ended while the video is still being made there (it gave a
# task ID, or said so). The client's stream is over, the task is not: it is resumed by task ID,
# never sent again, and never counted as a failure.
STATUSES = ("queued", "generating", "completed", "failed", "cancelled", "still_running")
TERMINAL = frozenset(("completed", "failed", "cancelled", "still_running"))
RUNNING = frozenset(STATUSES) - TERMINAL
# How a status reads to a person (the widget sends these to its JS with every turn).
STATUS_WORDS = {status: status.capitalize() for status in STATUSES}
STATUS_WORDS["still_running"] = "Still running at the relay"

# An unfinished line longer than this is read as if it had ended: bounds the cost of a hostile
# stream that never sends a newline, and no honest line comes near it.
MAX_LINE = 8192

# The label stops at the next "[" too: otherwise every "[" of a run of them rescans to the first
# "]" (quadratic; a hostile answer of 200 KB of brackets took minutes).
_LINK = re.compile(r"\[([^\[\]\n]*)\]\(\s*<?([^()\s<>]+(?:\([^()\s]*\)[^()\s<>]*)*)>?\s*\)")
_BARE_URL = re.compile(r"(?<![(<\w])((?:https?|javascript|data|vbscript|file):[^\s()<>\[\]`]+)", re.I)
_BACKTICK = re.compile(r"`([^`\s]{4,200})`")
# "ID:" as a word, or after a Chinese label (任务ID, 历史记录ID, 视频ID: CJK letters are word
# characters, so no \b stands between them and "ID").
_ID_LABEL = re.compile(r"(?:\bID|(?<=[\u4e00-\u9fff])\s*ID|任务编号)\s*[:：]\s*`?([A-Za-z0-9][A-Za-z0-9_:\-.]{3,200})`?", re.I)
_SID_LABELLED = re.compile(r"\bsid\s*[:：]\s*`?([A-Za-z0-9_\-]{4,128})", re.I)
_SID = re.compile(r"(?<![A-Za-z0-9_])(s_[A-Za-z0-9]{8,128})(?![A-Za-z0-9_])")
# A progress value is a number followed by ".." (the relays' "36..44..") or "%".
# Not after a letter, "-", "/" or a single "." (dates, versions, IDs, URLs); "21..34" is fine.
# Not after ":" / "=" either: CSS such as `max-width:100%` or `width=100%` is never progress
# (a labelled "进度: 36%" is read by _PROGRESS_LABELLED instead).
_PROGRESS = re.compile(r"(?<![\w\-/:=])(?<![^.]\.)(?<!:\s)(\d{1,3})(?:\.\.|\s*%)")
_TAG = re.compile(r"<[^<>]*>")
# The media of an HTML answer: `<video src='…'>` / `<source src="…">` (quoted or not).
_MEDIA_SRC = re.compile(r"<(?:video|source)\b[^>]*?\bsrc\s*=\s*(['\"]?)([^'\"\s<>]+)\1", re.I)
_FENCE_LANG = re.compile(r"^`{3,}\s*([\w+-]*)")
_DIGIT = re.compile(r"\d")
_PROGRESS_LABELLED = re.compile(r"(?:progress|进度)\D{0,12}?(\d{1,3})(?!\d)", re.I)
_GENERATING = re.compile(r"generat|processing|rendering|生成中|正在生成|处理中", re.I)
COMPLETE_WORDS = _COMPLETE = re.compile(
    r"(?:generat\w*|video)\s*(?:is\s+)?(?:complete|completed|done|finished|succeeded)|生成完成|✅|🎉",
    re.I,
)
_FAILURE = re.compile(
    r"fail|失败|error|错误|violat|content polic|no available capacity|capacity|"
    r"network fluctuation|high load|rejected|unsafe|审核|违规|guardrail|rate limit|"
    r"too many requests|refus|拒绝|限流",
    re.I,
)
# "Failure reason: X", "❌ 生成失败: X", "Generation failed: X", "**Error:** X" → X.
_REASON = re.compile(
    r"(?:failure reason|reason|原因|失败原因|failed|failure|失败|error|错误)\W{0,3}?[:：]\W{0,3}?\s*(\S.*)",
    re.I,
)
# A relay's warning: "⚠️ …" or "Warning: …" at the start of a line (after quote marks/emphasis).
_NOTICE = re.compile(r"^[\s>*_]*(?:⚠|warning\s*[:：]|警告\s*[:：])", re.I)
# "❌ …" is a failure whatever its words ("❌ 首尾帧模型需要 1-2 张图片": no "failed" in it).
_CROSS = re.compile(r"^[\s>*_]*❌")
MAX_NOTICES = 8
MAX_NOTICE = 300
# Link words that name the video when its URL does not (an extension-less signed URL).
# Whole words: "Data Preview" is not "view".
_VIDEO_LABEL = re.compile(r"\b(?:click here|play|watch|view|video|download)\b|点击|观看|播放|下载", re.I)
# Path ends that name an action, not a task: never taken as a task ID.
_GENERIC_SEGMENTS = frozenset(("raw", "view", "content", "download", "file", "files", "video", "source"))
_VIDEO_EXT = (".mp4", ".mov", ".webm", ".m4v", ".m3u8")
_IMAGE_EXT = (".webp", ".png", ".jpg", ".jpeg", ".gif")
_DECORATION = " \t>*_#-–—•🏃⏳⌛✅❌⚠️🎬🎉🚫❗️️:"
_TRAILING_DECORATION = " \t✅❌⚠️🎉🚫❗️️"


class _TextLog:
    """The transcript's text, appended in O(1) and joined only when someone reads it."""

    __slots__ = ("_joined", "_joined_count", "parts")

    def __init__(self, initial: str = "") -> None:
        self.parts: list[str] = [initial] if initial else []
        self._joined = initial
        self._joined_count = len(self.parts)

    def text(self, count: int, length: int) -> str:
        if count > self._joined_count:
            self._joined += "".join(self.parts[self._joined_count : count])
            self._joined_count = count
        joined = self._joined
        return joined if len(joined) == length else joined[:length]


_EMPTY_LOG = _TextLog()


@dataclass(frozen=True)
class Generation:
    """One video generation as known so far. Immutable: every update is a new snapshot."""

    task_id: str | None = None
    status: str = "queued"
    progress: int = 0
    sid: str | None = None
    spec: dict = field(default_factory=dict)
    preview_url: str | None = None
    raw_url: str | None = None
    thumbnail_url: str | None = None
    video_url: str | None = None
    download_url: str | None = None
    error: str | None = None
    unsafe_urls: tuple = ()
    # The relay's own warnings ("⚠️ 缓存失败: …, 正在返回源链接", "⚠️ … 将忽略图片"): things it did
    # differently from what was asked, that do not stop the video. Shown with the turn.
    notices: tuple = ()
    # Completed on the answer's words alone: the kernel could not reach the video to check its
    # bytes (address policy, network, proxy). The browser may still play it.
    unverified: bool = False
    # The relay accepted the request (200, an answer) and ended it with no video, no task ID and
    # no word of failing (evidence.decide's fifth ending): whether it charged is unknown.
    answered_without_video: bool = False
    text_length: int = 0
    _log: _TextLog = field(default=_EMPTY_LOG, repr=False, compare=False)
    _parts: int = field(default=0, repr=False, compare=False)

    @property
    def text(self) -> str:
        """The full markdown received so far (what a remix must send back verbatim)."""
        return self._log.text(self._parts, self.text_length)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def to_dict(self) -> dict:
        """The JSON form: every public field (from the dataclass's own field list) and the text."""
        data = {name: getattr(self, name) for name in _PUBLIC_FIELDS}
        data["spec"] = dict(self.spec)
        data["unsafe_urls"] = list(self.unsafe_urls)
        data["notices"] = list(self.notices)
        data["text"] = self.text
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Generation:
        """The inverse of `to_dict`, forgiving: a stored value of the wrong kind reads as unknown."""
        values = {name: data.get(name) for name in _PUBLIC_FIELDS}
        values["status"] = values["status"] if values["status"] in STATUSES else "queued"
        values["progress"] = _clamp(values["progress"])
        values["spec"] = dict(values["spec"] or {})
        values["unsafe_urls"] = tuple(values["unsafe_urls"] or ())
        notices = values["notices"] if isinstance(values["notices"], (list, tuple)) else ()
        values["notices"] = tuple(str(n)[:MAX_NOTICE] for n in notices[:MAX_NOTICES])
        values["unverified"] = values["unverified"] is True
        values["answered_without_video"] = values["answered_without_video"] is True
        return cls(**values).with_text(data.get("text") or "")

    def with_text(self, text: str) -> Generation:
        """The same state carrying `text` as its markdown (what a remix sends back)."""
        if text == self.text:
            return self
        log = _TextLog(text)
        return replace(self, text_length=len(text), _log=log, _parts=len(log.parts))

    def with_text_of(self, other: Generation) -> Generation:
        """The same state carrying `other`'s markdown (shared, not copied)."""
        return replace(self, text_length=other.text_length, _log=other._log, _parts=other._parts)

    def merge(self, parsed: Generation | None, take_text: bool = False) -> Generation:
        """This state updated by `parsed`, the same task read from another source (a raw-data
        answer): IDs and addresses first seen win, newer status/progress/media win; the markdown is
        `parsed`'s when `take_text`, else this one's."""
        if parsed is None:
            return self
        merged = replace(
            self,
            task_id=self.task_id or parsed.task_id,
            status=parsed.status if parsed.status != "queued" else self.status,
            progress=max(self.progress, parsed.progress),
            sid=parsed.sid or self.sid,
            spec=self.spec or parsed.spec,
            preview_url=self.preview_url or parsed.preview_url,
            raw_url=self.raw_url or parsed.raw_url,
            thumbnail_url=parsed.thumbnail_url or self.thumbnail_url,
            video_url=parsed.video_url or self.video_url,
            download_url=parsed.download_url or self.download_url,
            error=parsed.error or self.error,
            unsafe_urls=tuple(dict.fromkeys(self.unsafe_urls + parsed.unsafe_urls)),
            notices=tuple(dict.fromkeys(self.notices + parsed.notices))[:MAX_NOTICES],
        )
        return merged.with_text_of(parsed) if take_text else merged

    def with_status(self, status: str, error: str | None = None) -> Generation:
        """A copy in another status (the session uses it for "cancelled")."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        return replace(self, status=status, error=error if error is not None else self.error)


# The fields a snapshot is stored and sent as (the text travels whole, as "text").
_PUBLIC_FIELDS = tuple(
    f.name for f in fields(Generation) if not f.name.startswith("_") and f.name != "text_length"
)


def _clamp(value) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return 0
    return max(0, min(100, number))


def _path_of(url: str) -> str:
    return url.split("?", 1)[0].split("#", 1)[0].lower()


def _plain(line: str) -> str:
    """A line without markdown quote marks, emphasis and emoji decoration."""
    # Trailing ">" or "-" may be part of the relay's words (an HTML-ish reason): keep them.
    return line.strip().lstrip(_DECORATION).rstrip(_TRAILING_DECORATION)


class Transcript:
    """Feed the assistant's deltas as they arrive; read `.generation` at any time."""

    def __init__(self) -> None:
        self._log = _TextLog()
        self._length = 0
        self._line = ""
        self._scan = 0  # how far the unfinished line was scanned for progress numbers
        self._in_fence = False
        self._fence_lines: list[str] | None = None
        self._spec: dict = {}
        self._task_id: str | None = None
        self._sid: str | None = None
        self._preview: str | None = None
        self._raw: str | None = None
        self._thumbnail: str | None = None
        self._video: str | None = None
        self._download: str | None = None
        self._unsafe: list[str] = []
        self._progress = 0
        self._seen_generating = False
        self._seen_complete = False
        self._failure_lines: list[str] = []
        self._reason: str | None = None
        self._finished = False
        self._lines_seen = 0
        self._tail_url: str | None = None  # an unclassified bare URL ending the last line read
        self._content_failed = False  # the answer itself (not the status channel) said "failed"
        self._line_has_tag = False  # the unfinished line holds "<": its numbers may be CSS
        self._reasoning = ""  # the unfinished line of the reasoning channel
        self._reasoning_length = 0
        self._reasoning_parts: list[str] = []  # the status channel verbatim (the verdict reads it)
        self._last_words = ""  # the last non-empty line read, on either channel
        self._notices: list[str] = []
        self._generation = Generation()
        self._dirty = False

    @property
    def generation(self) -> Generation:
        # Snapshots are built lazily: a relay sends hundreds of deltas per network read and the
        # client needs one `Generation` per read, not one per delta.
        if self._dirty:
            self._dirty = False
            self._generation = self._snapshot()
        return self._generation

    @property
    def unsafe_urls(self) -> list[str]:
        """Links with a scheme other than http(s) that were dropped, for the UI to mention."""
        return list(self._unsafe)

    def feed(self, delta: str) -> Generation:
        """Read one delta; the `Generation` as known after it."""
        if delta:
            self.append(delta)
        return self.generation

    def append(self, delta: str) -> None:
        """Read one delta without building a snapshot (read `.generation` when you need one)."""
        if not delta:
            return
        self._dirty = True
        self._log.parts.append(delta)
        self._length += len(delta)
        if "\n" in delta:
            pieces = delta.split("\n")
            self._complete_line(self._line + pieces[0])
            for piece in pieces[1:-1]:
                self._complete_line(piece)
            self._line = pieces[-1]
            self._scan = 0
            self._line_has_tag = "<" in self._line
        else:
            self._line += delta
            self._line_has_tag = self._line_has_tag or "<" in delta
        if len(self._line) > MAX_LINE:
            self._complete_line(self._line)
            self._line = ""
            self._scan = 0
        elif self._line:
            self._scan_unfinished()

    def append_reasoning(self, delta: str) -> None:
        """Read a delta of the relay's status channel (`delta.reasoning_content`).

        Only its status, progress and failure wording count; it is never part of `.text`.
        """
        if not delta:
            return
        self._dirty = True
        self._reasoning_length += len(delta)
        self._reasoning_parts.append(delta)
        if "\n" not in delta:
            # Like `append`: an unfinished line only grows; it is read when it ends.
            self._reasoning += delta
            lines = []
        else:
            lines = (self._reasoning + delta).split("\n")
            self._reasoning = lines.pop()
        if len(self._reasoning) > MAX_LINE:
            lines.append(self._reasoning)
            self._reasoning = ""
        for line in lines:
            self._reasoning_line(line.rstrip())

    @property
    def reasoning_length(self) -> int:
        """Characters received on the status channel (bounded by the client like `.text`)."""
        return self._reasoning_length

    @property
    def reasoning_text(self) -> str:
        """Everything received on the status channel (never part of `.text`)."""
        if len(self._reasoning_parts) > 1:
            self._reasoning_parts = ["".join(self._reasoning_parts)]
        return self._reasoning_parts[0] if self._reasoning_parts else ""

    @property
    def last_words(self) -> str:
        """The last non-empty line the relay sent on either channel, without decoration."""
        return self._last_words

    def finish(self) -> Generation:
        """The stream ended: read the last line, which has no newline after it."""
        if not self._finished:
            self._finished = True
            if self._line:
                self._complete_line(self._line)
                self._line = ""
                self._scan = 0
            if self._reasoning:
                self._reasoning_line(self._reasoning.rstrip())
                self._reasoning = ""
            if self._in_fence and self._fence_lines is not None:
                # An unclosed fence: the spec was cut; read what can be read.
                self._close_fence()
            self._dirty = False
            self._generation = self._snapshot()
        return self.generation

    # -- reading ---------------------------------------------------------------------------

    def _scan_unfinished(self) -> None:
        """Progress and status from the unfinished line, scanning only new characters."""
        line = self._line
        if self._in_fence:
            return
        scan = self._scan
        start = scan - 4 if scan > 4 else 0
        # A number at the very end may still grow ("4" → "44"); "..", "%" settle it. Scanning
        # from `start` (not a slice) lets the look-behind see the characters before it. Most
        # deltas are dots: a window without a digit holds no progress value.
        if not self._line_has_tag and _DIGIT.search(line, start):
            for match in _PROGRESS.finditer(line, start):
                self._take_progress(match.group(1))
        end = len(line) - 4
        self._scan = end if end > start else start
        if (
            start < 64  # the first 64 characters were already searched otherwise
            and not self._seen_generating
            and not self._seen_complete
            and _GENERATING.search(line, 0, 64)
        ):
            self._seen_generating = True
        if line.endswith((")", ">")):
            # The last line usually carries the mp4 link (or a <video> tag) and never gets its
            # newline; reading it when a link or tag closes shows the video as soon as it arrives.
            self._read_links(line)

    def _complete_line(self, raw_line: str) -> None:
        line = raw_line.rstrip()
        self._lines_seen += 1
        stripped = line.strip()
        if stripped.startswith("```"):
            self._fence_marker(stripped)
            return
        if self._in_fence:
            if self._fence_lines is not None and len(self._fence_lines) < 2000:
                self._fence_lines.append(line)
            return
        self._read_line(line)

    def _fence_marker(self, stripped: str) -> None:
        """A ``` line. Only a JSON (or unlabelled) fence may hold the spec: a ```html fence is the
        answer itself (a <video> tag) and its lines are read like any other."""
        if self._in_fence:
            self._close_fence()
            return
        language = _FENCE_LANG.match(stripped).group(1).lower()
        if self._task_id is None and not self._spec and language in ("", "json", "json5"):
            self._in_fence = True
            self._fence_lines = []

    def _read_line(self, line: str) -> None:
        if not line.strip():
            return
        if self._task_id is None:
            self._read_task_id(line)
        if self._sid is None:
            sid = _SID_LABELLED.search(line) or _SID.search(_LINK.sub(" ", line))
            if sid:
                self._sid = sid.group(1)
        self._tail_url = None
        self._read_links(line)
        failures = len(self._failure_lines)
        self._status_line(line)
        if len(self._failure_lines) > failures:
            # "❌ 生成失败: see https://help…" or a help link after a failure: not a video.
            self._content_failed = True

    def _reasoning_line(self, line: str) -> None:
        # The only place some relays show the video's share ID ("Post ID: s_…", sora2api in
        # watermark-free mode): it is what their remix needs.
        if self._sid is None and "s_" in line:
            sid = _SID.search(_LINK.sub(" ", line))
            if sid:
                self._sid = sid.group(1)
        self._status_line(line)

    def _status_line(self, line: str) -> None:
        """Progress, status words and failure wording of one line (content or reasoning)."""
        text = _TAG.sub(" ", line) if "<" in line else line
        if not text.strip():
            return
        for match in _PROGRESS.finditer(text):
            self._take_progress(match.group(1))
        labelled = _PROGRESS_LABELLED.search(text)
        if labelled:
            self._take_progress(labelled.group(1))
        # Tags are dropped for numbers and status words only: a reason keeps the relay's text.
        plain = _plain(line)
        if plain:
            self._last_words = plain[:500]
        if _NOTICE.match(line):
            # A warning is not the verdict, even with "失败" in it ("⚠️ 缓存失败: …, 正在返回源
            # 链接"): the video follows. Without one, the stream's end says "failed" in these words.
            if plain and plain[:MAX_NOTICE] not in self._notices and len(self._notices) < MAX_NOTICES:
                self._notices.append(plain[:MAX_NOTICE])
        elif _COMPLETE.search(text):
            self._seen_complete = True
        elif (_FAILURE.search(plain) or _CROSS.match(line)) and not self._is_link_only(line):
            self._failure_lines.append(plain)
            reason = _REASON.search(plain)
            if reason:
                # The latest reason wins: an earlier one may belong to a retry the relay made.
                self._reason = reason.group(1).strip(" *_`") or self._reason
        if not self._seen_generating and _GENERATING.search(text) and not self._seen_complete:
            self._seen_generating = True

    def _close_fence(self) -> None:
        body = "\n".join(self._fence_lines or [])
        self._in_fence = False
        self._fence_lines = None
        try:
            spec = json.loads(body)
        except (ValueError, RecursionError):
            spec = None
        if isinstance(spec, dict):
            self._spec = spec
        else:
            # Not a spec after all (an unlabelled fence around the answer): read its lines.
            for line in body.split("\n"):
                self._read_line(line)

    def _read_task_id(self, line: str) -> None:
        labelled = _ID_LABEL.search(line)
        if labelled:
            self._task_id = labelled.group(1).rstrip(".")
            return
        quoted = _BACKTICK.search(line)
        if quoted and ("_" in quoted.group(1) or ":" in quoted.group(1) or "-" in quoted.group(1)):
            self._task_id = quoted.group(1)

    @staticmethod
    def _is_link_only(line: str) -> bool:
        return not _LINK.sub("", line).strip(" |>")

    def _read_links(self, line: str) -> None:
        if "<" in line:
            sources = [m.group(2) for m in _MEDIA_SRC.finditer(line)]
            if sources:
                # Inside a <video>/<source> tag the URL is the video, whatever its path says.
                for url in sources:
                    self._take_video(url.strip())
                return
        links = [(m.group(1), m.group(2)) for m in _LINK.finditer(line)]
        if links:
            for label, url in links:
                if not self._classify(url.strip()) and _VIDEO_LABEL.search(label):
                    self._take_video(url.strip())
            return
        bare = [m.group(1) for m in _BARE_URL.finditer(_TAG.sub(" ", line) if "<" in line else line)]
        for url in bare:
            url = url.strip().rstrip(".,;:!?'\"，。")
            if not self._classify(url) and line.rstrip().endswith(url):
                # Unknown by its path, but it ends the line: the answer's last line may be the
                # video itself (an extension-less signed URL); decided when the stream ends.
                self._tail_url = url

    def _take_video(self, url: str) -> None:
        if url.split(":", 1)[0].lower() not in ("http", "https"):
            self._classify(url)  # records it as unsafe
        elif self._video is None:
            self._video = url
        elif self._download is None and url != self._video:
            self._download = url

    def _classify(self, url: str) -> bool:
        """File a link by its URL; False when the URL says nothing about what it is."""
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme not in ("http", "https"):
            if url not in self._unsafe and len(self._unsafe) < 20:
                self._unsafe.append(url)
            return True
        path = _path_of(url)
        if path.endswith(_VIDEO_EXT):
            self._take_video(url)
        elif path.endswith(_IMAGE_EXT):
            if self._thumbnail is None:
                self._thumbnail = url
        elif "/source/" in path or "/api/" in path:
            # Not ".../raw": storage hosts end signed media URLs with /raw (videos.openai.com).
            if self._raw is None:
                self._raw = url
                self._task_id = self._task_id or _last_segment(url)
        elif "/web/" in path or "/share/" in path or "/preview" in path or "/task" in path:
            if self._preview is None:
                self._preview = url
                self._task_id = self._task_id or _last_segment(url)
        elif self._task_id and self._task_id in url:
            if self._preview is None:
                self._preview = url
            elif self._raw is None:
                self._raw = url
        else:
            return False
        return True

    def _take_progress(self, digits: str) -> None:
        value = int(digits)
        if value <= 100 and value > self._progress:
            self._progress = value

    # -- state -----------------------------------------------------------------------------

    def _snapshot(self) -> Generation:
        if self._video is None and self._finished and self._tail_url and not self._content_failed:
            # The answer ended with a bare URL nothing else explains: that is the video.
            self._video = self._tail_url
        failed = bool(self._failure_lines) and self._video is None
        unsafe_only = (
            self._finished and self._seen_complete and self._video is None and bool(self._unsafe)
        )
        if unsafe_only and not failed:
            # "Complete", but the only video link was not http(s): nothing safe will come.
            failed = True
            self._failure_lines.append(
                "the relay's video link was not an http(s) URL and was removed for safety"
            )
        if failed:
            status = "failed"
        elif self._video is not None:
            status = "completed"
        elif self._seen_generating or self._progress > 0 or self._seen_complete:
            status = "generating"
        else:
            status = "queued"
        progress = self._progress
        if status == "completed" or (self._seen_complete and not failed):
            progress = 100
        error = None
        if failed:
            error = self._reason or "; ".join(dict.fromkeys(self._failure_lines))[:500]
        return Generation(
            task_id=self._task_id,
            status=status,
            progress=progress,
            sid=self._sid,
            spec=self._spec,
            preview_url=self._preview,
            raw_url=self._raw,
            thumbnail_url=self._thumbnail,
            video_url=self._video,
            download_url=self._download,
            error=error,
            unsafe_urls=tuple(self._unsafe),
            notices=tuple(self._notices),
            text_length=self._length,
            _log=self._log,
            _parts=len(self._log.parts),
        )


def _last_segment(url: str) -> str | None:
    segment = url.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return segment if segment and segment.lower() not in _GENERIC_SEGMENTS else None


def parse_transcript(text: str) -> Generation:
    """Read a whole assistant answer at once."""
    transcript = Transcript()
    transcript.feed(text)
    return transcript.finish()
