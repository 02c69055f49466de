"""The incremental parser: structure over wording, split-invariance, monotone progress."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kki_widgets import Generation
from kki_widgets.protocol.sse import SSEDecoder, decode_chunk
from kki_widgets.protocol.transcript import Transcript, parse_transcript

FIXTURES = Path(__file__).parent / "fixtures"


def seed_answer() -> str:
    """The assistant text of the relay page's example stream, decoded by our own SSE layer."""
    decoder = SSEDecoder()
    raw = (FIXTURES / "seed_stream.sse").read_bytes()
    events = decoder.feed(raw) + decoder.close()
    return "".join(decode_chunk(data, extra).content for data, extra in events)


SEED = seed_answer()

CHINESE = """```json
{
  "prompt": "一只猫在冲浪",
  "orientation": "landscape",
  "duration": 15
}
```

> 任务ID：`veo3-pro:03bd7c1e9f2a4b5c8d6e`
> [数据预览](https://relay.example/web/veo3-pro:03bd7c1e9f2a4b5c8d6e) | [原始数据](https://relay.example/api/share/veo3-pro:03bd7c1e9f2a4b5c8d6e)
> 排队中...
> 生成中...
> 进度 12..37..58..

> 生成完成 🎉
> sid: s_0123456789abcdef0123456789abcdef

![封面](https://cdn.example/a/cover.webp)
[在线播放▶️](https://cdn.example/a/video.mp4)
[下载](https://cdn.example/a/video_hd.mp4?download=1)
"""

# Relays leave trailing spaces on lines; the parser must not care.
CHINESE = CHINESE.replace("video.mp4)\n", "video.mp4)   \n")

FAILED = """```json
{"prompt": "a failed rocket launch that errors out", "orientation": "portrait"}
```

> Task ID: `task_01aaaabbbbccccddddeeeeffff`
> [Data Preview](https://asyncdata.net/web/task_01aaaabbbbccccddddeeeeffff) | [Raw Data](https://asyncdata.net/source/task_01aaaabbbbccccddddeeeeffff)
> Queuing...
> Generating..

>🏃 Progress 21..34..

> ❌ Generation failed
> Failure reason: This content may violate our content policies.
"""


def test_seed_example_is_read_completely():
    generation = parse_transcript(SEED)
    assert generation.status == "completed"
    assert generation.progress == 100
    assert generation.task_id == "task_01k7e5w9z5f2d91pekrqy59rwc"
    assert generation.sid == "s_68eca3f141808191b1fd30fea1b731bd"
    assert generation.video_url.endswith("/a7a7930bd01f7f313bbb6ecb234075.mp4")
    assert generation.thumbnail_url.endswith("/38e999994cfa666de5e677d2af347f.webp")
    assert generation.preview_url == "https://asyncdata.net/web/task_01k7e5w9z5f2d91pekrqy59rwc"
    assert generation.raw_url == "https://asyncdata.net/source/task_01k7e5w9z5f2d91pekrqy59rwc"
    # The spec's sid is the *previous* video's (this answer is a remix), not this one's.
    assert generation.spec["sid"] == "s_68ec8accd80c8191ae1fc957af78caaa"
    assert generation.spec["orientation"] == "portrait"
    assert generation.error is None
    assert generation.text == SEED


def test_chinese_labels_veo_ids_duration_and_second_link():
    generation = parse_transcript(CHINESE)
    assert generation.status == "completed"
    assert generation.task_id == "veo3-pro:03bd7c1e9f2a4b5c8d6e"
    assert generation.spec == {"prompt": "一只猫在冲浪", "orientation": "landscape", "duration": 15}
    assert generation.sid == "s_0123456789abcdef0123456789abcdef"
    assert generation.video_url == "https://cdn.example/a/video.mp4"
    assert generation.download_url == "https://cdn.example/a/video_hd.mp4?download=1"
    assert generation.thumbnail_url == "https://cdn.example/a/cover.webp"
    assert generation.raw_url.endswith("/api/share/veo3-pro:03bd7c1e9f2a4b5c8d6e")


def test_failure_carries_the_relays_reason_and_ignores_the_prompt_echo():
    generation = parse_transcript(FAILED)
    assert generation.status == "failed"
    assert generation.error == "This content may violate our content policies."
    assert generation.progress == 34
    assert generation.video_url is None


