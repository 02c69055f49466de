"""The budget: refused before any byte is sent, never overshot by concurrent sends."""

from __future__ import annotations

import asyncio
import threading

import pytest
from kki_testing import TEST_KEY

from kki_widgets import Conversation
from kki_widgets.conversation.budget import Budget
from kki_widgets.protocol.errors import BudgetExceeded, ConfigurationError
from kki_widgets.protocol.pricing import forget_discoveries
from kki_widgets.simulator import Simulator
from kki_widgets.store.notebook_store import NotebookStore


@pytest.fixture
def sim():
    forget_discoveries()
    # sora-2 costs $0.10 a generation at this relay (its /api/pricing says so).
    with Simulator(queue_seconds=0, generate_seconds=0.2, step_seconds=0.05, seed=11) as simulator:
        yield simulator
    forget_discoveries()


def conversation(sim, tmp_path, name="default", **options) -> Conversation:
    store = NotebookStore(tmp_path / ".kki" / "notebook.json", secret=TEST_KEY)
    return Conversation(base_url=sim.base_url, api_key=TEST_KEY, store=store, name=name, **options)


def test_a_budget_of_two_generations_refuses_the_third_before_any_byte(sim, tmp_path):
    conv = conversation(sim, tmp_path, budget=0.20)
    conv.send("a lighthouse")
    conv.send("a storm", parent=None)
    assert len(sim.requests) == 2
    with pytest.raises(BudgetExceeded) as refused:
        conv.send("a calm sea", parent=None)
    assert len(sim.requests) == 2 and sim.submissions == 2  # the simulator saw no third request
    message = str(refused.value)
    assert "nothing was sent" in message and "$0.10" in message  # the estimate
    assert "spent $0.20 of its $0.20 budget" in message  # the spend so far
    assert "Conversation(budget=...)" in message  # how to raise it
    assert len(conv.turns) == 2  # the refused request left no turn behind
    # Replays are free and always allowed, even with the budget used up.
    conv.reset()
    assert conv.send("a lighthouse").cached
    assert len(sim.requests) == 2


def test_ten_concurrent_starts_under_a_three_generation_budget_send_exactly_three(sim, tmp_path):
    conv = conversation(sim, tmp_path, budget=0.30)

    async def batch():
        handles, refusals = [], []
        for number in range(10):
            try:
                handles.append(conv.start(f"shot {number}", parent=None))
            except BudgetExceeded as error:
                refusals.append(error)
        return await asyncio.gather(*handles), refusals

    turns, refusals = asyncio.run(batch())
    assert len(turns) == 3 and len(refusals) == 7
    assert len(sim.requests) == 3
    assert all(turn.status == "completed" for turn in turns)
    assert conv.budget.spent == pytest.approx(0.30) and conv.budget.reserved == 0


def test_threads_sharing_one_budget_cannot_overshoot_together(sim, tmp_path):
    shared = Budget(0.30)
    conversations = [conversation(sim, tmp_path, name=f"c{i}", budget=shared) for i in range(10)]
    for conv in conversations:
        conv.estimate(1)  # price discovery done: the race below is only about the ledger
    barrier = threading.Barrier(10)
    outcomes = []

    def send(conv, number):
        barrier.wait()
        try:
            outcomes.append(conv.send(f"race {number}", parent=None).status)
        except BudgetExceeded:
            outcomes.append("refused")

    threads = [threading.Thread(target=send, args=(c, i)) for i, c in enumerate(conversations)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["completed"] * 3 + ["refused"] * 7
    assert len(sim.requests) == 3 and shared.spent == pytest.approx(0.30)


def test_unknown_price_with_a_budget_refuses_and_says_how_to_configure(tmp_path):
    forget_discoveries()
    with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0, faults=["no_pricing"]) as sim:
        conv = conversation(sim, tmp_path, budget=5.0)
        with pytest.raises(BudgetExceeded, match=r"price of 'sora-2' is unknown.*KKI_PRICES"):
            conv.send("anything")
        assert sim.requests == []
        priced = conversation(sim, tmp_path, name="priced", budget=5.0, prices={"sora-2": 1.0})
        assert priced.send("anything").cost == 1.0
        assert priced.budget.spent == 1.0
    forget_discoveries()


def test_failures_count_refusals_release_and_takes_are_checked_all_at_once(sim, tmp_path):
    conv = conversation(sim, tmp_path, budget=0.25)
    failed = conv.send("a kite [[fault:fail]]")
    assert failed.status == "failed" and conv.budget.spent == pytest.approx(0.10)
    refused = conv.send("a kite [[fault:status:402]]", parent=None)
    assert refused.status == "failed" and conv.budget.spent == pytest.approx(0.10)
    assert conv.budget.reserved == 0
    before = len(sim.requests)
    with pytest.raises(BudgetExceeded, match=r"2 generations would cost about \$0.20"):
        conv.send("three takes", parent=None, takes=2)
    assert len(sim.requests) == before  # not one take of the two was sent


def test_the_budget_is_part_of_the_public_api():
    import kki_widgets

    assert kki_widgets.Budget is Budget and kki_widgets.BudgetExceeded is BudgetExceeded


def test_budget_values_are_checked():
    for bad in (-1, "5", float("inf"), True):
        with pytest.raises(ConfigurationError, match="budget"):
            Budget(bad)


def test_one_reservation_for_several_takes_is_settled_take_by_take():
    budget = Budget(1.0)
    held = budget.reserve([0.1, 0.1, 0.1], "three takes", "sora-2")
    assert budget.reserved == pytest.approx(0.3) and budget.remaining == pytest.approx(0.7)
    budget.settle_part(held, 0.1, 0.1)  # take 1 completed
    budget.settle_part(held, 0.1, 0.0)  # take 2 refused by the relay: nothing charged
    assert budget.reserved == pytest.approx(0.1) and budget.spent == pytest.approx(0.1)
    budget.settle_part(held, 0.1, 0.1)
    budget.settle_part(held, 0.1, 0.1)  # settled already: no effect
    assert budget.reserved == 0 and budget.spent == pytest.approx(0.2)
    assert repr(budget) == "<Budget $1.00: spent $0.20, reserved $0.00, left $0.80>"


def test_a_ten_prompt_batch_under_a_three_generation_budget_sends_exactly_three(sim, tmp_path, capsys):
    conv = conversation(sim, tmp_path, budget=0.30)
    gallery = conv.batch([f"shot {n}" for n in range(10)], concurrency=4)
    assert "batch of 10: 10 × sora-2 at $0.10 = $1.00" in capsys.readouterr().out  # before it starts
    assert len(sim.requests) == 3
    assert len(gallery) == 3 and all(turn.status == "completed" for turn in gallery)
    assert len(gallery.refused) == 7 and all("Budget exceeded" in why for _, why in gallery.refused)
    assert conv.budget.spent == pytest.approx(0.30)
