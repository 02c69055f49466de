"""A turn completes on its video's bytes (kki_widgets.protocol.evidence + the relay's look at them), and
every other ending is told truly. Each answer here is written in a relay habit (DESIGN.md §2,
issue 19), not copied from a fixture, and served over HTTP with the media it names."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kki_testing import TEST_KEY, ExternalMedia, ReplayServer, tiny_mp4

from kki_widgets.client.relay import RelayClient
from kki_widgets.protocol.errors import GenerationFailed, StillRunning
from kki_widgets.protocol.evidence import candidates, final_message, judge_head

PAGE = (b"<!doctype html><html><body><h1>Task page</h1></body></html>", "text/html; charset=utf-8")
WEBP = (b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(40), "image/webp")
PNG = (b"\x89PNG\r\n\x1a\n" + bytes(40), "image/png")


def chunk(content: str = "", *, index: int = 0, finish=None, reasoning: str = "", **top) -> bytes:
    delta = {"content": content} if content else {}
    if reasoning:
        delta["reasoning_content"] = reasoning
    body = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1760000000,
            "model": "video-model", "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}
    body.update(top)
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


def stream_of(*deltas: str, done: bool = True) -> bytes:
    body = chunk(" ") if not deltas else b""
    body += b"".join(chunk(delta) for delta in deltas)
    if done:
        body += chunk(finish="stop") + b"data: [DONE]\n\n"
    return body


@pytest.fixture
def relay():
    server = ReplayServer(b"", piece=7, pause=0)
    yield server
    server.close()


def answer(server, body: bytes, *, media=None, **options):
    """The final Generation (or the typed error) of `body` served as the relay's answer."""
    server.body = body
    server.media = dict(media or {})
    with RelayClient(base_url=server.base_url, api_key=TEST_KEY, max_retries=0, poll_interval=0.01,
                     **options) as client:
        seen = []
        final = client.generate("a fox", on_update=seen.append)
    return final, seen


def outcome(server, body: bytes, **kwargs):
    try:
        final, _seen = answer(server, body, **kwargs)
    except (GenerationFailed, StillRunning) as error:
        return error.generation, error
    return final, None


# -- the pure reading -----------------------------------------------------------------------------


def test_every_form_of_url_is_a_candidate_and_media_ranks_first():
    text = (
        "<think>进度 40% https://a.example/think/clip.mp4</think>\n"
        "[任务详情](https://relay.example/web/task_1)\n"
        "![封面](https://cdn.example/c.webp)\n"
        "<video controls poster='/p.jpg'><source src=\"/files/v1\"></video>\n"
        "<video>https://s.example/inner</video> <a href='https://s.example/a'>x</a>\n"
        "see https://s.example/bare.mp4.\n"
    )
    ranked = candidates(text, "reasoning https://r.example/r.mp4", "https://relay.example/v1")
    urls = [c.url for c in ranked]
    for url in ("https://relay.example/files/v1", "https://relay.example/p.jpg",
                "https://s.example/inner", "https://s.example/a", "https://s.example/bare.mp4",
                "https://a.example/think/clip.mp4", "https://r.example/r.mp4",
                "https://relay.example/web/task_1", "https://cdn.example/c.webp"):
        assert url in urls, url
    assert urls.index("https://s.example/bare.mp4") < urls.index("https://relay.example/web/task_1")
    assert urls.index("https://relay.example/files/v1") < urls.index("https://cdn.example/c.webp")
    strong = {c.url for c in ranked if c.strong}
    assert "https://relay.example/files/v1" in strong and "https://s.example/inner" in strong
    assert "https://s.example/bare.mp4" in strong
    # Inside <think> or the reasoning channel a URL may be looked at, but is never strong.
    assert not strong & {"https://a.example/think/clip.mp4", "https://r.example/r.mp4"}
    assert not strong & {"https://relay.example/web/task_1", "https://cdn.example/c.webp"}


def test_the_echoed_spec_offers_no_candidates():
    text = '```json\n{"prompt": "a fox", "image": "https://u.example/in.mp4"}\n```\n'
    assert candidates(text) == []