@pytest.mark.parametrize(
    "line, reason",
    [
        ("> No available capacity, please try again later", "No available capacity"),
        ("> Generation failed due to network fluctuations", "network fluctuations"),
        ("> 生成失败：服务器负载过高", "服务器负载过高"),  # the reason after the label
        ("> The service is under high load", "high load"),
    ],
)
def test_failure_wordings(line, reason):
    text = "> ID: `task_01abcdefabcdefabcdefabcdef`\n> Queuing...\n" + line + "\n"
    generation = parse_transcript(text)
    assert generation.status == "failed"
    assert reason in generation.error


def test_status_moves_through_queued_generating_completed_as_text_arrives():
    transcript = Transcript()
    statuses = []
    for delta in SEED.split("\n"):
        statuses.append(transcript.feed(delta + "\n").status)
    assert statuses[0] == "queued"
    assert "generating" in statuses
    assert statuses[-1] == "completed"
    order = [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s]
    assert order == ["queued", "generating", "completed"]


def test_progress_is_live_and_never_goes_backwards():
    transcript = Transcript()
    transcript.feed("> ID: `task_01abcdefabcdefabcdefabcdef`\n>🏃 Progress 36")
    assert transcript.generation.progress == 0  # "36" might still become "360"
    transcript.feed("..")
    assert transcript.generation.progress == 36
    transcript.feed("44..12..")
    assert transcript.generation.progress == 44
    transcript.feed("999..-5..")
    assert transcript.generation.progress == 44


def test_video_link_on_the_unfinished_last_line_is_seen_when_it_closes():
    transcript = Transcript()
    transcript.feed("> ID: `task_01abcdefabcdefabcdefabcdef`\n[Play Online▶️](https://cdn.x/v.mp")
    assert transcript.generation.video_url is None
    generation = transcript.feed("4)")
    assert generation.status == "completed"
    assert generation.video_url == "https://cdn.x/v.mp4"


def test_unsafe_links_never_become_urls():
    text = (
        "> ID: `task_01abcdefabcdefabcdefabcdef`\n"
        "![x](javascript:alert(1))\n"
        "[Play Online▶️](data:text/html,<script>alert(1)</script>.mp4)\n"
        "[Play](vbscript:msgbox.mp4)\n"
    )
    transcript = Transcript()
    transcript.feed(text)
    generation = transcript.finish()
    assert generation.video_url is None
    assert generation.thumbnail_url is None
    assert any(url.startswith("javascript:") for url in transcript.unsafe_urls)


def test_spec_with_deep_nesting_or_junk_does_not_crash():
    deep = "[" * 5000 + "]" * 5000
    generation = parse_transcript(f"```json\n{deep}\n```\n> ID: `task_01abcdefabcdefabcdef`\n")
    assert generation.spec == {}
    assert generation.task_id == "task_01abcdefabcdefabcdef"


def test_endless_line_is_bounded_and_still_parsed():
    transcript = Transcript()
    for _ in range(2000):
        transcript.feed("." * 50)
    transcript.feed("\n> ID: `task_01abcdefabcdefabcdefabcdef`\n")
    assert transcript.finish().task_id == "task_01abcdefabcdefabcdefabcdef"


def test_round_trip_through_dict_keeps_everything():
    generation = parse_transcript(CHINESE)
    again = Generation.from_dict(json.loads(json.dumps(generation.to_dict())))
    assert again == generation
    assert again.text == generation.text


def _split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(text[last:point])
        last = point
    pieces.append(text[last:])
    return pieces


@settings(max_examples=150, deadline=None)
@given(
    text=st.sampled_from([SEED, CHINESE, FAILED]),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=80),
)
def test_any_split_gives_the_same_final_generation(text, cuts):
    transcript = Transcript()
    previous_progress = 0
    for piece in _split(text, cuts):
        snapshot = transcript.feed(piece)
        assert snapshot.progress >= previous_progress
        previous_progress = snapshot.progress
    final = transcript.finish()
    expected = parse_transcript(text)
    assert final == expected
    assert final.text == text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_text_never_crashes(text):
    transcript = Transcript()
    for piece in _split(text, [7, 31, 90]):
        transcript.feed(piece)
    generation = transcript.finish()
    assert generation.status in ("queued", "generating", "completed", "failed")
    assert 0 <= generation.progress <= 100
    for url in (generation.video_url, generation.thumbnail_url, generation.preview_url):
        assert url is None or url.lower().startswith(("http://", "https://"))


