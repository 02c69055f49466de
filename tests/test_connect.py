"""`%sora connect URL`, `%sora models`, `%sora config` and `%%sora --size` in a real IPython shell,
against simulators that list one relay family's names each (Simulator(catalog=...))."""

from __future__ import annotations

import getpass

import pytest
from IPython.core.error import UsageError
from kki_testing import TEST_KEY, run_cell

from kki_widgets.simulator import Simulator


@pytest.fixture(scope="module")
def catalogs():
    sims = {name: Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0, seed=11, catalog=name,
                            api_key=TEST_KEY).start()
            for name in ("sora2api", "flow2api", "plain")}  # fmt: skip
    yield sims
    for sim in sims.values():
        sim.stop()


@pytest.fixture
def typed_key(monkeypatch):
    """The masked prompt: what the user types, and what the prompt said."""
    prompts = []

    def fake_getpass(prompt=""):
        prompts.append(prompt)
        return TEST_KEY

    monkeypatch.setattr(getpass, "getpass", fake_getpass)
    return prompts


def connect(ip, sim, capsys) -> str:
    run_cell(ip, f"%sora connect {sim.base_url}")
    return capsys.readouterr().out


def test_connect_with_only_a_url_then_names_travel_the_sora2api_way(catalogs, new_shell, typed_key, capsys):
    sim = catalogs["sora2api"]
    ip = new_shell()
    out = connect(ip, sim, capsys)
    assert typed_key and "hidden" in typed_key[0] and TEST_KEY not in out
    assert "profile sora2api: the relay lists 16 sora2api-style model names" in out
    assert "sora-2-pro" in out and "sd, hd" in out and "names like sora2" in out
    assert "$0.10" in out  # sora-2's price from the relay's price list
    assert "balance: $100.00" in out
    assert "reachable, key accepted" in out and "made-up model name" in out
    assert sim.submissions == 0  # the ping generated nothing

    run_cell(ip, "%%sora --orientation landscape --duration 15\na fox in the snow")
    assert sim.requests[-1]["model"] == "sora2-landscape-15s"
    assert sim.requests[-1]["messages"][-1]["content"] == "a fox in the snow"
    run_cell(ip, "%sora config")
    config = capsys.readouterr().out
    assert "sora2api" in config and "model list: the relay lists 16 sora2api-style" in config


def test_sizes_are_offered_where_sold_and_refused_before_sending(catalogs, new_shell, typed_key, capsys):
    sim = catalogs["sora2api"]
    ip = new_shell()
    connect(ip, sim, capsys)
    run_cell(ip, "%%sora --new -m sora-2-pro --size 1080p -d 10\na glacier")
    assert sim.requests[-1]["model"] == "sora2pro-hd-portrait-10s"
    sent = len(sim.requests)
    with pytest.raises(UsageError, match=r"sizes none .*sora2pro \(sd, hd\)"):
        run_cell(ip, "%%sora --new -m sora-2 --size hd\na glacier")
    assert len(sim.requests) == sent


def test_a_flow2api_relay_from_the_environment(catalogs, new_shell, monkeypatch, capsys):
    sim = catalogs["flow2api"]
    monkeypatch.setenv("KKI_BASE_URL", sim.base_url)
    monkeypatch.setenv("KKI_API_KEY", TEST_KEY)
    ip = new_shell()
    run_cell(ip, "%%sora -m veo3-fast --orientation landscape\na lighthouse")
    assert sim.requests[-1]["model"] == "veo_3_1_t2v_fast_landscape"
    run_cell(ip, "%sora models")
    out = capsys.readouterr().out
    assert "veo3-fast" in out and "8 s" in out and "$0.02/s" in out
    assert "4 image" in out and "i2v" not in out.split("also listed")[0].split("sent as", 1)[1].replace(
        "names like", "")  # twins are not offered
    run_cell(ip, "%sora config")
    assert "flow2api" in capsys.readouterr().out


def test_a_plain_relay_keeps_words_and_refuses_sizes(catalogs, new_shell, typed_key, capsys):
    sim = catalogs["plain"]
    ip = new_shell()
    out = connect(ip, sim, capsys)
    assert "the relay lists no model names we know; orientation and length go as words" in out
    assert "words after the prompt" in out
    run_cell(ip, "%%sora --orientation landscape --duration 10\na cat")
    assert sim.requests[-1]["model"] == "sora-2"
    assert "landscape 16:9" in sim.requests[-1]["messages"][-1]["content"]
    with pytest.raises(UsageError, match="--size hd"):
        run_cell(ip, "%%sora --new --size hd\na cat")
    run_cell(ip, "%sora config")
    assert "orientation and length go as words" in capsys.readouterr().out


def test_a_wrong_key_is_named_by_the_ping(catalogs, new_shell, monkeypatch, capsys):
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": "sk-wrong-key-0000000000000000")
    ip = new_shell()
    out = connect(ip, catalogs["plain"], capsys)
    assert "the key was refused (HTTP 401 from /v1/models" in out
    assert "sk-wrong-key-0000000000000000" not in out


def test_connect_needs_a_url_and_never_takes_the_key_as_an_argument(new_shell):
    ip = new_shell()
    with pytest.raises(UsageError, match="connect URL"):
        run_cell(ip, "%sora connect")
    with pytest.raises(UsageError, match="connect URL"):
        run_cell(ip, f"%sora connect https://relay.example/v1 {TEST_KEY}")
