"""Relay profiles: where orientation and length travel, what is refused before paying, and the
warnings when the relay's echoed spec says it made something else. Bodies are captured by a
real local server (the simulator), which also checks that every model name exists."""

from __future__ import annotations

import pytest
from kki_testing import TEST_KEY

from kki_widgets.client.config import resolve_settings
from kki_widgets.client.relay import RelayClient
from kki_widgets.conversation.session import Conversation
from kki_widgets.protocol import profiles
from kki_widgets.protocol.errors import ConfigurationError
from kki_widgets.protocol.profiles import (
    BUILTIN,
    ModelFamily,
    RelayProfile,
    get_profile,
    spec_warnings,
)
from kki_widgets.simulator import Simulator

FOX = [{"role": "user", "content": "a fox"}]


def client_for(sim, **options) -> RelayClient:
    options.setdefault("poll_interval", 0.05)
    return RelayClient(base_url=sim.base_url, api_key=TEST_KEY, **options)


# ---- the exact request each built-in profile sends -------------------------------------------

EXACT_BODIES = [
    ("words", "sora-2", "landscape", 15,
     {"model": "sora-2", "stream": True, "messages": [
         {"role": "user", "content": "a fox (landscape 16:9, horizontal, duration: 15 seconds)"}]}),
    ("fields", "sora-2", "landscape", 15,
     {"model": "sora-2", "stream": True, "messages": FOX, "orientation": "landscape", "duration": 15}),
    ("sora2api", "sora-2", "landscape", 15,
     {"model": "sora2-landscape-15s", "stream": True, "messages": FOX}),
    ("sora2api", "sora2pro-hd", "portrait", 10,
     {"model": "sora2pro-hd-portrait-10s", "stream": True, "messages": FOX}),
    ("sora_video2", "sora_video2-hd", "portrait", 15,
     {"model": "sora_video2-hd-portrait-15s", "stream": True, "messages": FOX}),
    ("sora_video2", "sora-2", "landscape", 10,
     {"model": "sora_video2-landscape", "stream": True, "messages": FOX}),
    ("flow2api", "veo_3_1_t2v_fast", "landscape", None,
     {"model": "veo_3_1_t2v_fast_landscape", "stream": True, "messages": FOX}),
    ("veo_3_1", "veo_3_1-fast", "landscape", None,
     {"model": "veo_3_1-landscape-fast", "stream": True, "messages": FOX}),
]  # fmt: skip


@pytest.mark.parametrize(("profile", "model", "orientation", "duration", "expected"), EXACT_BODIES)
def test_each_builtin_profile_sends_this_exact_body(profile, model, orientation, duration, expected):
    honour = profile == "fields"  # a relay that documents the fields
    with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0, honour_json_options=honour) as sim:
        final = client_for(sim, profile=profile).generate(
            "a fox", model, orientation=orientation, duration=duration
        )
        assert sim.requests == [expected]
    # The relay read them where they were put: its echoed spec says what was asked.
    assert final.status == "completed" and final.spec["orientation"] == orientation
    if duration is not None:
        assert final.spec["duration"] == duration
    assert spec_warnings({"orientation": orientation, "duration": duration}, final.spec) == []


def test_with_no_configuration_a_chat_relay_gets_the_options_in_the_prompt():
    from kki_widgets import generate
    from kki_widgets.simulator import embedded_simulator

    client = RelayClient()  # no key, no URL, no profile: the embedded simulator, default profile
    assert client.simulated and client.profile.name == "words"
    final = generate("a fox", orientation="landscape", duration=15)
    sent = embedded_simulator().requests[-1]
    assert "orientation" not in sent and "duration" not in sent  # no relay reads those
    assert sent["messages"][-1]["content"] == "a fox (landscape 16:9, horizontal, duration: 15 seconds)"
    assert (final.spec["orientation"], final.spec["duration"]) == ("landscape", 15)


# ---- refused before anything is sent; unknown models are the relay's call ---------------------


def test_a_length_the_family_does_not_sell_is_refused_before_sending(fast_simulator):
    before = len(fast_simulator.requests)
    client = client_for(fast_simulator, profile="sora2api")
    with pytest.raises(ConfigurationError, match=r"'sora2pro-hd' in 10, 15 seconds, not 25") as caught:
        client.generate("a fox", "sora2pro-hd", duration=25)
    assert "duration=10" in str(caught.value)
    with pytest.raises(ConfigurationError, match="8 seconds, not 15"):
        client_for(fast_simulator, profile="flow2api").generate("a fox", "veo3-fast", duration=15)
    assert len(fast_simulator.requests) == before


