"""Helpers shared by the tests (conftest modules cannot be imported by name)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
import time
from pathlib import Path

# Recognisable so the leak tests can grep for it; not shaped like any real provider's key.
TEST_KEY = "kki-test-key-3b8f1e0c9d7a6b5e4f"

# `serve_forever`'s poll: `shutdown()` waits for the loop's next look at its flag, half a
# second by default, which was most of the time of a hundred replay tests.
SERVE_POLL = 0.02


class ReplayServer:
    """Serves fixed bytes as an SSE answer, written in small pieces with pauses."""

    def __init__(
        self,
        body: bytes,
        piece: int = 7,
        pause: float = 0.002,
        raw_status: int = 404,
        content_type: str = "text/event-stream",
        content_encoding: str | None = None,
        media: dict[str, tuple] | None = None,
        hold: tuple[bytes, float] | None = None,
    ):
        """`content_encoding`: sent as the answer's Content-Encoding (the body is already encoded,
        as a compressing proxy sends it). `media`: GET path (query included if the link has one)
        → (status, content type, bytes), served with Range support so a client can sniff the
        first bytes; any other GET answers `raw_status` as before. `hold=(marker, seconds)`: after
        the event holding `marker`, the answer pauses, as a relay does between a notice and a late
        video (so what follows never arrives in the same read)."""
        outer = self
        hold_at, hold_seconds = -1, 0.0
        if hold is not None:
            hold_at, hold_seconds = body.index(b"\n\n", body.index(hold[0])) + 2, hold[1]
        self.pause = pause
        self.requests = []
        self.media_requests: list[tuple[str, str | None]] = []  # (path, Range header)
        # path → (status, content type, bytes) or (bytes, content type); tests may add paths later.
        self.media = dict(media or {})
        self.body = body  # may be replaced between requests (an answer naming this server's URLs)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                outer.requests.append((dict(self.headers), self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                if content_encoding:
                    self.send_header("Content-Encoding", content_encoding)
                self.send_header("Connection", "close")
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._write_slowly()

            def _write_slowly(self):
                body = outer.body
                for start in range(0, len(body), piece):
                    self.wfile.write(body[start : start + piece])
                    self.wfile.flush()
                    if outer.pause and body[start : start + piece].count(b"\n\n"):
                        time.sleep(outer.pause)
                    if start < hold_at <= start + piece:
                        time.sleep(hold_seconds)

            def do_GET(self):
                if self.path in outer.media:
                    outer.media_requests.append((self.path, self.headers.get("Range")))
                    answer = outer.media[self.path]
                    _send_media(self, *(answer if len(answer) == 3 else (200, answer[1], answer[0])))
                    return
                # The raw-data endpoint a client polls after a cut: answers raw_status.
                self.send_response(raw_status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": SERVE_POLL}, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def origin(self) -> str:
        return self.base_url[: -len("/v1")]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _send_media(handler, status: int, content_type: str, body: bytes) -> None:
    """One media answer; a `Range: bytes=a-b` request on a 200 gets the 206 slice."""
    import re

    wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", handler.headers.get("Range") or "")
    headers = {"Content-Type": content_type, "Accept-Ranges": "bytes", "Connection": "close"}
    if status == 200 and wanted and int(wanted[1]) < len(body):
        first, last = int(wanted[1]), min(int(wanted[2] or len(body) - 1), len(body) - 1)
        headers["Content-Range"] = f"bytes {first}-{last}/{len(body)}"
        status, body = 206, body[first : last + 1]
    handler.send_response(status)
    for name, value in {**headers, "Content-Length": str(len(body))}.items():
        handler.send_header(name, value)
    handler.end_headers()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        handler.wfile.write(body)


# A 1x1 PNG: what a relay's "thumbnail" or an image link really serves.
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000b49444154789c6360000200000500017a5eab3f0000000049454e44ae426082"
)
HTML_PAGE = b"<!doctype html><html><head><title>Relay</title></head><body><p>Sign in to see your videos.</p></body></html>"


@functools.lru_cache(maxsize=1)
def tiny_mp4() -> bytes:
    """A real, playable 1 s H.264 mp4 (rendered once per test process with the bundled ffmpeg)."""
    import subprocess
    import tempfile

    from kki_widgets.media.downloads import ffmpeg_exe

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
             "-i", "testsrc=size=160x284:rate=10:duration=1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
             "-movflags", "+faststart", str(path)],
            check=True, timeout=60,
        )  # fmt: skip
        return path.read_bytes()


def media_answer(kind: str) -> tuple[int, str, bytes]:
    """What a fixture's `media.kind` serves: real mp4 bytes, an HTML page, a PNG, or a 404."""
    answers = {
        "mp4": lambda: (200, "video/mp4", tiny_mp4()),
        "html": lambda: (200, "text/html; charset=utf-8", HTML_PAGE),
        "png": lambda: (200, "image/png", PNG_1X1),
        "404": lambda: (404, "text/plain", b"Not Found"),
    }
    if kind not in answers:
        raise ValueError(f"unknown media kind {kind!r}; use one of {', '.join(answers)}")
    return answers[kind]()


