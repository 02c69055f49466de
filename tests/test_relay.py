"""The relay client against real local servers: the seed replayed byte for byte, and every
simulator fault. The promise under test: a paid generation is never lost and never paid twice."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from kki_testing import TEST_KEY, ReplayServer, use_only_proxy

from kki_widgets import (
    AsyncRelayClient,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    GenerationFailed,
    InsufficientQuotaError,
    MissingKeyError,
    RateLimitError,
    RelayClient,
    RelayServerError,
    StreamInterrupted,
)
from kki_widgets.client.config import Secret, resolve_settings

SEED_STREAM = (Path(__file__).parent / "fixtures" / "seed_stream.sse").read_bytes()


def client_for(sim, **options) -> RelayClient:
    options.setdefault("poll_interval", 0.05)
    return RelayClient(base_url=sim.base_url, api_key=TEST_KEY, **options)


def test_seed_stream_replayed_byte_for_byte():
    server = ReplayServer(SEED_STREAM)
    try:
        with RelayClient(base_url=server.base_url, api_key=TEST_KEY) as client:
            snapshots = list(client.stream("Make the cattle have a halo"))
        final = snapshots[-1]
        assert final.status == "completed"
        assert final.task_id == "task_01k7e5w9z5f2d91pekrqy59rwc"
        assert final.sid == "s_68eca3f141808191b1fd30fea1b731bd"
        assert final.video_url.endswith(".mp4") and final.thumbnail_url.endswith(".webp")
        assert final.preview_url.endswith("/web/task_01k7e5w9z5f2d91pekrqy59rwc")
        assert final.raw_url.endswith("/source/task_01k7e5w9z5f2d91pekrqy59rwc")
        statuses = [s.status for s in snapshots]  # live snapshots, not one at the end
        assert statuses[0] == "queued" and "generating" in statuses
        headers, body = server.requests[0]
        assert headers["Authorization"] == f"Bearer {TEST_KEY}"
        assert json.loads(body)["stream"] is True
    finally:
        server.close()


def test_remix_sends_the_previous_answer_verbatim(fast_simulator):
    client = client_for(fast_simulator)
    first = client.generate("a lighthouse at dusk")
    history = [
        {"role": "user", "content": "a lighthouse at dusk"},
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": "a storm rolls in"},
    ]
    second = client.generate(history)
    sent = fast_simulator.requests[-1]["messages"]
    assert sent[1]["content"] == first.text
    assert second.spec.get("sid") == first.sid
    assert second.video_url != first.video_url


@pytest.mark.parametrize(
    "fault", ["malformed", "crlf", "keepalive", "pretty", "pretty_raw", "split"]
)
def test_wire_variants_still_complete(fast_simulator, fault):
    generation = client_for(fast_simulator).generate(f"a kite [[fault:{fault}]]")
    assert generation.status == "completed"
    assert generation.video_url and generation.sid and generation.task_id


@pytest.mark.parametrize(
    "fault", ["cut_after_task_id", "cut_mid_progress", "error_chunk"]
)
def test_cut_after_the_task_id_is_recovered_without_paying_twice(fast_simulator, fault):
    before = fast_simulator.submissions
    generation = client_for(fast_simulator).generate(f"a paper boat [[fault:{fault}]]")
    assert generation.status == "completed"
    assert generation.video_url and generation.sid
    assert fast_simulator.submissions == before + 1
    # The recovered answer can be sent back for a remix: it carries the sid.
    assert generation.sid in generation.text


def test_stall_longer_than_the_read_timeout_is_recovered(fast_simulator):
    before = fast_simulator.submissions
    generation = client_for(fast_simulator, timeout=0.5).generate("a snail [[fault:stall:2]]")
    assert generation.status == "completed"
    assert fast_simulator.submissions == before + 1


def test_cut_before_the_task_id_is_reported_not_resubmitted(fast_simulator):
    before = len(fast_simulator.requests)
    with pytest.raises(StreamInterrupted) as caught:
        client_for(fast_simulator).generate("a comet [[fault:cut_after:1]]")
    assert caught.value.task_id is None
    assert "dashboard" in str(caught.value)
    assert len(fast_simulator.requests) == before + 1


def test_server_errors_before_the_answer_are_retried():
    from kki_widgets.simulator import Simulator

    with Simulator(
        queue_seconds=0, generate_seconds=0, step_seconds=0, faults=["fail_first:2"]
    ) as sim:
        generation = client_for(sim, max_retries=3).generate("a red balloon")
        assert generation.status == "completed"
        assert len(sim.requests) == 3
        assert sim.submissions == 1


@pytest.mark.parametrize(
    "status, error_type, words",
    [
        (401, AuthenticationError, "KKI_API_KEY"),
        (402, InsufficientQuotaError, "credit"),
        (429, RateLimitError, "rate limiting"),
        (500, RelayServerError, "safe"),
        (503, RelayServerError, "safe"),
    ],
)
def test_http_errors_are_typed_and_say_what_to_do(fast_simulator, status, error_type, words):
    before = len(fast_simulator.requests)
    with pytest.raises(error_type) as caught:
        client_for(fast_simulator, max_retries=0).generate(f"x [[fault:status:{status}]]")
    assert words in str(caught.value)
    assert TEST_KEY not in str(caught.value) and TEST_KEY not in repr(caught.value)
    assert caught.value.status_code == status
    assert len(fast_simulator.requests) == before + 1
    if status == 429:
        assert caught.value.retry_after == 1


def test_rate_limit_honours_retry_after_then_gives_up(fast_simulator):
    before = len(fast_simulator.requests)
    with pytest.raises(RateLimitError):
        client_for(fast_simulator, max_retries=1).generate("x [[fault:status:429]]")
    assert len(fast_simulator.requests) == before + 2


def test_auth_errors_are_not_retried(fast_simulator):
    before = len(fast_simulator.requests)
    with pytest.raises(AuthenticationError):
        client_for(fast_simulator, max_retries=3).generate("x [[fault:status:401]]")
    assert len(fast_simulator.requests) == before + 1


@pytest.mark.parametrize(
    "fault, reason", [("fail", "Failure"), ("policy", "content policies"), ("capacity", "capacity")]
)
def test_failed_generation_carries_the_relay_reason(fast_simulator, fault, reason):
    client = client_for(fast_simulator)
    final = list(client.stream(f"a volcano [[fault:{fault}]]"))[-1]
    assert final.status == "failed"
    with pytest.raises(GenerationFailed) as caught:
        client.generate(f"a volcano [[fault:{fault}]]")
    assert caught.value.task_id
    assert "charge" in str(caught.value)


def test_unknown_model_lists_the_known_ones(fast_simulator):
    with pytest.raises(BadRequestError) as caught:
        client_for(fast_simulator).generate("x", model="sora-9000")
    assert "sora-2" in str(caught.value)


@pytest.mark.parametrize("prompt", ["", "   ", [], [{"role": "assistant", "content": "hi"}]])
def test_bad_prompts_are_refused_before_any_request(fast_simulator, prompt):
    before = len(fast_simulator.requests)
    with pytest.raises(ConfigurationError):
        client_for(fast_simulator).generate(prompt)
    assert len(fast_simulator.requests) == before


def test_options_and_images_travel_in_the_request(fast_simulator, tmp_path):
    png = tmp_path / "frame.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    client_for(fast_simulator).generate(
        "animate this", orientation="landscape", duration=15, images=[png, "https://x.y/z.png"]
    )
    body = fast_simulator.requests[-1]
    # A chat relay reads options from the prompt's words (the default profile), not from fields.
    assert "orientation" not in body and "duration" not in body
    parts = body["messages"][-1]["content"]
    words = "animate this (landscape 16:9, horizontal, duration: 15 seconds)"
    assert parts[0] == {"type": "text", "text": words}
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[2]["image_url"]["url"] == "https://x.y/z.png"


def test_missing_key_names_the_fix():
    with pytest.raises(MissingKeyError, match="KKI_API_KEY"):
        RelayClient(base_url="https://relay.example/v1")


def test_key_is_masked_everywhere(fast_simulator):
    client = client_for(fast_simulator)
    settings = resolve_settings(base_url="https://relay.example", api_key=TEST_KEY)
    for text in (repr(client), str(client), repr(settings), str(settings.api_key),
                 f"{settings.api_key}", repr(client.settings)):
        assert TEST_KEY not in text
    assert settings.api_key.reveal() == TEST_KEY
    assert settings.base_url == "https://relay.example/v1"
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(Secret(TEST_KEY))


def test_environment_and_arguments(monkeypatch):
    monkeypatch.setenv("KKI_API_KEY", TEST_KEY)
    monkeypatch.setenv("KKI_MODEL", "veo3")
    settings = resolve_settings()
    assert settings.base_url == "https://www.kkiai.com/v1" and settings.model == "veo3"
    assert not settings.simulated
    assert resolve_settings(model="sora-2-pro").model == "sora-2-pro"
    with pytest.raises(ConfigurationError):
        resolve_settings(headers={"Authorization": "Bearer x"})


def test_no_key_and_no_url_uses_the_embedded_simulator():
    client = RelayClient(poll_interval=0.1)
    assert client.simulated
    assert "simulated" in repr(client)
    generation = client.generate("a quiet forest at dawn")
    assert generation.status == "completed"


def test_async_client_streams_on_the_callers_loop(fast_simulator):
    async def main():
        async with AsyncRelayClient(base_url=fast_simulator.base_url, api_key=TEST_KEY) as client:
            results = await asyncio.gather(
                *(client.generate(f"clip number {i}") for i in range(4))
            )
            return [g.task_id for g in results]

    ids = asyncio.run(main())
    assert len(set(ids)) == 4


def test_sync_client_works_inside_a_running_loop(fast_simulator):
    async def notebook_cell():
        return client_for(fast_simulator).generate("inside a running loop")

    assert asyncio.run(notebook_cell()).status == "completed"


def test_follow_a_task_by_id(fast_simulator):
    client = client_for(fast_simulator)
    first = client.generate("a task to look up")
    again = client.resume(first.task_id)
    assert again.status == "completed" and again.video_url == first.video_url


def test_a_proxy_in_the_environment_does_not_take_the_embedded_simulator_away(fast_simulator, monkeypatch):
    # A company proxy (or a dead one) in HTTP(S)_PROXY: relays elsewhere go through it, but a
    # proxy cannot reach this machine's loopback, where the simulator listens.
    dead = "http://127.0.0.1:9"
    use_only_proxy(monkeypatch, HTTP_PROXY=dead, HTTPS_PROXY=dead, ALL_PROXY=dead,
                   http_proxy=dead, https_proxy=dead, all_proxy=dead)  # fmt: skip
    with RelayClient(base_url=fast_simulator.base_url, api_key="sim-test-key", max_retries=0) as client:
        assert client.generate("a lighthouse").status == "completed"
