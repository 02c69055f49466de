"""A corpus of hostile relay answers. Each ends in a clear error or a safe result; none crashes,
none lets a non-http(s) URL through, none grows memory without bound."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kki_testing import JSON, SSE, TEST_KEY, HostileRelay, ReplayServer, sse_body

from kki_widgets import RelayClient
from kki_widgets.protocol.errors import (
    DeadlineExceeded,
    KkiError,
    ProtocolError,
    StreamInterrupted,
)
from kki_widgets.protocol.sse import MAX_LINE_CHARS

TASK = "task_01hostilehostilehostile00"
HEAD = (
    '```json\n{"prompt": "<script>window.__pwned=1</script><img src=x onerror=alert(1)>"}\n```\n\n'
    f"> ID: `{TASK}`\n"
)

CORPUS = {
    "javascript links": [HEAD, "> Generation Complete ✅\n> sid: s_0123456789abcdef\n",
                         "![t](javascript:alert(1))\n[Play Online▶️](javascript:alert(document.cookie))"],
    "data and vbscript links": [HEAD, "![t](data:text/html,<script>alert(1)</script>)\n",
                                "[Play Online▶️](vbscript:msgbox(1).mp4)\n",
                                "[Play](data:text/html;base64,PHNjcmlwdD4=.mp4)"],
    "html in the failure reason": [HEAD, "> Generation failed\n",
                                   "> Failure reason: <img src=x onerror=alert(1)><script>x()</script>\n"],
    "progress out of range": [HEAD, ">🏃 Progress 999..-5..1000..", "42..",
                              "\n> Generation failed\n> Failure reason: stopped\n"],
    "nul bytes and control characters": [HEAD, "> Generating\x00\x07\x1b[31m\n",
                                         "> Generation failed\n> Failure reason: a\x00b\n"],
    "deeply nested spec": ["```json\n" + "[" * 20000 + "]" * 20000 + "\n```\n",
                           f"> ID: `{TASK}`\n> Generation failed\n> Failure reason: nested\n"],
}


def run(body: bytes, **options):
    server = ReplayServer(body, piece=4096, pause=0)
    try:
        client = RelayClient(
            base_url=server.base_url, api_key=TEST_KEY, poll_interval=0.01, max_retries=0,
            **options,
        )
        return list(client.stream("a hostile test"))
    finally:
        server.close()


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_hostile_answers_end_safely(name):
    try:
        snapshots = run(sse_body(CORPUS[name]))
    except KkiError as error:
        # A clear, typed error is an acceptable ending; it names the task when there is one.
        assert str(error)
        assert "Traceback" not in str(error)
        return
    final = snapshots[-1]
    assert final.status in ("completed", "failed", "still_running")
    for snapshot in snapshots:
        assert 0 <= snapshot.progress <= 100
        for url in (snapshot.video_url, snapshot.thumbnail_url, snapshot.preview_url,
                    snapshot.raw_url, snapshot.download_url):
            assert url is None or url.startswith(("http://", "https://")), url


def test_unsafe_video_links_never_complete_a_generation():
    final = run(sse_body(CORPUS["javascript links"]))[-1]
    # "Complete" with only a javascript: link: a failure that says why, not a wait for nothing.
    assert final.status == "failed" and "removed for safety" in final.error
    assert final.task_id == TASK
    assert final.video_url is None and final.thumbnail_url is None
    assert any(url.startswith("javascript:") for url in final.unsafe_urls)


def test_html_in_the_reason_is_kept_as_text():
    final = run(sse_body(CORPUS["html in the failure reason"]))[-1]
    assert final.status == "failed"
    assert final.error == "<img src=x onerror=alert(1)><script>x()</script>"


def test_endless_answer_is_cut_off_with_bounded_memory():
    import tracemalloc

    body = sse_body(["." * 1000] * 3000, done=False)  # 3 MB of dots and no end
    tracemalloc.start()
    with pytest.raises(ProtocolError, match="characters"):
        run(body)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 64 * 1024 * 1024


def test_only_junk_is_a_protocol_error_that_names_the_fix():
    body = b"data: <html>502 Bad Gateway</html>\n\ndata: {not json\n\n"
    with pytest.raises(ProtocolError, match="KKI_BASE_URL"):
        run(body)


def test_invalid_utf8_is_replaced_not_fatal():
    body = sse_body([HEAD]).replace(b"hostile", b"host\xff\xfeile", 1)
    # No video ever comes, but decoding did not crash: the answer ended with only its task ID,
    # so the task is still the relay's (resumable), never "failed".
    final = run(body)[-1]
    assert final.status == "still_running" and final.task_id.startswith("task_01host")


# -- oversized and nested: whole answers as bytes -------------------------------------------------

NESTED = "[" * 100_000 + "]" * 100_000
TASK_LINE = sse_body([HEAD], done=False)
ENDING = sse_body(["> Generation failed\n> Failure reason: after the junk\n"])
RAW_CORPUS = {
    # Each: hostile bytes, then an honest ending that must still be read.
    "a line past the cap": TASK_LINE + b"data: " + b"x" * (MAX_LINE_CHARS + 10) + b"\n\n" + ENDING,
    "junk lines, no blank line": TASK_LINE + b"junk without a field\n" * 250_000 + b"\n" + ENDING,
    "data lines never ended": TASK_LINE + b"data: {\"a\": 1}\n" * 320_000 + b"\n" + ENDING,
    "comment flood": TASK_LINE + b": keep-alive\n" * 300_000 + ENDING,
    "nested error chunk": TASK_LINE + f'data: {{"error": {{"message": {NESTED}}}}}\n\n'.encode() + ENDING,
    "nested content chunk": TASK_LINE + f'data: {{"choices": [{{"delta": {NESTED}}}]}}\n\n'.encode() + ENDING,
    "nested pretty-printed continuation": TASK_LINE + b"data: {\n" + NESTED.encode() + b"\n\n" + ENDING,
}


@pytest.mark.parametrize("name", sorted(RAW_CORPUS))
def test_oversized_and_nested_answers_end_safely_in_bounded_memory(name):
    import tracemalloc

    tracemalloc.start()
    try:
        final = run(RAW_CORPUS[name])[-1]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The junk was skipped, the task kept, and the honest ending after it read.
    assert final.task_id == TASK and final.status == "failed" and final.error == "after the junk"
    assert peak < 48 * 1024 * 1024, peak


# Peak memory as VmHWM: ru_maxrss would include the parent's RSS at fork time (Linux records the
# forked copy's high-water mark on exec), i.e. pytest's own size late in a long run.
_MEASURE = """
import sys
from kki_widgets import RelayClient
from kki_widgets.protocol.errors import KkiError
try:
    for _ in RelayClient(base_url=sys.argv[1], api_key="k" * 20, max_retries=0).stream("x"):
        pass
    outcome = "no error"