def test_unknown_models_are_never_refused_client_side(fast_simulator):
    client = client_for(fast_simulator, profile="sora2api", max_retries=0)
    wire = client.prepare("a fox", "sora9-ultra", orientation="landscape", duration=40)
    assert wire.model == "sora9-ultra-landscape-40s"  # spelled the family's way; the relay decides
    assert client.prepare("a fox", "mystery").model == "mystery"
    # The relay (here the simulator) answers 404 model_not_found: that is its decision to make.
    from kki_widgets.protocol.errors import RelayError

    with pytest.raises(RelayError, match="sora9-ultra-landscape-40s"):
        client.generate("a fox", "sora9-ultra", orientation="landscape", duration=40)


def test_a_full_family_name_is_sent_as_is_and_contradicting_options_are_refused():
    profile = BUILTIN["sora2api"]
    assert profile.prepare(FOX, "sora2-landscape-15s").model == "sora2-landscape-15s"
    assert profile.prepare(FOX, "sora2-landscape-15s", "landscape", 15).model == "sora2-landscape-15s"
    with pytest.raises(ConfigurationError, match="already names its orientation"):
        profile.prepare(FOX, "sora2-landscape-15s", "portrait")


def test_bad_option_values_and_unknown_profiles_name_the_fix(monkeypatch):
    with pytest.raises(ConfigurationError, match="'portrait' or 'landscape'"):
        BUILTIN["words"].prepare(FOX, "sora-2", "square")
    with pytest.raises(ConfigurationError, match="whole number"):
        BUILTIN["words"].prepare(FOX, "sora-2", None, 7.5)
    with pytest.raises(ConfigurationError, match="sora2api"):
        get_profile("sora3api")
    monkeypatch.setenv("KKI_RELAY_PROFILE", "nope")
    with pytest.raises(ConfigurationError, match="KKI_RELAY_PROFILE"):
        resolve_settings()


