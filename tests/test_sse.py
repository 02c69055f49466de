"""The SSE decoder: line ends split across reads, comments, multi-line data, junk, errors."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kki_widgets.protocol.sse import SSEDecoder, decode_chunk

CHUNK = b'data: {"choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}'


def decode_all(raw: bytes, cuts: list[int]) -> list[str]:
    decoder = SSEDecoder()
    points = sorted({c % (len(raw) + 1) for c in cuts})
    events, last = [], 0
    for point in [*points, len(raw)]:
        events += decoder.feed(raw[last:point])
        last = point
    events += decoder.close()
    return [decode_chunk(data, extra) for data, extra in events]


def stream(contents: list[str], newline: bytes = b"\n") -> bytes:
    body = b"".join(
        (CHUNK % c.encode()).replace(b"\n", newline) + newline + newline for c in contents
    )
    return body + b"data: [DONE]" + newline + newline


def test_lf_crlf_and_cr_give_the_same_events():
    contents = ["a", "b\\u00e9", "44.."]
    for newline in (b"\n", b"\r\n", b"\r"):
        chunks = decode_all(stream(contents, newline), [])
        assert [c.content for c in chunks[:-1]] == ["a", "bé", "44.."]
        assert chunks[-1].done


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(0, 400), max_size=30), crlf=st.booleans())
def test_any_read_boundaries_give_the_same_events(cuts, crlf):
    raw = stream(["x", "✅ done", "[Play](https://a.b/c.mp4)"], b"\r\n" if crlf else b"\n")
    assert "".join(c.content for c in decode_all(raw, cuts)) == "x✅ done[Play](https://a.b/c.mp4)"


def test_comments_multiline_data_and_unknown_fields():
    raw = (
        b": keep-alive\n\n"
        b"event: message\nid: 7\nretry: 100\n"
        b'data: {"choices":[{"delta":\n'
        b'data: {"content":"hi"}}]}\n\n'
    )
    chunks = decode_all(raw, [])
    assert [c.content for c in chunks] == ["hi"]


def test_pretty_printed_json_as_on_the_relay_page_is_read():
    raw = (
        b"data: {\n"
        b'    "choices": [\n'
        b'        {"delta": {"content": "pretty"}, "finish_reason": null}\n'
        b"    ]\n"
        b"}\n\n"
    )
    assert [c.content for c in decode_all(raw, [])] == ["pretty"]


def test_junk_is_marked_malformed_not_raised():
    chunks = decode_all(b"data: not json\n\ndata: [1,2]\n\ngarbage line\n\n", [])
    assert all(c.malformed for c in chunks)


def test_error_chunk_and_finish_reason():
    error, final = decode_all(
        b'data: {"error": {"message": "upstream timeout", "code": "timeout"}}\n\n'
        b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n',
        [],
    )
    assert error.error == {"message": "upstream timeout", "code": "timeout"}
    assert final.finish_reason == "stop" and final.content == ""


def test_invalid_utf8_and_nul_bytes_do_not_crash():
    raw = b'data: {"choices":[{"delta":{"content":"a\\u0000b"}}]}\n\ndata: \xff\xfe\n\n'
    chunks = decode_all(raw, [3, 60])
    assert chunks[0].content == "a\x00b"
    assert chunks[1].malformed


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=10))
def test_fuzz_never_raises(raw, cuts):
    for chunk in decode_all(raw, cuts):
        assert isinstance(chunk.content, str)