RELAY_FIXTURES = Path(__file__).parent / "fixtures" / "relays"


def relay_metas() -> dict[str, dict]:
    """Every real relay answer's meta (tests/fixtures/relays/NAME.meta.json), by NAME."""
    import json

    return {
        path.name[: -len(".meta.json")]: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(RELAY_FIXTURES.glob("*.meta.json"))
    }


def replay_fixture(meta: dict, piece: int = 7) -> ReplayServer:
    """A ReplayServer for one fixture: its bytes as stored (compressed ones with their
    Content-Encoding), and real media bytes at the paths its `media` entry names."""
    body = (RELAY_FIXTURES / meta["file"]).read_bytes()
    media = meta.get("media")
    if media and not media["path_or_url"].startswith("/"):
        raise ValueError(f"{meta['file']}: media.path_or_url must be a path on the replay server")
    return ReplayServer(
        body,
        piece=piece,
        pause=0,
        content_type=meta.get("content_type", "text/event-stream"),
        content_encoding=meta.get("content_encoding"),
        media={media["path_or_url"]: media_answer(media["kind"])} if media else None,
        hold=(meta["hold"]["after"].encode(), meta["hold"]["seconds"]) if "hold" in meta else None,
    )


def expected_outcome(meta: dict, server: ReplayServer) -> dict:
    """The fixture's `expect` with the `{origin}` / `{base}` templates filled for `server`."""

    def fill(value):
        if isinstance(value, str):
            return value.replace("{origin}", server.origin).replace("{base}", server.base_url)
        return value

    return {key: fill(value) for key, value in meta["expect"].items()}


