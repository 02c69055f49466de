"""Every simulator dialect (the answer shapes of real relays) through the client and both front
ends, and every real relay fixture through `%%sora` and `VideoChat`.

A remix after each dialect must send the previous assistant `content` back verbatim — never the
status chatter some dialects send on the reasoning channel.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from IPython.core.interactiveshell import InteractiveShell
from kki_testing import (
    TEST_KEY,
    end_ipython,
    expected_outcome,
    new_ipython,
    relay_metas,
    replay_fixture,
)

from kki_widgets.client.relay import RelayClient
from kki_widgets.notebook.widget import VideoChat
from kki_widgets.protocol.errors import BadRequestError, GenerationFailed, TurnFailed
from kki_widgets.protocol.sse import SSEDecoder, decode_chunk
from kki_widgets.simulator import DIALECT_NAMES, DialectError, Simulator
from kki_widgets.simulator.script import FAILURE_REASON, POLICY_REASON

METAS = relay_metas()
REASONING_DIALECTS = ("html_fence", "video_tag")


@pytest.fixture(scope="module")
def sim():
    with Simulator(queue_seconds=0, generate_seconds=0.06, step_seconds=0.015, seed=11) as server:
        yield server


def last_task(sim):
    return sim.tasks[list(sim.tasks)[-1]]


def is_mp4(url: str) -> bool:
    response = httpx.get(url, timeout=10)
    return (
        response.status_code == 200
        and response.headers["content-type"] == "video/mp4"
        and response.content[4:8] == b"ftyp"
    )


@pytest.mark.parametrize("dialect", DIALECT_NAMES)
def test_dialect_through_the_client_then_a_remix(sim, dialect):
    client = RelayClient(base_url=sim.base_url, api_key=TEST_KEY, poll_interval=0.05)
    first = client.generate(f"a red fox [[dialect:{dialect}]]")
    assert first.status == "completed" and first.progress == 100
    assert is_mp4(first.video_url)  # real, playable media, also at signed extension-less URLs
    assert first.text == last_task(sim).content  # the answer channel, verbatim
    if dialect in REASONING_DIALECTS:
        assert "进度" not in first.text and "Progress" not in first.text
    history = [
        {"role": "user", "content": f"a red fox [[dialect:{dialect}]]"},
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": f"now at night [[dialect:{dialect}]]"},
    ]
    second = client.generate(history)
    assert second.status == "completed" and second.video_url != first.video_url
    assert sim.requests[-1]["messages"][1] == {"role": "assistant", "content": first.text}


@pytest.mark.parametrize("fault, reason", [("fail", FAILURE_REASON), ("policy", POLICY_REASON)])
@pytest.mark.parametrize("dialect", DIALECT_NAMES)
def test_dialect_failures_carry_the_relays_reason(sim, dialect, fault, reason):
    client = RelayClient(base_url=sim.base_url, api_key=TEST_KEY, poll_interval=0.05)
    with pytest.raises(GenerationFailed) as caught:
        client.generate(f"a fox [[dialect:{dialect}]] [[fault:{fault}]]")
    assert reason in caught.value.generation.error
    assert caught.value.generation.video_url is None


def raw_stream(sim, prompt: str, headers: dict | None = None) -> bytes:
    body = {"model": "sora-2", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    headers = {"Authorization": f"Bearer {TEST_KEY}", **(headers or {})}
    return httpx.post(sim.base_url + "/chat/completions", json=body, headers=headers, timeout=30).content


def test_dialects_end_their_streams_like_their_relays(sim):
    fence = raw_stream(sim, "a fox", {"X-Sim-Dialect": "html_fence"})
    assert b'"reasoning_content"' in fence and b'"finish_reason":"STOP"' in fence
    assert b"[DONE]" not in fence and b"```html\\n<video src='" in fence
    failed = raw_stream(sim, "a fox [[dialect:video_tag]] [[fault:policy]]")
    # flow2api writes its error JSON without "data:" and glues [DONE] to it.
    assert failed.rstrip().endswith(b'"code": "generation_failed"}}data: [DONE]')
    together = answer_text(raw_stream(sim, "a fox [[dialect:run_together]]"))
    assert "视频生成完成📤 发布视频获取Post ID...🔗" in together and "\n" not in together


def answer_text(raw: bytes) -> str:
    decoder = SSEDecoder()
    return "".join(decode_chunk(data, extra).content for data, extra in decoder.feed(raw) + decoder.close())


def test_dialect_is_chosen_per_server_per_request_and_checked():
    with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0, dialect="click_here") as server:
        client = RelayClient(base_url=server.base_url, api_key=TEST_KEY, max_retries=0)
        assert "[click here](" in client.generate("a fox").text
        assert "```html" in client.generate("a fox [[dialect:html_fence]]").text
        header = raw_stream(server, "a fox [[dialect:seed]]", {"X-Sim-Dialect": "chinese"})
        assert "任务ID".encode() in header  # the header wins over the marker
        with pytest.raises(BadRequestError, match="valid dialects: seed, chinese"):
            client.generate("a fox [[dialect:klingon]]")
    with pytest.raises(DialectError, match="unknown dialect 'nope'"):
        Simulator(dialect="nope")


def test_signed_media_urls_refuse_a_missing_signature(sim):
    client = RelayClient(base_url=sim.base_url, api_key=TEST_KEY)
    url = client.generate("a fox [[dialect:run_together]]").video_url
    assert "?" in url and is_mp4(url)
    assert httpx.get(url.split("?", 1)[0]).status_code == 403


def test_reasoning_dialect_survives_hostile_framing(sim):
    client = RelayClient(base_url=sim.base_url, api_key=TEST_KEY)
    final = client.generate("a fox [[dialect:video_tag]] [[fault:split,crlf,keepalive,pretty_raw]]")
    assert final.status == "completed" and final.text == last_task(sim).content


# ---- %%sora ---------------------------------------------------------------------------------------


@pytest.fixture
def shell(tmp_path, monkeypatch):
    def make(base_url: str, media: bool = True) -> InteractiveShell:
        monkeypatch.setenv("KKI_BASE_URL", base_url)
        monkeypatch.setenv("KKI_API_KEY", TEST_KEY)
        return new_ipython(tmp_path / ".kki" / "nb.json", media=media)

    yield make
    end_ipython()


@pytest.mark.parametrize("dialect", DIALECT_NAMES)
def test_dialect_through_the_magic_then_a_remix(sim, shell, dialect):
    ip = shell(sim.base_url)
    first = ip.run_cell(f"%%sora\na paper boat [[dialect:{dialect}]]").result
    assert first.status == "completed"
    assert first.path and Path(first.path).read_bytes()[4:8] == b"ftyp"  # kept next to the notebook
    second = ip.run_cell(f"%%sora\nthe boat reaches the sea [[dialect:{dialect}]]").result
    assert second.status == "completed" and second.parent == 0
    sent = sim.requests[-1]["messages"]
    assert {"role": "assistant", "content": first.generation.text} in sent
    failed = ip.run_cell(f"%%sora\na sinking boat [[dialect:{dialect}]] [[fault:policy]]")
    assert isinstance(failed.error_in_exec, TurnFailed) and POLICY_REASON in str(failed.error_in_exec)


@pytest.mark.parametrize("name", sorted(METAS))
def test_real_relay_answer_through_the_magic(shell, name):
    meta = METAS[name]
    server = replay_fixture(meta, piece=11)
    try:
        ip = shell(server.base_url, media=False)
        result = ip.run_cell("%%sora\na fox in the snow")
        expect = expected_outcome(meta, server)
        if expect["status"] == "running":
            # Still being made at the relay: not a failure to re-send; its words and task ID shown.
            assert not isinstance(result.error_in_exec, TurnFailed), result.error_in_exec
            turn = result.result
            shown = " ".join([str(result.error_in_exec or ""), *(turn.generation.notices if turn else ()),
                              (turn.error or "") if turn else ""])
            assert expect["words_contains"] in shown
            assert result.result is None or result.result.generation.task_id == expect["task_id"]
        elif expect["status"] == "completed" and expect.get("unreachable") == "ended":
            # The fixture's host is unreachable here and its link is no strong evidence (no
            # video tag, no video extension): the whole answer is shown, never "completed".
            assert isinstance(result.error_in_exec, TurnFailed)
            assert expect["video_url"] in str(result.error_in_exec)
        elif expect["status"] == "completed":
            assert result.error_in_exec is None
            assert result.result.status == "completed"
            assert result.result.generation.video_url == expect["video_url"]
            # This kernel could not look at an outside host's bytes; a path on the relay it could.
            on_the_relay = meta["expect"]["video_url"].startswith(("/", "{"))
            assert result.result.generation.unverified is not on_the_relay
        else:
            assert isinstance(result.error_in_exec, TurnFailed)
            assert expect["error_contains"] in str(result.error_in_exec)
    finally:
        server.close()


# ---- VideoChat ------------------------------------------------------------------------------------


class FakeComm:
    kernel = object()
    comm_id = "fake-comm"

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, data=None, buffers=None, **_) -> None:
        self.sent.append(data)

    def on_msg(self, callback) -> None:
        pass

    def close(self, *args, **kwargs) -> None:
        pass


def chat_for(base_url: str) -> VideoChat:
    chat = VideoChat(base_url=base_url, api_key=TEST_KEY, store=None, media_dir=None)
    chat.comm = FakeComm()
    return chat


@pytest.mark.parametrize("dialect", DIALECT_NAMES)
def test_dialect_through_the_widget_then_a_remix(sim, dialect):
    async def main():
        chat = chat_for(sim.base_url)
        first = await chat.send(f"a lighthouse [[dialect:{dialect}]]")
        second = await chat.send(f"in a storm [[dialect:{dialect}]]")
        failed = await chat.send(f"a wreck [[dialect:{dialect}]] [[fault:fail]]")
        return chat, first, second, failed

    chat, first, second, failed = asyncio.run(main())
    states = chat.turn_data
    assert [s["status"] for s in states] == ["completed", "completed", "failed"]
    assert states[0]["video_url"] == first.generation.video_url and states[0]["progress"] == 100
    assert {"role": "assistant", "content": first.generation.text} in sim.requests[-2]["messages"]
    assert second.parent == 0
    assert FAILURE_REASON in states[2]["error"] and failed.status == "failed"


@pytest.mark.parametrize("name", sorted(METAS))
def test_real_relay_answer_through_the_widget(name):
    meta = METAS[name]
    server = replay_fixture(meta, piece=13)
    try:
        async def main():
            chat = chat_for(server.base_url)
            return chat, await chat.send("a fox in the snow")

        chat, turn = asyncio.run(main())
        state = chat.turn_data[0]
        expect = expected_outcome(meta, server)
        if expect["status"] == "running":
            assert state["status"] == turn.status and turn.status not in ("completed", "failed")
            assert turn.generation.task_id == expect["task_id"]
            assert expect["words_contains"] in " ".join([state.get("error") or "", *turn.generation.notices])
            return
        unreachable = expect["status"] == "completed" and expect.get("unreachable") == "ended"
        assert state["status"] == turn.status == ("failed" if unreachable else expect["status"])
        if unreachable:
            assert expect["video_url"] in state["error"]
        elif expect["status"] == "completed":
            assert state["video_url"] == expect["video_url"]
        else:
            assert expect["error_contains"] in state["error"]
    finally:
        server.close()
