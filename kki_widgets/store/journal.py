"""The store's journal: each state change as data, one JSON line appended beside the snapshot.

``.kki/<name>.journal`` holds one line per state change (one `NotebookStore` mutation or one
``batch()``)::

    {"seq": 7, "ops": [{"op": "turns", "conversation": "default", "turns": {...}, ...}, ...]}

Why a journal: rewriting the whole snapshot on every change made one turn's write cost grow with
the store (about 200 ms at 1,000 turns); appending one line costs the same at 10 turns and at
1,000. It is the write-ahead log of SQLite or LevelDB, kept as plain JSON lines so the folder
stays inspectable and diffs well in git.

- The ops are data, not code: put answers, put turns (and set conversation fields), delete a
  conversation, put a cache entry, put or remove a pending task, set a usage counter, put or
  remove a claim (a request in flight, `kki_widgets.conversation.claims`). Each one
  *sets* a value, so replaying a line whose change is already in the snapshot changes nothing;
  lines also carry a sequence number and the snapshot records the last one it holds
  (``journal_seq``), so a snapshot written just before a crash never has its changes applied twice.
- A line is written with one ``write`` and fsynced under the store's lock, so under the lock a
  line without its newline (or that does not parse) *at the end* is what a killed writer left:
  it is ignored with a log line and cut off before the next append. A bad line *before* good ones
  is damage: the journal is moved aside with a warning naming both paths (never overwritten),
  and the good lines are kept.
- A journal that is a symbolic link is never read or written through (opened with ``O_NOFOLLOW``):
  the link itself is moved aside with a warning, like a damaged journal.
- Bounded, since anyone may have edited the folder: a journal over ``max_bytes``, a line over
  ``max_line_bytes`` or data nested deeper than `MAX_DEPTH` is damage (moved aside, named in the
  warning with the cap), so a tampered file costs neither a RecursionError nor gigabytes.

Pure op helpers (`apply`, `valid_op`) plus one class for the file (`Journal`); the store decides
when to append and when to fold the journal into the snapshot.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger("kki_widgets.store.notebook_store")

__all__ = ["MAX_DEPTH", "Journal", "JournalLinkError", "apply", "decode", "line", "too_deep", "valid_op"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class JournalLinkError(OSError):
    """The journal's name is a symbolic link: it is neither read nor written through."""


# ------------------------------------------------------------------------------------ the ops
def _is_str_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)


_CHECKS = {
    "answers": lambda op: _is_str_dict(op.get("answers"))
    and all(isinstance(v, str) for v in op["answers"].values()),
    "turns": lambda op: isinstance(op.get("conversation"), str)
    and _is_str_dict(op.get("turns"))
    and all(isinstance(v, dict) for v in op["turns"].values())
    and _is_str_dict(op.get("set"))
    and isinstance(op.get("created_at"), str),
    "delete": lambda op: isinstance(op.get("conversation"), str),
    "cache": lambda op: isinstance(op.get("key"), str) and isinstance(op.get("entry"), dict),
    "pending": lambda op: isinstance(op.get("task"), dict) and isinstance(op["task"].get("task_id"), str),
    "unpending": lambda op: isinstance(op.get("task_id"), str),
    "usage": lambda op: isinstance(op.get("counter"), str) and type(op.get("value")) is int,
    "claim": lambda op: isinstance(op.get("key"), str) and isinstance(op.get("claim"), dict),
    "unclaim": lambda op: isinstance(op.get("key"), str),
}


def valid_op(op: Any) -> bool:
    """Whether a replayed op has the shape `apply` needs (the file may have been edited)."""
    return isinstance(op, dict) and op.get("op") in _CHECKS and bool(_CHECKS[op["op"]](op))


def _valid_record(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and type(record.get("seq")) is int
        and isinstance(record.get("ops"), list)
        and all(valid_op(op) for op in record["ops"])
    )


