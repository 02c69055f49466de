"""Claims: a request in flight, written to the store before its first byte is sent.

A paid generation must never be paid twice, and the moment users rerun a cell is the moment a
kernel died, was interrupted or restarted mid-generation. So a request is *claimed* in the
notebook's store (keyed like the request cache) before it is sent: who sent it (host, pid,
process start) and when; the task ID, raw-data link and share ID are added as soon as they are
seen; the claim is settled when the turn ends. A rerun of the same request reads the claim and
decides here what to do instead of sending (`verdict`):

- ``wait``: a live kernel on this host (or this process) is following it: wait for its result
  through the store, no second follower;
- ``follow``: it has a task ID and its kernel is gone: follow the task (free);
- ``ask``: sent, but its kernel died before the relay named a task: it may have been charged,
  so it is never sent again silently (``--force`` or Retry sends it);
- ``failed``: the relay said the generation failed; ``expired``: older than the window.

Pure decisions plus who this process is (``/proc`` on Linux tells a reused pid from its first
owner). The store keeps the records (`NotebookStore.claim` and friends); `Conversation` acts.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from typing import Any

__all__ = ["PAUSE_ENV", "WINDOW_SECONDS", "held", "new_claim", "owner", "pause_point", "verdict"]

#: A claim older than this (seconds since it was sent) is settled as failed: relays keep a
#: task's result for hours, not days, and a day-old "sent" would otherwise block a cell forever.
WINDOW_SECONDS = 24 * 3600.0
#: Tests name a point where the process stops (then kill it): claimed, sent, task_id, progress,
#: video. Deterministic kill points instead of sleeps.
PAUSE_ENV = "KKI_TEST_PAUSE_AT"
RELEASE_ENV = "KKI_TEST_RELEASE"

_held: dict[str, int] = {}  # claim key -> how many followers of it this process runs
_held_lock = threading.Lock()
_paused: set[str] = set()


def _process_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start in clock ticks since boot) of process `pid` (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode("ascii", "replace")
        fields = stat.rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _start_ticks(pid: int) -> int | None:
    stat = _process_stat(pid)
    return None if stat is None else stat[1]


def owner() -> dict[str, Any]:
    """Who this process is, as a claim records it."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _start_ticks(os.getpid())}


def new_claim(conversation: str, prompt: str) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex[:16], "owner": owner(), "sent_at": time.time(), "state": "sent",
            "conversation": conversation, "prompt": prompt[:200]}  # fmt: skip


def hold(key: str) -> None:
    with _held_lock:
        _held[key] = _held.get(key, 0) + 1


def release(key: str) -> None:
    with _held_lock:
        count = _held.pop(key, 0) - 1
        if count > 0:
            _held[key] = count


def held(key: str) -> bool:
    with _held_lock:
        return key in _held


def _alive(who: Any, key: str) -> bool | None:
    """Whether the claim's kernel still runs: True/False on this host, None on another one."""
    if not isinstance(who, dict) or who.get("host") != socket.gethostname():
        return None
    pid = who.get("pid")
    if type(pid) is not int or pid <= 0:
        return False
    if pid == os.getpid():
        return held(key)  # this process: live only while it still follows the request
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    stat = _process_stat(pid)
    if stat is None:
        return True  # no /proc: the signal said it exists
    if stat[0] in ("Z", "X"):
        return False  # killed, not yet reaped by its parent: gone all the same
    started = who.get("started")
    return started is None or stat[1] == started  # a reused pid is another process


def verdict(claim: dict, key: str, window: float = WINDOW_SECONDS, now: float | None = None) -> str:
    """What a rerun does with an existing claim: wait, follow, ask, failed or expired."""
    if claim.get("state") == "failed":
        return "failed"
    sent_at = claim.get("sent_at")
    age = (now or time.time()) - (sent_at if isinstance(sent_at, (int, float)) else 0)
    if age > window:
        return "expired"
    alive = _alive(claim.get("owner"), key)
    if alive:
        return "wait"
    return "follow" if isinstance(claim.get("task_id"), str) and claim["task_id"] else "ask"


def clock(claim: dict) -> str:
    """When the claim was sent, as the card says it: HH:MM local time (with the date if not today)."""
    sent_at = claim.get("sent_at")
    if not isinstance(sent_at, (int, float)):
        return "an unknown time"
    moment = time.localtime(sent_at)
    same_day = time.localtime()[:3] == moment[:3]
    return time.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M", moment)


def message(kind: str, claim: dict, window: float = WINDOW_SECONDS) -> str:
    """The card's words for a claim a rerun found (see `verdict`)."""
    at = clock(claim)
    again = "To send it again (and maybe pay twice): rerun with %%sora --force, or press Retry."
    if kind == "picked_up":
        return f"picked up the generation started at {at} (no new charge)"
    if kind == "wait":
        pid = (claim.get("owner") or {}).get("pid")
        return f"waiting for the generation another kernel (pid {pid}) started at {at} (no new charge)"
    if kind == "ask":
        return (f"Not sent again: an earlier kernel sent this request at {at} and stopped before "
                f"the relay named a task, so it may have been charged. {again}")  # fmt: skip
    if kind == "expired":
        return (f"Not sent again: this request was sent at {at}, more than {window / 3600:g} h "
                f"ago, and its result never arrived. {again}")  # fmt: skip
    reason = claim.get("error") or "no reason given"
    return f"Not sent again: the relay said the generation sent at {at} failed ({reason}). {again}"


def pause_point(name: str) -> None:
    """For tests only: with ``KKI_TEST_PAUSE_AT=name`` the process says so on stdout and stops
    here (once) until the file ``KKI_TEST_RELEASE`` names exists, so a test kills or interrupts
    it at a known step."""
    if os.environ.get(PAUSE_ENV) != name or name in _paused:
        return
    _paused.add(name)
    print(f"kki-paused-at {name}", flush=True)
    release_file = os.environ.get(RELEASE_ENV) or None
    while not (release_file and os.path.exists(release_file)):
        time.sleep(0.01)
