"""Per-notebook persistence: conversations, the request cache, pending tasks, usage counters.

One JSON file per notebook, ``<notebook dir>/.kki/<notebook stem>.json``::

    {"version": 1,
     "conversations": {name: {"turns": [...], "head": int|None, "created_at", "updated_at"}},
     "cache":         {key: {"generation": {...}, "assistant_message": "...", "paths": {...},
                             "created_at"}},
     "pending":       [{"task_id": ..., ...}],       # accepted by the relay, not finished yet
     "usage":         {"paid_requests": n, "cache_hits": n, ...}}

Why it is built this way:

- Two kernels can run on one notebook (a second tab, nbclient next to a live kernel), so every
  mutation is a read-modify-write under a cross-process ``filelock`` — no lost updates.
- A kernel can be killed at any instant (kill -9, OOM, laptop lid), so the file is replaced
  atomically: temp file in the same directory, flush, fsync, ``os.replace``, fsync of the
  directory. A reader sees the old file or the new one, never half of one.
- A paid generation must never be forgotten: a file that cannot be parsed is moved aside (with a
  warning naming both paths) instead of being overwritten with an empty store.
- The store sits next to the notebook and may be committed to git: it must never contain the API
  key, so every write is checked against the configured secret and refused if the key appears.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock

__all__ = [
    "STORE_VERSION",
    "NotebookStore",
    "SecretInStoreError",
    "StoreError",
    "locate_notebook",
]

STORE_VERSION = 1
STORE_DIRNAME = ".kki"
DEFAULT_STORE_NAME = "default"
# Long enough for a slow network filesystem, short enough that a stuck kernel is reported.
LOCK_TIMEOUT_SECONDS = 60.0
_TEMP_PREFIX = ".tmp-"


class StoreError(RuntimeError):
    """The store cannot be used as asked (lock timeout, newer file format, ...)."""


class SecretInStoreError(StoreError):
    """A write would have put the API key into the notebook's store file; nothing was written."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _empty() -> dict[str, Any]:
    return {"version": STORE_VERSION, "conversations": {}, "cache": {}, "pending": [], "usage": {}}


def _reveal(secret: Any) -> str | None:
    """Accept a plain string or a ``config.Secret`` (anything with ``.reveal()``)."""
    if secret is None:
        return None
    value = secret.reveal() if hasattr(secret, "reveal") else str(secret)
    return value or None


def locate_notebook(user_ns: dict | None = None) -> Path | None:
    """Best guess at the notebook this kernel runs, or ``None`` (plain IPython, scripts, consoles).

    - JupyterLab / Notebook 7 export ``JPY_SESSION_NAME``: the notebook path relative to the
      server root (or absolute). The kernel's cwd is the notebook's directory, so a relative path
      that does not exist from cwd is resolved as ``cwd / basename``.
    - VS Code puts ``__vsc_ipynb_file__`` into the IPython user namespace.
    """
    session_name = os.environ.get("JPY_SESSION_NAME", "").strip()
    if session_name:
        candidate = Path(session_name).expanduser()
        if candidate.is_absolute():
            if candidate.exists() or candidate.suffix == ".ipynb":
                return candidate
        else:
            from_cwd = Path.cwd() / candidate
            if from_cwd.exists():
                return from_cwd.resolve()
            if candidate.suffix == ".ipynb":
                return Path.cwd() / candidate.name

    if user_ns is None:
        with contextlib.suppress(Exception):  # IPython missing or no shell running: not a notebook
            from IPython import get_ipython

            shell = get_ipython()
            user_ns = shell.user_ns if shell is not None else None
    vscode_file = (user_ns or {}).get("__vsc_ipynb_file__")
    if vscode_file:
        return Path(vscode_file)
    return None


