"""The key goes only where it belongs, and a relay that echoes it cannot make it leak.

Hostile relays on loopback (one also speaks TLS) answer what each test writes; the assertions are
on what they received and on every place a turn ends up: turn.error, its HTML, the widget's state
and the store file.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.parse

import httpx
import pytest
from kki_testing import JSON, SSE, TEST_KEY, HostileRelay, self_signed_certificate, sse_body

from kki_widgets import RelayClient
from kki_widgets.client.config import resolve_settings
from kki_widgets.protocol.errors import ConfigurationError, RelayError, StreamInterrupted

TASK = "task_01trusttrusttrusttrust0000"
VIDEO = "https://cdn.example/videos/trust.mp4"
COMPLETED = json.dumps({"status": "completed", "video_url": VIDEO}).encode()


def cut_answer(raw_url: str) -> bytes:
    """Accepted (task ID and raw-data link), then the stream ends without the video."""
    return sse_body([f"> ID: `{TASK}`\n", f"[Raw Data]({raw_url})\n", "> Queuing"], done=False)


# -- where the key goes ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def tls_client(relay: HostileRelay, cert: str, **options) -> RelayClient:
    transport = httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=cert))
    return RelayClient(base_url=relay.base_url, api_key=TEST_KEY, transport=transport,
                       poll_interval=0.01, max_retries=0, **options)


@pytest.mark.parametrize("raw_scheme, gets_key", [("http", False), ("https", True)])
def test_key_only_to_the_same_scheme_host_and_port(certificate, raw_scheme, gets_key):
    def answer(request):
        if request["method"] == "POST":
            return 200, SSE, cut_answer(f"{raw_scheme}://127.0.0.1:{relay.port}/source/{TASK}")
        return 200, JSON, COMPLETED

    with HostileRelay(answer, tls=certificate) as relay:
        final = list(tls_client(relay, certificate[0]).stream("a fox"))[-1]
    assert final.status == "completed" and final.video_url == VIDEO
    post, get = relay.requests[0], relay.requests[-1]
    assert post["tls"] and post["headers"]["authorization"] == f"Bearer {TEST_KEY}"
    assert get["path"] == f"/source/{TASK}" and get["tls"] is (raw_scheme == "https")
    # Same host and port but plain http: the key would have crossed the network in clear text.
    assert ("authorization" in get["headers"]) is gets_key


def test_a_redirected_request_is_refused_and_never_reaches_the_other_host():
    with HostileRelay(lambda r: (200, SSE, sse_body(["hi"]))) as elsewhere:
        target = f"{elsewhere.base_url}/chat/completions"
        with HostileRelay(lambda r: (307, {"Location": target}, b"")) as relay:
            client = RelayClient(base_url=relay.base_url, api_key=TEST_KEY, max_retries=0,
                                 headers={"X-Team-Token": "team-secret"})
            with pytest.raises(RelayError, match=r"redirect.*KKI_BASE_URL") as caught:
                list(client.stream("a fox"))
    assert elsewhere.requests == []
    assert "307" in str(caught.value) and TEST_KEY not in str(caught.value)


def test_raw_data_redirects_keep_the_key_and_custom_headers_at_home():
    with HostileRelay(lambda r: (200, JSON, COMPLETED)) as elsewhere:
        def answer(request):
            if request["method"] == "POST":
                return 200, SSE, cut_answer(f"{relay.origin}/source/{TASK}")
            return 302, {"Location": f"{elsewhere.origin}/data/{TASK}"}, b""

        with HostileRelay(answer) as relay:
            client = RelayClient(base_url=relay.base_url, api_key=TEST_KEY, max_retries=0,
                                 poll_interval=0.01, headers={"X-Team-Token": "team-secret"})
            final = list(client.stream("a fox"))[-1]
    assert final.status == "completed"
    home = relay.requests[-1]["headers"]
    assert home["authorization"] == f"Bearer {TEST_KEY}" and home["x-team-token"] == "team-secret"
    [away] = elsewhere.requests
    assert away["path"] == f"/data/{TASK}"
    assert "authorization" not in away["headers"] and "x-team-token" not in away["headers"]


@pytest.mark.parametrize("where", ["link-local", "redirect to link-local"])
def test_raw_data_addresses_pass_the_media_address_policy_on_every_hop(where):
    # The raw-data URL (and where it redirects) comes from relay text: cloud metadata is never
    # polled, the turn stops with a clear error and keeps its task ID for a later resume.
    metadata = f"http://169.254.169.254/source/{TASK}"

    def answer(request):
        if request["method"] == "POST":
            raw = metadata if where == "link-local" else f"{relay.origin}/source/{TASK}"
            return 200, SSE, cut_answer(raw)
        return 302, {"Location": metadata}, b""

    with HostileRelay(answer) as relay:
        client = RelayClient(base_url=relay.base_url, api_key=TEST_KEY, max_retries=0,
                             poll_interval=0.01)
        with pytest.raises(StreamInterrupted, match=r"refused.*169\.254\.169\.254") as caught:
            list(client.stream("a fox"))
    assert caught.value.task_id == TASK
    polls = [r for r in relay.requests if r["method"] == "GET"]
    assert len(polls) == (0 if where == "link-local" else 1)


# -- what configuration refuses -------------------------------------------------------------------


def test_credentials_in_the_base_url_are_refused_without_repeating_them(monkeypatch):
    url = "https://alice:pa55w0rd-xyz@relay.example/v1"
    with pytest.raises(ConfigurationError, match="user:password") as caught:
        resolve_settings(base_url=url, api_key=TEST_KEY)
    assert "pa55w0rd" not in str(caught.value) and "relay.example" in str(caught.value)
    monkeypatch.setenv("KKI_BASE_URL", url)
    monkeypatch.setenv("KKI_API_KEY", TEST_KEY)
    with pytest.raises(ConfigurationError) as caught:
        RelayClient()
    assert "pa55w0rd" not in str(caught.value)


@pytest.mark.parametrize("key", ["sk-abc\u00a0def0123456789", "sk-ключ-0123456789", "sk-a\tb0123456789"])
def test_keys_that_are_not_printable_ascii_are_refused_with_the_fix(key):
    with pytest.raises(ConfigurationError, match="copy the key again") as caught:
        RelayClient(base_url="https://relay.example/v1", api_key=key)
    assert key not in str(caught.value)


def test_custom_header_values_stay_out_of_reprs():
    settings = resolve_settings(base_url="https://relay.example", api_key=TEST_KEY,
                                headers={"X-Team-Token": "team-secret"})
    assert "team-secret" not in repr(settings) and "X-Team-Token" in repr(settings)
    with pytest.raises(ConfigurationError, match="X-Team-Token"):
        resolve_settings(base_url="https://relay.example", api_key=TEST_KEY,
                         headers={"X-Team-Token": "caf\u00e9"})


# -- echoes of the key ----------------------------------------------------------------------------

FORMS = {
    "raw, cut across chunks": TEST_KEY,
    "json unicode escapes": "".join(f"\\u{ord(c):04x}" for c in TEST_KEY),
    "percent-encoded": "".join(f"%{ord(c):02X}" for c in TEST_KEY),
    "query-string quoted": urllib.parse.quote_plus(f"key={TEST_KEY}"),
    "basic auth": base64.b64encode(f"user:{TEST_KEY}".encode()).decode(),
    "bearer in base64": base64.b64encode(f"Bearer {TEST_KEY}".encode()).decode(),
    "hex": TEST_KEY.encode().hex(),
    "html references": "".join(f"&#{ord(c)};" for c in TEST_KEY),
}


def leaked(text: str) -> list[str]:
    """Which form of the key `text` still carries (none: [])."""
    return [name for name, form in FORMS.items() if form in text or TEST_KEY in text]


def echoing_relay(form: str) -> HostileRelay:
    """Fails the first prompt with a reason that echoes the key; completes any other prompt."""
    reason = f"Failure reason: invalid token {form} (check it)\n"
    pieces = [f"> ID: `{TASK}`\n", "> Generation failed\n"]
    pieces += [reason[i : i + 7] for i in range(0, len(reason), 7)]  # cut anywhere

    def answer(request):
        if b"echo" in request["body"]:
            return 200, SSE, sse_body(pieces)
        return 200, SSE, sse_body([
            "> ID: `task_01secondsecondsecond00000`\n", "> Generation Complete ✅\n",
            "> sid: s_0123456789abcdef\n", f"[Play Online▶️]({VIDEO})",
        ])

    return HostileRelay(answer)


@pytest.mark.parametrize("name", sorted(FORMS))
def test_an_echoed_key_reaches_no_artifact_and_the_store_keeps_working(name, tmp_path):
    from kki_widgets import Conversation
    from kki_widgets.notebook.widget import turn_to_dict
    from kki_widgets.store.notebook_store import NotebookStore

    store = NotebookStore(tmp_path / ".kki" / "echo.json", secret=TEST_KEY)
    with echoing_relay(FORMS[name]) as relay:
        conversation = Conversation(base_url=relay.base_url, api_key=TEST_KEY, store=store,
                                    media_dir=None, max_retries=0, poll_interval=0.01)
        failed = conversation.send("echo my key")
        later = conversation.send("a paid turn after that")
    assert failed.status == "failed" and "invalid token" in failed.error and "[key …" in failed.error
    for artifact in (failed.error, failed.generation.text, failed._repr_html_(), repr(failed),
                     json.dumps(turn_to_dict(failed), ensure_ascii=False)):
        assert leaked(artifact) == []
    assert later.status == "completed"
    assert leaked((tmp_path / ".kki" / "echo.journal").read_text()) == []
    store.compact()  # the journal folded into the snapshot
    saved = (tmp_path / ".kki" / "echo.json").read_text()
    assert leaked(saved) == [] and "a paid turn after that" in saved
    reloaded = Conversation(base_url=relay.base_url, api_key=TEST_KEY, store=store, media_dir=None)
    assert [t.status for t in reloaded.turns] == ["failed", "completed"]


def test_a_key_in_an_error_chunk_or_an_http_error_is_redacted():
    escaped = "".join(f"\\u{ord(c):04x}" for c in TEST_KEY)
    chunk = ('data: {"error": {"message": "bad key ' + escaped + '", "code": "' + TEST_KEY
             + '", "type": "auth"}}\n\n').encode()
    with HostileRelay(lambda r: (200, SSE, chunk)) as relay, pytest.raises(RelayError) as caught:
        list(RelayClient(base_url=relay.base_url, api_key=TEST_KEY, max_retries=0).stream("x"))
    assert leaked(str(caught.value)) == [] and leaked(str(caught.value.code)) == []
    body = json.dumps({"error": {"message": f"token {FORMS['percent-encoded']} unknown"}}).encode()
    with HostileRelay(lambda r: (401, JSON, body)) as relay, pytest.raises(
        RelayError, match="KKI_API_KEY"
    ) as caught:
        list(RelayClient(base_url=relay.base_url, api_key=TEST_KEY, max_retries=0).stream("x"))
    assert leaked(str(caught.value)) == [] and "[key" in str(caught.value)


def test_a_key_in_a_raw_data_answer_is_redacted():
    failed = json.dumps({"status": "failed", "fail_reason": f"quota of {TEST_KEY} used up"}).encode()

    def answer(request):
        if request["method"] == "POST":
            return 200, SSE, cut_answer(f"{relay.origin}/source/{TASK}")
        return 200, JSON, failed

    with HostileRelay(answer) as relay:
        client = RelayClient(base_url=relay.base_url, api_key=TEST_KEY, max_retries=0,
                             poll_interval=0.01)
        final = list(client.stream("x"))[-1]
    assert final.status == "failed" and leaked(final.error) == [] and "quota of [key" in final.error


def test_the_simulators_key_and_a_real_answer_are_untouched(relay_env):
    # Redaction must not change honest text: the seed-shaped answer completes as before.
    final = RelayClient(max_retries=0).generate("a fox in the snow")
    assert final.status == "completed" and "[key" not in final.text


def test_a_raw_data_link_on_another_port_gets_no_key():
    with HostileRelay(lambda r: (200, JSON, COMPLETED)) as other:
        def answer(request):
            return 200, SSE, cut_answer(f"{other.origin}/source/{TASK}")

        with HostileRelay(answer) as relay:
            client = RelayClient(base_url=relay.base_url, api_key=TEST_KEY, max_retries=0,
                                 poll_interval=0.01)
            assert list(client.stream("x"))[-1].status == "completed"
    assert "authorization" not in other.requests[0]["headers"]


def test_a_redirect_loop_on_raw_data_ends_in_a_clear_error():
    def answer(request):
        if request["method"] == "POST":
            return 200, SSE, cut_answer(f"{relay.origin}/source/{TASK}")
        return 302, {"Location": request["path"]}, b""

    with HostileRelay(answer) as relay:
        client = RelayClient(base_url=relay.base_url, api_key=TEST_KEY, max_retries=0,
                             poll_interval=0.001)
        with pytest.raises(StreamInterrupted, match="redirects") as caught:
            list(client.stream("x"))
    assert caught.value.task_id == TASK
