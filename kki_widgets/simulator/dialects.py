"""Dialects: the answer shapes of real relays, so the client is tested against each of them.

A dialect decides the *words* of a generation (which lines, on which channel: the answer's
``content`` or the ``reasoning_content`` status channel), how its video URL looks, and how the
stream ends (``finish_reason``, ``[DONE]`` or not, junk after the answer). The timing, faults and
media are the simulator's as usual. Every dialect mirrors answers kept with their source under
``tests/fixtures/relays/``; the catalogue is in the package docstring. The issue 19 families
(grok, jimeng/Seedance, Qwen/wan, a sora2api fork) are in ``families.py``.

Pure: no I/O; the server and the generation task ask a :class:`Dialect` for text.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re

from ..protocol import relay_text
from ..protocol.errors import ConfigurationError
from . import script

#: ``[[dialect:name]]`` inside a user message.
PROMPT_MARKER = re.compile(r"\[\[dialect:([^\]]*)\]\]")
HEADER = "X-Sim-Dialect"

# The "signature" of the simulator's signed media URLs: a client that drops the query string
# (as it would on a real storage host) gets a 403, not the video.
_SIGNING_SALT = b"kki-simulator-signed-media"


class DialectError(ConfigurationError):
    """An unknown dialect name; the message lists the valid ones."""


def signature(stem: str) -> str:
    return hashlib.sha256(_SIGNING_SALT + stem.encode()).hexdigest()[:32]


@dataclasses.dataclass(frozen=True)
class Line:
    """One delta of a dialect: its text and the channel it travels on."""

    text: str
    channel: str = "content"  # or "reasoning"


@dataclasses.dataclass(frozen=True)
class Dialect:
    """How one family of relays words a generation. Methods return the deltas to send."""

    name: str
    summary: str
    source: str
    finish_reason: str = "stop"
    finish_with_last: bool = False  # the last delta carries finish_reason (no separate chunk)
    done_on_success: bool = True
    url_style: str = "file"  # file | signed | raw

    # -- the words ---------------------------------------------------------------------------

    @property
    def echoes_spec(self) -> bool:
        """Whether the answer starts with the fenced JSON spec (the seed's relays do)."""
        return self.name in ("seed", "chinese")

    def opening(self, task_id: str, origin: str) -> list[Line]:
        """What the relay says when it accepts the prompt (the task ID, where it shows one)."""
        if self.name == "seed":
            return [Line(script.task_header(task_id, origin))]
        if self.name == "chinese":
            return [Line(_chinese_header(task_id, origin))]
        return [_FIRST_WORDS[self.name]]

    def tick(self) -> Line | None:
        return _TICKS.get(self.name)

    def generating(self) -> Line | None:
        return _GENERATING.get(self.name)

    def progress(self, value: int, first: bool) -> list[Line]:
        return _PROGRESS[self.name](value, first) if self.name in _PROGRESS else []

    def complete(self, sid: str, thumbnail_url: str, video_url: str) -> list[Line]:
        return _COMPLETE[self.name](sid, thumbnail_url, video_url)

    def failure(self, reason: str) -> list[Line]:
        return _FAILURE[self.name](reason)

    def failure_of(self, task_id: str, origin: str, reason: str) -> list[Line]:
        """The failure of task `task_id` (families whose failure names the task or links the relay's page)."""
        return self.failure(reason)

    def reshape(self, chunk: dict, kind: str) -> dict | None:
        """The chunk as this family frames it (`kind`: the piece's kind, or "end" for the closing
        chunks); None drops it. Most families keep the common envelope."""
        return chunk

    def tail(self, failed: bool, reason: str | None, newline: str) -> str:
        """Raw bytes after the last chunk: ``[DONE]``, nothing, or a relay's junk."""
        if self.name == "video_tag" and failed:
            # flow2api writes its error JSON raw (no "data:", no newline) before [DONE].
            error = {"error": {"message": reason, "type": "invalid_request_error", "code": "generation_failed"}}
            return json.dumps(error, ensure_ascii=False) + f"data: [DONE]{newline}{newline}"
        if failed or self.done_on_success:
            return f"data: [DONE]{newline}{newline}"
        return ""

    # -- the media URL ------------------------------------------------------------------------

    def video_url(self, origin: str, video_name: str) -> str:
        stem = video_name.rsplit(".", 1)[0]
        if self.url_style == "signed":  # Google storage style: no extension, signed query
            return f"{origin}/cdn/video/{stem}?GoogleAccessId=sim&Expires=4102444800&Signature={signature(stem)}"
        if self.url_style == "raw":  # videos.openai.com style: .../raw?se=…&sig=…
            return f"{origin}/cdn/files/{stem}/raw?se=2100-01-01T00%3A00%3A00Z&sp=r&sig={signature(stem)}"
        return f"{origin}/cdn/{video_name}"


def _chinese_header(task_id: str, origin: str) -> str:
    return (
        f"\n\n> 任务ID: `{task_id}`\n"
        f"> [数据预览]({origin}/web/{task_id}) | [原始数据]({origin}/source/{task_id})\n"
        "> 排队中."
    )


# The first delta of dialects that show no task ID (sent where the seed shows it).
_FIRST_WORDS = {
    "html_fence": Line("**Generation Process Begins**\n\nInitializing generation request...\n", "reasoning"),
    "watermark_free": Line("**Generation Process Begins**\n\nInitializing generation request...\n", "reasoning"),
    "video_tag": Line("视频生成中...\n", "reasoning"),
    "click_here": Line("⌛️ 任务正在队列中,请耐心等待...\n"),
    "bare_url": Line("🎬 开始生成视频...\n"),
    "run_together": Line("🎬 开始生成视频..."),
}
_TICKS = {"seed": Line("."), "chinese": Line(".")}
_GENERATING = {"seed": Line(script.GENERATING), "chinese": Line("\n> 生成中")}


def _numbered(header: str, step: str):
    def progress(value: int, first: bool) -> list[Line]:
        return [Line(header)] * first + [Line(step.format(value))]

    return progress


_PROGRESS = {
    "seed": _numbered(script.PROGRESS_HEADER, "{}.."),
    "chinese": _numbered("\n\n>🏃 进度 ", "{}.."),
    "html_fence": lambda value, first: [Line(f"\n**Video Generation Progress**: {value}% (running)\n", "reasoning")],
    "watermark_free": lambda value, first: [
        Line(f"\n**Video Generation Progress**: {value}% (running)\n", "reasoning")
    ],
    "video_tag": lambda value, first: [Line(f"生成进度: {value}%\n", "reasoning")],
    "click_here": lambda value, first: [Line(f"🏃 进度:{value}.0%\n")],
}

_COMPLETE = {
    "seed": lambda sid, thumb, video: [Line(relay_text.completion_text(sid, thumb, video))],
    "chinese": lambda sid, thumb, video: [
        Line(f"\n\n> 生成完成 ✅\n> sid: {sid}\n\n![封面]({thumb})\n"
             f"[▶️ 在线观看]({video}) | [⏬ 下载视频]({video}?download=1)")
    ],
    "html_fence": lambda sid, thumb, video: [
        Line("**Video Generation Completed**\n\nCache is disabled. Using original URL directly...\n", "reasoning"),
        Line(f"```html\n<video src='{video}' controls></video>\n```"),
    ],
    "watermark_free": lambda sid, thumb, video: [
        Line("**Video Generation Completed**\n\nWatermark-free mode enabled. Publishing video to get "
             "watermark-free version...\n", "reasoning"),
        Line(f"Video published successfully. Post ID: {sid}\nNow preparing watermark-free video...\n",
             "reasoning"),
        Line(f"```html\n<video src='{video}' controls></video>\n```"),
    ],
    "video_tag": lambda sid, thumb, video: [
        Line("缓存已关闭,正在返回源链接...\n", "reasoning"),
        Line(f"<video src='{video}' controls style='max-width:100%'></video>"),
    ],
    "click_here": lambda sid, thumb, video: [
        Line(f"> ✅ Video generated successfully, [click here]({video}) to view video~~~\n\n")
    ],
    "bare_url": lambda sid, thumb, video: [Line("✅ 视频生成完成\n"), Line(video)],
    "run_together": lambda sid, thumb, video: [
        Line("✅ 视频生成完成"), Line("📤 发布视频获取Post ID..."), Line("🔗 解析无水印URL..."), Line(video)
    ],
}

_FAILURE = {
    "seed": lambda reason: [Line(relay_text.failure_text(reason))],
    "chinese": lambda reason: [Line(f"\n\n> ❌ 生成失败: {reason}")],
    "html_fence": lambda reason: [
        Line(f"**Content Policy Violation**\n\n{reason}\n", "reasoning"),
        Line(f"❌ 生成失败: {reason}"),
    ],
    "watermark_free": lambda reason: [
        Line(f"**Content Policy Violation**\n\n{reason}\n", "reasoning"),
        Line(f"❌ 生成失败: {reason}"),
    ],
    "video_tag": lambda reason: [Line(f"❌ 视频生成失败: {reason}，请重试\n", "reasoning")],
    "click_here": lambda reason: [Line(f"❌ Generation failed: {reason}\n")],
    "bare_url": lambda reason: [Line(f"❌ 生成失败: {reason}\n")],
    "run_together": lambda reason: [Line(f"❌ 生成失败: {reason}")],
}


DIALECTS: dict[str, Dialect] = {
    d.name: d
    for d in (
        Dialect("seed", "the relay's API page: JSON spec, > ID, Progress 36..44.., [Play Online▶️](….mp4)",
                "the relay's API page (tests/fixtures/seed_stream.sse)"),
        Dialect("chinese", "the same in Chinese labels: 任务ID, 排队中, 进度, 生成完成, ▶️ 在线观看 | ⏬ 下载视频",
                "docs.22codex.xyz/427877355e0.html, apidoc.poloapi.com/340080677e0"),
        Dialect("html_fence", "status only in reasoning_content; answer ```html <video src='…/raw?…'>; "
                "finish_reason STOP, no [DONE]",
                "TheSmallHanCat/sora2api generation_handler.py", finish_reason="STOP",
                finish_with_last=True, done_on_success=False, url_style="raw"),
        Dialect("watermark_free", "sora2api in watermark-free mode: html_fence, and the Sora share ID shown as "
                "'Post ID: s_…' on the status channel (the handle sora2api remixes by)",
                "TheSmallHanCat/sora2api generation_handler.py (watermark_free_enabled)", finish_reason="STOP",
                finish_with_last=True, done_on_success=False),
        Dialect("video_tag", "Chinese status in reasoning_content; bare <video … style='max-width:100%'> with an "
                "extension-less signed URL; failure JSON written raw before [DONE]",
                "TheSmallHanCat/flow2api generation_handler.py", finish_with_last=True, url_style="signed"),
        Dialect("click_here", "⌛️ 队列中 / 🏃 进度:36.0% / [click here](….mp4) lines, no task ID",
                "docs.gptproto.com sora-2 image-to-video, docs.aiapi.xiaoliu.fun video/sora"),
        Dialect("bare_url", "status lines, then the video as a bare …/raw?se=…&sig=… URL on the last line",
                "iudd/Sora2mb OPENAI_FORMAT.md (non-stream answer), videos.openai.com URLs",
                url_style="raw"),
        Dialect("run_together", "status lines run together with no newlines, ending in a bare extension-less "
                "signed URL", "iudd/Sora2mb OPENAI_FORMAT.md", url_style="signed"),
    )
}  # fmt: skip