def sse_body(deltas: list[str], *, done: bool = True) -> bytes:
    """A chat-completion SSE answer carrying `deltas`, framed as the relay's page shows."""
    import json

    def event(delta: dict, finish=None) -> bytes:
        chunk = {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": 1760338775,
            "model": "sora-2",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    body = event({"role": "assistant", "content": ""})
    body += b"".join(event({"content": delta}) for delta in deltas)
    if done:
        body += event({}, "stop") + b"data: [DONE]\n\n"
    return body


def abandon_after_task_id(conversation, prompt: str) -> str:
    """Start a turn, wait until the relay accepted it, then end the event loop with the turn
    still running — what a kernel dying mid-generation leaves behind. Returns the task ID."""
    import asyncio

    async def start_and_die():
        handle = conversation.start(prompt)
        while not handle.turn.task_id:
            await asyncio.sleep(0.02)
        return handle.turn.task_id

    return asyncio.run(start_and_die())


class HostileRelay:
    """A loopback relay whose every answer the test writes, recording every request it gets.

    `answer(request) -> (status, headers, body)`: `request` is a dict (method, path, headers,
    body, tls); `body` is bytes or a callable returning an iterable of byte pieces (written as
    they come, so a stream can be endless). With `tls=(certfile, keyfile)` the same port speaks
    https and plain http (it peeks at the first byte), so a test sees what a client sends to an
    `http://` link on an `https://` relay's host and port.
    """

    def __init__(self, answer, tls: tuple[str, str] | None = None):
        import socket
        import ssl

        outer = self
        self.requests: list[dict] = []
        context = None
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                length = int(self.headers.get("Content-Length", 0) or 0)
                request = {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": self.rfile.read(length) if length else b"",
                    "tls": isinstance(self.connection, ssl.SSLSocket),
                }
                outer.requests.append(request)
                status, headers, body = answer(request)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if isinstance(body, bytes) and "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError, OSError):
                    for piece in [body] if isinstance(body, bytes) else body():
                        self.wfile.write(piece)
                        self.wfile.flush()

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, address = super().get_request()
                if context is not None and sock.recv(1, socket.MSG_PEEK) == b"\x16":
                    sock = context.wrap_socket(sock, server_side=True)
                return sock, address

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": SERVE_POLL}, daemon=True).start()
        self.port = self.server.server_address[1]
        scheme = "https" if tls else "http"
        self.origin = f"{scheme}://127.0.0.1:{self.port}"
        self.base_url = f"{self.origin}/v1"

    def paths(self, method: str = "GET") -> list[str]:
        return [r["path"] for r in self.requests if r["method"] == method]

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


SSE = {"Content-Type": "text/event-stream"}
JSON = {"Content-Type": "application/json"}


def run_cell(ip, source: str):
    """Run a cell in an IPython shell like the notebook does; re-raise its error, return its value."""
    result = ip.run_cell(source)
    if result.error_before_exec is not None:
        raise result.error_before_exec
    if result.error_in_exec is not None:
        raise result.error_in_exec
    return result.result


def point_package_at(monkeypatch, simulator) -> None:
    """Make the package reach `simulator` with the test key, as a notebook's environment would."""
    monkeypatch.setenv("KKI_BASE_URL", simulator.base_url)
    monkeypatch.setenv("KKI_API_KEY", TEST_KEY)


@contextlib.contextmanager
def simulated_relay(monkeypatch, **options):
    """A simulator (no artificial delays unless given) that the package reaches by default."""
    from kki_widgets.simulator import Simulator

    for name in ("queue_seconds", "generate_seconds", "step_seconds"):
        options.setdefault(name, 0)
    with Simulator(**options) as simulator:
        point_package_at(monkeypatch, simulator)
        yield simulator


def new_ipython(store, *, display: str | None = None, cell_id: str | None = None, media: bool = True):
    """A fresh kernel: a new IPython shell with %load_ext kki_widgets on the notebook store `store`
    (the previous test shell is ended first, see `end_ipython`).

    `display`: SoraMagics.display (default: the magic's own); `cell_id`: the cell ID JupyterLab
    would send with each execution; `media=False`: SoraMagics.media_dir = None.
    """
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    end_ipython()
    config = Config()
    # In memory, as in a kernel started with a throwaway profile: the tests' shells never write
    # the user's ~/.ipython history, and workers running at once never wait on its sqlite lock.
    config.HistoryManager.enabled = False
    ip = InteractiveShell.instance(config=config)
    ip.run_line_magic("load_ext", "kki_widgets")
    ip.run_line_magic("config", f"SoraMagics.store_path = {str(store)!r}")
    if display is not None:
        ip.run_line_magic("config", f"SoraMagics.display = {display!r}")
    if not media:
        ip.run_line_magic("config", "SoraMagics.media_dir = None")
    if cell_id:
        ip.magics_manager.registry["SoraMagics"]._cell_id = lambda: cell_id
    return ip


def end_ipython() -> None:
    """Let the current test shell go, as its process's end would.

    IPython registers every shell's exit hook with `atexit`, which keeps each shell (and all it
    ran) alive to the end of the worker; there, a worker that had made a hundred shells spent
    about 15 s of CPU in their hundred `gc.collect()` calls over the whole heap. The hook is
    dropped instead of run: its work is closing the history, which `new_ipython` keeps in memory.
    """
    import atexit

    from IPython.core.interactiveshell import InteractiveShell

    if InteractiveShell.initialized():
        atexit.unregister(InteractiveShell.instance().atexit_operations)
    InteractiveShell.clear_instance()


def writers_lose_nothing(path: str, hammer, *args, workers: int = 4, rounds: int = 25) -> None:
    """`workers` forked processes each run `hammer(path, worker, rounds, *args)` on one store at
    once; every counter bump, turn and cache entry of every worker must be there afterwards
    (`hammer` saves turns to conversation "worker-N" and cache keys "N-i")."""
    import multiprocessing

    from kki_widgets.store.notebook_store import NotebookStore

    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=hammer, args=(path, w, rounds, *args)) for w in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    data = NotebookStore(path).load()
    assert data["usage"]["paid_requests"] == workers * rounds
    assert len(data["cache"]) == workers * rounds
    for w in range(workers):
        assert len(data["conversations"][f"worker-{w}"]["turns"]) == rounds


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
                   "http_proxy", "https_proxy", "all_proxy", "no_proxy")  # fmt: skip