def test_go_style_escapes_are_read_as_the_characters():
    text = "\\u003cvideo src=\\u0027x\\u0027\\u003e".replace("\\u0027", "'")
    assert [c.url for c in candidates(text.replace("x", "https://v.example/v"))] == ["https://v.example/v"]


def test_bytes_and_types_decide_what_is_video():
    mp4 = tiny_mp4()
    assert judge_head(mp4[:4096], "application/octet-stream") == "video"
    assert judge_head(PAGE[0], "video/mp4") == "not video"  # a page served as "video": a page
    assert judge_head(WEBP[0], "video/mp4") == "not video"
    assert judge_head(b"\x00\x01", "video/mp2t") == "video"
    assert judge_head(b"#EXTM3U\n#EXT-X-VERSION:3\n", "text/plain") == "video"
    assert judge_head(b"", "text/html") == "not video"


def test_a_final_message_keeps_its_paragraphs_without_ticks_or_spec():
    text = ('```json\n{"prompt": "x"}\n```\n⏳ 生成中...\n进度 10..20..30%\n\n'
            "The model needs a reference image.\n\nUse video-i2v instead.\n\nParameters:\n- image\n- prompt\n")
    message = final_message(text)
    assert message.startswith("The model needs a reference image.")
    assert "Use video-i2v instead." in message and message.endswith("- prompt")
    assert "进度" not in message and "prompt\": " not in message
    long = final_message(("word " * 20 + "\n") * 500)
    assert len(long) < 2100 and "…" in long


# -- the property: words never complete a turn; bytes do ------------------------------------------

FORMS = {
    "markdown link": "[点击这里观看视频]({url})",
    "markdown image": "![video]({url})",
    "video src": "<video src=\"{url}\" controls></video>",
    "source src": "<video controls><source src='{url}' type='video/mp4'></video>",
    "video inner text": "<video controls>{url}</video>",
    "anchor href": "<a href=\"{url}\">Download</a>",
    "anchor text": "<a>{url}</a>",
    "bare": "{url}",
    "think": "<think>checking {url}</think>",
    "reasoning channel": "{url}",  # sent in delta.reasoning_content, not in content
}
NOT_MEDIA_PATHS = ["/web/task_7f3", "/share/abc", "/index.html", "/files/9f8e7d", "/result.mp4",
                   "/thumb.webp", "/cover.png"]
WORDS = ["Generation Complete ✅", "🎉 视频生成成功！", "Your video is ready:", "⚠️ 缓存失败，返回源链接",
         "进度 100%", "Done."]


def _answer_text(origin: str, placements, words) -> tuple[str, str]:
    """(content, reasoning) of an answer offering each placement's URL in its form."""
    lines, reasoning = [], []
    # Every placement gets a word (cycled): the URL the test serves the mp4 at is always offered.
    for (form, path, relative), word in zip(placements, itertools.cycle(words)):
        url = path if relative and form not in ("bare", "think", "reasoning channel") else origin + path
        lines.append(word)
        (reasoning if form == "reasoning channel" else lines).append(FORMS[form].format(url=url))
    return "\n".join(lines), "\n".join(reasoning)


def _body(text: str, reasoning: str, cuts: list[int]) -> bytes:
    head = chunk(reasoning=reasoning + "\n") if reasoning else b""
    return head + stream_of(*_split(text, cuts))


def _split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({cut % (len(text) + 1) for cut in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True) if text[a:b]]


placement = st.tuples(st.sampled_from(sorted(FORMS)), st.sampled_from(NOT_MEDIA_PATHS), st.booleans())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Once failed when fewer words than placements left the mp4's URL out of the answer.
@example(placements=[("anchor href", "/web/task_7f3", False)] * 3 + [("anchor href", "/share/abc", False)],
         words=["Generation Complete ✅"], cuts=[], video_at=3)
@given(placements=st.lists(placement, min_size=1, max_size=4), words=st.lists(st.sampled_from(WORDS), min_size=1),
       cuts=st.lists(st.integers(0, 4000), max_size=12), video_at=st.integers(0, 3))
