"""Connecting with only a base URL and a key: the relay's model list decides how options travel.

Against the simulator's catalogs (each lists and serves exactly one family's names, so a wrong
name meets model_not_found) and small stand-in servers for the shapes and failures of real
gateways: 404, an HTML page, a hanging answer, junk JSON, a 50 MB list.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kki_testing import SERVE_POLL, TEST_KEY

from kki_widgets.client import discovery
from kki_widgets.conversation.session import Conversation
from kki_widgets.protocol.errors import ConfigurationError
from kki_widgets.protocol.profiles import BUILTIN
from kki_widgets.protocol.relay_models import NO_FAMILY, detect, model_ids, sized_model
from kki_widgets.simulator import Simulator
from kki_widgets.simulator.catalog import MODEL_LISTS


@pytest.fixture(scope="module")
def catalogs():
    sims = {}
    for name in ("sora2api", "flow2api", "plain"):
        sims[name] = Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0, seed=3, catalog=name).start()
    yield sims
    for sim in sims.values():
        sim.stop()


def conversation_at(base_url: str, **options) -> Conversation:
    return Conversation(base_url=base_url, api_key=TEST_KEY, store=None, media_dir=None, **options)


# ---- reading model lists -------------------------------------------------------------------------

@pytest.mark.parametrize("answer", [
    {"object": "list", "data": [{"id": "sora-2", "object": "model"}, {"id": "gpt-4o"}]},
    {"success": True, "data": {"1": ["sora-2"], "7": ["gpt-4o", "sora-2"]}},  # new-api /api/models
    {"success": True, "data": ["sora-2", "gpt-4o"]},  # one-api /api/user/models
    {"models": [{"name": "models/sora-2"}, {"name": "models/gpt-4o"}]},  # Gemini-style
    ["sora-2", "gpt-4o"],
])  # fmt: skip
def test_every_model_list_shape_gives_the_names(answer):
    assert model_ids(answer) == ["sora-2", "gpt-4o"]


@pytest.mark.parametrize("junk", [None, "sora-2", 42, {"data": "x"}, {"data": [{"id": 3}, {"id": "<img src=x>"}]}])
def test_junk_lists_give_no_names(junk):
    assert model_ids(junk) == []


def test_video_image_and_chat_models_are_told_apart():
    found = detect([*MODEL_LISTS["flow2api"], "gpt-4o-mini", "veo_3_0_r2v_fast_portrait"])
    assert found.profile == "flow2api"
    assert "gemini-2.5-flash-image-landscape" in found.image and "gpt-4o-mini" in found.chat
    assert "veo_3_1_t2v_fast_landscape" in found.video and "veo_3_0_r2v_fast_portrait" in found.video
    names = [offer.name for offer in found.offers]
    assert "veo3-fast" in names and "veo3" in names
    assert not any("i2v" in name for name in names)  # twins are picked when a frame is sent


def test_sizes_are_offered_where_the_family_sells_them():
    offers = {offer.name: offer for offer in detect(list(MODEL_LISTS["sora2api"])).offers}
    assert offers["sora-2-pro"].sizes == ("sd", "hd") and offers["sora-2"].sizes == ()
    assert offers["sora-2"].durations == (10, 15, 25)
    assert sized_model(BUILTIN["sora2api"], "sora-2-pro", "1080p") == "sora2pro-hd"
    with pytest.raises(ConfigurationError, match=r"sizes none.*sora2pro \(sd, hd\)"):
        sized_model(BUILTIN["sora2api"], "sora-2", "hd")
    with pytest.raises(ConfigurationError, match="--size 1080p"):
        sized_model(BUILTIN["words"], "sora-2", "1080p")


# ---- the done-when: only a base URL and a key ---------------------------------------------------

def test_a_sora2api_relay_gets_names_not_words(catalogs):
    sim = catalogs["sora2api"]
    conversation = conversation_at(sim.base_url)
    turn = conversation.send("a fox in the snow", orientation="landscape", duration=15)
    assert turn.status == "completed", turn.error
    sent = sim.requests[-1]
    assert sent["model"] == "sora2-landscape-15s"
    assert sent["messages"][-1]["content"] == "a fox in the snow"  # no orientation words
    relay = conversation.relay
    assert relay.profile.name == "sora2api" and relay.chosen_by == "model list"
    assert "sora2api-style" in relay.reason


def test_a_flow2api_relay_gets_veo_names(catalogs):
    sim = catalogs["flow2api"]
    conversation = conversation_at(sim.base_url)
    turn = conversation.send("a lighthouse at dawn", model="veo3-fast", orientation="landscape")
    assert turn.status == "completed", turn.error
    assert sim.requests[-1]["model"] == "veo_3_1_t2v_fast_landscape"
    assert conversation.relay.profile.name == "flow2api"


def test_a_plain_relay_gets_words_and_says_so_once(catalogs, caplog):
    sim = catalogs["plain"]
    conversation = conversation_at(sim.base_url)
    with caplog.at_level("INFO", logger="kki_widgets.client.discovery"):
        conversation.send("a cat", orientation="landscape", duration=10)
        conversation_at(sim.base_url).send("a dog", orientation="portrait")
    assert sim.requests[-2]["model"] == "sora-2"
    assert "landscape 16:9" in sim.requests[-2]["messages"][-1]["content"]
    assert conversation.relay.profile.name == "words" and conversation.relay.reason == NO_FAMILY
    assert [r.getMessage() for r in caplog.records].count(f"{conversation.client.base_url}: {NO_FAMILY}") == 1


def test_an_explicit_profile_wins_over_the_list(catalogs, monkeypatch):
    sim = catalogs["sora2api"]
    monkeypatch.setenv("KKI_RELAY_PROFILE", "words")
    conversation = conversation_at(sim.base_url)
    relay = conversation.relay
    assert relay.profile.name == "words" and relay.chosen_by == "configuration"


def test_the_cache_keeps_names_and_prices_never_the_key(catalogs, tmp_path):
    sim = catalogs["sora2api"]
    conversation_at(sim.base_url).send("a fox", orientation="portrait", duration=10)
    files = list((tmp_path / "user-cache").glob("relay-*.json"))
    assert len(files) == 1
    text = files[0].read_text()
    assert TEST_KEY not in text and "sora2-landscape-15s" in text and '"sora-2"' in text  # a price
    assert "balance" not in text and "hard_limit" not in text
    # A new process reads the cache and does not ask the relay again.
    discovery.forget()
    gets = len(sim.requests)
    again = conversation_at(sim.base_url)
    again.send("a fox", orientation="landscape", duration=15)
    assert again.relay.profile.name == "sora2api" and len(sim.requests) == gets + 1


# ---- failures are quiet and bounded --------------------------------------------------------------

class StandIn:
    """A relay whose side endpoints misbehave; its chat endpoint defers to a real simulator."""

    def __init__(self, behaviour: str, chat_base: str):
        self.behaviour, self.chat_base = behaviour, chat_base
        self.release = threading.Event()
        self.seen: list[str] = []
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": SERVE_POLL}, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                stand_in.seen.append(self.path)
                stand_in.answer(self)

        return Handler

    def answer(self, handler):
        kind = self.behaviour
        if kind == "hang":
            self.release.wait(30)
            return
        if kind == "dashboard":  # new-api: no /v1/models for this key, the dashboard list instead
            names = {"1": ["veo_3_1_t2v_fast_landscape", "veo_3_1_t2v_fast_portrait"], "2": ["gpt-4o"]}
            found = handler.path == "/api/models"
            body = json.dumps({"success": True, "data": names}).encode() if found else b"{}"
            status, ctype = (200 if found else 404), "application/json"
        elif kind == "404":
            body, status, ctype = b'{"error": "not found"}', 404, "application/json"
        elif kind == "html":
            body, status, ctype = b"<html><body>Welcome to nginx</body></html>", 200, "text/html"
        elif kind == "junk":
            body, status, ctype = b'{"data": [{"id": 1}, {"nope', 200, "application/json"
        else:  # "huge": a 50 MB model list
            body, status, ctype = None, 200, "application/json"
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        if body is not None:
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return
        handler.send_header("Content-Length", str(50 * 1024 * 1024))
        handler.end_headers()
        row = json.dumps({"id": "sora2-landscape-15s", "object": "model"}).encode() + b","
        try:
            handler.wfile.write(b'{"object": "list", "data": [')
            for _ in range(50 * 1024 * 1024 // len(row)):
                handler.wfile.write(row)
        except OSError:
            pass  # the client stopped reading at its bound


@pytest.mark.parametrize("behaviour", ["404", "html", "junk", "huge", "hang"])
def test_discovery_failures_never_fail_a_send(behaviour, fast_simulator, monkeypatch):
    stand_in = StandIn(behaviour, fast_simulator.base_url)
    monkeypatch.setattr(discovery, "DISCOVERY_SECONDS", 0.5)
    try:
        conversation = conversation_at(stand_in.base_url)
        described = _discover(conversation)
        assert described.profile.name == "words"
        assert described.detection.listed is False
        assert stand_in.seen, "discovery asked the stand-in"
        assert discovery.known(conversation.client.base_url).source == "unavailable"
    finally:
        stand_in.close()


def _discover(conversation):
    from kki_widgets.client.loop import block_on

    return block_on(conversation.adiscover())


def test_a_send_after_a_hanging_discovery_still_goes_out(fast_simulator, monkeypatch):
    """The chat endpoint answers; only the side endpoints hang: the send waits at most the bound."""
    monkeypatch.setattr(discovery, "DISCOVERY_SECONDS", 0.3)
    hanging = StandIn("hang", fast_simulator.base_url)
    try:
        conversation = conversation_at(fast_simulator.base_url)
        # Point discovery (only) at the hanging host: the client's GETs go there.
        client = conversation.client
        real_get = client.get_json

        async def slow_get(url, **kwargs):
            return await real_get(url.replace(fast_simulator.origin, hanging.base_url[: -len("/v1")]), **kwargs)

        monkeypatch.setattr(client, "get_json", slow_get)
        turn = conversation.send("a fox", orientation="landscape")
        assert turn.status == "completed", turn.error
        assert hanging.seen and conversation.relay.profile.name == "words"
    finally:
        hanging.close()


# ---- the cache: where, how long, and damage ------------------------------------------------------

def test_the_cache_folder_is_the_users_never_the_notebooks(monkeypatch, tmp_path):
    monkeypatch.delenv("KKI_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert discovery.cache_folder() == tmp_path / "xdg" / "kki_widgets"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: absolute paths only
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert discovery.cache_folder() == tmp_path / "home" / ".cache" / "kki_widgets"
    name = discovery.cache_file("https://relay.example/v1").name
    assert "relay.example" not in name and name.startswith("relay-")


def test_an_old_or_damaged_cache_reads_as_nothing(tmp_path):
    base = "https://relay.example/v1"
    facts = discovery.RelayFacts(base, ["sora2-landscape-15s"], {}, fetched_at=1000.0)
    discovery.write_cached(facts)
    assert discovery.read_cached(base, now=1000.0 + 60).models == ["sora2-landscape-15s"]
    assert discovery.read_cached(base, now=1000.0 + discovery.TTL_SECONDS + 1) is None
    assert discovery.read_cached("https://other.example/v1", now=1001.0) is None
    for damage in ("{", "[]", '{"version": 1}', '{"version": 1, "base_url": "x", "fetched_at": "y"}'):
        discovery.cache_file(base).write_text(damage)
        assert discovery.read_cached(base, now=1001.0) is None


def test_a_new_api_dashboard_list_chooses_the_profile(fast_simulator):
    stand_in = StandIn("dashboard", fast_simulator.base_url)
    try:
        conversation = conversation_at(stand_in.base_url)
        relay = _discover(conversation)
        assert stand_in.seen.index("/v1/models") < stand_in.seen.index("/api/models")  # the fallback
        assert relay.profile.name == "flow2api" and relay.detection.chat == ("gpt-4o",)
        wire = conversation.profile.prepare([{"role": "user", "content": "a fox"}], "veo3-fast", "landscape")
        assert wire.model == "veo_3_1_t2v_fast_landscape"
    finally:
        stand_in.close()


@pytest.mark.parametrize(("catalog", "model", "orientation", "duration", "wire"), [
    ("sora_video2", "sora-2", "landscape", 15, "sora_video2-landscape-15s"),
    ("veo_3_1", "veo3-fast", "landscape", None, "veo_3_1-landscape-fast"),
])  # fmt: skip
def test_every_family_catalog_is_detected_and_its_names_are_sent(catalog, model, orientation, duration, wire):
    assert detect(list(MODEL_LISTS[catalog])).profile == catalog
    with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0, catalog=catalog) as sim:
        turn = conversation_at(sim.base_url).send("a fox", model=model, orientation=orientation, duration=duration)
        assert turn.status == "completed", turn.error
        assert sim.requests[-1]["model"] == wire
