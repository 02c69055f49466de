"""httpx transports over an httpcore pool we build, and the environment's proxies as mounts.

httpx takes no network backend: its `HTTPTransport` builds its httpcore pool itself. The relay
client (asyncio sockets, `http_backend`) and the media checks (address-checked sockets,
`addresses.GuardedBackend`) need pools on their own backends, so they use these transports,
built on httpx's and httpcore's public classes only: a private attribute could be renamed in any
release. They do what httpx's transport does around its pool: the request converted, httpcore's
errors raised as httpx's.

A client given ``transport=`` reads no proxy variables, so `proxy_mounts` gives it the mounts
httpx itself would build from them (same patterns, same curl rules for NO_PROXY).

`shared_ssl_context`: one verifying SSL context per process for all of these transports.
"""

from __future__ import annotations

import contextlib
import ipaddress
import ssl
import threading
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

import httpcore
import httpx

__all__ = ["AsyncPoolTransport", "PoolTransport", "proxy_mounts", "shared_ssl_context"]

_ssl_lock = threading.Lock()
_ssl_context: ssl.SSLContext | None = None


def shared_ssl_context() -> ssl.SSLContext:
    """httpx's verifying context (certifi's CA bundle, or SSL_CERT_FILE/SSL_CERT_DIR when set),
    built once per process: building one loads the whole CA bundle, ~20 ms of CPU that blocked
    the event loop for every relay client and every media download."""
    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            _ssl_context = httpx.create_ssl_context()
        return _ssl_context

# Most specific first: the first match is the error raised.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    """httpcore's errors as httpx's (callers catch `httpx.TransportError`); others unchanged."""
    try:
        yield
    except Exception as error:
        for core, public in _ERRORS:
            if isinstance(error, core):
                raise public(str(error)) from error
        raise


def _core_request(request: httpx.Request) -> httpcore.Request:
    url = request.url
    return httpcore.Request(
        method=request.method,
        url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
        headers=request.headers.raw,
        content=request.stream,
        extensions=request.extensions,
    )


class _AsyncBody(httpx.AsyncByteStream):
    def __init__(self, stream) -> None:
        self.stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for part in self.stream:
                yield part

    async def aclose(self) -> None:
        await self.stream.aclose()


class _Body(httpx.SyncByteStream):
    def __init__(self, stream) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self.stream

    def close(self) -> None:
        self.stream.close()


class AsyncPoolTransport(httpx.AsyncBaseTransport):
    """An httpx transport sending through `pool` (an `httpcore.AsyncConnectionPool`)."""

    def __init__(self, pool: httpcore.AsyncConnectionPool) -> None:
        self.pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _as_httpx_errors():
            response = await self.pool.handle_async_request(_core_request(request))
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_AsyncBody(response.stream), extensions=response.extensions)  # fmt: skip

    async def aclose(self) -> None:
        await self.pool.aclose()


class PoolTransport(httpx.BaseTransport):
    """An httpx transport sending through `pool` (an `httpcore.ConnectionPool`)."""

    def __init__(self, pool: httpcore.ConnectionPool) -> None:
        self.pool = pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with _as_httpx_errors():
            response = self.pool.handle_request(_core_request(request))
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_Body(response.stream), extensions=response.extensions)  # fmt: skip

    def close(self) -> None:
        self.pool.close()


T = TypeVar("T")


def proxy_mounts(transport_for: Callable[[str], T]) -> dict[str, T | None]:
    """The environment's proxies as ``mounts=``: `transport_for(proxy_url)` for each proxied
    scheme, None (the client's own transport) for each NO_PROXY entry. The patterns are httpx's
    own for a client that reads the environment, so a relay behind HTTPS_PROXY, ALL_PROXY=socks5://…
    or NO_PROXY is reached exactly as before our transports. A proxy of a kind httpx cannot use
    raises httpx's ValueError here, as it would when building its own client."""
    proxies = urllib.request.getproxies()
    mounts: dict[str, T | None] = {}
    for scheme in ("http", "https", "all"):
        if proxies.get(scheme):
            proxy = proxies[scheme]
            mounts[f"{scheme}://"] = transport_for(proxy if "://" in proxy else f"http://{proxy}")
    for host in (entry.strip() for entry in proxies.get("no", "").split(",")):
        if host == "*":  # curl: NO_PROXY=* anywhere in the list turns every proxy off
            return {}
        if host:
            mounts[_no_proxy_pattern(host)] = None
    return mounts


def _no_proxy_pattern(host: str) -> str:
    """curl's NO_PROXY rules as httpx writes them: ``.example.com`` spares subdomains only,
    ``example.com`` the domain too; addresses and localhost exactly."""
    if "://" in host:
        return host
    address = host.split("/")[0]
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(address).version == 6:
            return f"all://[{host}]"
        return f"all://{host}"
    return f"all://{host}" if host.lower() == "localhost" else f"all://*{host}"
