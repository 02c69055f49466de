"""The store as untrusted input, bounded (issue 20): a snapshot or journal that is too deep, too
large, cut or a symbolic link is moved aside with a warning naming both paths, the notebook goes
on, and reading it costs neither a RecursionError nor gigabytes (peak memory measured in a
fresh process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from kki_widgets.store import journal as store_journal
from kki_widgets.store.notebook_store import NotebookStore

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEEP = 100_000


def fresh_store(tmp_path: Path) -> NotebookStore:
    store = NotebookStore(tmp_path / ".kki" / "nb.json")
    store.bump("paid_requests")
    store.compact()  # a snapshot and no journal
    return store


def journal_of(store: NotebookStore) -> Path:
    return store.path.with_suffix(".journal")


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def journal_line(seq: int, payload: str) -> str:
    return f'{{"seq":{seq},"ops":[{{"op":"usage","counter":"c","value":1,"x":{payload}}}]}}\n'


def tamper(kind: str, store: NotebookStore, tmp_path: Path) -> Path:
    """Damage the store's files the way `kind` says; the file that was damaged."""
    journal = journal_of(store)
    if kind == "deep snapshot":
        store.path.write_text(f'{{"version":2,"usage":{deep_json(DEEP)}}}')
    elif kind == "slightly deep snapshot":  # parses, but would break every later copy
        store.path.write_text(f'{{"version":2,"usage":{{"x":{deep_json(900)}}}}}')
    elif kind == "cut snapshot":
        store.path.write_text(store.path.read_text()[:-7])
    elif kind == "big snapshot":
        store.max_snapshot_bytes = 1000
        store.path.write_text(json.dumps({"version": 2, "junk": "x" * 5000}))
    elif kind == "linked snapshot":
        victim = tmp_path / "victim.json"
        victim.write_text(store.path.read_text())
        store.path.unlink()
        store.path.symlink_to(victim)
    elif kind == "deep journal line":
        journal.write_text(journal_line(1, deep_json(DEEP)) + journal_line(2, "1"))
    elif kind == "big journal line":
        journal.write_text(journal_line(1, json.dumps("y" * 5000)) + journal_line(2, "1"))
        store._journal.max_line_bytes = 1000
    elif kind == "linked journal":
        victim = tmp_path / "victim.journal"
        victim.write_text(journal_line(1, "1"))
        journal.symlink_to(victim)
        return journal
    return journal if "journal" in kind else store.path


KINDS = ["deep snapshot", "slightly deep snapshot", "cut snapshot", "big snapshot", "linked snapshot",
         "deep journal line", "big journal line", "linked journal"]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_a_tampered_store_is_moved_aside_with_a_warning_naming_both_paths(kind, tmp_path):
    store = fresh_store(tmp_path)
    damaged = tamper(kind, store, tmp_path)
    with pytest.warns(RuntimeWarning) as caught:
        store.usage()  # no RecursionError, no MemoryError: the notebook goes on
    message = "\n".join(str(w.message) for w in caught)
    asides = [p for p in damaged.parent.iterdir() if ".corrupt-" in p.name]
    assert len(asides) == 1, message
    assert str(damaged) in message and str(asides[0]) in message
    if kind.startswith("big"):
        assert "over the cap of 1,000 bytes" in message
    if kind.startswith("linked"):
        assert "symbolic link" in message and asides[0].is_symlink()
    # The store still works, and the next reader sees no damage.
    store.bump("paid_requests")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert NotebookStore(store.path).usage()["paid_requests"] >= 1


def test_depth_is_checked_without_recursion():
    nested: list = []
    for _ in range(DEEP):
        nested = [nested]
    assert store_journal.too_deep(nested)
    assert not store_journal.too_deep({"a": [{"b": [1, 2, {"c": None}]}]})


MEASURE = textwrap.dedent(
    """
    import json, sys, warnings
    from pathlib import Path
    from IPython.core.interactiveshell import InteractiveShell

    folder, kind = Path(sys.argv[1]), sys.argv[2]
    store = folder / ".kki" / "nb.json"
    store.parent.mkdir(parents=True, exist_ok=True)
    def write(path, head, tail):  # 300 MB written a megabyte at a time: only the reader counts
        with open(path, "w") as f:
            f.write(head)
            for _ in range(300):
                f.write("a" * 1024 * 1024)
            f.write(tail)

    if kind == "snapshot string":
        write(store, '{"version":2,"usage":{"x":"', '"}}')
    elif kind == "journal line":
        write(store.with_suffix(".journal"), '{"seq":1,"ops":[{"op":"answers","answers":{"k":"', '"}}]}\\n')
    elif kind == "deep snapshot":
        store.write_text('{"version":2,"usage":' + "[" * 100000 + "]" * 100000 + "}")
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "kki_widgets")
    ip.run_line_magic("config", f"SoraMagics.store_path = {str(store)!r}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ip.run_cell("%%sora\\na lighthouse at dawn")
    result.raise_error()
    assert result.result.status == "completed", result.result
    said = [str(w.message) for w in caught if "could not" in str(w.message)]
    # VmHWM, not ru_maxrss: Linux carries the parent's RSS at fork into the child's ru_maxrss
    # (pytest's, hundreds of MB late in a full run), as tests/test_hostile_streams.py says.
    peak = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0] / 1024
    print("figures " + json.dumps({"peak_mb": peak, "warnings": said}))
    """
)


@pytest.mark.parametrize("kind", ["snapshot string", "journal line", "deep snapshot"])
def test_a_tampered_store_costs_under_300_mb_and_the_next_sora_cell_works(kind, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KKI_")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    run = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tmp_path), kind], env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(run.stdout.split("figures ", 1)[1])
    assert figures["peak_mb"] < 300, figures
    [warning] = figures["warnings"]
    assert "nb." in warning and ".corrupt-" in warning
    for path in tmp_path.glob(".kki/*.corrupt-*"):
        path.unlink()  # 300 MB each: do not keep them in the temp folder


def test_a_filesystem_without_locks_is_named_with_the_fix(tmp_path, monkeypatch):
    import errno
    import fcntl

    from kki_widgets.store.notebook_store import StoreError

    def no_locks(*args):
        raise OSError(errno.ENOLCK, "No locks available")  # NFS without lockd

    monkeypatch.setattr(fcntl, "flock", no_locks)
    store = NotebookStore(tmp_path / ".kki" / "nb.json")
    with pytest.raises(StoreError, match="cannot lock files") as caught:
        store.claim("k", {"id": "k"})
    assert str(tmp_path / ".kki") in str(caught.value) and "store_path" in str(caught.value)
