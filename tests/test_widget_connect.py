"""VideoChat(base_url=...) with no key: the key typed into its password field reaches the kernel by
one custom message, never a trait; then the picker lists the relay's models with their prices."""

from __future__ import annotations

import json
import time

import pytest
from kki_testing import TEST_KEY
from test_widget import attach, from_js

from kki_widgets.notebook.widget import VideoChat
from kki_widgets.simulator import Simulator


@pytest.fixture(scope="module")
def sora2api_relay():
    with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0, seed=13, catalog="sora2api",
                   api_key=TEST_KEY) as sim:  # fmt: skip
        yield sim


def wait_for(condition, what: str):
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.02)


def test_a_typed_key_connects_and_the_picker_shows_the_relays_models(sora2api_relay, tmp_path):
    chat = VideoChat(base_url=sora2api_relay.base_url, store=None, media_dir=None)
    comm = attach(chat)
    assert chat.needs_key and chat.conversation is None
    with pytest.raises(ValueError, match="connect first"):
        chat.send("a fox")

    from_js(chat, {"type": "connect", "id": "c1", "key": TEST_KEY})
    assert {"type": "ok", "id": "c1"} in comm.custom()
    assert not chat.needs_key and chat.conversation is not None
    wait_for(lambda: chat.offers, "the relay's models")
    names = [offer["name"] for offer in chat.offers]
    assert names[:3] == ["sora-2", "sora-2-pro", "sora2pro-hd"] and chat.models[:3] == names[:3]
    assert chat.offers[0]["label"] == "sora-2 · 10/15/25 s · $0.10"
    assert "sd/hd" in chat.offers[1]["label"]
    # The HD size is a choice of its own, sent under the family's HD name with its own lengths.
    assert chat.offers[2]["name"] == "sora2pro-hd" and chat.offers[2]["label"].startswith("sora-2-pro hd · 10/15 s")
    chat.model = "sora2pro-hd"
    assert chat.durations == [10, 15]
    assert chat.relay_badge == "profile: sora2api" and "sora2api-style" in chat.relay_text
    # Like %sora connect: the balance and a ping that generates nothing, on the badge's tooltip.
    wait_for(lambda: "Chat endpoint" in chat.relay_text, "the connection check")
    assert "Balance: $" in chat.relay_text and "reachable, key accepted" in chat.relay_text

    chat.model = "sora-2"
    turn = chat.send("a fox", orientation="landscape", duration=15).result(30)
    assert turn.status == "completed", turn.error
    assert sora2api_relay.requests[-1]["model"] == "sora2-landscape-15s"

    # The key is in no trait, no state message, no reply.
    state = json.dumps(chat.get_state(), default=str)
    assert TEST_KEY not in state and TEST_KEY not in json.dumps(comm.sent, default=str)

    from_js(chat, {"type": "connect", "id": "c2", "key": TEST_KEY})
    assert any(m.get("id") == "c2" and m["type"] == "error" for m in comm.custom())
    chat.close()


def test_an_empty_or_unprintable_key_is_refused_with_words_and_not_echoed(sora2api_relay):
    chat = VideoChat(base_url=sora2api_relay.base_url, store=None, media_dir=None)
    comm = attach(chat)
    from_js(chat, {"type": "connect", "id": "e1", "key": "  "})
    from_js(chat, {"type": "connect", "id": "e2", "key": "sk-abc déf-1234567890"})
    errors = {m["id"]: m["error"] for m in comm.custom() if m["type"] == "error"}
    assert "type the relay's API key" in errors["e1"]
    assert "printable ASCII" in errors["e2"] and "déf" not in errors["e2"]
    assert chat.needs_key
    chat.close()


def test_a_refused_key_brings_the_key_field_back_and_the_next_key_is_asked_afresh(sora2api_relay):
    chat = VideoChat(base_url=sora2api_relay.base_url, store=None, media_dir=None)
    attach(chat)
    from_js(chat, {"type": "connect", "id": "w1", "key": "sk-wrong-key-000000000000000000"})
    wait_for(lambda: chat.needs_key, "the key field to come back")
    assert "refused this key" in chat.error and chat.conversation is None
    assert "sk-wrong" not in chat.error
    from_js(chat, {"type": "connect", "id": "w2", "key": TEST_KEY})
    wait_for(lambda: chat.offers, "the relay's models with the right key")
    assert not chat.needs_key and chat.relay_badge == "profile: sora2api"
    chat.close()
