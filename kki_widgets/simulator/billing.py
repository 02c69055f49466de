"""The simulator's price list and billing, in the shapes of the open-source gateways.

- ``GET /api/pricing`` — new-api's public price list: ``{"success": true, "data": [{"model_name",
  "quota_type": 1, "model_price", "model_ratio": 0, "billing_mode", "enable_groups"}],
  "group_ratio": {"default": 1}}`` (quota_type 1 = dollars per call; QuantumNous/new-api-docs,
  ``fei-public-info.md``);
- ``GET /v1/dashboard/billing/subscription`` → ``{"object": "billing_subscription",
  "hard_limit_usd", "soft_limit_usd", "system_hard_limit_usd", "has_payment_method",
  "access_until"}``; ``GET /v1/dashboard/billing/usage`` → ``{"object": "list", "total_usage"}``
  in cents (``fei-account-billing-panel.md``). Both need the key, like the chat endpoint.

Every accepted generation is charged at its model's price, failed ones included (some relays
charge failures; the client must count them). The fault ``no_pricing`` answers all three with
404, like a relay that has none of them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

#: Dollars per generation, or {"per_second": dollars}; what the simulator charges by default.
DEFAULT_PRICES: dict[str, object] = {
    "sora-2": 0.10,
    "sora-2-pro": 0.50,
    "veo3": {"per_second": 0.05},
    "veo3-fast": {"per_second": 0.02},
}
DEFAULT_BALANCE = 100.0


class Billing:
    """Prices served, and what the key has spent (thread-safe: the server runs on its own loop)."""

    def __init__(self, prices: Mapping[str, object] | None = None, balance: float | None = DEFAULT_BALANCE):
        self.prices = dict(DEFAULT_PRICES if prices is None else prices)
        for model, price in self.prices.items():
            if not _amount(price)[0] >= 0:
                raise ValueError(f"price of {model!r} must be dollars or {{'per_second': dollars}}, got {price!r}")
        self.balance = balance
        self.spent = 0.0
        self._lock = threading.Lock()

    def charge(self, model: str, duration: int) -> float:
        """Charge one accepted generation; returns what it cost (0 for an unpriced model)."""
        price = self.prices.get(model)
        if price is None:
            return 0.0
        amount, per_second = _amount(price)
        cost = amount * duration if per_second else amount
        with self._lock:
            self.spent += cost
        return cost

    def pricing_answer(self) -> dict:
        rows = []
        for model, price in self.prices.items():
            amount, per_second = _amount(price)
            rows.append({"model_name": model, "quota_type": 1, "model_price": amount, "model_ratio": 0,
                         "completion_ratio": 1, "billing_mode": "per_second" if per_second else "per_call",
                         "enable_groups": ["default"]})  # fmt: skip
        return {"success": True, "data": rows, "group_ratio": {"default": 1}, "usable_group": {"default": "default"}}

    def subscription_answer(self) -> dict:
        limit = self.balance if self.balance is not None else 0.0
        return {"object": "billing_subscription", "has_payment_method": True, "soft_limit_usd": limit,
                "hard_limit_usd": limit, "system_hard_limit_usd": limit, "access_until": 0}  # fmt: skip

    def usage_answer(self) -> dict:
        with self._lock:
            return {"object": "list", "total_usage": round(self.spent * 100, 6)}


def _amount(price: object) -> tuple[float, bool]:
    if isinstance(price, Mapping) and set(price) == {"per_second"}:
        return float(price["per_second"]), True  # type: ignore[arg-type]
    if isinstance(price, (int, float)) and not isinstance(price, bool):
        return float(price), False
    return -1.0, False