class NotebookStore:
    """The JSON store of one notebook. Every public method is safe across threads and processes."""

    def __init__(self, path: str | os.PathLike, *, secret: Any = None):
        self.path = Path(path)
        self._secret = secret
        self._lock = FileLock(str(self.path) + ".lock", timeout=LOCK_TIMEOUT_SECONDS)

    def __repr__(self) -> str:  # never shows the secret
        return f"NotebookStore({str(self.path)!r})"

    @classmethod
    def for_notebook(
        cls,
        notebook_path: str | os.PathLike | None = None,
        name: str | None = None,
        *,
        secret: Any = None,
        user_ns: dict | None = None,
    ) -> NotebookStore:
        """The store of ``notebook_path`` (or of the notebook this kernel runs when ``None``).

        ``<notebook dir>/.kki/<notebook stem>.json``; outside a notebook
        ``<cwd>/.kki/<name or "default">.json``. ``name`` also overrides the notebook stem.
        """
        notebook = Path(notebook_path) if notebook_path is not None else locate_notebook(user_ns)
        if notebook is None:
            return cls(Path.cwd() / STORE_DIRNAME / f"{name or DEFAULT_STORE_NAME}.json", secret=secret)
        notebook = notebook.expanduser()
        return cls(notebook.parent / STORE_DIRNAME / f"{name or notebook.stem}.json", secret=secret)

    # ----------------------------------------------------------------------------- reading
    def load(self) -> dict[str, Any]:
        """A snapshot of the whole store (a copy: changing it changes nothing on disk)."""
        if not self.path.exists():
            # Reading a store that does not exist yet must not create it (nor .kki/ and a lock
            # file): a VideoChat() that is never used leaves the folder as it was.
            return _empty()
        with self._locked():
            return self._read()

    def conversation_names(self) -> list[str]:
        return sorted(self.load()["conversations"])

    def load_conversation(self, name: str) -> dict | None:
        return self.load()["conversations"].get(name)

    def cache_get(self, key: str) -> dict | None:
        return self.load()["cache"].get(key)

    def pending(self) -> list[dict]:
        return self.load()["pending"]

    def usage(self) -> dict[str, int]:
        counters = {"paid_requests": 0, "cache_hits": 0}
        counters.update(self.load()["usage"])
        return counters

    # ----------------------------------------------------------------------------- writing
    def save_conversation(self, name: str, data: dict) -> None:
        """Replace conversation ``name`` (``{"turns": [...], "head": ...}`` plus anything else)."""

        def change(store: dict) -> None:
            previous = store["conversations"].get(name) or {}
            record = copy.deepcopy(dict(data))
            record["created_at"] = previous.get("created_at") or record.get("created_at") or _now()
            record["updated_at"] = _now()
            store["conversations"][name] = record

        self._mutate(change)

    def delete_conversation(self, name: str) -> bool:
        """Forget conversation ``name``; returns whether it existed."""
        existed = []

        def change(store: dict) -> None:
            existed.append(store["conversations"].pop(name, None) is not None)

        self._mutate(change)
        return existed[0]

    @staticmethod
    def cache_key(base_url: str, model: str | None, options: dict | None, messages: list) -> str:
        """sha256 of the canonical JSON of everything that determines a generation.

        Options set to ``None`` mean "relay default" and are dropped, so ``duration=None`` and no
        duration share an entry; a trailing ``/`` on the base URL does not change the relay.
        """
        canonical = json.dumps(
            {
                "base_url": (base_url or "").rstrip("/"),
                "model": model,
                "options": {k: v for k, v in (options or {}).items() if v is not None},
                "messages": messages,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            default=str,
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def cache_put(self, key: str, entry: dict) -> None:
        record = copy.deepcopy(dict(entry))
        record.setdefault("created_at", _now())
        self._mutate(lambda store: store["cache"].__setitem__(key, record))

    def add_pending(self, task: dict) -> None:
        """Remember a task the relay accepted (it has a task ID) so a new kernel can resume it."""
        if not task.get("task_id"):
            raise ValueError("a pending task needs a 'task_id'")
        record = copy.deepcopy(dict(task))
        record.setdefault("created_at", _now())

        def change(store: dict) -> None:
            store["pending"] = [t for t in store["pending"] if t.get("task_id") != task["task_id"]]
            store["pending"].append(record)

        self._mutate(change)

    def remove_pending(self, task_id: str) -> None:
        def change(store: dict) -> None:
            store["pending"] = [t for t in store["pending"] if t.get("task_id") != task_id]

        self._mutate(change)

    def bump(self, counter: str, n: int = 1) -> int:
        """Add ``n`` to a usage counter (``paid_requests``, ``cache_hits``, ...); returns the total."""
        total = []

        def change(store: dict) -> None:
            store["usage"][counter] = int(store["usage"].get(counter, 0)) + n
            total.append(store["usage"][counter])

        self._mutate(change)
        return total[0]

    # ----------------------------------------------------------------------------- internals
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._lock:
                yield
        except TimeoutError as exc:  # filelock.Timeout subclasses TimeoutError
            raise StoreError(
                f"could not lock {self.path} within {LOCK_TIMEOUT_SECONDS:.0f} s: another kernel "
                f"holds it. If no kernel is running, delete {self._lock.lock_file}."
            ) from exc

    def _mutate(self, change: Callable[[dict], None]) -> None:
        with self._locked():
            store = self._read()
            change(store)
            self._write(store)

    def _read(self) -> dict[str, Any]:
        """Read the file (caller holds the lock). Missing → empty; unparseable → moved aside."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return _empty()
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("version"), int):
                raise ValueError("not a kki_widgets store (no integer 'version')")
        except (ValueError, UnicodeDecodeError) as exc:
            self._move_aside(exc)
            return _empty()
        if data["version"] > STORE_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer kki_widgets (store version {data['version']}, "
                f"this one reads {STORE_VERSION}); upgrade kki_widgets to use it."
            )
        store = _empty()
        store.update(data)
        store["version"] = STORE_VERSION
        return store

    def _move_aside(self, reason: Exception) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        aside = self.path.with_name(f"{self.path.stem}.corrupt-{stamp}.json")
        os.replace(self.path, aside)
        warnings.warn(
            f"kki_widgets: the store {self.path} could not be read ({reason}); it was moved to "
            f"{aside} and a new, empty store was started. Nothing was deleted.",
            RuntimeWarning,
            stacklevel=4,
        )

    def _write(self, store: dict) -> None:
        """Atomically replace the file (caller holds the lock)."""
        text = json.dumps(store, ensure_ascii=False, indent=1, sort_keys=True)
        self._refuse_secret(text)
        directory = self.path.parent
        self._remove_orphaned_temp_files()
        fd, temp_name = tempfile.mkstemp(
            prefix=f"{_TEMP_PREFIX}{self.path.name}.", suffix=".json", dir=directory
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise
        # The rename is only durable once the directory entry is on disk.
        with contextlib.suppress(OSError):  # not supported on every platform/filesystem
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _remove_orphaned_temp_files(self) -> None:
        # Every writer holds the lock while its temp file exists, so under the lock any temp file
        # of ours is left over from a killed process.
        for orphan in self.path.parent.glob(f"{_TEMP_PREFIX}{self.path.name}.*"):
            with contextlib.suppress(OSError):
                orphan.unlink()

    def _refuse_secret(self, text: str) -> None:
        secret = _reveal(self._secret)
        if not secret:
            return
        escaped = json.dumps(secret, ensure_ascii=False)[1:-1]
        if secret in text or escaped in text:
            raise SecretInStoreError(
                f"refusing to write {self.path}: the data contains the API key. This is a bug in "
                "the caller (the key must travel only in the Authorization header); nothing was "
                "written."
            )