except KkiError as error:
    outcome = type(error).__name__ + ": " + str(error)[:120]
print([int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0] // 1024, outcome)
"""
JUNK_SHAPES = {
    "one line, no newline": b"x" * 65536,
    "junk lines, no blank line": b"junk line without a blank line\n" * 2048,
    "data lines never ended": b"data: {\"never\": \"ends\"}\n" * 2048,
}


def junk_stream(piece: bytes, total: int = 150 * 1024 * 1024):
    def pieces():
        for _ in range(total // len(piece)):
            yield piece

    return pieces


@pytest.mark.slow
@pytest.mark.parametrize("shape", sorted(JUNK_SHAPES))
def test_a_150_mb_junk_stream_stays_under_200_mb_in_a_fresh_process(shape):
    with HostileRelay(lambda r: (200, SSE, junk_stream(JUNK_SHAPES[shape]))) as relay:
        # This tree's package, whatever the venv has installed.
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        result = subprocess.run([sys.executable, "-c", _MEASURE, relay.base_url], env=env,
                                capture_output=True, text=True, timeout=170)
    peak_mb, outcome = result.stdout.split(" ", 1)
    assert int(peak_mb) < 200, result.stdout
    assert outcome.startswith("ProtocolError"), outcome


# -- deadlines, raw-data answers, nesting, the turn runner ---------------------------------------


def keep_alive_forever():
    while True:
        yield b": keep-alive\n\n"
        time.sleep(0.05)


def test_a_stream_that_only_keeps_alive_meets_the_deadline():
    with HostileRelay(lambda r: (200, SSE, keep_alive_forever)) as relay:
        client = RelayClient(base_url=relay.base_url, api_key=TEST_KEY, max_retries=0, deadline=1)
        with pytest.raises(DeadlineExceeded, match="deadline"):
            list(client.stream("x"))
    assert RelayClient(base_url=relay.base_url, api_key=TEST_KEY).async_client.deadline == 3600


def test_the_deadline_after_the_task_id_names_the_task_to_resume():
    def answer(request):
        if request["method"] == "POST":
            return 200, SSE, lambda: itertools.chain([TASK_LINE], keep_alive_forever())
        return 200, JSON, b'{"status": "processing"}'

    with HostileRelay(answer) as relay:
        client = RelayClient(base_url=relay.base_url, api_key=TEST_KEY, max_retries=0,
                             deadline=1, poll_interval=0.05)
        with pytest.raises(DeadlineExceeded) as caught:
            list(client.stream("x"))
    assert caught.value.task_id == TASK and TASK in str(caught.value)


def follow_raw(answer_body, **options):
    def answer(request):
        if request["method"] == "POST":
            return 200, SSE, TASK_LINE
        return answer_body(request)

    with HostileRelay(answer) as relay:
        client = RelayClient(base_url=relay.base_url, api_key=TEST_KEY, max_retries=0,
                             poll_interval=0.001, **options)
        try:
            return list(client.stream("x")), relay.requests
        except KkiError as error:
            return error, relay.requests


@pytest.mark.parametrize("declared", [True, False])
def test_an_oversized_raw_data_answer_is_refused_not_parsed(declared):
    huge = b'{"status": "processing", "pad": "' + b"x" * (16 * 1024 * 1024) + b'"}'
    headers = JSON if declared else {**JSON, "Transfer-Encoding": "chunked"}
    body = huge if declared else (lambda: [b"%x\r\n%s\r\n" % (len(huge), huge), b"0\r\n\r\n"])
    error, _ = follow_raw(lambda r: (200, headers, body))
    assert isinstance(error, StreamInterrupted) and error.task_id == TASK
    assert "over 1024 KB" in str(error)


def test_nested_json_in_raw_data_and_error_bodies_ends_in_a_clear_error():
    nested_failure = json.dumps({"status": "failed", "error": json.loads("[" * 900 + "]" * 900)})
    snapshots, _ = follow_raw(lambda r: (200, JSON, nested_failure.encode()))
    assert snapshots[-1].status == "failed" and snapshots[-1].task_id == TASK
    # A number that no int holds: the answer is unreadable, not a crash of the turn.
    error, _ = follow_raw(lambda r: (200, JSON, b'{"status": "processing", "progress": "inf"}'))
    assert isinstance(error, StreamInterrupted) and "could not be read" in str(error)
    error, _ = follow_raw(lambda r: (200, JSON, NESTED.encode()), follow_timeout=0.5)
    assert isinstance(error, StreamInterrupted) and error.task_id == TASK
    body = ('{"error": {"message": ' + NESTED + "}}").encode()
    with HostileRelay(lambda r: (400, JSON, body)) as relay:
        client = RelayClient(base_url=relay.base_url, api_key=TEST_KEY, max_retries=0)
        with pytest.raises(KkiError, match=r"HTTP 400|\[\[\["):
            list(client.stream("x"))


def test_a_nested_error_body_fails_the_turn_instead_of_leaving_it_queued(tmp_path):
    from kki_widgets import Conversation

    body = ('{"error": {"message": ' + NESTED + "}}").encode()
    with HostileRelay(lambda r: (400, JSON, body)) as relay:
        conversation = Conversation(base_url=relay.base_url, api_key=TEST_KEY, store=None,
                                    media_dir=None, max_retries=0)
        turn = conversation.send("x")
    assert turn.status == "failed" and turn.error and turn.done


def test_an_unexpected_exception_fails_the_turn_with_its_reason():
    from kki_widgets import Conversation
    from kki_widgets.client.relay import AsyncRelayClient
    from kki_widgets.protocol.transcript import Generation

    class Breaking(AsyncRelayClient):
        async def stream_request(self, *args, **kwargs):
            yield Generation(task_id=TASK, status="generating", progress=40)
            raise OverflowError(f"cannot convert float infinity, key {TEST_KEY}")

    client = Breaking(base_url="http://127.0.0.1:9/v1", api_key=TEST_KEY)
    conversation = Conversation(client=client, store=None, media_dir=None)
    turn = conversation.send("x")
    assert turn.status == "failed" and turn.done and not conversation.running
    assert "OverflowError" in turn.error and f"resume {TASK}" in turn.error
    assert TEST_KEY not in turn.error
