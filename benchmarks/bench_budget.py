"""Prices and the budget: what they add to a send.

- the ledger: reserve + settle per request, alone and with 8 threads racing on one `Budget`
  (and how many of the racing reservations were accepted against the cap: exactly the cap);
- price discovery: the one-off cost of asking a relay for its price list and the key's balance
  (3 GETs to the simulator), once when the relay publishes them and once when it does not;
- an estimate once the prices are known (per turn).
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time

from _common import emit, table


def ledger(ops: int) -> None:
    from kki_widgets.conversation.budget import Budget

    budget = Budget(float(ops))
    started = time.perf_counter()
    for _ in range(ops):
        budget.settle(budget.reserve([0.5], "bench", "sora-2"), 0.5)
    elapsed = time.perf_counter() - started
    emit("budget.reserve_settle", elapsed / ops * 1e6, "µs/request")


def race(threads: int, per_thread: int) -> None:
    from kki_widgets.conversation.budget import Budget
    from kki_widgets.protocol.errors import BudgetExceeded

    cap = threads * per_thread // 2  # half of the attempts fit
    budget = Budget(cap * 0.01)
    accepted = [0] * threads
    barrier = threading.Barrier(threads)

    def work(slot: int) -> None:
        barrier.wait()
        for _ in range(per_thread):
            try:
                budget.reserve([0.01], "race", "sora-2")
                accepted[slot] += 1
            except BudgetExceeded:
                pass

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    emit("budget.contended_reserve", elapsed / (threads * per_thread) * 1e6, "µs/request",
         threads=threads)  # fmt: skip
    emit("budget.accepted_of_cap", sum(accepted), f"of {cap} fitting", target=f"= {cap}",
         met=sum(accepted) == cap)  # fmt: skip


def discovery(faults: list[str], label: str) -> None:
    from kki_widgets.client.relay import AsyncRelayClient
    from kki_widgets.protocol.pricing import PriceBook, forget_discoveries
    from kki_widgets.simulator import Simulator

    with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0, faults=faults) as sim:
        client = AsyncRelayClient(base_url=sim.base_url, api_key="bench-key-0123456789")

        async def once() -> tuple[float, float]:
            forget_discoveries()
            book = PriceBook(client)
            await book.aload()  # warm the connection pool (TCP connect is not the point)
            forget_discoveries()
            started = time.perf_counter()
            await book.aload()
            await book.abalance()
            first = time.perf_counter() - started
            started = time.perf_counter()
            for _ in range(10_000):
                book.estimate("sora-2", None)
            return first, (time.perf_counter() - started) / 10_000

        first, per_estimate = asyncio.run(once())
    emit(f"pricing.discovery_{label}", first * 1000, "ms once per relay per session")
    if label == "served":
        emit("pricing.estimate", per_estimate * 1e6, "µs/turn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    ledger(2_000 if args.quick else 200_000)
    race(8, 200 if args.quick else 20_000)
    discovery([], "served")
    discovery(["no_pricing"], "absent")
    table("prices and budget")


if __name__ == "__main__":
    main()
