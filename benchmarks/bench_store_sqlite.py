"""Figures for issue 20's question: should the notebook store be SQLite instead of a JSON
snapshot + fsynced journal + filelock? Both designs measured on what the store must survive:

1. claims under two racing kernels: two processes claim the same keys at once; any key both
   "won" would be paid twice. Time per claim (fsync included).
2. kill -9 at any step: a process claims, records the task ID, settles (cache + turn) in a loop
   and is killed at a random moment, many times; then the store is opened again: damaged files,
   and committed changes that were lost.
3. a lock on a filesystem without working locks (simulated): filelock's fcntl.flock a no-op for
   the JSON store, SQLite's ``unix-none`` VFS (no locking) for SQLite; two racing kernels again.
   And flock failing with ENOLCK (NFS without lockd): what the JSON store says.
4. the bytes a shared notebook folder carries: the files of 100 finished turns, and what one
   more turn changes (journal lines appended vs pages of a binary file that git stores whole).

The SQLite side is a small prototype with the same operations (claim = one ``BEGIN IMMEDIATE``
transaction: cache lookup + ``INSERT OR IGNORE``; WAL, synchronous=FULL to match the fsyncs).
Run: ``python benchmarks/bench_store_sqlite.py`` (about a minute).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import sqlite3
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from _common import emit, table

from kki_widgets.store.notebook_store import NotebookStore

ANSWER = "> task_{n}\n[video](https://cdn.example/v{n}.mp4)\n" + "progress 10% 20% 30%\n" * 10


# ------------------------------------------------------------------ the two designs
class JsonStore:
    name = "json+journal"

    def __init__(self, folder: Path):
        self.store = NotebookStore(folder / ".kki" / "nb.json")

    def claim(self, key: str) -> bool:
        return self.store.claim(key, {"id": key, "owner": os.getpid(), "sent_at": time.time()})[0] == "claimed"

    def record_task(self, key: str) -> None:
        self.store.update_claim(key, key, task_id=f"task_{key}")

    def settle(self, key: str, n: int) -> None:
        with self.store.batch():
            self.store.cache_put(key, {"generation": {"status": "completed", "text": ANSWER.format(n=n)}})
            self.store.save_turns("default", [{"id": key, "prompt": f"shot {n}", "status": "completed",
                                               "generation": {"text": ANSWER.format(n=n)}}])  # fmt: skip
            self.store.settle_claim(key, key)

    def check(self) -> tuple[bool, set]:
        """(damaged, keys with a cache entry) as a new kernel reads them."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = NotebookStore(self.store.path).load()
        settled = set(data["cache"])
        bad = bool(caught) or bool(settled & set(data.get("claims") or {}))
        return bad, settled


class SqliteStore:
    name = "sqlite (WAL)"

    def __init__(self, folder: Path, vfs: str | None = None):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "nb.sqlite"
        uri = f"file:{self.path}" + (f"?vfs={vfs}" if vfs else "")
        self.db = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL" if vfs is None else "PRAGMA journal_mode=DELETE")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(
            "CREATE TABLE IF NOT EXISTS claims(key TEXT PRIMARY KEY, record TEXT NOT NULL);"
            "CREATE TABLE IF NOT EXISTS cache(key TEXT PRIMARY KEY, entry TEXT NOT NULL);"
            "CREATE TABLE IF NOT EXISTS turns(id TEXT PRIMARY KEY, conversation TEXT, record TEXT);"
        )

    def _tx(self, work):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            result = work()
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return result

    def claim(self, key: str) -> bool:
        def work():
            if self.db.execute("SELECT 1 FROM cache WHERE key=?", (key,)).fetchone():
                return False
            record = json.dumps({"id": key, "owner": os.getpid(), "sent_at": time.time()})
            return self.db.execute("INSERT OR IGNORE INTO claims VALUES (?, ?)", (key, record)).rowcount == 1

        return self._tx(work)

    def record_task(self, key: str) -> None:
        self._tx(lambda: self.db.execute(
            "UPDATE claims SET record=json_set(record, '$.task_id', ?) WHERE key=?", (f"task_{key}", key)))  # fmt: skip

    def settle(self, key: str, n: int) -> None:
        def work():
            entry = json.dumps({"generation": {"status": "completed", "text": ANSWER.format(n=n)}})
            self.db.execute("INSERT OR REPLACE INTO cache VALUES (?, ?)", (key, entry))
            turn = json.dumps({"prompt": f"shot {n}", "status": "completed", "generation": {"text": ANSWER.format(n=n)}})
            self.db.execute("INSERT OR REPLACE INTO turns VALUES (?, 'default', ?)", (key, turn))
            self.db.execute("DELETE FROM claims WHERE key=?", (key,))

        self._tx(work)

    def check(self) -> tuple[bool, set]:
        try:
            db = sqlite3.connect(self.path, timeout=60)
            ok = db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            settled = {row[0] for row in db.execute("SELECT key FROM cache")}
            claimed = {row[0] for row in db.execute("SELECT key FROM claims")}
            db.close()
        except sqlite3.DatabaseError:
            return True, set()
        return (not ok) or bool(settled & claimed), settled


def make(design: str, folder: Path, broken_lock: bool = False):
    if design == "json":
        if broken_lock:
            import fcntl

            fcntl.flock = lambda *args: None  # a filesystem whose locks silently do nothing
        return JsonStore(folder)
    return SqliteStore(folder, vfs="unix-none" if broken_lock else None)