def test_web_pages_and_images_never_complete_and_a_served_mp4_does(relay, placements, words, cuts, video_at):
    text, reasoning = _answer_text(relay.origin, placements, words)
    media = {path: (WEBP if path.endswith(".webp") else PNG if path.endswith(".png") else PAGE)
             for _, path, _ in placements}
    final, _ = outcome(relay, _body(text, reasoning, cuts), media=media)
    assert final.status != "completed", text

    # The same answer with a real mp4 at one of its URLs (whatever its form or path) completes.
    _form, path, _relative = placements[video_at % len(placements)]
    media[path] = (tiny_mp4(), "application/octet-stream")
    final, seen = answer(relay, _body(text, reasoning, cuts), media=media)
    assert final.status == "completed" and not final.unverified
    assert final.video_url == relay.origin + path
    assert all(snapshot.status not in ("completed", "failed") for snapshot in seen[:-1])


# -- the cases of issue 19, each in its relay's habit -----------------------------------------------


def test_a_warning_then_the_relays_own_page_is_the_failure_not_a_video(relay):
    body = stream_of("⏳ 正在生成视频...\n", "⚠️ 生成遇到问题：素材审核未通过，请修改提示词\n",
                     f"[查看任务]({relay.origin}/web/task_77)\n")
    final, error = outcome(relay, body, media={"/web/task_77": PAGE})
    assert final.status == "failed" and isinstance(error, GenerationFailed)
    assert "素材审核未通过" in final.error and final.video_url is None


def test_progress_in_think_and_a_relative_video_tag_complete(relay):
    body = stream_of("<think>\n", "排队中...\n", "进度 35%\n", "进度 88%\n", "</think>\n",
                     "<video src=\"/files/out/4b1c.mp4\" controls></video>")
    final, seen = answer(relay, body, media={"/files/out/4b1c.mp4": (tiny_mp4(), "video/mp4")})
    assert final.status == "completed" and final.video_url == relay.origin + "/files/out/4b1c.mp4"
    assert max(s.progress for s in seen[:-1]) >= 35


@pytest.mark.parametrize("fenced", [False, True])
def test_a_json_task_record_is_read_by_its_fields(relay, fenced):
    record = json.dumps({"id": "vid_5521", "object": "video", "status": "failed",
                         "error": {"code": "moderation_blocked",
                                   "message": "Your request was blocked by our moderation system."}},
                        indent=2)
    text = f"```json\n{record}\n```" if fenced else record
    final, _error = outcome(relay, stream_of(*[text[i:i + 5] for i in range(0, len(text), 5)]))
    assert final.status == "failed" and final.task_id == "vid_5521"
    assert final.error == "Your request was blocked by our moderation system."


def test_a_json_task_record_that_completed_names_its_video(relay):
    record = {"task_id": "t-88", "status": "succeeded", "output": f"{relay.origin}/o/88",
              "thumbnail": f"{relay.origin}/o/88.webp"}
    final, _ = answer(relay, stream_of(json.dumps(record)), media={"/o/88": (tiny_mp4(), "video/mp4")})
    assert final.status == "completed" and final.video_url == f"{relay.origin}/o/88"
    assert final.task_id == "t-88" and final.thumbnail_url == f"{relay.origin}/o/88.webp"


def test_a_relay_that_stops_while_still_generating_says_so(relay):
    body = stream_of("🎬 视频生成中...\n", "进度 40%\n",
                     "⏱ The stream has ended, but your video may still be generating. Check back later.\n")
    final, error = outcome(relay, body)
    assert final.status == "still_running" and isinstance(error, StillRunning)
    assert "may still be generating" in final.error and "still being made" in final.error


def test_a_task_id_and_an_invitation_to_check_later_stays_resumable(relay):
    body = stream_of("Task submitted.\n", "Task ID: `gen-4f2a9c`\n", "Query its status later with this ID.\n")
    final, error = outcome(relay, body)
    assert final.status == "still_running" and final.task_id == "gen-4f2a9c"
    assert "gen-4f2a9c" in final.error and "%sora resume gen-4f2a9c" in final.error
    assert "Query its status later" in final.error
    assert isinstance(error, StillRunning) and not isinstance(error, GenerationFailed)


