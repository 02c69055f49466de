"""Every simulator fault, observed at the HTTP level with httpx (and openai where it matters)."""

from __future__ import annotations

import json
import re
import time

import httpx
import openai
import pytest

from kki_widgets.simulator import FaultPlan, Simulator, parse_faults
from kki_widgets.simulator.faults import FaultError

TASK_ID = re.compile(r"task_[0-9a-hjkmnp-tv-z]{26}")
AUTH = {"Authorization": "Bearer sim"}
CUT_ERRORS = (httpx.RemoteProtocolError, httpx.ReadError)


@pytest.fixture(scope="module")
def sim():
    with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0, seed=3) as simulator:
        yield simulator


def post(sim: Simulator, prompt: str = "a fox", fault: str | None = None, **body) -> httpx.Response:
    headers = {**AUTH, **({"X-Sim-Fault": fault} if fault else {})}
    payload = {"model": "sora-2", "messages": [{"role": "user", "content": prompt}], "stream": True, **body}
    return httpx.post(f"{sim.base_url}/chat/completions", json=payload, headers=headers, timeout=30)


def read_until_cut(sim: Simulator, fault: str) -> bytes:
    received = bytearray()
    payload = {"model": "sora-2", "messages": [{"role": "user", "content": "cut me"}], "stream": True}
    with pytest.raises(CUT_ERRORS), httpx.stream("POST", f"{sim.base_url}/chat/completions", json=payload,
                                                headers={**AUTH, "X-Sim-Fault": fault}, timeout=30) as response:  # fmt: skip
        assert response.status_code == 200
        for data in response.iter_bytes():
            received += data
    return bytes(received)


def deltas(sse_text: str) -> list[str]:
    contents = []
    for line in sse_text.replace("\r\n", "\n").split("\n"):
        if line.startswith("data: {"):
            try:
                chunk = json.loads(line[6:])
            except ValueError:
                continue  # the junk of the "malformed" fault
            contents.append(chunk["choices"][0]["delta"].get("content") or "")
    return contents


def wait_completed(sim: Simulator, task_id: str) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        raw = httpx.get(f"{sim.origin}/source/{task_id}").json()
        if raw["status"] in ("completed", "failed"):
            return raw
        time.sleep(0.05)
    raise AssertionError(f"{task_id} did not finish")


def test_cut_after_task_id_really_cuts_and_the_task_completes_server_side(sim):
    received = read_until_cut(sim, "cut_after_task_id").decode()
    text = "".join(deltas(received))
    assert text.rstrip(".").endswith("> Queuing") and "[DONE]" not in received
    raw = wait_completed(sim, TASK_ID.search(text).group(0))
    assert raw["status"] == "completed" and raw["url"].endswith(".mp4") and "Generation Complete" in raw["content"]


def test_cut_faults_also_break_the_openai_client(sim):
    client = openai.OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)
    with pytest.raises((openai.APIConnectionError, httpx.RemoteProtocolError, httpx.ReadError)):
        for _ in client.chat.completions.create(
            model="sora-2", messages=[{"role": "user", "content": "x [[fault:cut_mid_progress]]"}], stream=True
        ):
            pass


def test_cut_after_n_events(sim):
    received = read_until_cut(sim, "cut_after:3").decode()
    assert received.count("data: ") == 3
    assert read_until_cut(sim, "cut_after:0") == b""


def test_cut_mid_progress(sim):
    text = "".join(deltas(read_until_cut(sim, "cut_mid_progress").decode()))
    assert text.endswith("Progress " + text.rsplit("Progress ", 1)[1]) and re.search(r"Progress \d+\.\.$", text)


