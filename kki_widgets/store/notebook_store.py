"""Per-notebook persistence: conversations, the request cache, pending tasks, usage counters.

Two files per notebook in ``<notebook dir>/.kki/``: the snapshot ``<notebook stem>.json``
(format version 2) and its journal ``<notebook stem>.journal``::

    {"version": 2,
     "conversations": {name: {"turns": {turn_id: turn}, "head": turn_id|None, "model",
                              "created_at", "updated_at"}},
     "answers":       {sha256: assistant markdown},   # each answer stored once
     "cache":         {key: {"generation": {..., "answer": sha256}, "paths": {...},
                             "created_at"}},
     "pending":       [{"task_id": ..., ...}],       # accepted by the relay, not finished yet
     "claims":        {key: {"owner", "sent_at", "task_id", ...}},  # requests in flight
     "usage":         {"paid_requests": n, "cache_hits": n, ...},
     "journal_seq":   n}                             # the last journal line it holds

A turn refers to its parent by ID and stores only its own prompt message plus how many of the
parent's messages it sent (``history``), so the store grows linearly with the turns instead of
copying the whole history into every turn; its answer lives once in ``answers``, and an image it
sent (a parent's last frame) once as a file in ``kki_media/frames/`` (`kki_widgets.store.frames`).
Paths inside the notebook's folder are stored relative to it, so the folder can be moved or cloned
(the codec is `kki_widgets.store.format`). Version-1 files (full history per turn, absolute
paths) are migrated when read.

Why it is built this way:

- One turn's write must cost the same at 10 turns as at 1,000, and rewriting the whole file per
  change did not (5 / 32 / 206 ms). So each state change appends one JSON line of ops to the
  journal (`kki_widgets.store.journal`: the ops are data, each one sets a value), and the
  snapshot is rewritten only when the journal outgrows it: the cost of a rewrite is spread over
  as many turns as the store holds. Reading is the snapshot plus the journal's lines; this
  object keeps what it read and, each time, reads only what another writer appended since.
- Two kernels can run on one notebook (a second tab, nbclient next to a live kernel), so every
  change is a read-modify-write under a cross-process ``filelock`` — no lost updates — and a
  conversation is merged turn by turn (`save_turns`), never replaced wholesale. ``batch()``
  groups the changes of one state change (a finished turn: its record, the cache entry, the
  pending list) into one journal line.
- The folder is shared state that anyone may have edited: what is read back is data to check
  (parents must come first, so a parent cycle cannot exist after loading; paths are checked
  against the media folder by the caller, see `media.kept_file`; journal lines must be ops of
  the right shape; a journal or lock file that is a symbolic link is refused).
- A kernel can be killed at any instant (kill -9, OOM, laptop lid): a journal line is one
  fsynced append (a cut-off last line is ignored and cut before the next one), and the snapshot
  is replaced atomically (temp file, fsync, ``os.replace``, fsync of the directory) before the
  journal is removed; lines it already holds are skipped by their sequence number.
- A paid generation must never be forgotten: a snapshot that cannot be parsed, or a journal
  damaged before its end, is moved aside (with a warning naming both paths), never overwritten.
  So is one that is a symbolic link, larger than ``max_snapshot_bytes`` (checked before reading)
  or nested deeper than `store_journal.MAX_DEPTH`: the notebook goes on with what is left, and a
  tampered folder costs neither a RecursionError nor gigabytes of memory.
- The store sits next to the notebook and may be committed to git: it must never contain the API
  key, so every line and every snapshot is checked against the configured secret and refused if
  the key appears. A key shorter than `WHOLE_WORD_KEY` characters (self-hosted relays let their
  admin choose one: sora2api's default is ``han1234``) counts only as a whole word, or a key such
  as ``sim`` would refuse every write that says "simulated".
"""

from __future__ import annotations

import contextlib
import copy
import errno
import hashlib
import json
import logging
import os
import re
import threading
import warnings
from collections import ChainMap
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock

from ..protocol.errors import KkiError
from . import format as store_format
from . import journal as store_journal
from .atomic import replacing
from .frames import FrameFiles

log = logging.getLogger("kki_widgets.store.notebook_store")

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
# What flock says on a filesystem without working locks (NFS without lockd, some FUSE mounts).
_NO_LOCKS = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP}