def use_only_proxy(monkeypatch, **variables: str) -> None:
    """The environment's proxy variables are exactly `variables` (none of the developer's)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def self_signed_certificate(folder) -> tuple[str, str]:
    """(cert.pem, key.pem) for 127.0.0.1, made by openssl in `folder`."""
    import subprocess

    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


class Socks5Proxy:
    """A SOCKS5 proxy (no authentication, CONNECT), as Clash or `ssh -D` offer on loopback.

    Records every target it was asked for in `targets` ("host:port", the name as the client sent
    it); names in `names` lead where the value says ("host:port"), like a proxy that reaches what
    this machine cannot resolve.
    """

    def __init__(self):
        import socket

        self.targets: list[str] = []
        self.names: dict[str, str] = {}
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"socks5://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        import ipaddress
        import socket

        def exactly(count: int) -> bytes:
            data = b""
            while len(data) < count:
                piece = client.recv(count - len(data))
                if not piece:
                    raise ConnectionError("the client went away")
                data += piece
            return data

        with client, contextlib.suppress(OSError, ConnectionError):
            _version, methods = exactly(2)
            exactly(methods)
            client.sendall(b"\x05\x00")  # no authentication
            _version, _command, _reserved, kind = exactly(4)
            if kind == 3:
                host = exactly(exactly(1)[0]).decode()
            else:
                host = str(ipaddress.ip_address(exactly(4 if kind == 1 else 16)))
            port = int.from_bytes(exactly(2), "big")
            self.targets.append(f"{host}:{port}")
            target_host, target_port = self.names.get(host, f"{host}:{port}").rsplit(":", 1)
            upstream = socket.create_connection((target_host, int(target_port)), timeout=10)
            client.sendall(b"\x05\x00\x00\x01" + bytes(6))  # succeeded (bound address unused)
            with upstream:
                threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
                _pump(client, upstream)

    def close(self):
        self.listener.close()


def _pump(source, sink) -> None:
    import socket

    with contextlib.suppress(OSError):
        while piece := source.recv(65536):
            sink.sendall(piece)
        sink.shutdown(socket.SHUT_WR)


def ranged_answer(body: bytes, content_type: str, range_header: str | None):
    """(status, headers, payload) of a GET with an optional `Range: bytes=A-B`, as media hosts answer."""
    headers = {"Content-Type": content_type, "Accept-Ranges": "bytes"}
    if range_header and range_header.startswith("bytes="):
        first, _, last = range_header[6:].partition("-")
        start, end = int(first or 0), min(int(last) if last else len(body) - 1, len(body) - 1)
        headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
        headers["Content-Length"] = str(end - start + 1)
        return 206, headers, body[start : end + 1]
    headers["Content-Length"] = str(len(body))
    return 200, headers, body


class ExternalMedia:
    """The internet as a test sees it: `urls` (absolute, on hosts that do not resolve here)
    answer their bytes with Range, every other outside URL 404; this machine's own servers are
    reached for real. Pass `transport()` to the client and `patch_dns(monkeypatch)` so the
    address policy sees the outside hosts as public."""

    def __init__(self, urls: dict, *, offline: bool = False, local_ports: tuple[int, ...] = ()):
        """`offline`: every host but this machine's `local_ports` refuses the connection (the
        kernel cannot reach the media at all), instead of answering 404."""
        import httpx

        self.urls = {str(httpx.URL(url)): answer for url, answer in urls.items()}  # → (bytes, type)
        self.asked: list[str] = []
        self.offline, self.local_ports = offline, local_ports

    def transport(self):
        import httpx

        from kki_widgets.net.http_transport import shared_ssl_context

        outer = self
        # The package's one context: a new one per transport loaded the CA bundle every time
        # (a third of the CPU of the replay tests).
        real = httpx.AsyncHTTPTransport(verify=shared_ssl_context())

        class Transport(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request):
                local = request.url.host in ("127.0.0.1", "localhost")
                if str(request.url) not in outer.urls and local and (
                    not outer.offline or request.url.port in outer.local_ports
                ):
                    return await real.handle_async_request(request)
                outer.asked.append(str(request.url))
                if outer.offline and str(request.url) not in outer.urls:
                    raise httpx.ConnectError("unreachable from this kernel", request=request)
                if str(request.url) not in outer.urls:
                    return httpx.Response(404, headers={"Content-Type": "text/html"},
                                          stream=httpx.ByteStream(b"<h1>404</h1>"))
                status, headers, payload = ranged_answer(*outer.urls[str(request.url)], request.headers.get("Range"))
                return httpx.Response(status, headers=headers, stream=httpx.ByteStream(payload))

            async def aclose(self):
                await real.aclose()

        return Transport()

    @staticmethod
    def patch_dns(monkeypatch):
        import ipaddress

        import kki_widgets.client.relay as relay_module

        original = relay_module.resolve

        def resolve(host, port):
            if host in ("127.0.0.1", "localhost"):
                return original(host, port)
            return [ipaddress.ip_address("93.184.215.14")]  # a public address

        monkeypatch.setattr(relay_module, "resolve", resolve)