def test_a_multi_paragraph_refusal_is_kept_whole(relay):
    refusal = ("❌ This model only accepts image-to-video requests.\n\n"
               "Please use veo-t2v for text-only prompts instead.\n\n"
               "Parameters:\n- image (required)\n- prompt\n- duration: 5 or 8")
    final, _ = outcome(relay, stream_of("正在处理...\n", refusal))
    assert final.status == "failed"
    for part in ("only accepts image-to-video", "use veo-t2v", "Parameters:", "duration: 5 or 8"):
        assert part in final.error
    assert "\n\n" in final.error


def test_failures_without_a_fail_word(relay):
    for words in ("Daily limit reached for this key.", "Timed out waiting for the upstream model.",
                  "This model needs 1-2 reference images: use frames-to-video instead."):
        final, _ = outcome(relay, stream_of("⏳ queued\n", words))
        assert final.status == "failed" and words.rstrip(".") in final.error


def test_an_answer_with_nothing_is_an_ending_without_a_video(relay):
    final, error = outcome(relay, stream_of("Here is a haiku about foxes.\nSnow on the red fur."))
    assert final.status == "failed" and isinstance(error, GenerationFailed)
    assert "Snow on the red fur." in final.error and "charge" in final.error


def test_a_404_behind_a_video_looking_link_is_not_a_video(relay):
    final, _ = outcome(relay, stream_of("✅ 生成完成\n", f"[在线播放]({relay.origin}/v/gone.mp4)"))
    assert final.status == "failed" and final.video_url is None


# -- unverified: the kernel cannot reach the media ---------------------------------------------------


@pytest.mark.parametrize("line", ["<video src='https://media.unreachable.example/v/91ab' controls></video>",
                                  "[Watch](https://media.unreachable.example/v/91ab.mp4)"])
def test_strong_text_evidence_completes_unverified_when_the_kernel_cannot_look(relay, line):
    final, _ = answer(relay, stream_of("Generation complete\n", line))
    assert final.status == "completed" and final.unverified
    assert any("Unverified" in notice for notice in final.notices)


def test_weak_text_evidence_does_not_complete_when_the_kernel_cannot_look(relay):
    final, _ = outcome(relay, stream_of("Done: https://media.unreachable.example/v/91ab"))
    assert final.status == "failed" and "https://media.unreachable.example/v/91ab" in final.error


def test_a_refused_private_host_cannot_be_looked_at(relay, monkeypatch):
    # An outside relay pointing at a private address: the policy refuses, the text decides.
    world = ExternalMedia({"https://cdn.example/x.mp4": (tiny_mp4(), "video/mp4")})
    world.patch_dns(monkeypatch)
    import ipaddress

    import kki_widgets.client.relay as relay_module

    original = relay_module.resolve
    monkeypatch.setattr(relay_module, "resolve", lambda host, port: [ipaddress.ip_address("10.1.2.3")]
                        if host == "nas.example" else original(host, port))
    final, _ = answer(relay, stream_of("[Play](http://nas.example/x.mp4)"), transport=world.transport())
    assert final.status == "completed" and final.unverified
    assert not any("nas.example" in url for url in world.asked)


# -- wire quirks -----------------------------------------------------------------------------------


def test_content_in_a_second_choice_and_growing_indexes(relay):
    url = f"{relay.origin}/m/1"
    body = b"".join(
        b"data: " + json.dumps({"id": "", "created": 0, "choices": [
            {"index": 0, "delta": {}}, {"index": 1, "delta": {"content": part}}]}).encode() + b"\n\n"
        for part in ["进度 50%\n", f"[video]({url})"])
    body += b"".join(chunk(c, index=i + 5) for i, c in enumerate(" ok"))
    body += b"data: [DONE]\n\n"
    final, _ = answer(relay, body, media={"/m/1": (tiny_mp4(), "video/mp4")})
    assert final.status == "completed" and final.video_url == url


