"""What a conversation's turns cost: the prices (the relay's, else configured), the budget each
request is reserved against before sending and settled with after, and the key's balance at the
first send. `Conversation` (kki_widgets.conversation.session) holds one; the arithmetic is `pricing`'s and
the enforced cap `budget`'s.
"""

from __future__ import annotations

from ..client import discovery
from ..client.loop import block_on, on_background_loop
from ..protocol import pricing
from .budget import as_budget


class Spending:
    def __init__(self, client, prices, budget):
        # Prices (relay's, then `prices`/KKI_PRICES) and the enforced budget (budget.py).
        self.prices = pricing.PriceBook(client, prices)
        self.budget = as_budget(budget, "Conversation(budget=...)")
        self._reservations: dict[int, object] = {}  # turn index -> its request's reservation
        self.balance_before: float | None = None
        self._balance_asked = False
        # What the relay publishes (model list, prices), read before the first send
        # (discovery.py); the embedded simulator is not asked.
        self.relay_facts: discovery.RelayFacts | None = None
        self._client = client

    @property
    def discovered(self) -> bool:
        return self.relay_facts is not None or self._client.simulated

    async def adiscover(self, refresh: bool = False) -> discovery.RelayFacts | None:
        """Read what the relay publishes (bounded, quiet; cached per base URL)."""
        if self._client.simulated:
            return None
        if self.relay_facts is None or refresh:
            self.relay_facts = await discovery.discover(self._client, refresh=refresh)
        return self.relay_facts

    def ensure_prices(self) -> None:
        """Ask the relay for its prices (once per session) before estimating; from sync code."""
        if self.prices.discovered and self._balance_asked and self.discovered:
            return
        if on_background_loop():
            return  # cannot block the loop that would do it: asend() asked already
        block_on(self.aensure_prices())

    async def aensure_prices(self) -> None:
        await self.adiscover()
        await self.prices.aload()
        if not self._balance_asked:
            self._balance_asked = True
            self.balance_before = await self.prices.abalance()

    def estimate(self, count: int, model: str, duration) -> pricing.Estimate:
        return pricing.Estimate(count, self.prices.estimate(model, duration), model)

    def reserve(self, fresh: list, prompt: str, model: str):
        """Reserve the fresh takes of one request together (all or none); None without a budget."""
        if self.budget is None or not fresh:
            return None
        return self.budget.reserve([turn.estimate for turn in fresh], prompt[:40], model)

    def hold(self, index: int, reservation) -> None:
        """Turn `index` is paid from `reservation` (one covers all takes of a request)."""
        self._reservations[index] = reservation

    def settle(self, turn, status: str, model: str) -> None:
        """Record what the turn cost and release its budget reservation at that amount."""
        accepted = pricing.accepted(status, turn.generation, answer_began=getattr(turn, "answer_began", False))
        turn.cost, turn.cost_note = pricing.charge_for(
            status, accepted, turn.estimate, self.prices.price(model), pricing.unknown_note(status, turn.generation)
        )
        reservation = self._reservations.pop(turn.index, None)
        if self.budget is not None and reservation is not None:
            # One reservation covers all takes of a request: settle each take's share. A charge
            # that may have been made (unknown) keeps its estimate: the budget errs on the safe side.
            spent = turn.cost if turn.cost is not None else turn.estimate
            self.budget.settle_part(reservation, turn.estimate or 0.0, spent or 0.0)

    def usage(self, turns: list) -> dict:
        """Spend of `turns` by model, what the budget has left, and the key's balance before
        (first send of this session) and now, when the relay reports it."""
        self.ensure_prices()
        by_model = pricing.summarize(turns)
        after = None
        if self.balance_before is not None and not on_background_loop():
            after = block_on(self.prices.abalance())
        return {
            "by_model": by_model,
            "spent": round(sum(row["spent"] for row in by_model.values()), 6),
            "unknown": sum(row["unknown"] for row in by_model.values()),
            "budget": None if self.budget is None else {
                "limit": self.budget.limit, "spent": self.budget.spent,
                "remaining": self.budget.remaining,
            },
            "balance_before": self.balance_before,
            "balance_after": after,
        }