def test_marker_in_the_prompt_triggers_the_fault(sim):
    payload = {"model": "sora-2", "messages": [{"role": "user", "content": "a [[fault:cut_after_task_id]] b"}],
               "stream": True}  # fmt: skip
    with pytest.raises(CUT_ERRORS), httpx.stream("POST", f"{sim.base_url}/chat/completions", json=payload,
                                                headers=AUTH, timeout=30) as response:  # fmt: skip
        b"".join(response.iter_bytes())
    # The marker only counts in the latest prompt: as history it triggers nothing.
    history = [{"role": "user", "content": "a [[fault:status:500]]"}, {"role": "assistant", "content": "ok"},
               {"role": "user", "content": "next"}]  # fmt: skip
    assert post(sim, messages=history).status_code == 200


def test_stall_pauses_after_the_task_id(sim):
    payload = {"model": "sora-2", "messages": [{"role": "user", "content": "slow"}], "stream": True}
    stamps: list[tuple[float, str]] = []
    with httpx.stream("POST", f"{sim.base_url}/chat/completions", json=payload,
                      headers={**AUTH, "X-Sim-Fault": "stall:0.6"}, timeout=30) as response:  # fmt: skip
        for line in response.iter_lines():
            if line:
                stamps.append((time.monotonic(), line))
    index = next(i for i, (_, line) in enumerate(stamps) if "> ID: `task_" in line)
    assert stamps[index + 1][0] - stamps[index][0] >= 0.5
    assert stamps[-1][1] == "data: [DONE]"


@pytest.mark.parametrize("status", [401, 402, 429, 500, 502, 503])
def test_status_faults(sim, status):
    submitted = sim.submissions
    response = post(sim, fault=f"status:{status}")
    assert response.status_code == status
    error = response.json()["error"]
    assert error["message"] and error["type"] and error["code"]
    assert sim.submissions == submitted  # rejected before submission: nothing paid
    if status == 429:
        assert response.headers["retry-after"] == "1"
    if status == 402:
        assert error["code"] == "insufficient_quota"


def test_openai_client_sees_typed_errors(sim):
    client = openai.OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="sora-2", messages=[{"role": "user", "content": "[[fault:status:429]]"}])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])


def test_fail_first_then_normal_service():
    with Simulator(faults="fail_first:2", queue_seconds=0, generate_seconds=0, step_seconds=0) as sim:
        assert [post(sim).status_code for _ in range(3)] == [503, 503, 200]
        assert sim.submissions == 1
        # openai-python retries 5xx before the first byte, so it gets through.
    with Simulator(faults=["fail_first:1"], queue_seconds=0, generate_seconds=0, step_seconds=0) as sim:
        client = openai.OpenAI(base_url=sim.base_url, api_key="sim", max_retries=2)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
            model="sora-2", messages=[{"role": "user", "content": "retry"}], stream=True) if chunk.choices)  # fmt: skip
        assert "Generation Complete" in text and len(sim.requests) == 2


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("fail", "network fluctuations"),
        ("policy", "This content may violate our content policies."),
        ("capacity", "No available capacity"),
    ],
)
def test_failures_in_the_text(sim, fault, reason):
    submitted = sim.submissions
    response = post(sim, fault=fault)
    assert response.status_code == 200 and response.text.rstrip().endswith("data: [DONE]")
    text = "".join(deltas(response.text))
    assert "Generation failed" in text and "Failure reason: " in text and reason in text
    assert ".mp4" not in text
    raw = httpx.get(f"{sim.origin}/source/{TASK_ID.search(text).group(0)}").json()
    assert raw["status"] == "failed" and reason in raw["error"] and raw["url"] is None
    assert sim.submissions == submitted + 1  # failed generations were still submitted (maybe paid)
    from kki_widgets.protocol.transcript import parse_transcript

    assert parse_transcript(text).status == "failed"


def test_malformed_lines_are_interleaved(sim):
    response = post(sim, fault="malformed")
    lines = [line for line in response.text.split("\n") if line.startswith("data: ")]
    junk = []
    for line in lines:
        if line == "data: [DONE]":
            continue
        try:
            json.loads(line[6:])
        except ValueError:
            junk.append(line)
    assert len(junk) >= 4 and "Generation Complete" in "".join(deltas(response.text))


