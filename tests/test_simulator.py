"""The simulator over real HTTP: wire format, media, continuity, validation, CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import imageio_ffmpeg
import openai
import pytest

from kki_widgets.simulator import DEFAULT_MODELS, Simulator

TASK_ID = re.compile(r"task_[0-9a-hjkmnp-tv-z]{26}")
SID = re.compile(r"\bs_[0-9a-f]{32}\b")
MP4 = re.compile(r"https?://\S+?\.mp4")
WEBP = re.compile(r"https?://\S+?\.webp")
AUTH = {"Authorization": "Bearer sim"}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    # A media folder of its own: these tests count and inspect what it renders.
    with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0, seed=7,
                   media_dir=tmp_path_factory.mktemp("renders")) as simulator:  # fmt: skip
        yield simulator


def stream_text(sim: Simulator, messages: list[dict], model: str = "sora-2", **extra) -> str:
    client = openai.OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)
    stream = client.chat.completions.create(model=model, messages=messages, stream=True, extra_body=extra or None)
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def spec_of(text: str) -> dict:
    fenced = re.search(r"```json\n(.*?)```", text, re.S)
    assert fenced, text
    return json.loads(fenced.group(1))


def ffmpeg_info(path: Path) -> str:
    result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                            capture_output=True, text=True, check=False)  # fmt: skip
    return result.stderr


def test_openai_client_streams_a_complete_generation_with_real_media(sim, tmp_path):
    text = stream_text(sim, [{"role": "user", "content": "A lighthouse in a storm, 100% drama"}])
    task_id = TASK_ID.search(text).group(0)
    sid = SID.search(text).group(0)
    video_url, thumbnail_url = MP4.search(text).group(0), WEBP.search(text).group(0)
    assert f"{sim.origin}/source/{task_id}" in text and f"{sim.origin}/web/{task_id}" in text
    assert "Generation Complete ✅" in text and "Queuing." in text and "Generating" in text
    assert spec_of(text) == {"prompt": "A lighthouse in a storm, 100% drama", "orientation": "portrait", "duration": 10}
    progress = [int(value) for value in re.findall(r"(\d+)\.\.", text.split("Progress", 1)[1])]
    assert progress == sorted(set(progress)) and len(progress) >= 3

    video = tmp_path / "clip.mp4"
    video.write_bytes(httpx.get(video_url).content)
    info = ffmpeg_info(video)
    assert "Video: h264" in info and "yuv420p" in info and "320x568" in info
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(video))
    assert frames > 10 and seconds > 1
    thumbnail = httpx.get(thumbnail_url)
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/webp"
    assert thumbnail.content[:4] == b"RIFF" and thumbnail.content[8:12] == b"WEBP"

    raw = httpx.get(f"{sim.origin}/source/{task_id}").json()
    assert raw["status"] == "completed" and raw["progress"] == 100 and raw["url"] == video_url
    assert raw["thumbnail_url"] == thumbnail_url and raw["content"] == text and raw["error"] is None
    assert sim.tasks[task_id].sid == sid and sim.tasks[task_id].parent_sid is None

    from kki_widgets.protocol.transcript import parse_transcript

    parsed = parse_transcript(text)
    assert parsed.status == "completed" and parsed.task_id == task_id and parsed.sid == sid
    assert parsed.video_url == video_url


def test_raw_sse_matches_the_relay_format(sim):
    body = {"model": "veo3", "messages": [{"role": "user", "content": "wire"}], "stream": True}
    response = httpx.post(f"{sim.base_url}/chat/completions", json=body, headers=AUTH, timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = [block for block in response.text.split("\n\n") if block]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": None}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    deltas = [chunk["choices"][0]["delta"].get("content") for chunk in chunks[1:-2]]
    assert deltas[:4] == ["```", "json", "\n", "{\n"] and None in deltas  # empty delta after the spec
    assert any(delta and delta.startswith("\n\n> ID: `task_") for delta in deltas)
    assert spec_of("".join(delta or "" for delta in deltas))["duration"] == 8  # veo3 default


def test_non_streaming_returns_a_chat_completion(sim):
    body = {"model": "sora-2", "messages": [{"role": "user", "content": "no stream, duration: 4 seconds"}]}
    response = httpx.post(f"{sim.base_url}/chat/completions", json=body, headers=AUTH, timeout=30)
    assert response.status_code == 200
    completion = response.json()
    assert completion["object"] == "chat.completion"
    content = completion["choices"][0]["message"]["content"]
    assert completion["choices"][0]["finish_reason"] == "stop" and "Generation Complete" in content
    assert spec_of(content)["duration"] == 4 and MP4.search(content)


def test_two_turn_conversation_continues_from_the_previous_sid(sim):
    first_prompt = "A red kite over a beach"
    first = stream_text(sim, [{"role": "user", "content": first_prompt}])
    first_sid = SID.search(first).group(0)
    history = [
        {"role": "user", "content": first_prompt},
        {"role": "assistant", "content": first},
        {"role": "user", "content": "Now the kite turns into a bird"},
    ]
    second = stream_text(sim, history)
    assert spec_of(second)["sid"] == first_sid
    second_sid = SID.findall(second)[-1]
    assert second_sid != first_sid
    assert MP4.search(second).group(0) != MP4.search(first).group(0)
    task = sim.tasks[TASK_ID.search(second).group(0)]
    assert task.parent_sid == first_sid and task.chain == (first_prompt,)
    assert sim.requests[-1]["messages"] == history  # what the client sent, verbatim
    # A third turn chains from the second sid, not the first one echoed in the spec.
    third = stream_text(sim, [*history, {"role": "assistant", "content": second},
                              {"role": "user", "content": "The bird lands"}])  # fmt: skip
    assert spec_of(third)["sid"] == second_sid


def test_identical_requests_are_new_generations_whose_clips_are_reused_later(sim):
    messages = [{"role": "user", "content": "cache me"}]
    before = sim.renderer.renders
    first, second = stream_text(sim, messages), stream_text(sim, messages)
    # A real model never answers the same request with the same video (takes, forced retries).
    assert MP4.search(first).group(0) != MP4.search(second).group(0)
    assert TASK_ID.search(first).group(0) != TASK_ID.search(second).group(0)
    assert sim.renderer.renders == before + 2
    # A restarted simulator on the same media folder reuses the rendered clips.
    with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0, media_dir=sim.media_dir) as again:
        third = stream_text(again, messages)
        assert again.renderer.renders == 0
    name = MP4.search(first).group(0).rsplit("/", 1)[-1]
    assert MP4.search(third).group(0).endswith(name)


def test_variants_caps_how_many_clips_repeats_cycle_through(tmp_path):
    # What the benchmarks use: repeats reuse their clips, so no ffmpeg runs while they measure.
    messages = [{"role": "user", "content": "cycle me"}]
    with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0, media_dir=tmp_path,
                   variants=2) as cycling:  # fmt: skip
        clips = [MP4.search(stream_text(cycling, messages)).group(0) for _ in range(5)]
        assert cycling.renderer.renders == 2 and cycling.submissions == 5
    assert clips[0] != clips[1] and clips[::2] == [clips[0]] * 3 and clips[1::2] == [clips[1]] * 2


def test_orientation_from_model_name_renders_a_landscape_clip(sim, tmp_path):
    landscape = stream_text(sim, [{"role": "user", "content": "wide"}], model="sora_video2-landscape")
    assert spec_of(landscape)["orientation"] == "landscape"
    video = tmp_path / "wide.mp4"
    video.write_bytes(httpx.get(MP4.search(landscape).group(0)).content)
    assert "568x320" in ffmpeg_info(video)


def test_extra_json_fields_are_ignored_like_a_real_chat_relay(sim):
    # No chat relay documents these fields: the simulator must not honour them either, or it
    # would hide a client that sends options where nobody reads them.
    ignored = stream_text(sim, [{"role": "user", "content": "wide too"}], orientation="landscape", duration=5)
    assert spec_of(ignored) == {"prompt": "wide too", "orientation": "portrait", "duration": 10}
    # Even malformed ones: unknown fields are not validated by relays that do not read them.
    odd = stream_text(sim, [{"role": "user", "content": "odd"}], orientation="square", duration="10")
    assert spec_of(odd)["orientation"] == "portrait"


@pytest.mark.parametrize(
    ("prompt", "model", "orientation", "duration"),
    [
        ("a fox (landscape 16:9, horizontal, duration: 15 seconds)", "sora-2", "landscape", 15),
        ("a fox, 9:16, 10s", "sora-2", "portrait", 10),
        ("一只狐狸，横屏，15秒", "sora-2", "landscape", 15),
        ("一只狐狸，竖屏", "sora-2-pro", "portrait", 15),
        ("a fox, vertical", "sora-2", "portrait", 10),
        ("a fox in the snow", "sora2-landscape-15s", "landscape", 15),
        ("a fox", "sora2pro-hd-portrait-10s", "portrait", 10),
        ("a fox (landscape 16:9)", "sora_video2-hd-portrait-15s", "portrait", 15),  # the name wins
        ("a fox", "sora_video2-landscape-hd", "landscape", 10),
        ("a fox", "veo_3_1_t2v_fast_landscape", "landscape", 8),
        ("a fox", "veo_3_1-landscape-fast", "landscape", 8),
        ("a fox", "veo_3_1-fast", "portrait", 8),
    ],
)
def test_orientation_and_length_come_from_words_or_the_model_name(sim, prompt, model, orientation, duration):
    spec = spec_of(stream_text(sim, [{"role": "user", "content": prompt}], model=model))
    assert (spec["orientation"], spec["duration"]) == (orientation, duration)
    assert spec["prompt"] == prompt  # echoed as sent, words included


@pytest.mark.parametrize(
    "model",
    [
        "sora2pro-hd-landscape-25s",  # the HD family sells 10 and 15 s only
        "sora2-landscape-12s",
        "sora2-landscape",
        "sora_video2-landscape-portrait",
        "sora_video2-hd-hd",
        "sora_video2-4k",
        "veo_3_1_t2v_fast_square",
        "veo_3_1-landscape-15s",
    ],
)
def test_model_names_a_family_does_not_sell_are_not_found(sim, model):
    submitted = sim.submissions
    body = {"model": model, "messages": [{"role": "user", "content": "x"}], "stream": True}
    response = httpx.post(f"{sim.base_url}/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found" and model in error["message"]
    assert sim.submissions == submitted


def test_honour_json_options_is_an_opt_in():
    with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0, honour_json_options=True) as strict:
        explicit = stream_text(strict, [{"role": "user", "content": "wide too"}], orientation="landscape", duration=5)
        assert spec_of(explicit) == {"prompt": "wide too", "orientation": "landscape", "duration": 5}
        for field, value in (("orientation", "square"), ("duration", "10")):
            body = {"model": "sora-2", "messages": [{"role": "user", "content": "x"}], field: value}
            response = httpx.post(f"{strict.base_url}/chat/completions", json=body, headers=AUTH)
            assert response.status_code == 400
            assert response.json()["error"]["param"] == field


def test_image_parts_are_accepted(sim):
    png = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    content = [
        {"type": "text", "text": "animate this"},
        {"type": "image_url", "image_url": {"url": png}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    text = stream_text(sim, [{"role": "user", "content": content}])
    task = sim.tasks[TASK_ID.search(text).group(0)]
    assert task.status == "completed" and len(task.images) == 2
    assert task.images[0].startswith("image/png") and task.images[1] == "https://example.com/cat.png"


def test_range_request_gets_206(sim):
    text = stream_text(sim, [{"role": "user", "content": "ranged"}])
    video_url = MP4.search(text).group(0)
    whole = httpx.get(video_url)
    assert whole.headers["content-type"] == "video/mp4" and whole.headers.get("accept-ranges") == "bytes"
    part = httpx.get(video_url, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.content) == 100
    assert part.content == whole.content[:100]
    assert part.headers["content-range"] == f"bytes 0-99/{len(whole.content)}"
    assert httpx.get(f"{sim.origin}/cdn/../../etc/passwd").status_code == 404
    assert httpx.get(f"{sim.origin}/cdn/{'0' * 30}.mp4").status_code == 404


def test_side_routes(sim):
    text = stream_text(sim, [{"role": "user", "content": "<script>alert(1)</script>"}])
    task_id = TASK_ID.search(text).group(0)
    page = httpx.get(f"{sim.origin}/web/{task_id}")
    assert page.status_code == 200 and "<script>alert" not in page.text and "&lt;script&gt;" in page.text
    missing = httpx.get(f"{sim.origin}/source/task_{'0' * 26}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "task_not_found"
    assert httpx.get(f"{sim.origin}/web/nope").status_code == 404
    models = httpx.get(f"{sim.base_url}/models", headers=AUTH).json()
    assert [model["id"] for model in models["data"]] == list(DEFAULT_MODELS)
    assert httpx.get(f"{sim.base_url}/models").status_code == 401
    assert httpx.get(f"{sim.origin}/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    ("body", "status", "code", "needle"),
    [
        ({"model": "sora-3", "messages": [{"role": "user", "content": "x"}]}, 404, "model_not_found", "sora-2"),
        ({"messages": [{"role": "user", "content": "x"}]}, 400, "missing_model", "model"),
        ({"model": "sora-2", "messages": []}, 400, "invalid_value", "non-empty"),
        ({"model": "sora-2", "messages": [{"role": "robot", "content": "x"}]}, 400, "invalid_value", "role"),
        ({"model": "sora-2", "messages": [{"role": "user", "content": "  "}]}, 400, "invalid_value", "non-empty text"),
        ({"model": "sora-2", "messages": [{"role": "assistant", "content": "x"}]}, 400, "invalid_value", "last message"),
        ({"model": "sora-2", "messages": [{"role": "user", "content": [{"type": "video"}]}]}, 400, "invalid_value", "type"),
        ({"model": "sora-2", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}]}]}, 400, "invalid_value", "base64"),
        ({"model": "sora-2", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, 400, "invalid_value", "stream"),
        ([1, 2], 400, "invalid_value", "JSON object"),
    ],
)
def test_validation_errors(sim, body, status, code, needle):
    submitted = sim.submissions
    response = httpx.post(f"{sim.base_url}/chat/completions", json=body, headers=AUTH)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and needle in error["message"] and error["type"] == "invalid_request_error"
    assert sim.submissions == submitted


def test_bad_json_and_missing_auth(sim):
    bad = httpx.post(f"{sim.base_url}/chat/completions", content=b"{nope", headers=AUTH)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
    body = {"model": "sora-2", "messages": [{"role": "user", "content": "x"}]}
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}):
        response = httpx.post(f"{sim.base_url}/chat/completions", json=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == {
            "message": response.json()["error"]["message"], "type": "invalid_request_error",
            "param": None, "code": "invalid_api_key",
        }  # fmt: skip


def test_fixed_api_key_and_no_header_is_stored():
    with Simulator(api_key="sk-right", queue_seconds=0, generate_seconds=0, step_seconds=0) as sim:
        body = {"model": "sora-2", "messages": [{"role": "user", "content": "x"}]}
        wrong = httpx.post(f"{sim.base_url}/chat/completions", json=body, headers={"Authorization": "Bearer sk-wrong"})
        assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
        assert "sk-wrong" not in wrong.text
        right = httpx.post(f"{sim.base_url}/chat/completions", json=body,
                           headers={"Authorization": "Bearer sk-right"}, timeout=30)  # fmt: skip
        assert right.status_code == 200
        assert "sk-right" not in repr(sim.requests) and "sk-wrong" not in repr(sim.requests)
        assert "sk-right" not in repr(vars(sim))


def test_constructor_rejects_bad_options():
    with pytest.raises(ValueError, match="unknown fault"):
        Simulator(faults=["explode"])
    with pytest.raises(ValueError, match="speed"):
        Simulator(speed=0)
    with pytest.raises(ValueError, match="port"):
        Simulator(port=70000)
    with pytest.raises(ValueError, match="queue_seconds"):
        Simulator(queue_seconds=-1)
    with pytest.raises(ValueError, match="variants must be an integer >= 0"):
        Simulator(variants=-1)
    with pytest.raises(RuntimeError, match="not running"):
        _ = Simulator().base_url


def test_two_simulators_and_busy_port():
    with Simulator() as first, Simulator() as second:
        assert first.base_url != second.base_url and first.base_url.endswith("/v1")
        port = int(first.origin.rsplit(":", 1)[1])
        with pytest.raises(RuntimeError, match="could not listen"):
            Simulator(port=port).start()


def test_realistic_timing_spreads_deltas_over_time():
    with Simulator(queue_seconds=0.3, generate_seconds=0.6, step_seconds=0.1) as sim:
        started = time.monotonic()
        text = stream_text(sim, [{"role": "user", "content": "timed"}])
        elapsed = time.monotonic() - started
        assert 0.8 < elapsed < 5 and "Generation Complete" in text
        assert text.count("..") >= 5


def test_command_line_prints_its_url():
    process = subprocess.Popen(
        [sys.executable, "-m", "kki_widgets.simulator", "--port", "0", "--speed", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = process.stdout.readline().strip()
        hint = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", url)
        assert hint == f"KKI_BASE_URL={url} KKI_API_KEY=sk-simulator-any-key"
        assert httpx.get(url.removesuffix("/v1") + "/health").json()["status"] == "ok"
    finally:
        process.terminate()
        process.wait(10)
    bad = subprocess.run([sys.executable, "-m", "kki_widgets.simulator", "--fault", "nope"],
                         capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert bad.returncode == 2 and "unknown fault" in bad.stderr


def test_embedded_singleton_is_shared_and_thread_safe(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    from concurrent.futures import ThreadPoolExecutor

    from kki_widgets.simulator import embedded_base_url

    with ThreadPoolExecutor(4) as pool:
        urls = set(pool.map(lambda _: embedded_base_url(), range(8)))
    assert len(urls) == 1
    (url,) = urls
    assert httpx.get(url.removesuffix("/v1") + "/health").json()["status"] == "ok"


def test_import_is_light():
    code = "import sys, kki_widgets.simulator; print('starlette' in sys.modules, 'uvicorn' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_generation_completes_after_the_client_disconnects():
    with Simulator(queue_seconds=0.2, generate_seconds=0.4, step_seconds=0.1) as sim:
        payload = {"model": "sora-2", "messages": [{"role": "user", "content": "leave early"}], "stream": True}
        with httpx.stream("POST", f"{sim.base_url}/chat/completions", json=payload, headers=AUTH, timeout=30) as response:
            seen = ""
            for line in response.iter_lines():
                seen += line
                if TASK_ID.search(seen):
                    break  # leave the stream (closing the connection) right after the task ID
        task_id = TASK_ID.search(seen).group(0)
        assert sim.tasks[task_id].status in ("pending", "processing")
        deadline = time.monotonic() + 15
        while sim.tasks[task_id].status not in ("completed", "failed") and time.monotonic() < deadline:
            time.sleep(0.05)
        raw = httpx.get(f"{sim.origin}/source/{task_id}").json()
        assert raw["status"] == "completed" and raw["url"].endswith(".mp4")


def test_renderer_without_a_font_still_makes_media(tmp_path):
    from kki_widgets.simulator.render import ClipRequest, Renderer

    renderer = Renderer(tmp_path, font=None, clip_seconds=1)
    clip = renderer.render(ClipRequest("no font here", "veo3", "landscape", 8))
    info = ffmpeg_info(tmp_path / clip.video_name)
    assert "Video: h264" in info and "568x320" in info
    assert (tmp_path / clip.thumbnail_name).read_bytes()[8:12] == b"WEBP"
    assert renderer.render(ClipRequest("no font here", "veo3", "landscape", 8)).cached
    with pytest.raises(ValueError, match="orientation"):
        renderer.render(ClipRequest("x", "veo3", "square"))


def test_a_simulator_without_a_media_folder_uses_the_shared_one_and_keeps_it(tmp_path, monkeypatch):
    from kki_widgets.simulator.server import MEDIA_DIR_VARIABLE

    monkeypatch.setenv(MEDIA_DIR_VARIABLE, str(tmp_path / "shared"))
    messages = [{"role": "user", "content": "shared clip"}]
    with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0) as first:
        clip = MP4.search(stream_text(first, messages)).group(0).rsplit("/", 1)[-1]
        assert first.media_dir == tmp_path / "shared" and first.renderer.renders == 1
    assert (tmp_path / "shared" / clip).is_file()  # a folder it was given is never removed
    with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0) as second:
        assert MP4.search(stream_text(second, messages)).group(0).endswith(clip)
        assert second.renderer.renders == 0
    monkeypatch.delenv(MEDIA_DIR_VARIABLE)
    with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0) as own:
        folder = own.media_dir
        assert folder != tmp_path / "shared" and folder.is_dir()
    assert not folder.exists()  # its own temp folder goes with it
