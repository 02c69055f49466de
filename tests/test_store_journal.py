"""The store's journal: one line per state change, replay, compaction, damage, links, two kernels."""

from __future__ import annotations

import contextlib
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

from kki_widgets.store import journal as store_journal
from kki_widgets.store.notebook_store import NotebookStore

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def journal_of(store: NotebookStore) -> Path:
    return store.path.with_suffix(".journal")


def lines(store: NotebookStore) -> list[dict]:
    return [json.loads(line) for line in journal_of(store).read_text().splitlines()]


def turn(n: int, parent: str | None = None, **extra) -> dict:
    return {"id": f"t{n}", "parent": parent, "prompt": f"shot {n}", "status": "completed",
            "messages": [{"role": "user", "content": f"shot {n}"}],
            "generation": {"status": "completed", "text": f"answer {n}"}, **extra}


def paid_turn(store: NotebookStore, n: int) -> None:
    with store.batch():
        store.bump("paid_requests")
        store.add_pending({"task_id": f"task{n}"})
        store.save_turns("film", [turn(n)], head=f"t{n}")
    with store.batch():
        store.cache_put(f"key{n}", {"generation": {"text": f"answer {n}"}, "assistant_message": f"answer {n}"})
        store.remove_pending(f"task{n}")


def test_the_first_change_writes_the_snapshot_then_each_change_appends_one_line(tmp_path):
    store = NotebookStore(tmp_path / ".kki" / "nb.json")
    store.bump("paid_requests")
    assert store.path.is_file() and not journal_of(store).exists()
    snapshot = store.path.read_bytes()

    paid_turn(store, 0)
    store.bump("cache_hits")
    assert store.path.read_bytes() == snapshot  # nothing rewritten
    records = lines(store)
    assert [r["seq"] for r in records] == [1, 2, 3]  # two batches and one bump: three lines
    assert [op["op"] for op in records[0]["ops"]] == ["usage", "pending", "answers", "turns"]
    assert records[2]["ops"] == [{"op": "usage", "counter": "cache_hits", "value": 1}]

    reopened = NotebookStore(store.path)
    assert reopened.usage() == {"paid_requests": 2, "cache_hits": 1}
    assert reopened.pending() == []
    assert reopened.load_conversation("film")["turns"][0]["generation"]["text"] == "answer 0"
    assert reopened.cache_get("key0")["assistant_message"] == "answer 0"
    assert reopened.load() == store.load()


def test_compact_folds_the_journal_into_the_snapshot(tmp_path):
    store = NotebookStore(tmp_path / "nb.json")
    for n in range(3):
        paid_turn(store, n)
    before = store.load()
    store.compact()
    assert not journal_of(store).exists()
    data = json.loads(store.path.read_text())
    # The first change wrote the snapshot; the five after it were lines 1..5.
    assert data["journal_seq"] == 5 and data["version"] == 2
    assert NotebookStore(store.path).load() == before
    store.bump("cache_hits")  # numbering goes on after the snapshot's last line
    assert [r["seq"] for r in lines(store)] == [6]


def test_the_journal_is_compacted_once_it_outgrows_the_snapshot(tmp_path):
    store = NotebookStore(tmp_path / "nb.json")
    store.compact_min_bytes = 0
    store.bump("paid_requests")
    sizes = []
    for n in range(40):
        paid_turn(store, n)
        sizes.append(journal_of(store).stat().st_size if journal_of(store).exists() else 0)
    # The journal never stays bigger than the snapshot: it is folded in and starts again.
    assert sizes.count(0) >= 3
    assert max(sizes) <= store.path.stat().st_size * 2
    assert len(NotebookStore(store.path).load_conversation("film")["turns"]) == 40


def test_replaying_lines_already_in_the_snapshot_changes_nothing(tmp_path):
    """A crash after the new snapshot was written and before the journal was removed."""
    store = NotebookStore(tmp_path / "nb.json")
    store.bump("paid_requests")
    for n in range(3):
        paid_turn(store, n)
    journal = journal_of(store).read_bytes()
    expected = store.load()
    store.compact()
    journal_of(store).write_bytes(journal)  # the removal did not happen
    assert NotebookStore(store.path).load() == expected
    assert NotebookStore(store.path).usage()["paid_requests"] == 4  # not 7
    # And the ops themselves set values: applying a line twice gives the same store.
    once, twice = NotebookStore(tmp_path / "empty.json").load(), None
    for record in (json.loads(line) for line in journal.decode().splitlines()):
        store_journal.apply(once, record["ops"])
    twice = json.loads(json.dumps(once))
    for record in (json.loads(line) for line in journal.decode().splitlines()):
        store_journal.apply(twice, record["ops"])
    assert twice == once


