"""Which hosts a media download may reach: an address policy applied after DNS resolution.

The relay's answer decides which URLs the kernel fetches, and the relay is not trusted: without
a policy a hostile answer makes the kernel fetch (and save next to the notebook) a service on
loopback, on the private network, or the cloud metadata endpoint. So every address a download
connects to — on every redirect hop, at connect time, after resolving the name (so DNS
rebinding changes nothing) — is classified:

- link-local (169.254.0.0/16, fe80::/10: cloud metadata), multicast, unspecified: never;
- loopback: only when the relay itself is on loopback (the embedded simulator, a local proxy);
- private / not globally routable: only when the relay itself is;
- anything else: allowed.

The user can widen it for a trusted setup with ``KKI_MEDIA_ALLOW=loopback,private`` or
``download(..., allow=("private",))``; link-local cannot be allowed.

Through a proxy the environment names (``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``, minus
``NO_PROXY``, as the relay client uses it) the proxy makes the connection, often on a network
where only it resolves outside names (or where local DNS answers Clash-style "fake-ip"
198.18.0.0/15 placeholders). There the host is judged before the request: an address literal as
above; a name by what it resolves to here, unless that is nothing or placeholders, in which case
names that only mean something inside a network (no dot, ``.local``, ``.internal``, …) are
refused. The proxy's own address is the user's configuration and is not checked.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore

from ..protocol.errors import KkiError

__all__ = [
    "ALLOW_ENV",
    "PROXY_SCHEMES",
    "AddressPolicy",
    "AddressRefused",
    "GuardedBackend",
    "environment_proxy",
    "is_loopback_host",
]

ALLOW_ENV = "KKI_MEDIA_ALLOW"
_WIDENINGS = ("loopback", "private")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# What "fake-ip" DNS (Clash, Surge: common wherever a local proxy is the way out) answers: a
# placeholder the proxy maps back to the name. It says nothing about where the name leads.
_FAKE_IP = ipaddress.ip_network("198.18.0.0/15")
# Names that only resolve inside a network (RFC 6761/6762/8375 and the usual private zones).
_INSIDE_SUFFIXES = (".local", ".localhost", ".localdomain", ".internal", ".intranet", ".lan",
                    ".home", ".home.arpa", ".corp", ".private")


def is_loopback_host(host: str | None) -> bool:
    """"localhost" or a loopback address literal (no DNS)."""
    if not host:
        return False
    bare = host.strip("[]").rstrip(".").lower()
    if bare == "localhost" or bare.endswith(".localhost"):
        return True
    try:
        return classify(ipaddress.ip_address(bare)) == "loopback"
    except ValueError:
        return False


# What httpx can go through (socks with the `socksio` package, a dependency): Clash, V2Ray and
# ssh -D users often set ALL_PROXY=socks5://127.0.0.1:7890 and nothing else.
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (`PROXY_SCHEMES`), or None (NO_PROXY, none set,
    a kind httpx cannot use).

    Never for this machine itself (the embedded simulator): a proxy elsewhere cannot reach it.
    """
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not parts.hostname or is_loopback_host(parts.hostname):
        return None
    if urllib.request.proxy_bypass_environment(parts.hostname, proxies):
        return None
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    return proxy if proxy and urlsplit(proxy).scheme in PROXY_SCHEMES else None


class AddressRefused(KkiError, RuntimeError):
    """A media URL resolved to an address the policy refuses (the message says how to allow it)."""


def classify(address: IPAddress) -> str:
    """"forbidden", "loopback", "private" or "public"."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:  # ::ffff:127.0.0.1 is 127.0.0.1
        address = mapped
    if address.is_link_local or address.is_multicast or address.is_unspecified:
        return "forbidden"
    if address.is_loopback:
        return "loopback"
    if address.is_private or not address.is_global or address.is_reserved:
        return "private"
    return "public"


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (a literal address resolves to itself)."""
    host = host.strip("[]")
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise OSError(f"cannot resolve {host}: {error}") from error
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))


