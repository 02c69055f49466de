"""An enforced spending cap: reserve before sending, settle after.

A request is checked *before* anything is sent: its estimate is reserved against the budget in
one locked step, so concurrent sends (a batch, several widgets sharing a `Budget`) can never
overshoot together: the one that would pass the cap is refused, not sent. When the turn ends the
reservation is settled at what it actually cost (nothing for a refusal before the relay accepted
it; the estimate for a completed generation, or for a failed one on relays that charge failures).

With a budget set and the price unknown the request is refused too: a cap that cannot count is
no cap. Replays from the store never touch the budget (they are free).

The ledger counts what this kernel sends. `%sora usage` / `Conversation.usage()` report what the
notebook spent across kernels (the costs are kept with the turns in the store).
"""

from __future__ import annotations

import itertools
import math
import threading
from dataclasses import dataclass

from ..protocol.errors import BudgetExceeded, ConfigurationError
from ..protocol.pricing import HOW_TO_CONFIGURE, money

_ids = itertools.count(1)


@dataclass(frozen=True)
class Reservation:
    id: int
    amount: float
    label: str


class Budget:
    """A cap in US dollars shared by whatever sends through it (thread-safe)."""

    def __init__(self, limit: float, *, how_to_raise: str = "Budget.limit = ..."):
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit):
            raise ConfigurationError(f"a budget is a number of dollars, e.g. 5.00, got {limit!r}")
        if limit < 0:
            raise ConfigurationError(f"a budget cannot be negative, got {limit!r}")
        self.limit = float(limit)
        self.how_to_raise = how_to_raise
        self._lock = threading.Lock()
        self._spent = 0.0
        self._reserved: dict[int, float] = {}  # reservation id → dollars still held
        self._held = 0.0  # their sum, kept up to date: a check is O(1) however many run

    def __repr__(self) -> str:
        return (
            f"<Budget {money(self.limit)}: spent {money(self.spent)}, "
            f"reserved {money(self.reserved)}, left {money(self.remaining)}>"
        )

    @property
    def spent(self) -> float:
        return self._spent

    @property
    def reserved(self) -> float:
        return self._held

    @property
    def remaining(self) -> float:
        with self._lock:
            return self.limit - self._spent - self._held

    def reserve(self, estimates: list[float | None], label: str, model: str) -> Reservation:
        """Reserve the sum of `estimates` (one per generation) or raise `BudgetExceeded`."""
        if any(estimate is None for estimate in estimates):
            raise BudgetExceeded(
                f"the price of {model!r} is unknown, so the budget of {money(self.limit)} cannot "
                f"be enforced and nothing was sent: {HOW_TO_CONFIGURE}; or remove the budget"
            )
        amount = float(sum(estimates))
        with self._lock:
            held = self._held
            # A hair of tolerance: 3 × $0.10 must fit a $0.30 budget despite float sums.
            if self._spent + held + amount > self.limit + 1e-9:
                raise BudgetExceeded(self._refusal(amount, held, len(estimates)))
            reservation = Reservation(next(_ids), amount, label)
            self._reserved[reservation.id] = amount
            self._held += amount
            return reservation

    def settle(self, reservation: Reservation | None, charged: float) -> None:
        """The generation ended and cost `charged` (0 when the relay never accepted it)."""
        if reservation is not None:
            self.settle_part(reservation, reservation.amount, charged)

    def settle_part(self, reservation: Reservation | None, part: float, charged: float) -> None:
        """One of the generations a reservation covers ended: release `part`, count `charged`."""
        if reservation is None:
            return
        with self._lock:
            held = self._reserved.get(reservation.id)
            if held is None:
                return
            released = min(held, part)
            if held - released <= 1e-9:
                released = held
                del self._reserved[reservation.id]
            else:
                self._reserved[reservation.id] = held - released
            # Recomputed when nothing is held, so float drift never accumulates.
            self._held = self._held - released if self._reserved else 0.0
            self._spent += max(0.0, charged)

    def _refusal(self, amount: float, held: float, count: int) -> str:
        what = f"{count} generations" if count > 1 else "this generation"
        running = f" (+ {money(held)} reserved by requests still running)" if held else ""
        return (
            f"Budget exceeded, nothing was sent: {what} would cost about {money(amount)}, "
            f"this session has spent {money(self._spent)}{running} of its {money(self.limit)} "
            f"budget. Raise it ({self.how_to_raise} with a larger amount) or lower the request."
        )


def as_budget(value, how_to_raise: str) -> Budget | None:
    """`None`, a number of dollars or a shared `Budget`."""
    if value is None or isinstance(value, Budget):
        return value
    return Budget(value, how_to_raise=how_to_raise)