def test_another_writers_lines_are_read_without_reading_the_snapshot_again(tmp_path, monkeypatch):
    path = tmp_path / "nb.json"
    mine, theirs = NotebookStore(path), NotebookStore(path)
    mine.bump("paid_requests")
    assert theirs.usage()["paid_requests"] == 1
    snapshot_reads = []
    original = NotebookStore._read_snapshot
    monkeypatch.setattr(NotebookStore, "_read_snapshot",
                        lambda self: (snapshot_reads.append(self), original(self))[1])
    for n in range(5):
        mine.save_turns("film", [turn(n)], head=f"t{n}")
        assert len(theirs.load_conversation("film")["turns"]) == n + 1
    assert snapshot_reads == []  # only the new journal lines were read
    mine.compact()  # the other writer replaced the snapshot: read again, once
    theirs.bump("cache_hits")
    assert snapshot_reads == [theirs]
    assert mine.usage() == {"paid_requests": 1, "cache_hits": 1}
    assert len(mine.load_conversation("film")["turns"]) == 5


def test_a_cut_off_last_line_is_ignored_with_a_log_line_and_cut_before_the_next(tmp_path, caplog):
    store = NotebookStore(tmp_path / "nb.json")
    store.bump("paid_requests")
    paid_turn(store, 0)
    whole = journal_of(store).read_bytes()
    with journal_of(store).open("ab") as handle:
        handle.write(b'{"seq":3,"ops":[{"op":"usage","counter":"paid_re')  # killed mid-append
    with warnings.catch_warnings(), caplog.at_level("INFO", logger="kki_widgets.store.notebook_store"):
        warnings.simplefilter("error")
        reopened = NotebookStore(store.path)
        assert reopened.usage()["paid_requests"] == 2
    assert "was cut off" in caplog.text and str(journal_of(store)) in caplog.text
    reopened.bump("cache_hits")
    assert journal_of(store).read_bytes().startswith(whole)
    assert [r["seq"] for r in lines(store)] == [1, 2, 3]  # the cut tail is gone, every line parses
    assert NotebookStore(store.path).usage() == {"paid_requests": 2, "cache_hits": 1}


def test_a_damaged_line_between_good_ones_moves_the_journal_aside_and_keeps_the_rest(tmp_path):
    store = NotebookStore(tmp_path / ".kki" / "nb.json")
    store.bump("paid_requests")
    for n in range(3):
        store.save_turns("film", [turn(n)], head=f"t{n}")
    text = journal_of(store).read_text().splitlines(keepends=True)
    text[1] = '{"seq": 2, "ops": [{"op": "rm -rf"}]}\n'  # parses, but is no store change
    damaged = "".join(text)
    journal_of(store).write_text(damaged)

    with pytest.warns(RuntimeWarning, match="damaged") as caught:
        conversation = NotebookStore(store.path).load_conversation("film")
    [aside] = store.path.parent.glob("nb.corrupt-*.journal")
    message = str(caught[0].message)
    assert str(journal_of(store)) in message and str(aside) in message
    assert aside.read_text() == damaged  # moved, never overwritten
    assert [t["id"] for t in conversation["turns"]] == ["t0", "t2"]  # the good lines are kept
    assert not journal_of(store).exists()  # ...in the snapshot now
    assert [t["id"] for t in NotebookStore(store.path).load_conversation("film")["turns"]] == ["t0", "t2"]


def test_a_journal_that_is_a_symbolic_link_is_moved_aside_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    store = NotebookStore(tmp_path / ".kki" / "nb.json")
    store.bump("paid_requests")
    store.compact()
    journal_of(store).symlink_to(victim)
    with pytest.warns(RuntimeWarning, match="symbolic link") as caught:
        assert NotebookStore(store.path).usage()["paid_requests"] == 1  # the notebook goes on
    message = str(caught[0].message)
    [aside] = store.path.parent.glob("nb.corrupt-*.journal")
    assert str(journal_of(store)) in message and str(aside) in message
    assert aside.is_symlink() and victim.read_text() == "precious"  # the link moved, not its target
    store.bump("paid_requests")
    assert not journal_of(store).is_symlink() and victim.read_text() == "precious"


def test_a_replayed_journal_still_cannot_make_a_parent_cycle(tmp_path):
    store = NotebookStore(tmp_path / "nb.json")
    store.bump("paid_requests")
    records = {"a": {"parent": "b", "prompt": "first"}, "b": {"parent": "b", "prompt": "second"}}
    line = {"seq": 1, "ops": [{"op": "turns", "conversation": "film", "turns": records,
                               "set": {"head": "b"}, "created_at": "2026-01-01T00:00:00+00:00"}]}
    journal_of(store).write_text(json.dumps(line) + "\n")
    conversation = NotebookStore(store.path).load_conversation("film")
    assert [(t["id"], t["parent"]) for t in conversation["turns"]] == [("a", None), ("b", None)]


