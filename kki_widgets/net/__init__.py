"""The network's doors, shared by the media layer and the relay client: which hosts a URL taken
from relay text may reach (`addresses`: the address policy, checked at connect time on the
resolved address), and httpx transports over httpcore pools built through public API only
(`http_transport`).

`addresses.AddressPolicy.for_relay(base_url, allow)`: link-local (cloud metadata), multicast and
unspecified addresses never; loopback only when the relay is on loopback; private ranges only
when the relay is private; `KKI_MEDIA_ALLOW=loopback,private` widens it (never to link-local) and
a refusal (`AddressRefused`) says so. `GuardedBackend` applies it at connect time; through a proxy
the environment names (http(s), socks5, socks5h: the proxy resolves names) `check_through_proxy`
judges the host by name first: literals as above, names by what they resolve to here unless that
is nothing or Clash-style fake-ip placeholders (198.18.0.0/15), and then inside-only names (no
dot, `.local`, `.internal`, `.lan`, `.corp`, …) are refused. Nothing on this machine (loopback,
`localhost`) goes through a proxy, so the embedded simulator stays reachable. Not covered: a
public name the proxy resolves to an inside address (only the proxy sees that answer); socks4
(httpx cannot use it: media then connect directly).

`http_transport`: `AsyncPoolTransport`/`PoolTransport` (httpx's public transport base around an
httpcore pool built on a backend of ours: the relay client's sockets, the media layer's checks)
and `proxy_mounts`, the environment's proxies as `mounts=`, written as httpx reads them. No private
name of httpx or httpcore is touched (`tests/test_public_doors.py`), so `httpx<1`, `httpcore<2`
are all it needs.

May import: `kki_widgets.protocol`.
"""
