"""A conversation's side of claims (`kki_widgets.conversation.claims`): claim a request in the store before
sending it, keep the claim up to date, settle it, and attach a rerun to an existing claim
instead of sending the same request again.

`Conversation` (kki_widgets.conversation.session) inherits these methods; they use its lock, turns, store,
client and `_drive`. Kept apart so the orchestrator stays about orchestration.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from ..protocol.transcript import Generation
from . import claims

#: How often a rerun waiting for another kernel's claim looks at the store again.
WAIT_SECONDS = 0.5


class Claiming:
    """Mixed into `Conversation`."""

    claim_window: float = claims.WINDOW_SECONDS

    def _begin_one(self, turn, request, force: bool, take: int | None) -> tuple[Any, Any, bool]:
        """One take's start: (turn, run, fresh). `run()` ends the turn (None: over already)."""
        running = None if force or turn.cache_key is None else self._running_turn(turn.cache_key)
        if running is not None:  # this kernel follows it already (an interrupted cell's turn)
            return running, functools.partial(self._until_done, running), False
        replay = None if force else self._replay(turn, move_head=take is None)
        if replay is not None:
            if take and replay.take is None:
                replay.take, replay.takes = take, turn.takes  # an earlier plain send is take 1
            return replay, None, False
        key = turn.cache_key
        if self.store is None or key is None:
            return turn, self._sender(turn, request), True
        restored = None if force else self._unfinished(key)
        record = claims.new_claim(self.name, turn.prompt)
        if restored is not None:  # a store from before claims: its pending task is the claim
            record.update(task_id=restored.task_id, raw_url=restored.generation.raw_url)
        claims.hold(key)
        try:
            outcome, found = self.store.claim(key, record, force=force)
        except BaseException:
            claims.release(key)
            raise
        if outcome == "claimed":
            target = restored or turn
            self._claim_ids[id(target)] = record["id"]
            if restored is not None:
                return restored, functools.partial(self._follow_claim, restored, record), False
            return turn, self._sender(turn, request), True
        claims.release(key)
        if outcome == "cached":
            return self._replay_entry(turn, found, move_head=take is None), None, False
        return self._attach(turn, found)

    def _sender(self, turn, request):
        async def send():
            claims.pause_point("claimed")  # tests: claimed and fsynced, nothing sent yet
            return await self._drive(turn, self.client.stream_request(request))

        return send

    def _attach(self, turn, claim: dict) -> tuple[Any, Any, bool]:
        """A rerun of a claimed request: the turn that shows it (the stored one, if this
        conversation has it) and the coroutine that picks it up."""
        turn = self._unfinished(turn.cache_key) or self._register(turn)
        return turn, functools.partial(self._pick_up, turn, claim), False

    def _register(self, turn):
        with self._lock:
            turn.index = len(self._turns)
            self._turns.append(turn)
        self._notify(turn)
        return turn

    async def _pick_up(self, turn, claim: dict | None):
        """Wait for, follow, or refuse to resend a claimed request (see `claims.verdict`)."""
        key, said = turn.cache_key, None
        while True:
            if claim is None:  # settled elsewhere without a video: it was never accepted
                return self._finish_unsent(turn, "The kernel that sent this request ended "
                                           "without a video and was not charged: rerun the cell to send it.")  # fmt: skip
            kind = claims.verdict(claim, key, self.claim_window)
            if kind == "follow" and self._take_over(turn, claim):
                return await self._follow_claim(turn, claim)
            if kind in ("ask", "failed", "expired"):
                return self._finish_unsent(turn, claims.message(kind, claim, self.claim_window))
            if kind == "wait" and said is None:
                said = turn.note = claims.message("wait", claim)
                self._notify(turn)
            await asyncio.sleep(WAIT_SECONDS)
            entry, claim = self.store.claim_state(key)
            if entry is not None:
                return self._replay_entry(turn, entry, move_head=turn.take is None, note=claim or {})

    def _take_over(self, turn, claim: dict) -> bool:
        """Become the follower of a claim whose kernel is gone; False when another kernel was
        quicker (then it is waited for)."""
        me = claims.owner()
        claims.hold(turn.cache_key)
        after = self.store.update_claim(turn.cache_key, claim.get("id"), expect_owner=claim.get("owner"), owner=me)
        if after is not None and after.get("owner") == me:
            self._claim_ids[id(turn)] = claim.get("id")
            return True
        claims.release(turn.cache_key)
        return False

    async def _follow_claim(self, turn, claim: dict):
        """Follow the claimed task to its video: the original task ID, no new charge."""
        if turn.task_id != claim.get("task_id"):
            turn.generation = Generation(task_id=claim["task_id"], raw_url=claim.get("raw_url"),
                                         sid=claim.get("sid"), status="generating")  # fmt: skip
        turn.status, turn.error = "generating", None
        turn.note = claims.message("picked_up", claim)
        self._notify(turn)
        updates = self.client.follow(turn.task_id, turn.generation.raw_url)
        return await self._drive(turn, updates, newly_accepted=False)

    def _finish_unsent(self, turn, message: str):
        turn.end("failed", message)
        turn.cost, turn.cost_note = 0.0, "not sent again"
        self._persist()
        self._notify(turn)
        return turn

    def _replay_entry(self, turn, entry: dict, move_head: bool, note: dict | None = None):
        """Become the free replay of a finished request's cache entry (found under the lock)."""
        turn.replay(entry, self.media_dir)
        if note is not None:
            turn.note = claims.message("picked_up", note) if note else "picked up (no new charge)"
        with self._lock:
            if not any(t is turn for t in self._turns):
                turn.index = len(self._turns)
                self._turns.append(turn)
            if move_head:
                self._head = turn.index
            self.store.bump("cache_hits")
            self._persist()
        self._notify(turn)
        return turn

    def _running_turn(self, key: str):
        with self._lock:
            return next((t for t in self._turns if t.cache_key == key and t.index in self._running), None)

    def _unfinished(self, key: str):
        """A stored turn of this request that the relay accepted and never finished."""
        with self._lock:
            return next(
                (t for t in reversed(self._turns) if t.cache_key == key and t.task_id
                 and t.status not in ("completed", "failed") and t.index not in self._running),
                None,
            )  # fmt: skip

    async def _until_done(self, turn):
        while turn.index in self._running or not turn.done:
            await asyncio.sleep(WAIT_SECONDS / 5)
        return turn

    def _record_claim(self, turn) -> None:
        """Add what the relay said that a rerun needs (task ID, raw-data link, share ID)."""
        claim_id = self._claim_ids.get(id(turn))
        seen = (turn.task_id, turn.generation.raw_url, turn.generation.sid)
        if claim_id is None or not turn.task_id or self._claim_seen.get(id(turn)) == seen:
            return
        self._claim_seen[id(turn)] = seen
        self.store.update_claim(turn.cache_key, claim_id, task_id=seen[0], raw_url=seen[1], sid=seen[2])

    def _settle_claim(self, turn, status: str) -> None:
        """The turn ended here: a video or a refusal settles the claim; a relay's failure of an
        accepted task is kept as failed (not sent again unasked); a cancelled wait lets a rerun
        pick the task up, and so does a task the relay says is still being made."""
        claim_id = self._claim_ids.pop(id(turn), None)
        self._claim_seen.pop(id(turn), None)
        claims.release(turn.cache_key)
        if claim_id is None or self.store is None:
            return
        if status in ("cancelled", "still_running"):
            self.store.update_claim(turn.cache_key, claim_id, owner=None)
        elif status == "failed" and turn.task_id:
            self.store.settle_claim(turn.cache_key, claim_id, turn.error or "failed")
        else:
            self.store.settle_claim(turn.cache_key, claim_id)