def test_a_refused_secret_leaves_the_journal_and_the_kept_state_as_they_were(tmp_path):
    secret = "sk-journal-secret-0123456789"
    store = NotebookStore(tmp_path / "nb.json", secret=secret)
    store.bump("paid_requests")
    store.bump("paid_requests")
    before = journal_of(store).read_bytes()
    with pytest.raises(Exception, match="API key"), store.batch():
        store.bump("cache_hits")
        store.add_pending({"task_id": "t", "auth": secret})
    assert journal_of(store).read_bytes() == before
    assert store.usage() == {"paid_requests": 2, "cache_hits": 0}  # the batch's changes are gone
    assert store.pending() == []


def _hammer(path: str, worker: int, rounds: int, compact_min_bytes: int) -> None:
    store = NotebookStore(path)
    store.compact_min_bytes = compact_min_bytes
    for i in range(rounds):
        with store.batch():
            store.bump("paid_requests")
            store.save_turns(f"worker-{worker}", [turn(i, pad="x" * 500)])
        store.cache_put(f"{worker}-{i}", {"assistant_message": str(i)})


def test_concurrent_writers_compacting_all_the_time_lose_no_updates(tmp_path):
    writers_lose_nothing(str(tmp_path / "nb.json"), _hammer, 0)  # compact at every change


CHILD = textwrap.dedent(
    """
    import sys
    from kki_widgets.store.notebook_store import NotebookStore

    store = NotebookStore(sys.argv[1])
    write = store._write

    def write_then_compact(encoded):  # every other change also rewrites the snapshot
        write(encoded)
        if n % 2:
            store._compact()

    store._write = write_then_compact
    n = len((store.load_conversation("film") or {"turns": []})["turns"])
    print("ready", flush=True)
    while True:
        turn = {"id": "t%d" % n, "n": n, "prompt": "shot %d" % n, "pad": "x" * 2000}
        with store.batch():
            store.save_turns("film", [turn], head=turn["id"])
            store.bump("paid_requests")
        print(n, flush=True)
        n += 1
    """
)


def test_kill_9_while_appending_or_compacting_never_loses_a_committed_turn(tmp_path):
    path = tmp_path / ".kki" / "nb.json"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    rng = random.Random(4321)
    committed: set[int] = set()
    stale = 0
    for kills in range(1, 26):  # a number of kills, not a time: the same on a loaded machine
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE,
                                 env=env, text=True)
        assert child.stdout.readline().strip() == "ready"
        for _ in range(rng.randint(0, 6)):
            committed.add(int(child.stdout.readline()))
        time.sleep(rng.random() * 0.004)
        child.send_signal(signal.SIGKILL)
        committed.update(int(line) for line in child.stdout.read().split())
        child.wait()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a damaged journal or snapshot would warn: fail
            store = NotebookStore(path)
            conversation = store.load_conversation("film")
            saved = [t["n"] for t in conversation["turns"]] if conversation else []
            assert store.usage()["paid_requests"] == len(saved)  # the batch: both or neither
        assert committed <= set(saved), f"kill {kills}: lost turns {sorted(committed - set(saved))}"
        assert saved == list(range(len(saved)))
        journal = path.with_suffix(".journal")
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError):  # none, or cut off
            last = json.loads(journal.read_text().splitlines()[-1])["seq"]
            stale += last <= json.loads(path.read_text())["journal_seq"]
    print(f"{kills} kills, {len(committed)} committed turns, {stale} killed between snapshot and journal removal")
    assert not list(path.parent.glob("*.corrupt-*"))


PING_PONG = textwrap.dedent(
    """
    import sys, time
    from kki_widgets.store.notebook_store import NotebookStore

    path, me, rounds, compact = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    store = NotebookStore(path)
    if compact:
        store.compact_min_bytes = 0  # this kernel folds the journal in whenever it outgrows the snapshot
    deadline = time.monotonic() + 60
    for i in range(rounds):
        while store.usage()["paid_requests"] != 2 * i + me:  # wait for the other kernel's turn
            assert time.monotonic() < deadline, "the other kernel's change never arrived"
            time.sleep(0.002)
        turns = store.load_conversation("film")["turns"] if i or me else []
        assert len(turns) == 2 * i + me, (me, i, len(turns))  # every turn of the other kernel
        with store.batch():
            store.save_turns("film", [{"id": "k%d-%d" % (me, i), "prompt": "x" * 300}])
            store.bump("paid_requests")
    print("done", flush=True)
    """
)


def test_two_kernels_taking_turns_each_read_what_the_other_appended(tmp_path):
    path = tmp_path / ".kki" / "nb.json"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    kernels = [subprocess.Popen([sys.executable, "-c", PING_PONG, str(path), str(me), "30", str(me)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
               for me in (0, 1)]
    for kernel in kernels:
        out, err = kernel.communicate(timeout=120)
        assert kernel.returncode == 0 and out.strip() == "done", err
    store = NotebookStore(path)
    assert store.usage()["paid_requests"] == 60
    ids = [t["id"] for t in store.load_conversation("film")["turns"]]
    assert ids == [f"k{i % 2}-{i // 2}" for i in range(60)]  # in the order they were written
