"""Figure: what a hostile relay costs the client (memory, CPU, the kernel's event loop).

- Peak RSS of a fresh client process reading a junk stream (one endless line; junk lines and
  `data:` lines that never end their event) from a local server. Target: < 200 MB for 150 MB.
- SSE decoding of one 200 MB line without a newline, fed in 64 KB and 1 KB reads: linear.
- The longest stall of the event loop while the client polls a raw-data URL that answers 16 MB
  (refused at 1 MB) or 1 MB of JSON (parsed in a worker thread). Target: < 100 ms.
- Redacting a stream's text (the key's every form, held back across chunks): µs per network read.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import subprocess
import sys
import threading
import time

from _common import ROOT, emit, table

from kki_widgets.client.redact import KeyRedactor
from kki_widgets.client.relay import AsyncRelayClient
from kki_widgets.protocol.sse import SSEDecoder

MB = 1024 * 1024
SHAPES = {
    "one_line": b"x" * 65536,
    "junk_lines": b"junk line without a blank line\n" * 2048,
    "data_never_ends": b'data: {"never": "ends"}\n' * 2048,
}
TASK = "task_01benchhostilebenchhost00"
_MEASURE = """
import sys
from kki_widgets import RelayClient
from kki_widgets.protocol.errors import KkiError
try:
    for _ in RelayClient(base_url=sys.argv[1], api_key="k" * 20, max_retries=0).stream("x"):
        pass
except KkiError:
    pass
print([int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0] // 1024)
"""


class Server:
    """A local server whose GET and POST answers come from `answer(method) -> (status, ctype, pieces)`."""

    def __init__(self, answer):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                status, ctype, pieces, length = answer(self.command)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                if length is not None:
                    self.send_header("Content-Length", str(length))
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for piece in pieces():
                        self.wfile.write(piece)
                except OSError:
                    pass

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()


def junk_peak(shape: str, total: int) -> int:
    piece = SHAPES[shape]
    count = total // len(piece)
    server = Server(lambda method: (200, "text/event-stream", lambda: (piece for _ in range(count)), None))
    try:
        result = subprocess.run([sys.executable, "-c", _MEASURE, server.base_url], cwd=ROOT,
                                capture_output=True, text=True, timeout=300)
        return int(result.stdout.strip())
    finally:
        server.close()


def long_line(total: int, read: int) -> float:
    decoder = SSEDecoder()
    piece = b"x" * read
    started = time.perf_counter()
    for _ in range(total // read):
        decoder.feed(piece)
    decoder.close()
    return time.perf_counter() - started


async def _stall_while_following(base_url: str) -> float:
    client = AsyncRelayClient(base_url=base_url, api_key="k" * 20, max_retries=0,
                              poll_interval=0.05, follow_timeout=1.5)
    loop = asyncio.get_running_loop()
    stalls = [0.0]
    done = asyncio.Event()

    async def ticker():
        while not done.is_set():
            expected = loop.time() + 0.005
            await asyncio.sleep(0.005)
            stalls.append(loop.time() - expected)

    task = asyncio.create_task(ticker())
    try:
        async for _ in client.follow(TASK, f"{base_url[:-3]}/source/{TASK}"):
            pass
    except Exception:  # the follow ends in an error by design (refused or never finished)
        pass
    done.set()
    await task
    await client.aclose()
    return max(stalls)


def raw_stall(size: int, declared: bool) -> float:
    pad = json.dumps({"status": "processing", "pad": ["x" * 50] * (size // 56)}).encode()
    server = Server(lambda method: (200, "application/json", lambda: [pad],
                                    len(pad) if declared else None))
    try:
        return asyncio.run(_stall_while_following(server.base_url))
    finally:
        server.close()


def redaction_cost(reads: int) -> float:
    stream = KeyRedactor("sk-proj-" + "A1b2C3d4" * 6).stream()
    chunk = "..44.. still working on it\n> Progress 45.. " * 40  # ~1.5 KB of text per read
    started = time.perf_counter()
    for _ in range(reads):
        stream.add(chunk)
        stream.drain()
    return (time.perf_counter() - started) / reads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 MB junk, 20 MB line")
    args = parser.parse_args(argv)
    junk = (30 if args.quick else 150) * MB
    for shape in SHAPES:
        peak = junk_peak(shape, junk)
        emit(f"hostile.junk_stream.{shape}.peak_rss", peak, "MB", junk_mb=junk // MB,
             target="< 200 MB", met=peak < 200)
    line = (20 if args.quick else 200) * MB
    for read in (65536, 1024):
        seconds = long_line(line, read)
        emit(f"hostile.long_line.{read}B_reads", seconds, "s", line_mb=line // MB,
             mb_per_s=line / MB / seconds)
    for size, declared in ((16 * MB, True), (16 * MB, False), (900 * 1024, True)):
        stall = raw_stall(size, declared) * 1e3
        label = f"{size // 1024}KB_{'declared' if declared else 'chunked'}"
        emit(f"hostile.raw_data_loop_stall.{label}", stall, "ms", target="< 100 ms",
             met=stall < 100)
    emit("hostile.redaction_per_read", redaction_cost(2000 if args.quick else 20000) * 1e6, "µs",
         text_per_read="1.5 KB")
    table("Hostile relay: memory, CPU and event-loop cost")
    return 0


if __name__ == "__main__":
    sys.exit(main())
