"""Dialects of the relay families collected for issue 19 (grok, jimeng/Seedance, Qwen/wan, a
sora2api fork): the words, channels, choice indexes and endings of each, as their own code writes
them. Each mirrors held-out answers in ``tests/fixtures/relays/`` (``"split": "heldout"``).

They are :class:`~kki_widgets.simulator.dialects.Dialect` subclasses overriding the word methods,
plus :meth:`reshape`, which lets a family change the chunk envelope (jimeng's growing choice
index and missing ``created``). Pure: no I/O.
"""

from __future__ import annotations

import dataclasses

from .dialects import Dialect, Line

JIMENG_SITE_NOTE = "如果您在即梦官网看到已生成的视频，可能是获取结果时出现了问题。"


def _path_of(url: str) -> str:
    """``http://host:port/cdn/x.mp4`` → ``/cdn/x.mp4``: how a relay with no base URL set links."""
    return "/" + url.split("/", 3)[3]


@dataclasses.dataclass(frozen=True)
class GrokThink(Dialect):
    """chenyme/grok2api processer.py @1e1c2ba: progress '视频已生成N%' inside <think>…</think> in
    content, the video as <video src> holding a path relative to the relay; upstream errors as
    'Error: <message>' (the think block left open) with finish_reason stop."""

    def opening(self, task_id: str, origin: str) -> list[Line]:
        return []  # the relay says nothing until the first progress value

    def tick(self) -> Line | None:
        return None

    def generating(self) -> Line | None:
        return None

    def progress(self, value: int, first: bool) -> list[Line]:
        return [Line(f"<think>视频已生成{value}%\n" if first else f"视频已生成{value}%\n")]

    def complete(self, sid: str, thumbnail_url: str, video_url: str) -> list[Line]:
        return [
            Line("视频已生成100%</think>\n"),
            Line(f'<video src="{_path_of(video_url)}" controls="controls" width="500" height="300"></video>\n'),
        ]

    def failure(self, reason: str) -> list[Line]:
        return [Line(f"Error: {reason}")]

    def reshape(self, chunk: dict, kind: str) -> dict | None:
        return _single_stop(chunk, kind, stop_on_failure=True)


def _single_stop(chunk: dict, kind: str, *, stop_on_failure: bool) -> dict | None:
    """Families that close with one `delta: {}` stop chunk (no empty chunk before it)."""
    choice = chunk["choices"][0]
    if kind == "end" and choice["finish_reason"] is None:
        return None
    if kind == "failure" and stop_on_failure:
        choice["finish_reason"] = "stop"
    return chunk


@dataclasses.dataclass(frozen=True)
class Jimeng(Dialect):
    """zhizinan1997/jimeng-free-api-all chat.ts @69a1ec0 (and its Seedance fork): two status lines
    and '.' keep-alives in choices[0], the answer in choices[1] (an extension-less link as
    ![video](…) and as text), the stop in choices[2]; every delta repeats the role and no chunk has
    `created`. A failure is a '⚠️ … 遇到问题' paragraph with a link to the relay's web page and the
    history ID, in choices[1] with finish_reason stop."""

    def opening(self, task_id: str, origin: str) -> list[Line]:
        return [Line("🎬 视频生成中，请稍候...\n这可能需要1-2分钟，请耐心等待"), Line("\n\n🎬 视频生成已开始，这可能需要几分钟时间...")]

    def tick(self) -> Line | None:
        return Line(".")

    def generating(self) -> Line | None:
        return Line(".")

    def progress(self, value: int, first: bool) -> list[Line]:
        return [Line(".")]  # the relay shows no numbers, only its 5-second keep-alive

    def complete(self, sid: str, thumbnail_url: str, video_url: str) -> list[Line]:
        return [Line(f"\n\n✅ 视频生成完成！\n\n![video]({video_url})\n\n您可以：\n1. 直接查看上方视频\n"
                     f"2. 使用以下链接下载或分享：{video_url}")]  # fmt: skip

    def failure_of(self, task_id: str, origin: str, reason: str) -> list[Line]:
        return [Line(f"\n\n⚠️ 视频生成过程中遇到问题: {reason}\n\n{JIMENG_SITE_NOTE}\n\n请访问即梦官网查看您的创作历史："
                     f"{origin}/web/{task_id}\n\n历史记录ID: {task_id}（您可以使用此ID在官网搜索您的视频）")]  # fmt: skip

    def failure(self, reason: str) -> list[Line]:
        return self.failure_of("", "", reason)

    def reshape(self, chunk: dict, kind: str) -> dict | None:
        choice = chunk["choices"][0]
        if kind == "opening":
            return None  # the first chunk already carries words
        if kind == "end":
            if choice["finish_reason"] is None:
                return None  # the relay sends its stop chunk only, no empty chunk before it
            choice["index"] = 2
            choice["delta"] = {"role": "assistant", "content": ""}
        elif kind in ("complete", "failure"):
            choice["index"] = 1
            if kind == "failure":
                choice["finish_reason"] = "stop"
        if "content" in choice["delta"]:
            choice["delta"] = {"role": "assistant", **choice["delta"]}
        return {key: chunk[key] for key in ("id", "model", "object", "choices")}