def test_words_go_after_the_last_text_part_and_never_change_the_caller_s_messages():
    parts = [{"role": "user", "content": [{"type": "text", "text": "animate"},
                                          {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]  # fmt: skip
    wire = BUILTIN["words"].prepare(parts, "sora-2", "portrait", None)
    assert wire.messages[-1]["content"][0]["text"] == "animate (portrait 9:16, vertical)"
    assert parts[-1]["content"][0]["text"] == "animate"
    assert BUILTIN["words"].prepare(FOX, "sora-2").messages is FOX  # no options: no words


def test_custom_profiles_from_python():
    family = ModelFamily(variants={"kling": (5, 10)}, template="{stem}_{duration}{orientation}",
                         orientation_tokens={"portrait": "_9x16", "landscape": "_16x9"},
                         duration_tokens={5: "5s", 10: "10s"}, default_duration=5)  # fmt: skip
    custom = RelayProfile("kling", "model", "kling_10s_16x9 style", family)
    assert custom.prepare(FOX, "kling", "landscape", 10).model == "kling_10s_16x9"
    assert custom.durations("kling") == (5, 10)
    polite = RelayProfile("polite", "words", orientation_words={"landscape": "横屏", "portrait": "竖屏"},
                          duration_words="{seconds}秒")  # fmt: skip
    assert polite.prepare(FOX, "sora-2", "landscape", 15).messages[-1]["content"] == "a fox (横屏, 15秒)"
    with pytest.raises(ConfigurationError, match="carrier"):
        RelayProfile("bad", "pigeon")


def test_kki_relay_profile_picks_the_profile(monkeypatch, fast_simulator):
    monkeypatch.setenv("KKI_RELAY_PROFILE", "sora2api")
    assert client_for(fast_simulator).profile.name == "sora2api"
    assert client_for(fast_simulator, profile="words").profile.name == "words"  # arguments win


# ---- the relay's spec vs what was asked ---------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "spec", "expected"),
    [
        ({"orientation": "landscape"}, {"orientation": "portrait"},
         ["asked for landscape; the relay's spec says portrait"]),
        ({"orientation": "landscape", "duration": 15}, {"size": "720x1280", "duration": 10},
         ["asked for landscape; the relay's spec says portrait",
          "asked for 15 seconds; the relay's spec says 10 seconds"]),
        ({"duration": 15}, {"seconds": "15"}, []),
        ({"orientation": "portrait"}, {"aspect_ratio": "16:9"},
         ["asked for portrait; the relay's spec says landscape"]),
        ({"orientation": "portrait"}, {"prompt": "no options echoed"}, []),
        ({}, {"orientation": "portrait", "duration": 10}, []),  # nothing asked: nothing to contradict
        ({"orientation": "landscape"}, None, []),
    ],
)  # fmt: skip
def test_spec_warnings(asked, spec, expected):
    assert spec_warnings(asked, spec) == expected


def test_a_relay_that_ignores_json_fields_gives_warnings_on_the_turn(fast_simulator, tmp_path):
    from kki_widgets.store.notebook_store import NotebookStore

    store = NotebookStore(tmp_path / ".kki" / "n.json", secret=TEST_KEY)
    conv = Conversation(base_url=fast_simulator.base_url, api_key=TEST_KEY, store=store,
                        profile="fields", poll_interval=0.05)  # fmt: skip
    turn = conv.send("a fox", orientation="landscape", duration=15)
    assert turn.status == "completed"
    assert turn.warnings == [
        "asked for landscape; the relay's spec says portrait",
        "asked for 15 seconds; the relay's spec says 10 seconds",
    ]
    assert "asked for landscape; the relay&#x27;s spec says portrait" in turn._repr_html_()
    # Stored with the turn, and a fresh conversation (new kernel) shows them too.
    again = Conversation(base_url=fast_simulator.base_url, api_key=TEST_KEY, store=store, profile="fields")
    assert again.turns[-1].warnings == turn.warnings
    # The card and the widget's turn data show them.
    from kki_widgets.display.views import TurnCard  # the one renderer of a turn
    from kki_widgets.notebook.widget import turn_to_dict

    assert "warning: asked for landscape" in repr(TurnCard(turn))
    assert "⚠ asked for 15 seconds" in TurnCard(turn)._repr_html_()
    assert turn_to_dict(turn)["warnings"] == turn.warnings


def test_videochat_and_magics_pick_up_the_profile(fast_simulator, tmp_path):
    from kki_widgets.notebook.widget import VideoChat

    chat = VideoChat(model="sora2pro-hd", base_url=fast_simulator.base_url, api_key=TEST_KEY,
                     store=None, profile="sora2api")  # fmt: skip
    try:
        assert chat.conversation.profile is profiles.BUILTIN["sora2api"]
        assert chat.durations == [10, 15]  # what the family sells for this model
        turn = chat.send("a fox", orientation="landscape", duration=15).result(timeout=60)
        assert turn.status == "completed" and fast_simulator.requests[-1]["model"] == "sora2pro-hd-landscape-15s"
        assert chat.turn_data[-1]["warnings"] == []
    finally:
        chat.close()


# ---- images: text-to-video names drop them, so frames go to the image-to-video twin ----------

PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WITH_FRAME = [{"role": "user", "content": [{"type": "text", "text": "a fox"},
                                           {"type": "image_url", "image_url": {"url": PNG}}]}]  # fmt: skip

FRAME_NAMES = [
    ("flow2api", "veo3-fast", "portrait", "veo_3_1_t2v_fast_portrait", "veo_3_1_i2v_s_fast_portrait_fl"),
    ("flow2api", "veo3-fast", "landscape", "veo_3_1_t2v_fast_landscape", "veo_3_1_i2v_s_fast_fl"),
    ("flow2api", "veo3", "landscape", "veo_3_1_t2v_landscape", "veo_3_1_i2v_s_landscape"),
    ("flow2api", "veo_2_1_fast_d_15_t2v", "portrait", "veo_2_1_fast_d_15_t2v_portrait",
     "veo_2_1_fast_d_15_i2v_portrait"),
    ("flow2api", "veo_2_0_t2v", "landscape", "veo_2_0_t2v_landscape", "veo_2_0_i2v_landscape"),
    ("veo_3_1", "veo3-fast", "landscape", "veo_3_1-landscape-fast", "veo_3_1-landscape-fast-fl"),
]  # fmt: skip


@pytest.mark.parametrize(("profile", "model", "orientation", "text_only", "with_image"), FRAME_NAMES)
def test_a_request_with_an_image_is_sent_to_a_model_that_reads_it(profile, model, orientation, text_only,
                                                                  with_image):
    chosen = get_profile(profile)
    assert chosen.prepare(FOX, model, orientation).model == text_only
    assert chosen.prepare(WITH_FRAME, model, orientation).model == with_image
    assert with_image not in chosen.models()  # the twins are picked for the user, not offered


def test_the_simulator_serves_every_name_the_client_can_send_and_drops_images_like_flow2api():
    # The simulator's catalog is written from the relays' pages independently of profiles.py:
    # a wrong client spelling would be a 404 there, as it would be at the relay.
    from kki_widgets.simulator import catalog

    for name in ("flow2api", "veo_3_1"):
        for wire in BUILTIN[name].family.combinations():
            assert catalog.serves(wire, (), families=True), wire
    assert catalog.image_verdict("veo_3_1_t2v_fast_landscape", 1)[0].startswith("⚠️")
    assert catalog.image_verdict("veo_3_1_i2v_s_fast_fl", 1) == (None, None)
    assert "当前提供了 3 张" in catalog.image_verdict("veo_3_1_i2v_s_fast_fl", 3)[1]


# ---- sora2api reads only the last message: remix by share ID, else from the last frame -------

def sora2api_conversation(sim, tmp_path, dialect):
    from kki_widgets.store.notebook_store import NotebookStore

    store = NotebookStore(tmp_path / ".kki" / "nb.json", secret=TEST_KEY)
    return Conversation(base_url=sim.base_url, api_key=TEST_KEY, store=store, profile="sora2api",
                        headers={"X-Sim-Dialect": dialect}, poll_interval=0.05)


def latest_task(sim):
    return max(sim.tasks.values(), key=lambda task: task.created_at)


def test_history_is_not_a_remix_on_sora2api_so_the_parent_continues_from_its_last_frame(
        fast_simulator, tmp_path):
    conv = sora2api_conversation(fast_simulator, tmp_path, "html_fence")
    first = conv.send("a paper boat on a pond")
    assert first.status == "completed" and first.generation.sid is None  # its answers show none
    assert conv.can_remix("sora-2") and not conv.can_remix("sora-2", first.index)
    child = conv.send("rain starts to fall")
    body = fast_simulator.requests[-1]
    assert body["model"] == "sora2-portrait-10s"
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert body["messages"][0]["content"][1]["type"] == "image_url"  # the parent's last frame
    assert child.options["continue_from"] == "last_frame" and "without a share ID" in child.note
    with pytest.raises(ConfigurationError, match=r"share ID.*--from-frame"):
        conv.send("snow instead", parent=first.index, continue_from="remix")


def test_a_parent_with_a_share_id_is_remixed_by_that_id_in_the_prompt(fast_simulator, tmp_path):
    conv = sora2api_conversation(fast_simulator, tmp_path, "watermark_free")
    first = conv.send("a paper boat on a pond")
    sid = first.generation.sid
    assert sid == latest_task(fast_simulator).sid  # read from "Post ID: s_…" on the status channel
    child = conv.send("rain starts to fall")
    assert fast_simulator.requests[-1]["messages"] == [{"role": "user", "content": f"{sid} rain starts to fall"}]
    task = latest_task(fast_simulator)
    assert task.parent_sid == sid and task.prompt == "rain starts to fall"  # what the relay read
    assert child.status == "completed" and child.note is None and "continue_from" not in child.options


def test_the_simulator_ignores_history_for_sora2api_names(fast_simulator):
    # The kind simulator used to remix the history for any name; sora2api never reads it.
    parent = "s_" + "0123456789abcdef" * 2
    history = [{"role": "user", "content": "a boat"},
               {"role": "assistant", "content": f"Generation Complete ✅ sid: {parent}"},
               {"role": "user", "content": "now rain"}]  # fmt: skip
    with RelayClient(base_url=fast_simulator.base_url, api_key=TEST_KEY) as client:
        client.generate(history, "sora2-portrait-10s")
        assert latest_task(fast_simulator).parent_sid is None
        client.generate(history, "sora-2")
        assert latest_task(fast_simulator).parent_sid == parent  # the seed's relays do read it
