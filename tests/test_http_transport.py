"""The environment's proxies as ``mounts=`` (`http_transport.proxy_mounts`), read as httpx reads
them for a client of its own: the relay client passes its own transport, so httpx no longer does.

Routing is checked through httpx's public ``mounts`` with `httpx.MockTransport`s that record which
way each URL went; the proxy and TLS paths themselves run on real sockets in test_http_backend.
"""

from __future__ import annotations

import httpx
import pytest
from kki_testing import use_only_proxy

from kki_widgets.net.http_transport import proxy_mounts


def named(proxy: str) -> str:
    return f"via {proxy}"


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"HTTPS_PROXY": "http://proxy.corp:3128"}, {"https://": "via http://proxy.corp:3128"}),
        ({"HTTP_PROXY": "proxy.corp:3128"}, {"http://": "via http://proxy.corp:3128"}),  # no scheme: http
        ({"ALL_PROXY": "socks5://127.0.0.1:7890"}, {"all://": "via socks5://127.0.0.1:7890"}),
        (
            {"ALL_PROXY": "http://p:1", "NO_PROXY": ".example.com, example.org,10.1.2.3,::1,localhost,https://x.io"},
            {"all://": "via http://p:1", "all://*.example.com": None, "all://*example.org": None,
             "all://10.1.2.3": None, "all://[::1]": None, "all://localhost": None, "https://x.io": None},
        ),
        ({"ALL_PROXY": "http://p:1", "NO_PROXY": "a.test,*"}, {}),  # '*' anywhere: no proxy at all
        ({}, {}),
    ],
)
def test_the_proxy_variables_become_httpx_s_own_mount_patterns(monkeypatch, variables, expected):
    use_only_proxy(monkeypatch, **variables)
    assert proxy_mounts(named) == expected


def routes(monkeypatch, **variables) -> dict[str, str]:
    """Where a client with our mounts sends each URL: 'direct' or the proxy it names."""
    use_only_proxy(monkeypatch, **variables)
    went: dict[str, str] = {}

    def recorder(way: str) -> httpx.MockTransport:
        return httpx.MockTransport(lambda request: went.__setitem__(str(request.url), way) or httpx.Response(204))

    with httpx.Client(transport=recorder("direct"), mounts=proxy_mounts(recorder)) as client:
        for url in ("https://relay.example.com/v1", "https://example.com/v1", "http://api.other.net/v1",
                    "https://api.other.net/v1", "http://10.1.2.3/v1"):  # fmt: skip
            client.get(url)
    return went


def test_no_proxy_hosts_go_direct_and_the_rest_through_the_proxy(monkeypatch):
    assert routes(monkeypatch, HTTPS_PROXY="http://proxy.corp:3128", NO_PROXY=".example.com,10.1.2.3") == {
        "https://relay.example.com/v1": "direct",
        "https://example.com/v1": "http://proxy.corp:3128",  # '.example.com' spares subdomains only
        "http://api.other.net/v1": "direct",  # HTTPS_PROXY is for https:// URLs
        "https://api.other.net/v1": "http://proxy.corp:3128",
        "http://10.1.2.3/v1": "direct",
    }
    assert routes(monkeypatch, ALL_PROXY="socks5://127.0.0.1:7890", NO_PROXY="example.com") == {
        "https://relay.example.com/v1": "direct",  # 'example.com' spares the domain and its subdomains
        "https://example.com/v1": "direct",
        "http://api.other.net/v1": "socks5://127.0.0.1:7890",
        "https://api.other.net/v1": "socks5://127.0.0.1:7890",
        "http://10.1.2.3/v1": "socks5://127.0.0.1:7890",
    }


def test_a_proxy_of_a_kind_httpx_cannot_use_raises_httpx_s_value_error(monkeypatch):
    use_only_proxy(monkeypatch, ALL_PROXY="socks4://127.0.0.1:1080")
    with pytest.raises(ValueError, match=r"(?i)proxy"):
        proxy_mounts(lambda proxy: httpx.HTTPTransport(proxy=proxy))