@dataclasses.dataclass(frozen=True)
class QwenWan(Dialect):
    """mir-ashiq/QwenAI-API routes.js @4bd77f3: a role-only first chunk, then the result content
    (for wan text-to-video: the bare video URL) in deltas of 16 code points, a stop chunk and
    [DONE]; a failure is the content 'Error: <message>'."""

    def opening(self, task_id: str, origin: str) -> list[Line]:
        return []

    def tick(self) -> Line | None:
        return None

    def generating(self) -> Line | None:
        return None

    def complete(self, sid: str, thumbnail_url: str, video_url: str) -> list[Line]:
        points = list(video_url)
        return [Line("".join(points[start : start + 16])) for start in range(0, len(points), 16)]

    def failure(self, reason: str) -> list[Line]:
        return [Line(f"Error: {reason}")]

    def reshape(self, chunk: dict, kind: str) -> dict | None:
        if kind == "opening":
            chunk["choices"][0]["delta"] = {"role": "assistant"}
        return _single_stop(chunk, kind, stop_on_failure=False)


def _staged(stage: str, status: str, text: str, progress: int | None = None) -> Line:
    parts = [f"[{stage}]", f"({status})", *([f"{progress}%"] if progress is not None else []), text]
    return Line(" ".join(parts), "reasoning")


@dataclasses.dataclass(frozen=True)
class SoraStaged(Dialect):
    """zhu88cc/Modified_Sora2api generation_handler.py @9addffe: reasoning as
    '[stage] (status) N% text', the answer a ```html <video src='…/raw?…'>``` fence with
    finish_reason STOP, then [DONE]; a policy refusal as '[error] (error) Content policy
    violation: <reason>' and '❌ 生成失败: <reason>'."""

    def opening(self, task_id: str, origin: str) -> list[Line]:
        return [_staged("generation", "started", "Initializing generation request...")]

    def tick(self) -> Line | None:
        return None

    def generating(self) -> Line | None:
        return None

    def progress(self, value: int, first: bool) -> list[Line]:
        return [_staged("generation", "processing", f"Video generation progress: {value}%", value)]

    def complete(self, sid: str, thumbnail_url: str, video_url: str) -> list[Line]:
        return [
            _staged("generation", "completed", "Video generation completed. Cache is disabled, using original "
                    "URL directly...", 100),
            Line(f"```html\n<video src='{video_url}' controls></video>\n```"),
        ]  # fmt: skip

    def failure(self, reason: str) -> list[Line]:
        return [_staged("error", "error", f"Content policy violation: {reason}"), Line(f"❌ 生成失败: {reason}")]


FAMILY_DIALECTS = (
    GrokThink("grok_think", "grok2api: progress inside <think>…</think> in content, the video as <video src> with a "
              "path relative to the relay; 'Error: …' failures", "chenyme/grok2api processer.py @1e1c2ba"),
    Jimeng("jimeng", "jimeng/Seedance: '.' keep-alives, the answer in choices[1] (![video](extension-less link)), "
           "stop in choices[2], no created; '⚠️ …遇到问题' failures with a web-page link",
           "zhizinan1997/jimeng-free-api-all chat.ts @69a1ec0", url_style="signed"),
    QwenWan("qwen_wan", "Qwen/wan: only the bare video URL, in 16-character deltas; 'Error: …' failures",
            "mir-ashiq/QwenAI-API routes.js @4bd77f3", url_style="file"),
    SoraStaged("sora_staged", "sora2api fork: '[stage] (status) N% text' on the reasoning channel, ```html <video>``` "
               "with STOP, then [DONE]", "zhu88cc/Modified_Sora2api generation_handler.py @9addffe",
               finish_reason="STOP", finish_with_last=True, url_style="raw"),
)  # fmt: skip