__all__ = [
    "STORE_VERSION",
    "NotebookStore",
    "SecretInStoreError",
    "StoreError",
    "locate_notebook",
]

STORE_VERSION = store_format.FORMAT_VERSION
STORE_DIRNAME = ".kki"
DEFAULT_STORE_NAME = "default"
NOTEBOOK_ENV = "KKI_NOTEBOOK"
# Long enough for a slow network filesystem, short enough that a stuck kernel is reported.
LOCK_TIMEOUT_SECONDS = 60.0
_TEMP_PREFIX = ".tmp-"
_KEEP = object()
_SEQ_KEY = "journal_seq"  # in the snapshot: the last journal line it holds


class StoreError(KkiError, RuntimeError):
    """The store cannot be used as asked (lock timeout, newer file format, ...)."""


class SecretInStoreError(StoreError):
    """A write would have put the API key into the notebook's store file; nothing was written."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    """What tells a rewritten snapshot from the one read: (inode, device, size, mtime)."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_dev, stat.st_size, stat.st_mtime_ns)


def _answers_op(answers: ChainMap) -> list[dict]:
    """The op for the answers a change added (written into the ChainMap's first mapping)."""
    added = {k: v for k, v in answers.maps[0].items() if k not in answers.maps[1]}
    return [{"op": "answers", "answers": added}] if added else []


def _claims_of(store: dict) -> dict:
    claims = store.get("claims")
    return claims if isinstance(claims, dict) else {}


# From this length on, a key is matched anywhere in the text: no word holds 16 random
# characters by chance, and a key glued to other characters (`%20` before it in a URL) is still
# found. A shorter key is matched only where no letter, digit, `-` or `_` touches it.
WHOLE_WORD_KEY = 16


