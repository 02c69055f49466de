"""A corpus of hostile relay answers. Each ends in a clear error or a safe result; none crashes,
none lets a non-http(s) URL through, none grows memory without bound."""

from __future__ import annotations

import pytest
from kki_testing import TEST_KEY, ReplayServer, sse_body

from kki_widgets import RelayClient
from kki_widgets.errors import KkiError, ProtocolError, StreamInterrupted

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
    assert final.status in ("completed", "failed")
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
    with pytest.raises(StreamInterrupted):
        run(body)  # no video ever comes, but decoding did not crash