def test_one_character_per_delta_with_escapes_and_stop_before_the_video(relay):
    url = f"{relay.origin}/m/2"
    text = f"<video src='{url}'></video>"
    body = b"".join(
        b'data: {"id":"","created":0,"choices":[{"index":0,"delta":{"content":"'
        + json.dumps(ch)[1:-1].replace("<", "\\u003c").replace(">", "\\u003e").encode() + b'"}}]}\n\n'
        for ch in "Progress 10..50..\n")
    body += chunk(finish="stop")  # "stop" first, the video after it
    body += b"".join(
        b'data: {"choices":[{"index":0,"delta":{"content":'
        + json.dumps(ch).replace("<", "\\u003c").replace(">", "\\u003e").encode() + b'}}]}\n\n'
        for ch in text)
    final, _ = answer(relay, body + b"data: [DONE]\n\n", media={"/m/2": (tiny_mp4(), "video/mp4")})
    assert final.status == "completed" and final.video_url == url


def test_a_task_with_an_estimate_is_still_running_not_refused(relay):
    final, _ = outcome(relay, stream_of("任务已提交 ✅\n", "任务ID: `vid-20251107-88`\n", "预计需要 3 分钟生成。\n"))
    assert final.status == "still_running" and final.task_id == "vid-20251107-88"
    assert "预计需要 3 分钟生成" in final.error


def test_a_task_that_the_relay_says_failed_is_failed(relay):
    final, _ = outcome(relay, stream_of("Task ID: `gen-77aa`\n", "Status: FAILED - upstream moderation blocked it\n"))
    assert final.status == "failed" and "upstream moderation blocked it" in final.error


def test_a_url_run_into_words_and_an_mp4_in_image_syntax(relay):
    final, _ = answer(relay, stream_of(f"视频地址：{relay.origin}/k/7.mp4视频已生成，请查收"),
                      media={"/k/7.mp4": (tiny_mp4(), "video/mp4")})
    assert final.status == "completed" and final.video_url == f"{relay.origin}/k/7.mp4"
    final, _ = answer(relay, stream_of("![video](https://media.unreachable.example/out/7.mp4)"))
    assert final.status == "completed" and final.unverified


def test_a_nested_task_record_with_the_gateways_own_words(relay):
    record = {"request_id": "r-1", "output": {"task_id": "wan-31", "task_status": "SUCCEEDED",
                                              "video_url": f"{relay.origin}/w/31"}}
    final, _ = answer(relay, stream_of(json.dumps(record)), media={"/w/31": (tiny_mp4(), "video/mp4")})
    assert final.status == "completed" and final.video_url == f"{relay.origin}/w/31"
    running = {"output": {"task_id": "wan-32", "task_status": "RUNNING"}}
    final, _ = outcome(relay, stream_of(json.dumps(running)))
    assert final.status == "still_running" and final.task_id == "wan-32"


def test_a_failed_record_with_a_link_is_failed(relay):
    record = {"id": "x-9", "status": "failed", "fail_reason": "prompt rejected by safety filter",
              "url": "https://media.unreachable.example/help.mp4"}
    final, _ = outcome(relay, stream_of(json.dumps(record)))
    assert final.status == "failed" and final.error == "prompt rejected by safety filter"


def test_a_task_whose_raw_data_never_answers_stays_pending_not_failed(relay):
    from kki_widgets.conversation.session import Conversation

    relay.body = stream_of("Task ID: `gen-cut-01`\n", "进度 20%\n", done=False)  # cut after the ID
    client = RelayClient(base_url=relay.base_url, api_key=TEST_KEY, max_retries=0, poll_interval=0.01)
    conversation = Conversation(client=client, store=None, prices={"sora-2": 0.4})
    turn = conversation.send("a fox")
    assert turn.status == "still_running" and turn.task_id == "gen-cut-01"
    # Not a failure nor a cancel: what a finished video costs, while the relay still makes it.
    assert turn.cost_text == "estimate $0.40 — still being made at the relay"
    assert "%sora resume gen-cut-01" in turn.error and "not sent again" in turn.error
    assert [t.task_id for t in conversation.pending] == ["gen-cut-01"]  # resumable
    assert len(relay.requests) == 1  # never sent again