def _holds_key(text: str, key: str) -> bool:
    if len(key) >= WHOLE_WORD_KEY:
        return key in text
    return re.search(rf"(?<![\w-]){re.escape(key)}(?![\w-])", text, re.ASCII) is not None


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
    - ``KKI_NOTEBOOK`` names it explicitly (for headless runs: nbclient, nbconvert, papermill
      start kernels in the notebook's folder but tell them nothing else): in the environment, or
      as a variable of the notebook (papermill's ``-p KKI_NOTEBOOK quickstart``). A bare name is
      a notebook in the kernel's folder.
    """
    if user_ns is None:
        with contextlib.suppress(Exception):  # IPython missing or no shell running: not a notebook
            from IPython import get_ipython

            shell = get_ipython()
            user_ns = shell.user_ns if shell is not None else None
    parameter = (user_ns or {}).get(NOTEBOOK_ENV)
    explicit = os.environ.get(NOTEBOOK_ENV, "").strip() or (parameter.strip() if isinstance(parameter, str) else "")
    if explicit:
        return Path(explicit).expanduser().absolute()
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

    vscode_file = (user_ns or {}).get("__vsc_ipynb_file__")
    if vscode_file:
        return Path(vscode_file)
    return None


def _in_kernel() -> bool:
    """Whether this runs in a Jupyter kernel (not a script or a terminal IPython)."""
    with contextlib.suppress(Exception):
        from IPython import get_ipython

        return getattr(get_ipython(), "kernel", None) is not None
    return False


_warned_unidentified: set[Path] = set()


def _warn_unidentified(path: Path) -> None:
    # A log line, not a warning: a warning would be printed into every notebook executed by
    # nbclient/nbconvert/papermill (with this machine's paths), and nothing is wrong there.
    if path in _warned_unidentified:
        return
    _warned_unidentified.add(path)
    log.info(
        "this kernel cannot tell which notebook it runs (no JPY_SESSION_NAME: nbclient, "
        "nbconvert --execute or papermill), so its conversations are kept in memory for this "
        "kernel only; the request cache in %s is shared, so reruns still replay for free. To keep "
        "the conversation, set %s=<notebook path> for the run.",
        path,
        NOTEBOOK_ENV,
    )


class NotebookStore:
    """The JSON store of one notebook. Every public method is safe across threads and processes."""

    #: The journal is folded into the snapshot once it is bigger than the snapshot and this.
    compact_min_bytes = 256 * 1024
    #: A snapshot larger than this is not read (moved aside): a store of 10,000 turns is a few
    #: MB, and reading 300 MB of JSON costs gigabytes of memory.
    max_snapshot_bytes = 32 * 1024 * 1024

    def __init__(self, path: str | os.PathLike, *, secret: Any = None, private_conversations: bool = False):
        """``private_conversations``: conversations live in this object only (an unidentified
        notebook must not share them); the cache, pending tasks and counters still go to ``path``.
        """
        self.path = Path(path)
        self._secret = secret
        self._private = {"conversations": {}, "answers": {}} if private_conversations else None
        self._private_lock = threading.RLock()
        self._lock = FileLock(str(self.path) + ".lock", timeout=LOCK_TIMEOUT_SECONDS)
        self._batch = threading.local()  # the ops of an open batch(), per thread
        self._journal = store_journal.Journal(self.path.with_name(self.path.stem + ".journal"))
        self._journal.max_bytes = self.max_snapshot_bytes
        self._frames = FrameFiles(self.root)
        # The store as last read (snapshot + journal), and what it was read from.
        self._cache: dict[str, Any] | None = None
        self._snapshot_id: tuple | None = None
        self._seq = 0  # the last journal line applied
        self._needs_snapshot = False  # a version-1 file: the next change rewrites it
        self._sent = store_format.SentMemo()  # what recent turns sent: checks remixes in O(1)

    @property
    def private_conversations(self) -> bool:
        """Conversations kept in this object (a headless kernel that cannot tell its notebook):
        the file holds only what this folder's unnamed headless runs share (cache, counters)."""
        return self._private is not None

    def __repr__(self) -> str:  # never shows the secret
        private = ", conversations kept in memory" if self._private is not None else ""
        return f"NotebookStore({str(self.path)!r}{private})"

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
        A kernel whose notebook cannot be identified (headless runs without ``KKI_NOTEBOOK``)
        keeps its conversations to itself and shares only the request cache in default.json.
        """
        notebook = Path(notebook_path) if notebook_path is not None else locate_notebook(user_ns)
        if notebook is None:
            path = Path.cwd() / STORE_DIRNAME / f"{name or DEFAULT_STORE_NAME}.json"
            if name is None and _in_kernel():
                # A kernel that cannot tell its notebook (nbclient, nbconvert --execute,
                # papermill): sharing default.json would mix notebooks' conversations.
                _warn_unidentified(path)
                return cls(path, secret=secret, private_conversations=True)
            return cls(path, secret=secret)
        notebook = notebook.expanduser()
        return cls(notebook.parent / STORE_DIRNAME / f"{name or notebook.stem}.json", secret=secret)

    @property
    def root(self) -> Path:
        """The notebook's folder (the store lives in its ``.kki/``): stored paths are relative to it."""
        return self.path.absolute().parent.parent

    # ----------------------------------------------------------------------------- reading
    def load(self) -> dict[str, Any]:
        """A snapshot of the whole store in its file format (a copy: changing it changes nothing)."""
        if self._absent():
            return store_format.empty_store()
        with self._locked():
            return self._state_copy()

    def conversation_names(self) -> list[str]:
        with self._conversations() as store:
            return sorted(store["conversations"])

    def load_conversation(self, name: str) -> dict | None:
        """Conversation ``name`` with its turns in order, each whole again.

        Every turn has ``id``, ``parent`` (an ID of an *earlier* turn, or None: a parent that comes
        later or does not exist is dropped, so walking parents always ends), ``messages`` (the
        full history it sent), ``generation`` with its ``text``, and paths made absolute.
        """
        with self._conversations() as store:
            conversation = store["conversations"].get(name)
            if conversation is None:
                return None
            whole = store_format.inflate_conversation(conversation, store["answers"], self.root)
        loaded: dict = {}  # each frame file read once, however many turns' histories send it
        for turn in whole["turns"]:
            turn["messages"] = self._frames.inflate(turn["messages"], loaded)
        return whole

    def cache_get(self, key: str) -> dict | None:
        if self._absent():
            return None
        with self._locked():
            store = self._state()
            entry = store["cache"].get(key)
            return None if entry is None else store_format.inflate_entry(entry, store["answers"], self.root)

    def pending(self) -> list[dict]:
        return self.load()["pending"]

    def usage(self) -> dict[str, int]:
        counters = {"paid_requests": 0, "cache_hits": 0}
        counters.update(self.load()["usage"])
        return counters

    # ----------------------------------------------------------------------------- writing
    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group the changes made inside into one locked read-modify-write and one journal line.

        Reentrant; other threads and processes wait for the lock, so they see all of it or none.
        """
        if self._in_batch():
            yield
            return
        with self._locked():
            self._read()
            self._batch.ops, self._batch.broken = [], False
            try:
                yield
            finally:
                encoded, self._batch.ops = self._batch.ops, None
                try:
                    if encoded:
                        self._commit(encoded)
                finally:
                    if self._batch.broken:  # a change failed half-applied: read the files again
                        self._forget()

    def compact(self) -> None:
        """Fold the journal into the snapshot now: one atomic rewrite of ``.kki/<name>.json``.

        The store does this by itself when the journal outgrows the snapshot; call it to leave a
        snapshot that holds everything on its own (before committing the folder, say).
        """
        if self._in_batch():
            raise StoreError("compact() inside batch(): call it after the batch")
        if self._absent():
            return
        with self._locked():
            self._read()
            self._compact()

    def save_turns(self, name: str, turns: list[dict], *, head: Any = _KEEP, **fields: Any) -> None:
        """Merge ``turns`` (dicts with an ``id``) into conversation ``name``; others stay as they are.

        Two kernels on one conversation each add their own turns: none is lost. ``head`` (a turn
        ID or None) and ``fields`` (``model``...) are set when given.
        """
        for turn in turns:
            if not turn.get("id"):
                raise ValueError("every turn saved needs an 'id'")
        frames = None if self._private is not None else self._frames

        def change(store: dict) -> list[dict]:
            stored = (store["conversations"].get(name) or {}).get("turns")
            # Written into the first mapping only: the new records and answers, as data.
            records = ChainMap({}, stored if isinstance(stored, dict) else {})
            answers = ChainMap({}, store["answers"])
            for turn in turns:
                store_format.put_turn(records, turn, answers, self.root, frames, self._sent)
            settings = copy.deepcopy(fields)
            if head is not _KEEP:
                settings["head"] = head
            settings["updated_at"] = _now()
            return [
                *_answers_op(answers),
                {"op": "turns", "conversation": name, "turns": records.maps[0],
                 "set": settings, "created_at": _now()},
            ]

        self._mutate_conversations(change)

    def delete_conversation(self, name: str) -> bool:
        """Forget conversation ``name``; returns whether it existed."""
        existed = []

        def change(store: dict) -> list[dict]:
            existed.append(name in store["conversations"])
            return [{"op": "delete", "conversation": name}] if existed[0] else []

        self._mutate_conversations(change)
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
        def change(store: dict) -> list[dict]:
            answers = ChainMap({}, store["answers"])
            record = store_format.compact_entry(entry, answers, self.root)
            record.setdefault("created_at", _now())
            return [*_answers_op(answers), {"op": "cache", "key": key, "entry": record}]

        self._mutate(change)

    def add_pending(self, task: dict) -> None:
        """Remember a task the relay accepted (it has a task ID) so a new kernel can resume it."""
        if not task.get("task_id"):
            raise ValueError("a pending task needs a 'task_id'")
        record = copy.deepcopy(dict(task))
        record.setdefault("created_at", _now())
        self._mutate(lambda store: [{"op": "pending", "task": record}])

    def remove_pending(self, task_id: str) -> None:
        def change(store: dict) -> list[dict]:
            known = any(t.get("task_id") == task_id for t in store["pending"])
            return [{"op": "unpending", "task_id": task_id}] if known else []

        self._mutate(change)

    # ----------------------------------------------------------------------------- claims
    def claim(self, key: str, record: dict, *, force: bool = False) -> tuple[str, dict | None]:
        """Claim request ``key`` before sending it: one locked check-and-insert, fsynced.

        Returns ``("claimed", None)`` when this caller may send; ``("cached", entry)`` when the
        request finished meanwhile (replay it); ``("claimed_by", claim)`` when another claim
        holds it (see `kki_widgets.conversation.claims.verdict`). ``force``: claim it anyway (the user asked
        to send again).
        """
        outcome: list = []

        def change(store: dict) -> list[dict]:
            entry = store["cache"].get(key)
            existing = _claims_of(store).get(key)
            if not force and entry is not None:
                outcome[:] = ["cached", store_format.inflate_entry(entry, store["answers"], self.root)]
                return []
            if not force and isinstance(existing, dict):
                outcome[:] = ["claimed_by", copy.deepcopy(existing)]
                return []
            outcome[:] = ["claimed", None]
            return [{"op": "claim", "key": key, "claim": copy.deepcopy(record)}]

        self._mutate(change)
        return outcome[0], outcome[1]

    def claim_state(self, key: str) -> tuple[dict | None, dict | None]:
        """(the cache entry, the claim) of request ``key`` as the files say now."""
        if self._absent():
            return None, None
        with self._locked():
            store = self._state()
            entry = store["cache"].get(key)
            claim = _claims_of(store).get(key)
            return (
                None if entry is None else store_format.inflate_entry(entry, store["answers"], self.root),
                copy.deepcopy(claim) if isinstance(claim, dict) else None,
            )

    def claims(self) -> dict[str, dict]:
        """Every claim, by request key (a copy)."""
        return {k: v for k, v in (self.load().get("claims") or {}).items() if isinstance(v, dict)}

    def update_claim(
        self, key: str, claim_id: str | None, *, expect_owner: Any = _KEEP, **fields: Any
    ) -> dict | None:
        """Add ``fields`` to claim ``key`` (task ID, links, a new owner...) if it is still claim
        ``claim_id``; returns the claim as it is afterwards, or None when there is none. With
        ``expect_owner``, only if its owner is still that one (two kernels taking over a dead
        kernel's claim: one wins)."""
        result: list = [None]

        def change(store: dict) -> list[dict]:
            existing = _claims_of(store).get(key)
            if not isinstance(existing, dict):
                return []
            if existing.get("id") != claim_id or (
                expect_owner is not _KEEP and existing.get("owner") != expect_owner
            ):
                result[0] = copy.deepcopy(existing)
                return []
            updated = {**copy.deepcopy(existing), **copy.deepcopy(fields)}
            result[0] = copy.deepcopy(updated)
            return [] if updated == existing else [{"op": "claim", "key": key, "claim": updated}]

        self._mutate(change)
        return result[0]

    def settle_claim(self, key: str, claim_id: str | None, error: str | None = None) -> None:
        """The request ended: remove its claim, or with ``error`` keep it as failed (a rerun
        then says so instead of sending again). Only claim ``claim_id``: a claim made since by
        a forced send is that send's."""
        def change(store: dict) -> list[dict]:
            existing = _claims_of(store).get(key)
            if not isinstance(existing, dict) or existing.get("id") != claim_id:
                return []
            if error is None:
                return [{"op": "unclaim", "key": key}]
            return [{"op": "claim", "key": key,
                     "claim": {**existing, "state": "failed", "error": error, "owner": None}}]  # fmt: skip

        self._mutate(change)

    def bump(self, counter: str, n: int = 1) -> int:
        """Add ``n`` to a usage counter (``paid_requests``, ``cache_hits``, ...); returns the total."""
        total = []

        def change(store: dict) -> list[dict]:
            # The total, not the step: replaying the line a second time changes nothing.
            total.append(int(store["usage"].get(counter, 0)) + n)
            return [{"op": "usage", "counter": counter, "value": total[0]}]

        self._mutate(change)
        return total[0]

    # ----------------------------------------------------------------------------- internals
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if getattr(self._batch, "state", None) is not None:
            yield  # the open batch holds the lock
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._lock:
                yield
        except store_journal.JournalLinkError as exc:
            raise StoreError(exc.strerror) from None
        except TimeoutError as exc:  # filelock.Timeout subclasses TimeoutError
            raise StoreError(
                f"could not lock {self.path} within {LOCK_TIMEOUT_SECONDS:.0f} s: another kernel "
                f"holds it. If no kernel is running, delete {self._lock.lock_file}."
            ) from exc
        except OSError as exc:
            if exc.errno in _NO_LOCKS:
                raise StoreError(
                    f"the filesystem of {self.path.parent} cannot lock files ({exc.strerror}: a "
                    "network folder without a lock service?). Two kernels could then pay for one "
                    "request twice, so the store is not used unlocked: set SoraMagics.store_path "
                    "(or NotebookStore(path)) to a local folder, or enable locking on the mount."
                ) from None
            if exc.errno != errno.ELOOP:
                raise
            # filelock opens with O_NOFOLLOW: a planted link is refused, its target untouched.
            raise StoreError(
                f"{self._lock.lock_file} is a symbolic link (it may have come with a copied "
                "folder); the store will not lock through it. Delete the link and run again."
            ) from None

    @contextlib.contextmanager
    def _conversations(self) -> Iterator[dict[str, Any]]:
        """Where conversations live: the file (locked), or this object for private ones."""
        if self._private is not None:
            with self._private_lock:
                yield self._private
            return
        if self._absent():
            yield store_format.empty_store()
            return
        with self._locked():
            yield self._state()

    def _mutate_conversations(self, change: Callable[[dict], list[dict]]) -> None:
        if self._private is None:
            self._mutate(change)
            return
        with self._private_lock:
            store_journal.apply(self._private, change(self._private))

    def _in_batch(self) -> bool:
        return getattr(self._batch, "ops", None) is not None

    def _absent(self) -> bool:
        """No file yet and no open batch: a read answers "empty" without creating `.kki/` and a
        lock file (a VideoChat() that is never used leaves the folder as it was)."""
        return not self._in_batch() and not self.path.exists() and not self._journal.exists()

    def _state(self) -> dict[str, Any]:
        """The store as it is now (caller holds the lock); inside a batch, with the batch's changes."""
        if self._in_batch() and self._cache is not None:
            return self._cache
        return self._read()

    def _state_copy(self) -> dict[str, Any]:
        return copy.deepcopy(self._state())

    def _mutate(self, change: Callable[[dict], list[dict]]) -> None:
        """Make the change's ops from the current store, apply them, and write them (one line)."""
        if self._in_batch():
            self._change(self._state(), change, self._batch.ops)
            return
        with self._locked():
            encoded: list[str] = []
            self._change(self._read(), change, encoded)
            if encoded:
                self._commit(encoded)

    def _change(self, store: dict, change: Callable[[dict], list[dict]], into: list[str]) -> None:
        ops = change(store)
        # Encoded before they are applied: nothing that is not JSON reaches the kept state.
        encoded = [json.dumps(op, ensure_ascii=False, separators=(",", ":")) for op in ops]
        try:
            store_journal.apply(store, ops)
        except BaseException:
            self._forget()
            raise
        into.extend(encoded)

    def _commit(self, encoded: list[str]) -> None:
        try:
            self._write(encoded)
        except BaseException:  # the kept state has changes the files do not: read them again
            self._forget()
            raise

    def _forget(self) -> None:
        """Drop the kept state: the next read starts from the files again."""
        self._cache = None
        self._journal.forget()
        if self._in_batch():
            self._batch.broken = True

    def _read(self) -> dict[str, Any]:
        """The store as the files say now (caller holds the lock): the snapshot plus the journal.

        Kept between calls and brought up to date cheaply: a snapshot with the same identity
        (inode, size, mtime) needs only the journal lines appended since the last read, so a
        write costs the same at 10 turns as at 1,000. Another kernel's compaction replaces the
        snapshot: then both are read again.
        """
        if self._cache is not None and _identity(self.path) == self._snapshot_id:
            records = self._journal.read()
            if records is not None:
                self._replay(records)
                return self._cache
        self._journal.forget()
        self._sent.clear()
        self._remove_orphaned_temp_files()
        self._cache, self._seq = self._read_snapshot()
        self._snapshot_id = _identity(self.path)
        self._replay(self._journal.read() or [])
        return self._cache

    def _replay(self, records: list[dict]) -> None:
        if records:  # another writer changed the stored turns: what was remembered may not hold
            self._sent.clear()
        for record in records:
            if record["seq"] > self._seq:  # older lines are in the snapshot already
                store_journal.apply(self._cache, record["ops"])
                self._seq = record["seq"]
        if self._journal.moved_aside:  # keep what was readable without the damaged file
            self._compact()

    def _read_snapshot(self) -> tuple[dict[str, Any], int]:
        """The snapshot file and the last journal line it holds. Missing → empty; unparseable →
        moved aside; version 1 → migrated (and written as version 2 by the next change)."""
        self._needs_snapshot = False
        try:
            raw = self._snapshot_bytes()
            if raw is None:
                return store_format.empty_store(), 0
            data = store_journal.decode(raw)
            del raw
            if not isinstance(data, dict) or not isinstance(data.get("version"), int):
                raise ValueError("not a kki_widgets store (no integer 'version')")
        except (ValueError, UnicodeDecodeError) as exc:
            self._move_aside(exc)
            return store_format.empty_store(), 0
        if data["version"] > STORE_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer kki_widgets (store version {data['version']}, "
                f"this one reads {STORE_VERSION}); upgrade kki_widgets to use it."
            )
        if data["version"] < 2:
            self._needs_snapshot = True
            return store_format.migrate_v1(data, self.root), 0
        seq = data.pop(_SEQ_KEY, 0)
        store = store_format.empty_store()
        store.update(data)
        return store, seq if type(seq) is int else 0

    def _snapshot_bytes(self) -> bytes | None:
        """The snapshot's bytes (None: there is none); ValueError for a link or an oversize file,
        checked before anything is read."""
        try:
            fd = os.open(self.path, os.O_RDONLY | _NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ValueError("it is a symbolic link (it may have come with a copied folder)") from None
            raise
        try:
            size = os.fstat(fd).st_size
            if size > self.max_snapshot_bytes:
                raise ValueError(
                    f"{size:,} bytes, over the cap of {self.max_snapshot_bytes:,} bytes "
                    "(NotebookStore.max_snapshot_bytes)"
                )
            with os.fdopen(os.dup(fd), "rb") as handle:
                return handle.read()
        finally:
            os.close(fd)

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

    def _write(self, encoded: list[str]) -> None:
        """Commit one state change (caller holds the lock; the kept state has it already): one
        journal line, or a new snapshot when there is none yet or the journal outgrew it."""
        if self._snapshot_id is None or self._needs_snapshot:
            self._compact()
            return
        text = store_journal.line(self._seq + 1, encoded)
        self._refuse_secret(text)
        self._journal.append(text)
        self._seq += 1
        # Compacting when the journal is as big as the snapshot keeps the cost per change flat:
        # a rewrite of n turns comes after about n turns' worth of lines.
        if self._journal.size > max(self._snapshot_id[2], self.compact_min_bytes):
            self._compact()

    def _compact(self) -> None:
        """Atomically replace the snapshot with the kept state, then remove the journal. A crash
        in between leaves both: the journal's lines are then older than the snapshot's
        ``journal_seq`` and are skipped."""
        store = self._cache
        store_format.drop_unused_answers(store)
        # Compact, so json uses its C encoder: with indent it falls back to pure Python, which
        # made one write of a 1,000-turn store cost seconds instead of milliseconds.
        text = json.dumps({**store, _SEQ_KEY: self._seq}, ensure_ascii=False, separators=(",", ":"))
        self._refuse_secret(text)
        self._remove_orphaned_temp_files()
        with replacing(
            self.path, prefix=f"{_TEMP_PREFIX}{self.path.name}.", suffix=".json", private=True,
            durable=True,
        ) as temp_name, open(temp_name, "w", encoding="utf-8") as handle:
            handle.write(text)
        self._journal.remove()
        self._snapshot_id = _identity(self.path)
        self._needs_snapshot = False

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
        if _holds_key(text, secret) or _holds_key(text, escaped):
            if len(secret) < WHOLE_WORD_KEY:
                # A short key may simply be a word the user wrote in a prompt.
                raise SecretInStoreError(
                    f"refusing to write {self.path}: the data holds the API key, a "
                    f"{len(secret)}-character word, perhaps in a prompt; nothing was written. "
                    "Leave that word out of the prompt, or give the relay a longer key"
                )
            raise SecretInStoreError(
                f"refusing to write {self.path}: the data contains the API key. This is a bug in "
                "the caller (the key must travel only in the Authorization header); nothing was "
                "written."
            )
