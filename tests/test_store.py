"""NotebookStore: round trips, cache keys, locking across processes, corruption, kill -9."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
from kki_testing import writers_lose_nothing

from kki_widgets.store.notebook_store import (
    NotebookStore,
    SecretInStoreError,
    StoreError,
    locate_notebook,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_round_trip(tmp_path):
    store = NotebookStore(tmp_path / ".kki" / "nb.json")
    turn = {"id": "t0", "prompt": "a cat", "status": "completed",
            "messages": [{"role": "user", "content": "a cat"}], "generation": {"text": "done"}}
    store.save_turns("default", [turn], head="t0", model="sora-2")
    store.cache_put("k1", {"generation": {"task_id": "task_1"}, "assistant_message": "done"})
    store.add_pending({"task_id": "task_2", "conversation": "default", "turn": 1})
    store.bump("paid_requests")
    store.bump("cache_hits", 2)

    reopened = NotebookStore(tmp_path / ".kki" / "nb.json")
    conversation = reopened.load_conversation("default")
    [loaded] = conversation["turns"]
    assert {k: loaded[k] for k in turn} == turn
    assert loaded["parent"] is None
    assert conversation["head"] == "t0" and conversation["model"] == "sora-2"
    assert conversation["created_at"] and conversation["updated_at"]
    assert reopened.conversation_names() == ["default"]
    assert reopened.cache_get("k1")["assistant_message"] == "done"
    assert reopened.cache_get("k1")["created_at"]
    assert reopened.cache_get("missing") is None
    assert [t["task_id"] for t in reopened.pending()] == ["task_2"]
    assert reopened.usage() == {"paid_requests": 1, "cache_hits": 2}
    data = json.loads((tmp_path / ".kki" / "nb.json").read_text())
    assert data["version"] == 2
    assert list(data["answers"].values()) == ["done"]  # one answer, stored once


def test_created_at_survives_updates_and_delete(tmp_path):
    store = NotebookStore(tmp_path / "s.json")
    store.save_turns("a", [])
    created = store.load_conversation("a")["created_at"]
    store.save_turns("a", [{"id": "0"}])
    assert store.load_conversation("a")["created_at"] == created
    assert store.delete_conversation("a") is True
    assert store.delete_conversation("a") is False
    assert store.load_conversation("a") is None
    with pytest.raises(ValueError, match="'id'"):
        store.save_turns("a", [{"prompt": "no id"}])


def test_pending_is_keyed_by_task_id(tmp_path):
    store = NotebookStore(tmp_path / "s.json")
    store.add_pending({"task_id": "t1", "progress": 10})
    store.add_pending({"task_id": "t1", "progress": 50})
    store.add_pending({"task_id": "t2"})
    assert [(t["task_id"], t.get("progress")) for t in store.pending()] == [
        ("t1", 50),
        ("t2", None),
    ]
    store.remove_pending("t1")
    store.remove_pending("never-there")
    assert [t["task_id"] for t in store.pending()] == ["t2"]
    with pytest.raises(ValueError, match="task_id"):
        store.add_pending({"prompt": "no id"})


def test_load_returns_a_copy(tmp_path):
    store = NotebookStore(tmp_path / "s.json")
    store.save_turns("a", [{"id": "0"}])
    snapshot = store.load()
    snapshot["conversations"]["a"]["turns"]["1"] = {}
    assert len(store.load_conversation("a")["turns"]) == 1


def test_cache_key_is_stable_and_sensitive_to_every_input():
    messages = [{"role": "user", "content": "a cat"}]
    base = dict(
        base_url="https://relay/v1",
        model="sora-2",
        options={"orientation": "portrait", "duration": 10},
        messages=messages,
    )
    key = NotebookStore.cache_key(**base)
    assert len(key) == 64
    assert key == NotebookStore.cache_key(**base)
    # Dict order and a trailing slash do not change the request; None options mean "default".
    assert key == NotebookStore.cache_key(
        base_url="https://relay/v1/",
        model="sora-2",
        options={"duration": 10, "orientation": "portrait", "images": None},
        messages=[{"content": "a cat", "role": "user"}],
    )
    variants = [
        {**base, "base_url": "https://other/v1"},
        {**base, "model": "sora-2-pro"},
        {**base, "options": {"orientation": "landscape", "duration": 10}},
        {**base, "options": {"orientation": "portrait", "duration": 15}},
        {**base, "options": {"orientation": "portrait"}},
        {**base, "messages": [{"role": "user", "content": "a dog"}]},
        {**base, "messages": [*messages, {"role": "assistant", "content": "x"}]},
        {**base, "messages": [{"role": "system", "content": "a cat"}]},
    ]
    keys = {NotebookStore.cache_key(**variant) for variant in variants}
    assert len(keys) == len(variants)
    assert key not in keys


def test_for_notebook_paths(tmp_path, monkeypatch):
    notebook = tmp_path / "work" / "Film Ideas.ipynb"
    store = NotebookStore.for_notebook(notebook)
    assert store.path == tmp_path / "work" / ".kki" / "Film Ideas.json"

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert NotebookStore.for_notebook(None, user_ns={}).path == tmp_path / ".kki" / "default.json"
    assert NotebookStore.for_notebook(None, "mine", user_ns={}).path == tmp_path / ".kki" / "mine.json"


def test_locate_notebook(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.ipynb").write_text("{}")
    monkeypatch.chdir(tmp_path)

    monkeypatch.setenv("JPY_SESSION_NAME", "sub/a.ipynb")
    assert locate_notebook(user_ns={}) == tmp_path / "sub" / "a.ipynb"
    # Relative to the server root, which is not the kernel's cwd: the kernel runs in the
    # notebook's directory, so the basename next to cwd is the notebook.
    monkeypatch.chdir(tmp_path / "sub")
    monkeypatch.setenv("JPY_SESSION_NAME", "projects/sub/a.ipynb")
    assert locate_notebook(user_ns={}) == tmp_path / "sub" / "a.ipynb"
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "sub" / "a.ipynb"))
    assert locate_notebook(user_ns={}) == tmp_path / "sub" / "a.ipynb"

    monkeypatch.delenv("JPY_SESSION_NAME")
    vscode = {"__vsc_ipynb_file__": str(tmp_path / "sub" / "a.ipynb")}
    assert locate_notebook(user_ns=vscode) == tmp_path / "sub" / "a.ipynb"
    assert locate_notebook(user_ns={}) is None
    assert NotebookStore.for_notebook(None, user_ns=vscode).path == tmp_path / "sub" / ".kki" / "a.json"


def test_corrupt_file_is_moved_aside_with_a_warning(tmp_path):
    path = tmp_path / ".kki" / "nb.json"
    path.parent.mkdir()
    path.write_text('{"version": 1, "conversations": {"a": ')  # cut mid-write by some other tool
    store = NotebookStore(path)
    with pytest.warns(RuntimeWarning, match="could not be read") as caught:
        assert store.load_conversation("a") is None
    aside = list(path.parent.glob("nb.corrupt-*.json"))
    assert len(aside) == 1
    assert aside[0].read_text() == '{"version": 1, "conversations": {"a": '
    message = str(caught[0].message)
    assert str(path) in message and str(aside[0]) in message
    # The store keeps working on a fresh file.
    store.save_turns("b", [])
    assert store.conversation_names() == ["b"]


def test_json_that_is_not_a_store_is_moved_aside(tmp_path):
    path = tmp_path / "nb.json"
    path.write_text("[1, 2, 3]")
    with pytest.warns(RuntimeWarning):
        NotebookStore(path).bump("paid_requests")
    assert NotebookStore(path).usage()["paid_requests"] == 1
    assert len(list(tmp_path.glob("nb.corrupt-*.json"))) == 1


def test_newer_store_version_is_not_overwritten(tmp_path):
    path = tmp_path / "nb.json"
    path.write_text(json.dumps({"version": 99, "future": True}))
    with pytest.raises(StoreError, match="upgrade kki_widgets"):
        NotebookStore(path).bump("paid_requests")
    assert json.loads(path.read_text()) == {"version": 99, "future": True}


SECRET = "sk-test-0123456789abcdef-SECRET"


class _FakeSecret:
    def reveal(self) -> str:
        return SECRET


@pytest.mark.parametrize("secret", [SECRET, _FakeSecret()])
def test_the_key_is_never_written(tmp_path, secret):
    path = tmp_path / "nb.json"
    store = NotebookStore(path, secret=secret)
    store.save_turns("a", [{"id": "0", "prompt": "fine"}])
    before = path.read_bytes()
    leaks = [
        lambda: store.save_turns("a", [{"id": "1", "headers": f"Bearer {SECRET}"}]),
        lambda: store.cache_put("k", {"assistant_message": "x", "paths": {"key": SECRET}}),
        lambda: store.add_pending({"task_id": "t", "auth": SECRET}),
        lambda: store.bump(SECRET),
    ]
    for leak in leaks:
        with pytest.raises(SecretInStoreError, match="API key"):
            leak()
    assert path.read_bytes() == before
    assert SECRET not in path.read_text()
    assert SECRET not in repr(store)


def test_a_long_key_glued_to_other_characters_is_still_refused(tmp_path):
    store = NotebookStore(tmp_path / "nb.json", secret=SECRET)
    for glued in (f"Bearer%20{SECRET}", f"x{SECRET}y", f"?key={SECRET}&"):
        with pytest.raises(SecretInStoreError, match="bug in the caller"):
            store.save_turns("a", [{"id": "0", "url": glued}])
    assert not (tmp_path / "nb.json").exists() or SECRET not in (tmp_path / "nb.json").read_text()


@pytest.mark.parametrize("key", ["k", "sim", "han1234"])  # han1234: sora2api's default key
def test_a_short_key_is_a_word_not_any_letters(tmp_path, key):
    """A self-hosted relay's key may be short; inside other words it is no leak ("sim" in
    "simulated"), as a word of its own it still is."""
    path = tmp_path / "nb.json"
    store = NotebookStore(path, secret=key)
    ordinary = {"id": "0", "prompt": f"a{key}b {key}-racing {key}_x", "simulated": True,
                "kind": "k2", "note": "the boat sails on"}  # fmt: skip
    store.save_turns("a", [ordinary])
    assert NotebookStore(path).load_conversation("a")["turns"][0]["prompt"] == ordinary["prompt"]
    before = path.read_bytes()
    for leak in (f"Bearer {key}", key, f"?key={key}&x=1", f"{key}."):
        with pytest.raises(SecretInStoreError, match=f"{len(key)}-character word.*longer key"):
            store.save_turns("a", [ordinary, {"id": "1", "auth": leak}])
    assert path.read_bytes() == before


def _hammer(path: str, worker: int, rounds: int) -> None:
    store = NotebookStore(path)
    for i in range(rounds):
        store.bump("paid_requests")
        store.save_turns(f"worker-{worker}", [{"id": str(i)}])
        store.cache_put(f"{worker}-{i}", {"assistant_message": str(i)})


def test_concurrent_writers_lose_no_updates(tmp_path):
    writers_lose_nothing(str(tmp_path / "nb.json"), _hammer)


CHILD = textwrap.dedent(
    """
    import sys
    from kki_widgets.store.notebook_store import NotebookStore

    store = NotebookStore(sys.argv[1])
    n = len((store.load_conversation("film") or {"turns": []})["turns"])
    print("ready", flush=True)
    while True:
        turn = {"id": "t%d" % n, "n": n, "prompt": "shot %d" % n, "pad": "x" * 2000}
        store.save_turns("film", [turn], head=turn["id"])
        store.bump("paid_requests")
        print(n, flush=True)
        n += 1
    """
)


def test_kill_9_never_loses_a_committed_turn(tmp_path):
    path = tmp_path / ".kki" / "nb.json"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    rng = random.Random(1234)
    committed: set[int] = set()
    # A number of kills, not a time: as many on a loaded machine as on an idle one.
    for kills in range(1, 31):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path)],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert child.stdout.readline().strip() == "ready"
        for _ in range(rng.randint(0, 4)):
            committed.add(int(child.stdout.readline()))
        time.sleep(rng.random() * 0.004)  # land anywhere inside the next write
        child.send_signal(signal.SIGKILL)
        # Lines printed before the kill were printed after their save returned: committed too.
        committed.update(int(line) for line in child.stdout.read().split())
        child.wait()

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a corrupt file would warn: fail instead
            conversation = NotebookStore(path).load_conversation("film")
        saved = {turn["n"] for turn in conversation["turns"]} if conversation else set()
        assert committed <= saved, f"kill {kills}: lost turns {sorted(committed - saved)}"
        assert [t["n"] for t in conversation["turns"]] == list(range(len(saved)))

    print(f"{kills} kills, {len(committed)} committed turns")
    assert not list(path.parent.glob("*.corrupt-*"))
    # A later writer cleans the temp files the killed processes left behind.
    NotebookStore(path).bump("cache_hits")
    assert not list(path.parent.glob(".tmp-*"))


def _chain_turn(n: int, history: list, answer: str) -> dict:
    messages = [*history, {"role": "user", "content": f"shot {n}"}]
    return {"id": f"t{n}", "parent": f"t{n - 1}" if n else None, "messages": messages,
            "generation": {"status": "completed", "text": answer}}


def test_every_turn_loads_back_exactly_what_it_sent_even_when_answers_change(tmp_path):
    """A remix is recognised from what its parent sent a moment ago (no walk up the chain); an
    answer changed after a child sent the old one, or a history edited by the caller, must still
    load back exactly as sent."""
    store = NotebookStore(tmp_path / "nb.json")
    history: list = []
    sent = {}
    for n in range(4):
        turn = _chain_turn(n, history, f"answer {n}")
        store.save_turns("film", [turn], head=turn["id"])
        sent[turn["id"]] = turn["messages"]
        history = [*turn["messages"], {"role": "assistant", "content": f"answer {n}"}]
    # Turn 2's answer is recovered later (a longer text): turn 3 sent the old one.
    store.save_turns("film", [{**_chain_turn(2, sent["t2"][:-1], "answer 2, recovered"),
                               "messages": sent["t2"]}])
    child = _chain_turn(4, history, "answer 4")
    store.save_turns("film", [child])
    sent["t4"] = child["messages"]
    # A caller that edits the history it sends: not a continuation of what is stored.
    edited = [{**m, "content": "edited"} if m["role"] == "assistant" else m for m in history]
    odd = {**_chain_turn(5, edited, "answer 5"), "parent": "t3"}
    store.save_turns("film", [odd])
    sent["t5"] = odd["messages"]
    for reopened in (store, NotebookStore(store.path)):
        loaded = {t["id"]: t["messages"] for t in reopened.load_conversation("film")["turns"]}
        # Turn 3 was stored as a continuation before turn 2's answer changed, so it is rebuilt
        # with the new answer (format 2 keeps answers once; sessions only change an answer
        # before any turn continues it). Turn 4 came after the change: it is exact.
        loaded.pop("t3"), sent.pop("t3", None)
        assert loaded == sent
