"""%%sora with prices, a budget and takes, in a real IPython shell against the simulator."""

from __future__ import annotations

from html import escape

import pytest
from IPython.core.error import UsageError
from kki_testing import run_cell as run
from kki_testing import simulated_relay

from kki_widgets.protocol.pricing import forget_discoveries


@pytest.fixture
def sim(monkeypatch):
    forget_discoveries()
    with simulated_relay(monkeypatch, seed=5) as simulator:
        yield simulator
    forget_discoveries()


@pytest.fixture
def slow_sim(monkeypatch):
    """Slow enough for the waiting cell (it redraws every `POLL_SECONDS`) to print progress."""
    forget_discoveries()
    with simulated_relay(monkeypatch, queue_seconds=0.05, generate_seconds=1.2, step_seconds=0.1, seed=5) as simulator:
        yield simulator
    forget_discoveries()


def card_lines(text: str) -> list[str]:
    """The compact line of each printed card (the line under "[turn N] prompt")."""
    lines = text.splitlines()
    return [lines[i + 1] for i, line in enumerate(lines[:-1]) if line.startswith("[turn ")]


def test_the_card_shows_the_estimate_before_progress_and_usage_sums_the_costs(slow_sim, new_shell, capsys):
    ip = new_shell()
    capsys.readouterr()
    first = run(ip, "%%sora\na paper boat on a rainy street")
    cards = card_lines(capsys.readouterr().out)
    progress = [i for i, line in enumerate(cards) if "%" in line]
    assert progress, cards  # the card did show progress lines
    assert "estimate $0.10" in cards[0]
    assert all("estimate $0.10" in line for line in cards[: progress[0] + 1])
    assert "charged: $0.10" in cards[-1]
    assert first.cost_text == "charged: $0.10"
    run(ip, "%%sora --model sora-2-pro\nthe boat reaches the sea")
    run(ip, "%%sora --session other --new\na second film")
    usage = run(ip, "%sora usage")
    assert usage["by_model"] == {
        "sora-2": {"generations": 2, "spent": 0.2, "unknown": 0},
        "sora-2-pro": {"generations": 1, "spent": 0.5, "unknown": 0},
    }
    assert usage["spent"] == pytest.approx(0.7)
    assert usage["balance_before"] == 100.0 and usage["balance_after"] == pytest.approx(99.3)
    text = repr(usage)
    assert "sora-2-pro: 1 generations, $0.50" in text and "spent: $0.70" in text
    assert "balance: $100.00 before, $99.30 now" in text


def test_a_configured_budget_refuses_the_third_cell_before_any_byte(sim, new_shell):
    ip = new_shell()
    run(ip, "%config SoraMagics.budget = 0.20")
    run(ip, "%%sora\none")
    run(ip, "%%sora --new\ntwo")
    with pytest.raises(UsageError, match=r"nothing was sent.*spent \$0.20 of its \$0.20.*%config SoraMagics.budget"):
        run(ip, "%%sora --new\nthree")
    assert len(sim.requests) == 2
    run(ip, "%config SoraMagics.budget = 0.30")  # raising it keeps what was spent
    run(ip, "%%sora --new\nthree")
    with pytest.raises(UsageError, match=r"spent \$0.30"):
        run(ip, "%%sora --new\nfour")
    assert len(sim.requests) == 3
    assert "left $0.00" in repr(run(ip, "%sora usage"))


def test_unknown_prices_read_unknown_in_cells_and_usage(monkeypatch, new_shell, capsys):
    forget_discoveries()
    with simulated_relay(monkeypatch, faults=["no_pricing"]):
        ip = new_shell()
        turn = run(ip, "%%sora\na harbour")
        assert turn.status == "completed" and turn.cost_text == "charged: unknown"
        assert "price unknown" in card_lines(capsys.readouterr().out)[0]
        usage = run(ip, "%sora usage")
        assert usage["spent"] == 0 and usage["unknown"] == 1 and usage["balance_before"] is None
        run(ip, "%config SoraMagics.prices = {'sora-2': 0.25}")
        assert run(ip, "%%sora --new\na lighthouse").cost_text == "charged: $0.25"
    forget_discoveries()


def test_a_turn_faster_than_one_poll_still_prints_its_first_card(monkeypatch, new_shell, capsys):
    # The waiting cell looks at the turn every POLL_SECONDS; a relay that answers within one look
    # used to leave only the final card. The first card is the turn as first announced.
    import kki_widgets.notebook.magics as magics

    monkeypatch.setattr(magics, "POLL_SECONDS", 2.0)
    forget_discoveries()
    with simulated_relay(monkeypatch):
        ip = new_shell()
        capsys.readouterr()
        run(ip, "%%sora\na quick harbour")
        cards = card_lines(capsys.readouterr().out)
    forget_discoveries()
    assert len(cards) >= 2, cards
    assert "estimate $0.10" in cards[0] and "charged: $0.10" in cards[-1], cards


