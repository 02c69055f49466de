"""The relay client's own sockets (`http_backend`) and the loop's fair turns (`fair_share`).

The client's streams read through `AsyncioBackend` instead of httpx's anyio one, so everything
httpx relied on anyio for is checked here on real sockets: TLS, timeouts, a peer that breaks
off, flow control on a large body, stale keep-alive connections, and the environment's proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.server
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest
from kki_testing import (
    SERVE_POLL,
    SSE,
    TEST_KEY,
    HostileRelay,
    Socks5Proxy,
    self_signed_certificate,
    sse_body,
    use_only_proxy,
)

from kki_widgets import RelayClient
from kki_widgets.client.fair_share import SLICE, take_turn
from kki_widgets.client.http_backend import (
    MAX_KEEPALIVE,
    READ_AHEAD,
    AsyncioBackend,
    asyncio_transport,
)
from kki_widgets.protocol.errors import ConfigurationError

TASK = "task_01backendbackendbackend00"
VIDEO = "https://cdn.example/videos/backend.mp4"
ANSWER = sse_body([f"> ID: `{TASK}`\n", "> Progress 50..\n", "Generation Complete ✅\n",
                   f"[Play Online]({VIDEO})\n"])  # fmt: skip


def client_on_our_sockets(verify: ssl.SSLContext | None = None, **options) -> httpx.AsyncClient:
    context = verify or ssl.create_default_context()
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=MAX_KEEPALIVE)
    return httpx.AsyncClient(transport=asyncio_transport(context, limits), **options)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def test_the_relay_client_streams_through_its_own_sockets(fast_simulator, monkeypatch):
    opened = []
    connect = AsyncioBackend.connect_tcp

    async def counted(backend, host, port, *args, **kwargs):
        opened.append(port)
        return await connect(backend, host, port, *args, **kwargs)

    monkeypatch.setattr(AsyncioBackend, "connect_tcp", counted)
    client = RelayClient(base_url=fast_simulator.base_url, api_key=TEST_KEY)
    final = list(client.stream("a fox through our sockets"))[-1]
    assert opened and set(opened) == {urlsplit(fast_simulator.base_url).port}
    assert final.status == "completed" and final.video_url


def test_tls_is_verified_and_spoken(certificate):
    def answer(request):
        return 200, SSE, ANSWER

    async def fetch(context):
        async with client_on_our_sockets(context) as http:
            response = await http.post(f"{relay.base_url}/chat/completions", json={"x": 1})
            return response.status_code, response.content

    with HostileRelay(answer, tls=certificate) as relay:
        status, body = asyncio.run(fetch(ssl.create_default_context(cafile=certificate[0])))
        assert (status, body) == (200, ANSWER) and relay.requests[0]["tls"]
        # A certificate nobody vouches for is refused before a byte of the request is sent.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            asyncio.run(fetch(ssl.create_default_context()))
    assert len(relay.requests) == 1


def test_a_silent_server_times_out_and_a_closed_port_fails_to_connect():
    def answer(request):
        def body():
            yield b"data: {}\n\n"
            time.sleep(3)

        return 200, SSE, body

    async def read_all(url, timeout):
        async with client_on_our_sockets(timeout=timeout) as http, http.stream("GET", url) as response:
            return [chunk async for chunk in response.aiter_raw()]

    with HostileRelay(answer) as relay:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout, match=r"no data within 0\.3 s"):
            asyncio.run(read_all(relay.origin, 0.3))
        assert time.monotonic() - started < 2.5
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        asyncio.run(read_all(f"http://127.0.0.1:{port}/", 5))


def test_a_server_that_never_answers_the_tls_handshake_times_out():
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, then says nothing

    async def get():
        async with client_on_our_sockets(timeout=0.3) as http:
            await http.get(f"https://127.0.0.1:{listener.getsockname()[1]}/")

    try:
        with pytest.raises(httpx.ConnectTimeout, match=r"no TLS handshake within 0\.3 s"):
            asyncio.run(get())
    finally:
        listener.close()


def test_a_body_cut_short_is_an_error_not_an_ending():
    def answer(request):
        return 200, {"Content-Length": "1000"}, lambda: [b"x" * 10]

    async def read_all(url):
        async with client_on_our_sockets() as http, http.stream("GET", url) as response:
            return b"".join([chunk async for chunk in response.aiter_raw()])

    with HostileRelay(answer) as relay, pytest.raises(httpx.RemoteProtocolError):
        asyncio.run(read_all(relay.origin))


class _SlowSink(http.server.BaseHTTPRequestHandler):
    """Reads a large body slowly (so the client's socket buffer fills) and answers its digest."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        remaining, digest = int(self.headers["Content-Length"]), hashlib.sha256()
        while remaining:
            piece = self.rfile.read(min(remaining, 256 * 1024))
            digest.update(piece)
            remaining -= len(piece)
            time.sleep(0.002)
        answer = digest.hexdigest().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def test_a_large_body_waits_for_the_socket_and_arrives_whole():
    body = bytes(range(256)) * (12 * 4096)  # 12 MiB, far over any socket buffer
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowSink)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": SERVE_POLL}, daemon=True).start()

    async def post():
        async with client_on_our_sockets(timeout=30) as http:
            response = await http.post(f"http://127.0.0.1:{server.server_address[1]}/", content=body)
            return response.text

    try:
        assert asyncio.run(post()) == hashlib.sha256(body).hexdigest()
    finally:
        server.shutdown()
        server.server_close()