def apply(store: dict, ops: list[dict]) -> None:
    """Apply ops to a store in its file format. Applying them twice gives the same store."""
    for op in ops:
        kind = op["op"]
        if kind == "answers":
            store["answers"].update(op["answers"])
        elif kind == "turns":
            conversation = store["conversations"].setdefault(
                op["conversation"], {"turns": {}, "head": None, "created_at": op["created_at"]}
            )
            if not isinstance(conversation.get("turns"), dict):
                conversation["turns"] = {}
            conversation["turns"].update(op["turns"])
            conversation.update(op["set"])
        elif kind == "delete":
            store["conversations"].pop(op["conversation"], None)
        elif kind == "cache":
            store["cache"][op["key"]] = op["entry"]
        elif kind in ("pending", "unpending"):
            task_id = op["task"]["task_id"] if kind == "pending" else op["task_id"]
            store["pending"] = [t for t in store["pending"] if t.get("task_id") != task_id]
            if kind == "pending":
                store["pending"].append(op["task"])
        elif kind == "usage":
            store["usage"][op["counter"]] = op["value"]
        elif kind == "claim":
            _claims(store)[op["key"]] = op["claim"]
        elif kind == "unclaim":
            _claims(store).pop(op["key"], None)


def _claims(store: dict) -> dict:
    """The store's claims (a snapshot written before claims existed, or edited, has none)."""
    if not isinstance(store.get("claims"), dict):
        store["claims"] = {}
    return store["claims"]


def line(seq: int, encoded_ops: list[str]) -> str:
    """One journal line from ops already encoded as JSON (encoded when made: later changes to
    the objects cannot reach the line)."""
    return f'{{"seq":{seq},"ops":[{",".join(encoded_ops)}]}}\n'