# ------------------------------------------------------------------ 1 and 3: racing kernels
def _racer(design, folder, keys, start, out, broken_lock):
    try:
        store = make(design, Path(folder), broken_lock)
    except Exception:
        out.put(([], 0.0, len(keys)))
        raise
    start.wait()
    won, began, errors = [], time.perf_counter(), 0
    for key in keys:
        try:
            if store.claim(key):
                won.append(key)
        except Exception:
            errors += 1
    out.put((won, (time.perf_counter() - began) / len(keys) * 1000, errors))


def race(design: str, broken_lock: bool = False, count: int = 200) -> dict:
    context = multiprocessing.get_context("fork")
    folder = tempfile.mkdtemp(prefix="kki-race-")
    # Create the files first (without WAL when there are no locks: WAL needs working ones).
    make(design, Path(folder), broken_lock and design == "sqlite")
    keys = [f"k{i}" for i in range(count)]
    start, out = context.Event(), context.Queue()
    racers = [context.Process(target=_racer, args=(design, folder, keys, start, out, broken_lock)) for _ in range(2)]
    for racer in racers:
        racer.start()
    start.set()
    (won_a, ms_a, err_a), (won_b, ms_b, err_b) = out.get(timeout=600), out.get(timeout=600)
    for racer in racers:
        racer.join()
    damaged, _ = make(design, Path(folder)).check()
    return {"double": len(set(won_a) & set(won_b)), "unclaimed": count - len(set(won_a) | set(won_b)),
            "ms_per_claim": round(statistics.mean([ms_a, ms_b]), 2), "errors": err_a + err_b,
            "damaged": damaged}  # fmt: skip


# ------------------------------------------------------------------ 2: kill -9 at any step
def _worker(design, folder, pipe):
    store = make(design, Path(folder))
    n = 0
    while True:
        key = f"r{os.getpid()}-{n}"
        store.claim(key)
        store.record_task(key)
        store.settle(key, n)
        pipe.send(key)  # committed: must survive any kill from here on
        n += 1


def kill_trials(design: str, trials: int = 30, seed: int = 20) -> dict:
    context = multiprocessing.get_context("fork")
    rng = random.Random(seed)
    folder = tempfile.mkdtemp(prefix="kki-kill-")
    damaged = lost = 0
    committed: set[str] = set()
    for _ in range(trials):
        receive, send = context.Pipe(duplex=False)
        worker = context.Process(target=_worker, args=(design, folder, send))
        worker.start()
        time.sleep(rng.uniform(0.02, 0.3))
        os.kill(worker.pid, signal.SIGKILL)
        worker.join()
        while receive.poll():
            committed.add(receive.recv())
        bad, settled = make(design, Path(folder)).check()
        damaged += bad
        lost += len(committed - settled)
    return {"trials": trials, "damaged": damaged, "lost_committed": lost, "committed": len(committed)}


# ------------------------------------------------------------------ 3b: flock fails (NFS, no lockd)
def enolck() -> str:
    import errno
    import fcntl

    original = fcntl.flock

    def failing(*args):
        raise OSError(errno.ENOLCK, "No locks available")

    fcntl.flock = failing
    try:
        JsonStore(Path(tempfile.mkdtemp(prefix="kki-nolock-"))).claim("k")
        return "claimed (no error)"
    except Exception as error:
        return f"{type(error).__name__}: {error}"[:160]
    finally:
        fcntl.flock = original


# ------------------------------------------------------------------ 4: bytes in a shared folder
def folder_bytes(design: str, turns: int = 100) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="kki-bytes-"))
    store = make(design, folder)
    for n in range(turns):
        store.claim(f"t{n}")
        store.record_task(f"t{n}")
        store.settle(f"t{n}", n)
    if design == "json":
        store.store.compact()
    else:
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".lock"))
    before = {p: p.read_bytes() for p in files}
    store.claim("one-more")
    store.record_task("one-more")
    store.settle("one-more", turns)
    after = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".lock")}
    changed = 0
    for path, data in after.items():
        old = before.get(path, b"")
        if path.suffix in (".json", ".journal"):  # text: git stores the appended lines
            changed += len(data) - len(old) if data.startswith(old) else len(data)
        else:  # binary: git stores the whole new file (delta-compressed only in packs)
            changed += len(data) if data != old else 0
    return {"files": len(before), "bytes": sum(len(d) for d in before.values()),
            "bytes_changed_by_one_turn": changed, "text": design == "json"}  # fmt: skip


def main() -> None:
    for design in ("json", "sqlite"):
        raced, unlocked = race(design), race(design, broken_lock=True)
        killed, folder = kill_trials(design), folder_bytes(design)
        emit(f"{design}: double claims, two racing kernels", raced["double"], "keys paid twice",
             target="0", met=raced["double"] == 0, ms_per_claim=raced["ms_per_claim"])  # fmt: skip
        emit(f"{design}: double claims without working locks", unlocked["double"], "keys paid twice",
             errors=unlocked["errors"], damaged=unlocked["damaged"], unclaimed=unlocked["unclaimed"])  # fmt: skip
        emit(f"{design}: damaged after kill -9", killed["damaged"], f"of {killed['trials']} kills",
             target="0", met=killed["damaged"] == 0, lost_committed=killed["lost_committed"],
             committed=killed["committed"])  # fmt: skip
        emit(f"{design}: folder bytes, 100 turns", folder["bytes"], "bytes", files=folder["files"],
             changed_by_one_turn=folder["bytes_changed_by_one_turn"], text=folder["text"])  # fmt: skip
    emit("json: flock fails with ENOLCK", 0, enolck())
    table("JSON snapshot + journal vs SQLite")


if __name__ == "__main__":
    main()