def test_crlf_line_endings(sim):
    response = post(sim, fault="crlf")
    assert "\r\n\r\n" in response.text and "\n\n" not in response.text.replace("\r\n", "")
    assert response.text.endswith("data: [DONE]\r\n\r\n") and response.text.count("\n") == response.text.count("\r\n")


def test_keepalive_comments(sim):
    response = post(sim, fault="keepalive")
    assert response.text.startswith(": ping\n\n") and response.text.count(": ping") >= 3
    assert "Generation Complete" in "".join(deltas(response.text))


def test_pretty_json_is_valid_multi_line_sse(sim):
    response = post(sim, fault="pretty")
    events = [block for block in response.text.split("\n\n") if block]
    assert len(events[1].split("\n")) > 5
    chunks = [json.loads("\n".join(line[6:] for line in event.split("\n"))) for event in events[:-1]]
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert "Generation Complete" in text


def test_pretty_raw_is_like_the_relay_page(sim):
    response = post(sim, fault="pretty_raw")
    first = response.text.split("\n\n")[0]
    assert first.startswith("data: {\n") and '\n    "object": "chat.completion.chunk",' in first


def test_error_chunk(sim):
    response = post(sim, fault="error_chunk")
    events = [block for block in response.text.split("\n\n") if block]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2][6:])["error"]["message"].startswith("upstream error")
    task_id = TASK_ID.search(response.text).group(0)
    assert wait_completed(sim, task_id)["status"] == "completed"


def test_split_deltas_and_bytes(sim):
    plain_pieces = deltas(post(sim, "split me").text)
    response = post(sim, "split me", fault="split")
    pieces = deltas(response.text)
    assert len(pieces) > len(plain_pieces)
    # The same answer, only cut differently (IDs, progress numbers and the clip, a new
    # generation of the same request, differ per task).
    variable = r"task_\w+|s_[0-9a-f]{32}|Progress [\d.]+|[0-9a-f]{30}\.(mp4|webp)"
    assert re.sub(variable, "", "".join(pieces)) == re.sub(variable, "", "".join(plain_pieces))
    # Some cut fell inside a link or a number.
    assert any(re.search(r"(\d|http\S*)$", piece) and not piece.endswith("..") for piece in pieces)


def test_seed_makes_runs_reproducible():
    def run() -> list[str]:
        with Simulator(seed=42, queue_seconds=0, generate_seconds=0, step_seconds=0, faults="split") as sim:
            return deltas(post(sim, "same").text)

    def without_port(pieces: list[str]) -> list[str]:
        return [re.sub(r":\d{5}/", ":PORT/", piece) for piece in pieces]

    # Links carry the (random, always 5-digit ephemeral) port; everything else is identical.
    assert without_port(run()) == without_port(run())


def test_bad_fault_requests_are_rejected(sim):
    for fault, needle in [("explode", "unknown fault"), ("stall:x", "seconds"), ("status:418", "one of"),
                          ("cut_after:-1", "integer"), ("crlf:1", "no argument"), ("fail_first:1", "server-level")]:  # fmt: skip
        response = post(sim, fault=fault)
        assert response.status_code == 400, fault
        assert response.json()["error"]["code"] == "unknown_fault" and needle in response.json()["error"]["message"]


def test_parse_faults_and_merge():
    plan = parse_faults(["cut_after:2, crlf", "status:429"])
    assert plan == FaultPlan(cut_after_events=2, crlf=True, status=429)
    assert FaultPlan(crlf=True).merged(FaultPlan(stall_seconds=1.0)) == FaultPlan(crlf=True, stall_seconds=1.0)
    assert FaultPlan().merged(FaultPlan(cut_after_events=0)).cut_after_events == 0
    with pytest.raises(FaultError):
        parse_faults([3])  # type: ignore[list-item]