# ------------------------------------------------------------------------------------ the file
class Journal:
    """``<store>.journal``: read what was appended since the last read, append, remove.

    Every method is called with the store's cross-process lock held.
    """

    #: A journal larger than this is not read (a change is one turn; images are files); the
    #: store sets it to its snapshot cap.
    max_bytes = 32 * 1024 * 1024
    #: One line (one state change) larger than this is damage, not a change.
    max_line_bytes = 8 * 1024 * 1024

    def __init__(self, path: Path):
        self.path = path
        self.forget()

    def forget(self) -> None:
        """Read from the start next time (the snapshot changed, or a write failed)."""
        self.identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file read
        self.offset = 0  # bytes read and applied: where the next line starts
        self.size = 0  # bytes in the file, a cut-off tail included
        self.moved_aside = False  # the last read found damage and moved the file aside

    def exists(self) -> bool:
        return os.path.lexists(self.path)

    def read(self) -> list[dict] | None:
        """The records appended since the last read, or None when the file was replaced,
        truncated or removed since (another kernel folded it into the snapshot: read again
        from the snapshot). A damaged journal is moved aside here (see the module docstring):
        then ``moved_aside`` is true and the caller must write its state to the snapshot."""
        self.moved_aside = False
        try:
            fd = os.open(self.path, os.O_RDONLY | _NOFOLLOW)
        except FileNotFoundError:
            return None if self.identity is not None else []
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            # A planted link: moved aside itself (its target is never read or written).
            self._move_aside("it is a symbolic link (it may have come with a copied folder)")
            return []
        try:
            stat = os.fstat(fd)
            identity = (stat.st_dev, stat.st_ino)
            if self.identity not in (None, identity) or stat.st_size < self.offset:
                return None
            if stat.st_size - self.offset > self.max_bytes:
                too_big = f"{stat.st_size:,} bytes, over the cap of {self.max_bytes:,} bytes"
            else:
                too_big = None
                self.identity, self.size = identity, stat.st_size
                os.lseek(fd, self.offset, os.SEEK_SET)
                chunk = _read_all(fd)
        finally:
            os.close(fd)
        if too_big:
            self._move_aside(too_big)
            return []
        return self._parse(chunk)

    def _parse(self, chunk: bytes) -> list[dict]:
        # Every piece but the last ended with a newline; the last is what follows the final one.
        pieces = chunk.split(b"\n")
        tail = max((i for i, piece in enumerate(pieces) if piece.strip()), default=-1)
        records: list[dict] = []
        position, good_end, damaged_at, torn = self.offset, self.offset, None, False
        for number, piece in enumerate(pieces):
            ended = number < len(pieces) - 1
            if len(piece) > self.max_line_bytes:
                self._move_aside(
                    f"the line at byte {position:,} is {len(piece):,} bytes, over the cap of "
                    f"{self.max_line_bytes:,} bytes for one change"
                )
                return records
            record = _decode(piece) if ended and piece.strip() else None
            if record is not None:
                records.append(record)
            elif number == tail:
                torn = True
                log.info(
                    "kki_widgets: the last line of %s was cut off (a kernel was stopped while "
                    "writing it); it is ignored, every change before it is kept.", self.path,
                )
            elif piece.strip():
                damaged_at = position if damaged_at is None else damaged_at
            position += len(piece) + 1
            if ended and damaged_at is None and not torn:
                good_end = position
        if damaged_at is not None:
            self._move_aside(
                f"damaged at byte {damaged_at:,}: a line that is not a store change (or nested "
                f"deeper than {MAX_DEPTH} levels), followed by good ones"
            )
        else:
            self.offset = good_end
        return records

    def append(self, text: str) -> None:
        """Append one line (a cut-off tail left by a killed writer is cut first), then fsync."""
        data = text.encode("utf-8")
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | _NOFOLLOW
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise self._link_error(exc) from None
        try:
            stat = os.fstat(fd)
            created = stat.st_size == 0 and self.identity is None
            if self.identity not in (None, (stat.st_dev, stat.st_ino)) or stat.st_size < self.offset:
                raise RuntimeError(f"{self.path} changed while the store was locked")
            if stat.st_size > self.offset:  # what a killed writer left after the last good line
                os.ftruncate(fd, self.offset)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            self.identity = (stat.st_dev, stat.st_ino)
            self.offset += len(data)
            self.size = self.offset
        finally:
            os.close(fd)
        if created:  # the new name is durable only once its directory is on disk
            _fsync_directory(self.path.parent)

    def remove(self) -> None:
        """Delete the journal (its lines are in the snapshot now)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.forget()

    def _move_aside(self, reason: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        aside = self.path.with_name(f"{self.path.stem}.corrupt-{stamp}.journal")
        os.replace(self.path, aside)  # a link is renamed itself, never its target
        self.forget()
        self.moved_aside = True
        warnings.warn(
            f"kki_widgets: the journal {self.path} could not be used ({reason}); it was moved "
            f"to {aside}, its readable changes were kept in the store, and nothing was deleted.",
            RuntimeWarning,
            stacklevel=6,
        )

    def _link_error(self, exc: OSError) -> OSError:
        if exc.errno != errno.ELOOP:
            return exc
        return JournalLinkError(
            errno.ELOOP,
            f"{self.path} is a symbolic link (it may have come with a copied folder); the store "
            "will not read or write through it. Delete the link and run again.",
        )


#: Deeper than this, a value read back is damage: nothing the store writes nests past ~10
#: levels, and deep data would break every later copy and walk (RecursionError).
MAX_DEPTH = 64


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON data nests deeper than `limit` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values() if isinstance(child, (dict, list)))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))
    return False


def decode(data: bytes) -> Any:
    """JSON from the folder, or ValueError: malformed, too deep, or too big for memory."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (RecursionError, MemoryError) as exc:
        raise ValueError(f"nested too deep or too large to read ({type(exc).__name__})") from None
    if too_deep(value):
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    return value


def _decode(piece: bytes) -> dict | None:
    try:
        record = decode(piece)
    except (ValueError, UnicodeDecodeError):
        return None
    return record if _valid_record(record) else None


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # not supported on every platform/filesystem
            os.fsync(fd)
    finally:
        os.close(fd)