@dataclass(frozen=True)
class AddressPolicy:
    """What a download may connect to; built from the relay's own address and the user's widenings."""

    allowed: frozenset[str]  # subset of {"loopback", "private"}; "public" is always allowed
    relay: str | None = None

    @classmethod
    def for_relay(cls, relay_url: str | None, allow: Iterable[str] = ()) -> AddressPolicy:
        wanted = {item.strip().lower() for item in allow if item.strip()}
        wanted |= {
            item.strip().lower() for item in os.environ.get(ALLOW_ENV, "").split(",") if item.strip()
        }
        unknown = wanted - set(_WIDENINGS)
        if unknown:
            raise ValueError(
                f"unknown media address class(es) {', '.join(sorted(unknown))}: "
                f"{ALLOW_ENV} and allow= take only {' and '.join(_WIDENINGS)} (link-local is never allowed)"
            )
        if relay_url:
            parts = urlsplit(relay_url)
            if parts.hostname:
                with contextlib.suppress(OSError):  # an unresolvable relay widens nothing
                    kinds = {classify(a) for a in resolve(parts.hostname, parts.port or 443)}
                    # A loopback relay (simulator, local proxy) may point at its own host only.
                    wanted |= {"loopback"} if "loopback" in kinds else set()
                    wanted |= {"private"} if "private" in kinds else set()
        return cls(frozenset(wanted), relay_url)

    def check(self, host: str, addresses: Iterable[IPAddress]) -> None:
        """Raise `AddressRefused` unless every address of ``host`` is allowed."""
        for address in addresses:
            kind = classify(address)
            if kind == "public" or kind in self.allowed:
                continue
            raise AddressRefused(self._explain(host, address, kind))

    def check_through_proxy(self, host: str) -> None:
        """The check for a host a proxy will resolve and connect to (see the module docstring)."""
        bare = host.strip("[]")
        try:
            self.check(host, [ipaddress.ip_address(bare)])
            return
        except ValueError:
            pass  # a name
        try:
            addresses = [a for a in resolve(bare, 443) if a not in _FAKE_IP]
        except OSError:
            addresses = []  # only the proxy resolves outside names here
        if addresses:
            self.check(host, addresses)
            return
        name = bare.rstrip(".").lower()
        if ("." not in name or name.endswith(_INSIDE_SUFFIXES)) and "private" not in self.allowed:
            raise AddressRefused(
                f"refused to download from {host} through the proxy: a name that only means something "
                f"inside a network, and a relay answer must not make this kernel reach it. If you "
                f"trust this media host, set {ALLOW_ENV}=private (or pass allow=('private',))."
            )

    def _explain(self, host: str, address: IPAddress, kind: str) -> str:
        where = f"{host} ({address})" if host.strip("[]") != str(address) else str(address)
        if kind == "forbidden":
            return (
                f"refused to download from {where}: a link-local, multicast or unspecified address "
                "(cloud metadata lives there). Media from such addresses are never fetched; download "
                "the file yourself if you trust it."
            )
        relay = f"the relay {self.relay}" if self.relay else "no relay"
        return (
            f"refused to download from {where}: a {kind} address, and {relay} is not on a {kind} "
            f"network, so a relay answer must not make this kernel reach it. If you trust this "
            f"media host, set {ALLOW_ENV}={kind} (or pass allow=({kind!r},))."
        )


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, refusing connections the policy does not allow.

    The check runs at connect time on the resolved address and the socket connects to that very
    address, so the name cannot resolve to something else between the check and the connection.
    """

    def __init__(self, policy: AddressPolicy):
        self.policy = policy

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = resolve(host, port)
        except OSError as error:
            raise httpcore.ConnectError(str(error)) from None
        self.policy.check(host, addresses)
        return super().connect_tcp(str(addresses[0]), port, timeout, local_address, socket_options)