# ---- the answer shapes of real relays (tests/fixtures/relays) -----------------------------------

RELAYS = FIXTURES / "relays"


def relay_events(name: str) -> list[tuple[str, str]]:
    """A fixture's answer as (channel, text) events, channel "content" or "reasoning"."""
    meta = json.loads((RELAYS / f"{name}.meta.json").read_text(encoding="utf-8"))
    raw = (RELAYS / meta["file"]).read_bytes()
    if meta.get("content_encoding") == "gzip":  # as a compressing proxy sent it; the client inflates
        import gzip

        raw = gzip.decompress(raw)
    if meta.get("content_type") == "application/json":
        return [("content", json.loads(raw)["choices"][0]["message"]["content"])]
    decoder = SSEDecoder()
    events = []
    for data, extra in decoder.feed(raw) + decoder.close():
        chunk = decode_chunk(data, extra)
        events += [("reasoning", chunk.reasoning)] if chunk.reasoning else []
        events += [("content", chunk.content)] if chunk.content else []
    return events


RELAY_NAMES = sorted(p.name[: -len(".meta.json")] for p in RELAYS.glob("*.meta.json"))

# Shapes the issue describes, written here as whole answers (content channel only).
SHAPES = {
    "html fence": "```html\n<video src='https://cdn.example/v/abc.mp4' controls></video>\n```",
    "bare tag, CSS": "<video src=\"https://st.example/video/9f1c?Expires=1&Signature=a%2Fb\" "
    "controls style='max-width:100%'></video>",
    "source tag": "<video controls>\n<source src=https://cdn.example/x/raw?se=1&sig=2 type=video/mp4>\n</video>",
    "bare url": "https://storage.example.com/video/1b2c3d4e?Expires=1762980593&Signature=abc%3D",
    "raw last line": "⌛️ 排队中...\n🏃 进度 40%\nhttps://videos.example.com/az/files/0000-1/raw?se=2&sig=x",
    "click here": "> ✅ Video generated successfully, [click here](https://cdn.example/s.mp4) to view video~~~",
    "点击这里": "✅ 视频生成成功,[点击这里](https://st.example/v/8c1d?Signature=z) 查看视频~~~",
    "run together": "🎬 开始生成视频...✅ 视频生成完成📤 发布视频...https://drive.example/file/d/xyz/view",
    "fail cn": "⌛️ 任务正在队列中...\n❌ 生成失败: 内容违规 (policy)",
    "fail en": "Generation failed: Rate limit reached, try again in 20 s",
    "json spec with urls": '```json\n{"prompt": "see https://ref.example/clip.mp4", "orientation": "portrait"}\n```\n'
    "> ❌ Generation failed\n> Failure reason: No available capacity",
}