def test_a_relay_that_sends_faster_than_we_read_does_not_fill_memory():
    """32 MiB sent as fast as the socket takes it, read slowly: what waits unread in the process
    stays near READ_AHEAD (the rest waits in the kernel's socket buffers, then at the sender)."""
    total = 32 * 1024 * 1024
    listener = socket.create_server(("127.0.0.1", 0))

    def flood():
        sock, _ = listener.accept()
        with sock, contextlib.suppress(OSError):
            sock.sendall(b"x" * total)

    threading.Thread(target=flood, daemon=True).start()

    async def read_slowly():
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", listener.getsockname()[1])
        received, most_waiting = 0, 0
        while received < total:
            received += len(await stream.read(64 * 1024, timeout=10))
            most_waiting = max(most_waiting, len(stream._connection.buffer))
            if received < 4 * 1024 * 1024:
                await asyncio.sleep(0.001)  # slow at first, while the flood arrives
        await stream.aclose()
        return received, most_waiting

    try:
        received, most_waiting = asyncio.run(read_slowly())
    finally:
        listener.close()
    assert received == total and most_waiting < READ_AHEAD + 1024 * 1024, most_waiting


def test_a_keep_alive_connection_the_server_closed_is_not_reused():
    """The server closes each connection after answering but says nothing: the next request
    must open a new connection rather than fail on the dead one."""
    connections = []

    def serve(listener):
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            connections.append(sock)
            sock.recv(65536)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            time.sleep(0.05)
            sock.close()

    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=serve, args=(listener,), daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"

    async def twice():
        async with client_on_our_sockets() as http:
            first = (await http.get(url)).text
            await asyncio.sleep(0.2)  # the server has closed the idle connection by now
            return first, (await http.get(url)).text

    try:
        assert asyncio.run(twice()) == ("ok", "ok")
        assert len(connections) == 2
    finally:
        listener.close()


def test_a_relay_elsewhere_still_goes_through_the_environments_proxy(monkeypatch):
    """Our sockets replace httpx's own only for direct connections: its proxy still applies."""

    def answer(request):
        return 200, SSE, ANSWER

    use_only_proxy(monkeypatch)
    with HostileRelay(answer) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.origin)
        client = RelayClient(base_url="http://relay.kki.invalid/v1", api_key=TEST_KEY, max_retries=0)
        final = list(client.stream("a fox behind a proxy"))[-1]
    assert final.video_url == VIDEO
    assert proxy.paths("POST") == ["http://relay.kki.invalid/v1/chat/completions"]


def test_a_relay_behind_a_socks_proxy_is_reached_through_it(monkeypatch):
    """ALL_PROXY=socks5://… alone, as Clash sets it: httpx refused to build a client at all
    without the socksio package; with it the relay is reached through the proxy."""

    def answer(request):
        return 200, SSE, ANSWER

    socks = Socks5Proxy()
    use_only_proxy(monkeypatch, ALL_PROXY=socks.url)
    try:
        with HostileRelay(answer) as relay:
            socks.names["relay.kki.invalid"] = f"127.0.0.1:{relay.port}"
            client = RelayClient(base_url="http://relay.kki.invalid/v1", api_key=TEST_KEY, max_retries=0)
            final = list(client.stream("a fox behind a socks proxy"))[-1]
    finally:
        socks.close()
    # The relay, then the candidate video's first bytes, both through the proxy (this proxy
    # cannot reach cdn.example and hangs up: the video completes on its <video>-like evidence).
    assert final.video_url == VIDEO and socks.targets == ["relay.kki.invalid:80", "cdn.example:443"]
    assert relay.paths("POST") == ["/v1/chat/completions"]


def test_a_proxy_of_a_kind_httpx_cannot_use_is_named_with_the_fix(monkeypatch):
    use_only_proxy(monkeypatch, ALL_PROXY="socks4://127.0.0.1:1080")
    client = RelayClient(base_url="http://relay.kki.invalid/v1", api_key=TEST_KEY, max_retries=0)
    with pytest.raises(ConfigurationError, match=r"socks5://.*Fix ALL_PROXY.*relay\.kki\.invalid to NO_PROXY"):
        list(client.stream("a fox"))


# -- fair turns --------------------------------------------------------------------------------


def _busy(seconds: float) -> None:
    ends = time.perf_counter() + seconds
    while time.perf_counter() < ends:
        pass


def test_streams_that_wake_together_leave_room_for_the_rest_of_the_loop():
    """50 streams each with 1 ms of work wake in one pass; a callback due in the same pass runs
    after about one slice of their work, not after all 50 ms. Every stream still runs, in the
    order it asked."""
    ran: list[int] = []
    seen_by_probe: list[int] = []

    async def stream(index: int) -> None:
        await take_turn()
        _busy(0.001)
        ran.append(index)

    async def main():
        loop = asyncio.get_running_loop()
        tasks = [asyncio.ensure_future(stream(i)) for i in range(50)]
        loop.call_later(0, lambda: seen_by_probe.append(len(ran)))
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert ran == list(range(50))
    # One slice is a few ms of work: a handful of streams, not 50.
    assert SLICE < 0.005 and seen_by_probe[0] < 8, seen_by_probe


def test_the_first_stream_of_a_pass_never_waits():
    """However long the loop was busy before, the slice starts with the first stream of a pass."""
    waited = []

    async def main():
        loop = asyncio.get_running_loop()
        for _ in range(20):
            await asyncio.sleep(0)  # a new pass
            _busy(SLICE * 2)  # other work in this pass, not a stream's
            marker = []
            loop.call_soon(marker.append, "the loop moved on")
            await take_turn()
            waited.append(bool(marker))

    asyncio.run(main())
    assert waited == [False] * 20
