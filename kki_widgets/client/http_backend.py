"""The relay client's sockets: an httpcore network backend on plain asyncio.

httpx reaches the network through httpcore, whose asyncio backend goes through anyio: every read
enters a cancel scope, asks sniffio which library runs, and maps exceptions. For a video stream
that is one small chunk per read, so on a kernel streaming many generations it is most of the
client's CPU (100 streams: 1.0 s with anyio, 0.65 s with this, same bytes;
``benchmarks/bench_loop_lag.py``). This backend keeps httpcore's HTTP/1.1 handling and the pool,
and reads with an `asyncio.Protocol` directly. Each read and each new connection also takes its
turn on the loop (`fair_share`), so 100 streams that wake together do not hold the kernel.

Only the direct connections of `AsyncRelayClient` use it (through `asyncio_transport`, built on
httpx's public transport class); connections through a proxy keep httpx's own transports.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import httpcore
import httpx

from ..net.http_transport import AsyncPoolTransport
from .fair_share import take_turn

__all__ = ["MAX_KEEPALIVE", "AsyncioBackend", "asyncio_transport"]

# httpx's own default. Above it httpcore closes idle connections; without a bound its pool
# re-counts every connection for every idle one on each request, which grows as the cube of
# the streams when 100 of them end together.
MAX_KEEPALIVE = 20


def asyncio_transport(ssl_context: ssl.SSLContext, limits: httpx.Limits) -> AsyncPoolTransport:
    """The transport of the connections the client opens itself, on `AsyncioBackend`.

    A client given it reads no proxy variables: it gets `http_transport.proxy_mounts` beside.
    """
    return AsyncPoolTransport(httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=AsyncioBackend(),
    ))  # fmt: skip


# Reading pauses while this much waits unread (as anyio: a relay that sends faster than we
# parse must not fill the kernel's memory), and resumes once a read took it below.
READ_AHEAD = 256 * 1024


class _Connection(asyncio.Protocol):
    """What the socket delivered, kept until a read asks; the reader waits on `waiter`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None  # the TLS one after start_tls
        self.reading_paused = False
        self.buffer = bytearray()
        self.ended = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.writing_paused = False
        self.drained: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > READ_AHEAD and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def take(self, max_bytes: int) -> bytes:
        data = bytes(self.buffer[:max_bytes])
        del self.buffer[:max_bytes]
        if self.reading_paused and len(self.buffer) <= READ_AHEAD // 2 and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
        return data

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False  # close the transport: HTTP/1.1 has no use for a half-open socket

    def connection_lost(self, error: BaseException | None) -> None:
        self.ended, self.error = True, error
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


async def _wait(future: asyncio.Future[None], timeout: float | None, timeout_error: type[Exception],
                what: str) -> None:  # fmt: skip
    """Await `future`, raising `timeout_error` after `timeout` seconds (None: no limit)."""
    if timeout is None:
        await future
        return
    timer = asyncio.get_running_loop().call_later(
        timeout, _expire, future, timeout_error, f"no {what} within {timeout:g} s"
    )
    try:
        await future
    finally:
        timer.cancel()


def _timed_out(what: str, timeout: float | None, error: BaseException) -> str:
    # With no timeout of ours, the system's own (TCP's ETIMEDOUT) ran out: say that instead.
    return f"no {what} within {timeout:g} s" if timeout is not None else f"{what}: {error}"


def _expire(future: asyncio.Future[None], error: type[Exception], message: str) -> None:
    if not future.done():
        future.set_exception(error(message))


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, connection: _Connection) -> None:
        self._transport = transport
        self._connection = connection
        connection.transport = transport

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        connection = self._connection
        if not connection.buffer and not connection.ended:
            connection.waiter = asyncio.get_running_loop().create_future()
            try:
                await _wait(connection.waiter, timeout, httpcore.ReadTimeout, "data")
            finally:
                connection.waiter = None
            await take_turn()
        if connection.buffer:
            return connection.take(max_bytes)
        if connection.error is not None:
            raise httpcore.ReadError(f"the connection broke: {connection.error}")
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._transport.is_closing():
            raise httpcore.WriteError("the connection was closed")
        self._transport.write(buffer)
        connection = self._connection
        if connection.writing_paused:  # a large body (images): wait until the socket takes more
            connection.drained = asyncio.get_running_loop().create_future()
            try:
                await _wait(connection.drained, timeout, httpcore.WriteTimeout, "room to write")
            finally:
                connection.drained = None
            if connection.error is not None:
                raise httpcore.WriteError(f"the connection broke: {connection.error}")

    async def aclose(self) -> None:
        self._transport.close()
        # As anyio does: one pass lets the close finish (the socket is released even if the
        # loop ends right after), then nothing still buffered may keep it open.
        await asyncio.sleep(0)
        self._transport.abort()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> AsyncioStream:  # fmt: skip
        loop = asyncio.get_running_loop()
        upgrade = loop.start_tls(self._transport, self._connection, ssl_context,
                                 server_hostname=server_hostname)  # fmt: skip
        try:
            transport = await asyncio.wait_for(upgrade, timeout)
        except asyncio.TimeoutError as error:
            self._transport.abort()
            raise httpcore.ConnectTimeout(_timed_out("TLS handshake", timeout, error)) from None
        except (ssl.SSLError, OSError, ConnectionError) as error:
            self._transport.abort()
            raise httpcore.ConnectError(str(error)) from None
        return AsyncioStream(transport, self._connection)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # httpcore: an idle connection the server has closed
            return bool(self._connection.buffer) or self._connection.ended
        names = {"ssl_object": "ssl_object", "client_addr": "sockname", "server_addr": "peername",
                 "socket": "socket"}  # fmt: skip
        return self._transport.get_extra_info(names[info]) if info in names else None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options=None) -> AsyncioStream:  # fmt: skip
        await take_turn()
        loop = asyncio.get_running_loop()
        connecting = loop.create_connection(
            _Connection, host, port,
            local_addr=(local_address, 0) if local_address else None,
            happy_eyeballs_delay=0.25,  # as anyio: an IPv6 address that hangs does not stall us
        )  # fmt: skip
        try:
            transport, connection = await asyncio.wait_for(connecting, timeout)
        except asyncio.TimeoutError as error:
            raise httpcore.ConnectTimeout(_timed_out(f"connection to {host}:{port}", timeout, error)) from None
        except OSError as error:
            raise httpcore.ConnectError(str(error)) from None
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        await take_turn()  # the request is written next: 100 connections may open in one pass
        return AsyncioStream(transport, connection)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options=None) -> AsyncioStream:  # fmt: skip
        raise httpcore.ConnectError("the relay client connects over TCP only")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