EXPECTED_SHAPES = {
    "html fence": ("completed", "https://cdn.example/v/abc.mp4"),
    "bare tag, CSS": ("completed", "https://st.example/video/9f1c?Expires=1&Signature=a%2Fb"),
    "source tag": ("completed", "https://cdn.example/x/raw?se=1&sig=2"),
    "bare url": ("completed", SHAPES["bare url"]),
    "raw last line": ("completed", "https://videos.example.com/az/files/0000-1/raw?se=2&sig=x"),
    "click here": ("completed", "https://cdn.example/s.mp4"),
    "点击这里": ("completed", "https://st.example/v/8c1d?Signature=z"),
    "run together": ("completed", "https://drive.example/file/d/xyz/view"),
    "fail cn": ("failed", None),
    "fail en": ("failed", None),
    "json spec with urls": ("failed", None),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_answer_shape_is_read_on_structure(name):
    generation = parse_transcript(SHAPES[name])
    status, video = EXPECTED_SHAPES[name]
    assert (generation.status, generation.video_url) == (status, video)
    assert generation.task_id is None and generation.raw_url is None  # "raw" is not a task ID
    assert generation.text == SHAPES[name]


def test_failure_reasons_are_the_relays_own_words():
    assert parse_transcript(SHAPES["fail cn"]).error == "内容违规 (policy)"
    assert parse_transcript(SHAPES["fail en"]).error == "Rate limit reached, try again in 20 s"
    assert parse_transcript(SHAPES["json spec with urls"]).error == "No available capacity"


def test_css_noise_is_never_progress_even_while_the_tag_streams_in():
    transcript = Transcript()
    for piece in ["<video src='https://s.example/v/1?Sig=2' controls ", "style='max-width:100%'>", "</video>"]:
        assert transcript.feed(piece).progress in (0, 100)
        assert transcript.generation.status in ("queued", "completed")
    assert transcript.finish().video_url == "https://s.example/v/1?Sig=2"
    assert parse_transcript("<div style='width:100%; height: 50%'>queued</div>").progress == 0


def test_links_after_a_failure_or_labelled_preview_are_not_the_video():
    help_link = parse_transcript("❌ 生成失败: 内容违规, see https://help.example/faq")
    assert help_link.status == "failed" and help_link.video_url is None
    after = parse_transcript("Generation failed: quota exceeded\nhttps://help.example/billing")
    assert after.status == "failed" and after.error == "quota exceeded"
    preview = parse_transcript("> [Data Preview](https://example.com/?task-preview=1)\n> Queuing...")
    assert preview.video_url is None and preview.status == "queued"


def test_the_latest_reason_wins_over_an_earlier_retry():
    transcript = Transcript()
    transcript.append_reasoning("**生成失败，正在重试**\n\n失败原因：upstream timeout\n")
    transcript.append("❌ 生成失败: This content may violate our guardrails")
    assert transcript.finish().error == "This content may violate our guardrails"


def test_a_bare_url_mid_answer_is_not_the_video():
    text = "See https://docs.example/help for the rules.\n❌ 生成失败: 内容违规"
    generation = parse_transcript(text)
    assert generation.status == "failed" and generation.video_url is None


def test_reasoning_channel_carries_status_but_stays_out_of_the_text():
    transcript = Transcript()
    transcript.append_reasoning("**Generation Process Begins**\n\nInitializing...\n")
    transcript.append_reasoning("\n**Video Generation Progress**: 37% (running)\n")
    snapshot = transcript.generation
    assert (snapshot.status, snapshot.progress, snapshot.text) == ("generating", 37, "")
    transcript.append_reasoning("**Content Policy Violation**\n\nThis may violate our guardrails.\n")
    transcript.append("❌ 生成失败: This may violate our guardrails.")
    final = transcript.finish()
    assert final.status == "failed" and final.error == "This may violate our guardrails."
    assert final.text == "❌ 生成失败: This may violate our guardrails."
    assert transcript.last_words == "生成失败: This may violate our guardrails."


@pytest.mark.parametrize("name", RELAY_NAMES)
def test_real_relay_answers_parse_to_their_expected_outcome(name):
    meta = json.loads((RELAYS / f"{name}.meta.json").read_text(encoding="utf-8"))
    expect = meta["expect"]
    transcript = _feed_events(relay_events(name))
    final = transcript.finish()
    if expect["status"] == "completed" and expect["video_url"].startswith(("/", "{")):
        # A path on the relay: only the client, which knows the relay's address, resolves it.
        assert final.status != "failed"
    elif expect["status"] == "completed":
        assert final.status == "completed" and final.video_url == expect["video_url"]
    else:
        # Failed in the transcript already, or ended with nothing: the client decides (relay.py).
        assert final.status in ("failed", "generating", "queued") and final.video_url is None
    assert final.task_id == expect["task_id"]
    assert final.text == "".join(text for channel, text in relay_events(name) if channel == "content")


def _feed_events(events, cuts=()) -> Transcript:
    transcript = Transcript()
    previous = 0
    for channel, text in events:
        for piece in _split(text, list(cuts)) if cuts else [text]:
            if channel == "content":
                transcript.append(piece)
            else:
                transcript.append_reasoning(piece)
            snapshot = transcript.generation
            assert snapshot.progress >= previous
            previous = snapshot.progress
    return transcript


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(RELAY_NAMES + [f"shape:{key}" for key in SHAPES]),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=40),
)
def test_any_split_of_a_real_shape_gives_the_same_final_generation(name, cuts):
    events = [("content", SHAPES[name[6:]])] if name.startswith("shape:") else relay_events(name)
    expected = _feed_events(events).finish()
    final = _feed_events(events, cuts).finish()
    assert final == expected
    assert final.text == expected.text
    assert final.error == expected.error
