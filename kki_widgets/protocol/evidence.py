"""What an ended answer proves, and the verdict it earns. Pure: no I/O.

While a relay streams, its words set the state (queued, generating, progress: `transcript`). When
the answer ends, this module decides what it was:

- `candidates` collects every URL the answer offers, in every form a relay uses (markdown links
  and images, HTML `src`/`poster`/`href` and the inner text of `<video>`/`<a>`, bare text, paths
  relative to the relay, URLs inside `<think>` or the reasoning channel), ranked by how much they
  look like media. Words never make a URL the video.
- The relay client (`relay`) looks at the first bytes of the best candidates through the address
  policy and reports each as `VIDEO`, `NOT_VIDEO` (a web page, an image, a 404) or `UNCHECKED`
  (the kernel cannot reach it: refused host, no route, a proxy that forbids it). `judge_head` turns
  the bytes and Content-Type into that word, with `sniff`, like the media downloads.
- `decide` gives the verdict: the first candidate whose bytes are video completes the turn; with
  none checked, strong text evidence (a video tag, or a video extension in a link the relay
  presents as the result) completes it *unverified*; otherwise one of three honest endings:
  failed (the relay said so: its whole final message), still running at the relay (a task ID, or
  words saying it is still being made), or ended without a video (the whole answer, and the
  warning that a charge may have happened).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, replace
from urllib.parse import urljoin, urlsplit

from .sniff import sniff
from .transcript import COMPLETE_WORDS, Generation

VIDEO, NOT_VIDEO, UNCHECKED = "video", "not video", "unchecked"
MAX_CANDIDATES = 16
MAX_MESSAGE = 2000  # characters of a relay's final message kept in an ending's words

_VIDEO_EXT = (".mp4", ".mov", ".webm", ".m4v", ".m3u8", ".mkv")
_IMAGE_EXT = (".webp", ".png", ".jpg", ".jpeg", ".gif", ".avif", ".bmp", ".svg")
_PAGE_EXT = (".html", ".htm", ".php", ".asp", ".aspx", ".jsp")
_PAGE_PATHS = ("/web/", "/share/", "/task", "/preview", "/status", "/dashboard", "/console", "/docs")
_MEDIA_PATHS = ("/video", "/videos/", "/files/", "/file/", "/raw", "/download", "/media/", "/cdn/")

# How much each form says "this is the media" (before the URL's own path is read).
_FORM_WEIGHT = {
    "video_src": 60, "source_src": 60, "video_text": 55, "json_video": 40, "link": 20,
    "anchor": 20, "bare": 10, "relative_text": 15, "json_url": 5, "image": -10, "img_src": -20,
    "poster": -20,
}
# Forms that are strong text evidence by themselves (the relay put the URL in a video player).
# A task record's video field is the relay's own structured word for the result.
_PLAYER_FORMS = frozenset(("video_src", "source_src", "video_text", "json_video"))
# Forms where a video extension is strong text evidence (the relay presents it as the result).
# (An mp4 in image syntax, `![video](….mp4)`, is a habit of several relays.)
_RESULT_FORMS = frozenset(("link", "anchor", "bare", "image"))

_THINK = re.compile(r"<think>(.*?)(?:</think>|\Z)", re.S | re.I)
_FENCE = re.compile(r"^```[ \t]*([\w+-]*)[ \t]*\n(.*?)(?:^```[ \t]*$|\Z)", re.S | re.M)
_TAG = re.compile(r"<(video|source|a|img|iframe|embed)\b([^<>]*)>", re.I)
_ATTR = re.compile(r"\b(src|href|poster|data-src)\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>]+))", re.I)
_INNER = re.compile(r"<(video|a)\b[^<>]*>([^<]{1,2000})</\1\s*>", re.I)
_MD_LINK = re.compile(r"(!?)\[([^\[\]\n]{0,300})\]\(\s*<?([^()\s<>]+(?:\([^()\s]*\)[^()\s<>]*)*)>?(?:\s+\"[^\"\n]*\")?\s*\)")
# ASCII only: relays run their words into a URL ("…/a.mp4视频已生成"), and parentheses close
# markdown around it.
_BARE = re.compile(r"https?://[A-Za-z0-9\-._~:/?#@!$&*+,;=%]+", re.I)
_RELATIVE_MEDIA = re.compile(r"(?<![\w/:.=\"'])(/[\w\-./%~]+\.(?:mp4|mov|webm|m4v|m3u8))\b", re.I)
_VIDEO_LABEL = re.compile(r"\b(?:click here|play|watch|view|video|download)\b|点击|观看|播放|下载|视频", re.I)
_HTML_TAG = re.compile(r"<[^<>]{0,500}>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
# A line with no words (dots, numbers, emoji) or only progress words: the stream's ticking.
_TICK_WORDS = re.compile(
    r"progress|进度|generating|generation|queuing|queued|processing|rendering|in progress|"
    r"生成中|正在生成|排队中|处理中|视频|video|task|\d+|%|\.{2,}|…", re.I)
_LETTER = re.compile(r"[^\W\d_]")

# Words saying the video is still being made at the relay, after the stream ended.
_STILL_RUNNING = re.compile(
    r"still\s+(?:being\s+)?(?:generat|process|render|running|working|in progress|making|made)|"
    r"may still (?:be|finish|complete)|check (?:back|again|its status|the status|status)|"
    r"(?:query|poll) (?:the |its )?(?:task|status|result)|in the background|"
    r"稍后(?:查询|查看|再|获取)|仍在(?:生成|处理)|还在(?:生成|处理)|后台(?:继续)?(?:生成|处理)|查询(?:任务|结果|进度)",
    re.I,
)
# Failure wording beyond "fail"/"error": refusals, limits, timeouts, "use X instead".
_FAILURE = re.compile(
    r"fail|失败|error|错误|violat|polic|guardrail|refus|reject|拒绝|unsafe|审核|违规|denied|"
    r"forbidden|not allowed|not supported|unsupported|不支持|invalid|无效|timed? ?out|timeout|超时|"
    r"limit|限流|限制|quota|余额|insufficient|capacity|high load|unavailable|cannot|can't|unable|"
    r"无法|不能|需要|requires?|needs? |instead|请使用|please use|sorry|抱歉|blocked|prohibit|"
    r"not permitted|拦截|禁止|❌|⚠|🚫",
    re.I,
)


@dataclass(frozen=True)
class Candidate:
    """A URL the answer offers, how much it looks like the media, and whether the text alone is
    strong evidence that it is the video."""

    url: str
    score: int
    strong: bool
    form: str


def candidates(text: str, reasoning: str = "", base_url: str | None = None) -> list[Candidate]:
    """Every http(s) URL of the answer (content and reasoning channel), best media guess first."""
    found: dict[str, Candidate] = {}
    content = _unescape(text)
    outside = _THINK.sub(" ", content)
    for url, form, label in _offers(_without_spec(outside), base_url):
        _keep(found, url, form, label, in_think=False)
    for block in [m.group(1) for m in _THINK.finditer(content)] + [_unescape(reasoning)]:
        for url, form, label in _offers(block, base_url):
            _keep(found, url, form, label, in_think=True)
    ranked = sorted(found.values(), key=lambda c: (-c.score, not c.strong))
    return ranked[:MAX_CANDIDATES]


def task_candidates(video_url: str | None) -> list[Candidate]:
    """The video URL a JSON task record names, as a candidate presented as the result."""
    if not video_url or not video_url.startswith(("http://", "https://")):
        return []
    return [_candidate(video_url, "json_video", "", in_think=False)]


def _unescape(text: str) -> str:
    # Go's JSON encoder writes <, > and & as \u003c…; some relays escape their text twice.
    if "\\u00" in text:
        text = text.replace("\\u003c", "<").replace("\\u003e", ">").replace("\\u0026", "&")
        text = text.replace("\\u003C", "<").replace("\\u003E", ">")
    return text


def _without_spec(text: str) -> str:
    """The answer without the echoed JSON spec (its URLs are the request's, never the video)."""

    def drop(match: re.Match) -> str:
        if match.group(1).lower() not in ("", "json", "json5"):
            return match.group(2)
        try:
            data = json.loads(match.group(2))
        except (ValueError, RecursionError):
            return match.group(2)
        return " " if isinstance(data, dict) and "prompt" in data and "status" not in data else match.group(2)

    return _FENCE.sub(drop, text) if "```" in text else text


def _offers(text: str, base_url: str | None):
    """(url, form, label) for every URL-ish thing in `text`, relative paths resolved."""
    if not text:
        return
    for tag in _TAG.finditer(text):
        name = tag.group(1).lower()
        for attr in _ATTR.finditer(tag.group(2)):
            value = attr.group(2) if attr.group(2) is not None else attr.group(3) or attr.group(4) or ""
            form = _tag_form(name, attr.group(1).lower())
            yield from _resolved(html.unescape(value.strip()), form, "", base_url)
    for inner in _INNER.finditer(text):
        body = html.unescape(inner.group(2).strip())
        form = "video_text" if inner.group(1).lower() == "video" else "anchor"
        if body and " " not in body:
            yield from _resolved(body, form, body, base_url)
    for link in _MD_LINK.finditer(text):
        form = "image" if link.group(1) else "link"
        yield from _resolved(link.group(3).strip(), form, link.group(2), base_url)
    plain = _MD_LINK.sub(" ", _TAG.sub(" ", text))
    for bare in _BARE.finditer(plain):
        yield html.unescape(bare.group(0).rstrip(".,;:!?*")), "bare", ""
    if base_url:
        for path in _RELATIVE_MEDIA.finditer(plain):
            yield from _resolved(path.group(1), "relative_text", "", base_url)


def _tag_form(tag: str, attribute: str) -> str:
    if attribute == "poster":
        return "poster"
    if tag == "video":
        return "video_src"
    if tag == "source":
        return "source_src"
    if tag == "img":
        return "img_src"
    return "anchor"


def _resolved(value: str, form: str, label: str, base_url: str | None):
    if not value or value.startswith(("#", "data:", "javascript:", "mailto:", "blob:")):
        return
    if value.lower().startswith(("http://", "https://")):
        yield value, form, label
    elif base_url and "://" not in value and not value.startswith("//") and ":" not in value.split("/")[0]:
        yield urljoin(base_url.rstrip("/") + "/", value), form, label
    elif base_url and value.startswith("//"):
        yield urlsplit(base_url).scheme + ":" + value, form, label


def _keep(found: dict, url: str, form: str, label: str, in_think: bool) -> None:
    if len(found) >= 4 * MAX_CANDIDATES and url not in found:
        return
    candidate = _candidate(url, form, label, in_think)
    old = found.get(url)
    if old is None:
        found[url] = candidate
    else:
        found[url] = Candidate(url, max(old.score, candidate.score), old.strong or candidate.strong,
                               old.form if old.score >= candidate.score else candidate.form)


def _candidate(url: str, form: str, label: str, in_think: bool) -> Candidate:
    # The whole address, not only its path: "https://xxxxxx.mp4" is a placeholder relays print.
    path = url.split("?", 1)[0].split("#", 1)[0].lower().rstrip("/")
    score = _FORM_WEIGHT.get(form, 0)
    video_ext = path.endswith(_VIDEO_EXT)
    if video_ext:
        score += 50
    elif path.endswith(_IMAGE_EXT):
        score -= 60
    elif path.endswith(_PAGE_EXT):
        score -= 50
    elif any(part in path for part in _PAGE_PATHS):
        score -= 30
    elif any(part in path for part in _MEDIA_PATHS):
        score += 10
    if label and _VIDEO_LABEL.search(label):
        score += 15
    if in_think:
        score -= 25
    image_like = path.endswith(_IMAGE_EXT)
    strong = not in_think and not image_like and (
        form in _PLAYER_FORMS or (video_ext and form in _RESULT_FORMS)
    )
    return Candidate(url, score, strong, form)


# -- the bytes ------------------------------------------------------------------------------------


def judge_head(head: bytes, content_type: str | None) -> str:
    """`VIDEO` or `NOT_VIDEO` from the first bytes of a 2xx answer and its Content-Type."""
    kind = sniff(head[:4096])
    if kind in ("mp4", "mov", "webm"):
        return VIDEO
    if kind is not None:
        return NOT_VIDEO  # an image
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if head.lstrip()[:7] == b"#EXTM3U" or mime in ("application/vnd.apple.mpegurl", "application/x-mpegurl"):
        return VIDEO  # an HLS playlist: what the browser plays
    if mime.startswith("video/") and head.lstrip()[:1] not in (b"<", b"{"):
        return VIDEO
    return NOT_VIDEO


def judge_status(status_code: int) -> str:
    """What an HTTP status alone says: 404/410 say there is nothing; 401/403/5xx that the
    kernel cannot look (a browser with the user's cookies, or later, may)."""
    if status_code in (404, 410, 400):
        return NOT_VIDEO
    return UNCHECKED


# -- the verdict ----------------------------------------------------------------------------------


def decide(
    generation: Generation,
    ranked: list[Candidate],
    checks: dict[str, str],
    *,
    ended: bool,
    reasoning: str = "",
    words: str | None = None,
) -> Generation | None:
    """The verdict on an answer that stopped. `checks` maps candidate URLs to what their bytes
    said. None: nothing decided (a cut answer with no evidence either way: the caller follows the
    task or says the stream was cut)."""
    verified = next((c for c in ranked if checks.get(c.url) == VIDEO), None)
    if verified is not None:
        return _completed(generation, verified.url, ranked, checks, unverified=False)
    strong = next((c for c in ranked if c.strong and checks.get(c.url, UNCHECKED) == UNCHECKED), None)
    if strong is not None:
        return _completed(generation, strong.url, ranked, checks, unverified=True)
    message = final_message(generation.text, reasoning) if words is None else words
    if _relay_said_failed(generation, message):
        return _failed(generation, _failure_words(generation, message))
    if generation.unsafe_urls and (ended or generation.task_id):
        return _failed(generation, f"{UNSAFE_ONLY}\n\n{message}".strip())
    if not ended:
        return None
    if generation.task_id or _still_being_made(message):
        return still_running(generation, message)
    return _without_video(generation, message)


def _still_being_made(message: str) -> bool:
    """The relay's last word on the video is that it is still being made: a "done" said after
    "may still be generating" (a relay that waited on, then answered) supersedes it."""
    last = None
    for last in _STILL_RUNNING.finditer(message):  # noqa: B007 - the last one is wanted
        pass
    return last is not None and not COMPLETE_WORDS.search(message, last.end())


def completed_unverified(generation: Generation) -> Generation:
    """A task the relay's structured answer (raw data) calls completed, whose video the kernel
    cannot reach: completed on that word, marked unverified."""
    return _completed(generation, generation.video_url, [], {}, unverified=True)


def _completed(generation, url, ranked, checks, *, unverified: bool) -> Generation:
    download = generation.download_url if generation.download_url != url else None
    if download and checks.get(download) == NOT_VIDEO:
        download = None
    thumbnail = generation.thumbnail_url
    notices = (*generation.notices, UNVERIFIED_NOTICE) if unverified else generation.notices
    return replace(generation, status="completed", progress=100, video_url=url, error=None,
                   download_url=download, thumbnail_url=thumbnail, unverified=unverified,
                   notices=tuple(dict.fromkeys(notices)))


UNSAFE_ONLY = "the relay's video link was not an http(s) URL and was removed for safety"
# "Generation failed", "❌ 生成失败": a heading that says nothing the reason after it does not.
_HEADING = re.compile(
    r"(?:(?:video|task|generation|视频|任务)\s*)?(?:generation\s+)?(?:failed|failure|失败|生成失败)[\s!.。！]*", re.I)
_DECORATION = " \t>*_#-–—•🏃⏳⌛✅❌⚠️🎬🎉🚫❗️️"


def _failure_words(generation: Generation, message: str) -> str:
    """The relay's failure, from its first failure line to the end (what is wrong, what to use
    instead, the parameters it takes); when that is one line holding the reason the transcript
    read ("Failure reason: X"), just X, verbatim."""
    lines = [line.strip().lstrip(">*_# \t").rstrip("*_ \t") for line in message.split("\n")]
    start = next((i for i, line in enumerate(lines) if _FAILURE.search(line)), None)
    reason = generation.error or ""
    if start is None:  # the failure was the transcript's own finding (an unsafe link), or a record's
        return reason if message in reason else "\n\n".join(part for part in (reason, message) if part)
    block = [line for line in lines[start:] if not _HEADING.fullmatch(line.strip(_DECORATION))]
    while block and not block[-1]:
        block.pop()
    while block and not block[0]:
        block.pop(0)
    bare_reason = _HTML_TAG.sub(" ", reason).strip()
    if reason and (not block or (len(block) == 1 and (bare_reason in block[0] or block[0] in reason))):
        return reason
    return "\n".join(block) or reason


UNVERIFIED_NOTICE = (
    "Unverified: the kernel could not reach this video to check its bytes (the address policy, "
    "the network or a proxy stopped it); the browser may still play it."
)


def _relay_said_failed(generation: Generation, message: str) -> bool:
    still = bool(message) and _still_being_made(message)
    if generation.status == "failed" or generation.notices:
        # A failure line, or a "⚠️" with no video after it: that is the verdict, unless all it
        # says is that the relay's own wait ran out while it says the video is still being made.
        said = " ".join([*generation.notices, generation.error or ""])
        return not (still and _only_waiting_ran_out(said))
    if not message or still:
        return False
    message = _WAITING.sub(" ", message)
    # A relay that accepted a task (it gave an ID) and says nothing explicit about failing is
    # still making the video ("预计需要 3 分钟" is not a refusal); without a task, looser words
    # ("needs images: use … instead", "limit reached") are the refusal.
    wording = _EXPLICIT_FAILURE if generation.task_id else _FAILURE
    return bool(wording.search(message))


def _only_waiting_ran_out(words: str) -> bool:
    """"获取视频生成结果超时" (fetching the result timed out): the relay's wait ran out, not the
    generation; any other failure word (a refusal, a policy, an error) is a failure."""
    return bool(_TIMEOUT.search(words)) and not _EXPLICIT_FAILURE.search(_TIMEOUT.sub(" ", words))


_TIMEOUT = re.compile(r"timed? ?out|timeout|超时", re.I)
# How long to wait is not a refusal: "这可能需要1-2分钟", "请耐心等待", "may take a few minutes".
_WAITING = re.compile(
    r"(?:可能)?需要\s*(?:约|大约)?\s*[\d\-–~～几数]+\s*(?:秒|分钟|小时|min|s\b)|请耐心等待|耐心等待|"
    r"(?:may|might|can|will) take (?:up to |about |around )?(?:a few|several|\d+)[^.\n]{0,20}(?:second|minute|hour)s?|"
    r"please (?:be patient|wait)",
    re.I,
)
_EXPLICIT_FAILURE = re.compile(
    r"fail|失败|error|错误|violat|polic|guardrail|refus|reject|拒绝|unsafe|审核|违规|denied|blocked|"
    r"timed? ?out|timeout|超时|cancel|取消|❌|🚫", re.I)


def _failed(generation: Generation, reason: str) -> Generation:
    reason = reason or generation.error or "the relay ended its answer without a video"
    return replace(generation, status="failed", video_url=None, download_url=None, error=reason,
                   unverified=False)


def still_running(generation: Generation, message: str) -> Generation:
    """The relay's answer ended while the video is still being made there: resumable."""
    task = f" Its task ID is {generation.task_id}." if generation.task_id else ""
    if generation.raw_url and generation.task_id:
        how = (f" Fetch it later with %sora resume {generation.task_id}, VideoChat's Resume button,"
               " or the raw-data link; it was not sent again.")
    elif generation.task_id:  # no link of the relay's own to follow: the dashboard knows it
        how = (f" Fetch it later on the relay's dashboard, or try %sora resume {generation.task_id};"
               " it was not sent again.")
    else:
        how = " The relay gave no task ID to fetch it by: check the relay's dashboard before sending again."
    words = f"\n\nThe relay said:\n{message}" if message else ""
    text = f"The relay ended its answer while the video is still being made there.{task}{how}{words}"
    return replace(generation, status="still_running", video_url=None, error=text, unverified=False)


def _without_video(generation: Generation, message: str) -> Generation:
    words = message or "(an empty answer)"
    text = (
        "The relay ended its answer without a video, and without saying it failed or is still "
        f"working on it. Some relays charge for such answers: check the relay's dashboard before sending again.\n\nThe relay said:\n{words}"
    )
    return replace(generation, status="failed", video_url=None, download_url=None, error=text,
                   unverified=False, answered_without_video=not generation.task_id)


def final_message(text: str, reasoning: str = "") -> str:
    """The relay's words, whole: without the echoed spec, the progress ticks and HTML tags, its
    paragraphs kept, bounded (head and tail) and free of control characters."""
    body = _THINK.sub(lambda m: "\n" + m.group(1) + "\n", _unescape(text))
    body = _without_spec(body)
    words = _sanitized_lines(body)
    if not words and reasoning:
        words = _sanitized_lines(_unescape(reasoning))
    message = "\n".join(words).strip("\n")
    message = re.sub(r"\n{3,}", "\n\n", message)
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE * 3 // 5] + "\n…\n" + message[-MAX_MESSAGE * 2 // 5 :]
    return message


def _sanitized_lines(text: str) -> list[str]:
    lines = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = _CONTROL.sub("", _HTML_TAG.sub(" ", raw) if "<" in raw else raw).strip()
        line = re.sub(r"[ \t]{2,}", " ", line)
        if line.startswith("```"):
            continue
        if line and not _LETTER.search(_TICK_WORDS.sub(" ", line)) and not _has_url(raw):
            continue  # progress ticking: "Progress 36..44..", "......", "⏳ 生成中"
        if line or (lines and lines[-1]):
            lines.append(line[:1000])
    return lines


def _has_url(line: str) -> bool:
    return "http://" in line or "https://" in line
