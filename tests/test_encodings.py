"""Compressed answers on every path: read when honest, refused in bounded memory when a bomb.

A proxy in front of a relay may compress whatever the client asks for. Each path that reads a
relay's bytes (the stream, a whole JSON answer, an error body, a raw-data poll, the price list,
billing) inflates in bounded steps (kki_widgets.protocol.encodings)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import zlib

import pytest
from kki_testing import TEST_KEY, HostileRelay, sse_body

from kki_widgets.client.relay import RelayClient
from kki_widgets.protocol.encodings import STEP, EncodingError, Inflater

SSE = {"Content-Type": "text/event-stream"}
JSON = {"Content-Type": "application/json"}
TASK = "task_01encodedencodedencoded0"
ANSWER = sse_body([f"> ID: `{TASK}`\n", "> Generation failed\n", "> Failure reason: compressed words\n"])


def _zeros_gzip(size: int) -> bytes:
    """gzip of `size` zero bytes, compressed in a stream (never holding `size` bytes)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(1024 * 1024)
    parts = [packer.compress(block) for _ in range(size // len(block))]
    return b"".join(parts) + packer.flush()


_BOMB: dict = {}


def bomb() -> bytes:
    """`Content-Encoding: gzip, gzip`: a few KB that inflate to 96 MB, past the stream's 64 MB cap."""
    if "bytes" not in _BOMB:
        _BOMB["bytes"] = gzip.compress(_zeros_gzip(96 * 1024 * 1024), 9)
    return _BOMB["bytes"]


def test_every_step_is_bounded_and_stacked_layers_too():
    inflater = Inflater("gzip, gzip", limit=64 * 1024 * 1024)
    sizes = []
    with pytest.raises(EncodingError, match=r"gzip, gzip"):
        for piece in inflater.feed(bomb()):
            sizes.append(len(piece))
    assert max(sizes) <= STEP and inflater.total <= 64 * 1024 * 1024 + STEP


# Named ids and mtime=0: a gzip header holds the time, and test ids that differ between two
# pytest-xdist workers stop the run ("different tests were collected").
@pytest.mark.parametrize("header,packed", [
    ("gzip", gzip.compress(b"hello " * 1000, mtime=0)),
    ("deflate", zlib.compress(b"hello " * 1000)),
    ("deflate", zlib.compress(b"hello " * 1000)[2:-4]),  # raw deflate, as some servers send it
    ("gzip, deflate", zlib.compress(gzip.compress(b"hello " * 1000, mtime=0))),
], ids=["gzip", "deflate", "raw-deflate", "gzip-then-deflate"])
def test_honest_encodings_inflate_whole_even_fed_a_byte_at_a_time(header, packed):
    inflater = Inflater(header, limit=1 << 20)
    out = b"".join(piece for i in range(len(packed)) for piece in inflater.feed(packed[i:i + 1]))
    assert out == b"hello " * 1000


def test_unknown_and_broken_encodings_are_named():
    with pytest.raises(EncodingError, match="'compress'"):
        Inflater("compress", 100)
    with pytest.raises(EncodingError, match="gzip"):
        list(Inflater("gzip", 100).feed(b"not gzip at all"))


def _relay_answering(body: bytes, headers: dict):
    def answer(request):
        if request["method"] == "POST":
            return 200, {**SSE, **headers}, body
        return 404, JSON, b"{}"

    return HostileRelay(answer)


def test_a_relay_that_answers_gzip_works_end_to_end():
    with _relay_answering(gzip.compress(ANSWER), {"Content-Encoding": "gzip"}) as relay:
        final = list(RelayClient(base_url=relay.base_url, api_key=TEST_KEY, max_retries=0).stream("x"))[-1]
        assert relay.requests[0]["headers"]["accept-encoding"] == "identity"
    assert final.task_id == TASK and final.status == "failed" and final.error == "compressed words"


def test_a_relay_that_answers_br_works_end_to_end():
    brotli = pytest.importorskip("brotli")
    with _relay_answering(brotli.compress(ANSWER), {"Content-Encoding": "br"}) as relay:
        final = list(RelayClient(base_url=relay.base_url, api_key=TEST_KEY, max_retries=0).stream("x"))[-1]
    assert final.task_id == TASK and final.status == "failed" and final.error == "compressed words"


def test_a_br_bomb_is_bounded_too():
    brotli = pytest.importorskip("brotli")
    packed = brotli.compress(brotli.compress(bytes(64 * 1024 * 1024), quality=1), quality=1)
    with pytest.raises(EncodingError, match="br, br"):
        for piece in Inflater("br, br", limit=8 * 1024 * 1024).feed(packed):
            assert len(piece) <= 2 * STEP  # brotli stops growing its buffer once past the limit


# -- bombs on all six paths, measured in a fresh process ---------------------------------------------

_MEASURE = """
import asyncio, sys
from kki_widgets import RelayClient
from kki_widgets.protocol.errors import KkiError
base, path = sys.argv[1], sys.argv[2]
client = RelayClient(base_url=base, api_key="k" * 20, max_retries=0, poll_interval=0.01)
try:
    if path in ("pricing", "billing"):
        url = base.removesuffix("/v1") + "/api/pricing" if path == "pricing" else base + "/dashboard/billing/usage"
        asyncio.run(client.async_client.get_json(url))
    else:
        for _ in client.stream("x"):
            pass
    outcome = "no error"
except KkiError as error:
    outcome = type(error).__name__ + ": " + str(error)[:300]
print([int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0] // 1024, outcome)
"""
BOMBED = {"Content-Encoding": "gzip, gzip"}


def _answers(path: str):
    cut_after_task = sse_body([f"> ID: `{TASK}`\n> Generating\n"], done=False)

    def answer(request):
        if path == "stream":
            return 200, {**SSE, **BOMBED}, bomb()
        if path == "json":
            return 200, {**JSON, **BOMBED}, bomb()
        if path == "error":
            return 500, {**JSON, **BOMBED}, bomb()
        if path == "raw" and request["method"] == "POST":
            return 200, SSE, cut_after_task
        return 200, {**JSON, **BOMBED}, bomb()  # the raw-data poll, the price list, billing

    return answer


@pytest.mark.parametrize("path", ["stream", "json", "error", "raw", "pricing", "billing"])
def test_a_stacked_gzip_bomb_stays_under_200_mb_and_names_the_encoding(path):
    bomb()
    with HostileRelay(_answers(path)) as relay:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        result = subprocess.run([sys.executable, "-c", _MEASURE, relay.base_url, path], env=env,
                                capture_output=True, text=True, timeout=170)
    assert result.returncode == 0, result.stderr[-2000:]
    peak_mb, outcome = result.stdout.strip().split(" ", 1)
    print(path, peak_mb, "MB", outcome)
    assert int(peak_mb) < 200, result.stdout
    assert "gzip, gzip" in outcome, outcome
    assert outcome.split(":")[0] in ("EncodingError", "RelayServerError"), outcome


def test_zstd_inflates_and_its_bomb_is_bounded():
    zstandard = pytest.importorskip("zstandard")
    packer = zstandard.ZstdCompressor()
    inflater = Inflater("zstd", limit=1 << 20)
    assert b"".join(inflater.feed(packer.compress(b"frame " * 500))) == b"frame " * 500
    bomb = packer.compress(bytes(64 * 1024 * 1024))
    with pytest.raises(EncodingError, match="zstd"):
        for piece in Inflater("zstd", limit=8 * 1024 * 1024).feed(bomb):
            assert len(piece) <= 1024 * 1024  # a 16-byte slice of input makes at most a few blocks