def test_takes_run_together_rerun_for_free_and_the_picked_take_is_continued(sim, new_shell):
    ip = new_shell()
    card = run(ip, "%%sora --takes 3\na kite over the dunes")
    assert len(sim.requests) == 3
    turns = card.turns
    assert [t.take for t in turns] == [1, 2, 3] and all(t.status == "completed" for t in turns)
    assert len({t.generation.video_url for t in turns}) == 3  # three different generations
    html = card._repr_html_()
    assert html.count("<video") == 3 and "addEventListener" in html  # side by side, in sync
    run(ip, "%sora pick 2")
    run(ip, "%%sora\nthe kite lands")
    sent = sim.requests[-1]["messages"]
    assert sent[1] == {"role": "assistant", "content": turns[1].generation.text}
    assert len(sim.requests) == 4

    # A fresh kernel reruns the notebook: every take and the continuation replay, for free.
    ip = new_shell()
    again = run(ip, "%%sora --takes 3\na kite over the dunes")
    assert all(t.cached for t in again.turns)
    run(ip, "%sora pick 2")
    assert run(ip, "%%sora\nthe kite lands").cached
    assert len(sim.requests) == 4
    with pytest.raises(UsageError, match=r"takes 1\.\.3"):
        run(ip, "%sora pick 7")


def test_a_budget_covers_all_takes_of_a_cell(sim, new_shell):
    ip = new_shell()
    run(ip, "%config SoraMagics.budget = 0.25")
    with pytest.raises(UsageError, match=r"3 generations would cost about \$0.30"):
        run(ip, "%%sora --takes 3\ntoo many")
    assert sim.requests == []
    assert len(run(ip, "%%sora --takes 2\ntwo fit").turns) == 2


def test_takes_wait_in_their_cell(sim, new_shell):
    ip = new_shell()
    with pytest.raises(UsageError, match="drop --background"):
        run(ip, "%%sora --takes 2 --background\nnot in the background")
    with pytest.raises(UsageError, match="takes must be"):
        run(ip, "%%sora --takes 0\nno takes")
    assert sim.requests == []


def history_costs(table) -> dict[str, str]:
    """prompt -> the cost cell of `%sora history`, read from its text and checked in its HTML."""
    text = repr(table)
    costs = {turn.prompt: row[6] for turn, row in zip(table.turns, table._rows(), strict=True)}
    html = table._repr_html_()
    assert "<th>cost</th>" in html
    for prompt, cost in costs.items():
        line = next(line for line in text.splitlines() if prompt in line)
        assert cost in line, (cost, line)
        assert f"<td>{escape(prompt)}</td>" in html and f"<td>{escape(cost)}</td>" in html
    return costs


def test_history_shows_what_each_turn_cost(sim, new_shell):
    ip = new_shell()
    run(ip, "%%sora\na paper boat on a rainy street")  # sora-2: the relay lists $0.10
    run(ip, "%%sora --new --model veo3-pro\na lighthouse at dusk")  # listed nowhere
    table = run(ip, "%sora history")
    assert history_costs(table) == {"a paper boat on a rainy street": "$0.10", "a lighthouse at dusk": "unknown"}
    assert repr(table).endswith("total charged: $0.10 (+ 1 at an unknown price)")
    assert "<p>total charged: $0.10 (+ 1 at an unknown price)</p>" in table._repr_html_()

    # The same request in another session is made from the store: a replay, not paid.
    replay = run(ip, "%%sora --session copy --new\na paper boat on a rainy street")
    assert replay.cached and len(sim.requests) == 2
    run(ip, "%sora use copy")
    table = run(ip, "%sora history")
    assert history_costs(table) == {"a paper boat on a rainy street": "$0.00 (replayed, not paid)"}
    assert repr(table).endswith("total charged: $0.00")

    # A new kernel reruns the first cell: the paid turn is replayed and keeps its one charge.
    ip = new_shell()
    assert run(ip, "%%sora\na paper boat on a rainy street").cached
    assert len(sim.requests) == 2
    costs = history_costs(run(ip, "%sora history"))
    assert costs["a paper boat on a rainy street"] == "$0.10, then $0.00 (replayed, not paid)"
    assert costs["a lighthouse at dusk"] == "unknown"


def test_an_answer_without_a_video_or_task_id_reads_unknown_in_the_card_history_and_usage(
    monkeypatch, new_shell, capsys
):
    """The relay answered (200, words) but gave no video, no task ID and no word of failing: the
    card warns it may have been charged, and every price beside it says "unknown", never $0."""
    import json

    from kki_testing import TEST_KEY, ReplayServer

    deltas = ["Your request is being processed.\n", "Here is the result.\n"]
    chunks = [{"choices": [{"index": 0, "delta": {"content": d}, "finish_reason": None}]} for d in deltas]
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    server = ReplayServer(body, piece=64, pause=0)
    forget_discoveries()
    try:
        monkeypatch.setenv("KKI_BASE_URL", server.base_url)
        monkeypatch.setenv("KKI_API_KEY", TEST_KEY)
        ip = new_shell()
        run(ip, "%config SoraMagics.prices = {'sora-2': 0.40}")
        capsys.readouterr()
        with pytest.raises(Exception, match="Some relays charge for such answers"):
            run(ip, "%%sora\na harbour at night")
        card = card_lines(capsys.readouterr().out)[-1]
        assert "charged: unknown — the relay answered without a video (estimate $0.40)" in card, card
        assert "not charged" not in card and "$0.00" not in card
        table = run(ip, "%sora history")
        assert history_costs(table) == {"a harbour at night": "unknown (the relay answered without a video)"}
        assert repr(table).endswith("total charged: $0.00 (+ 1 at an unknown price)")
        usage = run(ip, "%sora usage")
        assert usage["by_model"] == {"sora-2": {"generations": 1, "spent": 0.0, "unknown": 1}}
        assert "spent: $0.00 + 1 at an unknown price" in repr(usage)
        assert len(server.requests) == 1
    finally:
        server.close()
        forget_discoveries()
