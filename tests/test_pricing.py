"""Prices: the relay's price list and balance, the configured table, and "unknown" otherwise."""

from __future__ import annotations

import concurrent.futures
import json
import threading
from pathlib import Path

import pytest
from kki_testing import SERVE_POLL, TEST_KEY

from kki_widgets import Conversation
from kki_widgets.protocol.errors import ConfigurationError
from kki_widgets.protocol.pricing import (
    PER_SECOND,
    Price,
    balance_from_billing,
    forget_discoveries,
    money,
    parse_price_table,
    prices_from_gateway,
)
from kki_widgets.simulator import Simulator
from kki_widgets.store.notebook_store import NotebookStore

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _fresh_discoveries():
    forget_discoveries()
    yield
    forget_discoveries()


def conversation(sim, tmp_path, **options) -> Conversation:
    store = NotebookStore(tmp_path / ".kki" / "notebook.json", secret=TEST_KEY)
    return Conversation(base_url=sim.base_url, api_key=TEST_KEY, store=store, **options)


def test_gateway_price_list_keeps_per_call_prices_and_applies_the_default_group_ratio():
    data = json.loads((FIXTURES / "newapi_pricing.json").read_text())
    prices = prices_from_gateway(data)
    # Token-ratio rows (quota_type 0) and unreadable rows are unknown, never converted.
    assert set(prices) == {"sora-2", "sora-2-pro", "veo3"}
    assert prices["sora-2"] == Price(0.2, source="relay")  # 0.4 × default group ratio 0.5
    assert prices["sora-2-pro"].amount == pytest.approx(0.75)  # strings are read too
    assert prices["veo3"].per == PER_SECOND
    assert prices["veo3"].for_request("veo3", None) == pytest.approx(0.2)  # 8 s × 0.025
    assert prices["veo3"].for_request("veo3", 4) == pytest.approx(0.1)
    for junk in (None, [], "html", {"success": False, "message": "x"}, {"data": {"a": 1}}):
        assert prices_from_gateway(junk) == {}


def test_balance_is_hard_limit_minus_usage_in_cents():
    assert balance_from_billing({"hard_limit_usd": 100.0}, {"total_usage": 2500.0}) == 75.0
    assert balance_from_billing({"hard_limit_usd": "x"}, {"total_usage": 1}) is None
    assert balance_from_billing({}, {"total_usage": 1}) is None
    assert balance_from_billing(None, None) is None


def test_price_table_entries_are_checked_and_errors_name_the_fix():
    table = parse_price_table({"sora-2": 0.4, "veo3": {"per_second": 0.05, "charges_failures": False}})
    assert table["sora-2"].amount == 0.4 and table["veo3"].per == PER_SECOND
    assert not table["veo3"].charges_failures
    for bad in ({"sora-2": -1}, {"sora-2": "cheap"}, {"sora-2": {"per_minute": 1}}, [1], {"": 1},
                {"sora-2": {"per_second": 1, "per_generation": 2}}, {"sora-2": float("nan")}):  # fmt: skip
        with pytest.raises(ConfigurationError, match=r"prices?"):
            parse_price_table(bad)
    assert money(0.4) == "$0.40" and money(0.004) == "$0.004" and money(None) == "unknown"


def test_relay_prices_give_the_estimate_before_the_first_progress_and_the_cost_after(tmp_path):
    with Simulator(queue_seconds=0.05, generate_seconds=0.2, step_seconds=0.05, seed=5) as sim:
        conv = conversation(sim, tmp_path)
        seen = []
        conv.subscribe(lambda turn: seen.append((turn.status, turn.generation.progress, turn.cost_text)))
        turn = conv.send("a lighthouse at dusk")
        usage = conv.usage()
    first_progress = next(i for i, (_, progress, _) in enumerate(seen) if progress > 0)
    assert seen[0][2] == "estimate $0.10"
    assert all(text == "estimate $0.10" for _, _, text in seen[:first_progress])
    assert turn.estimate == pytest.approx(0.10) and turn.cost == pytest.approx(0.10)
    assert turn.cost_text == "charged: $0.10"
    assert usage["by_model"] == {"sora-2": {"generations": 1, "spent": 0.1, "unknown": 0}}
    # The simulator's key started with $100 and was charged for this generation.
    assert usage["balance_before"] == 100.0 and usage["balance_after"] == pytest.approx(99.9)


def test_replays_show_zero_and_failed_generations_are_charged(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path)
    conv.send("a red kite")
    conv.reset()
    replay = conv.send("a red kite")
    assert replay.cached and replay.cost_text == "$0.00 — replayed from the store"
    failed = conv.send("a kite [[fault:fail]]", parent=None)
    assert failed.status == "failed"
    assert failed.cost_text == "charged: $0.10 — failed generation"
    refused = conv.send("a kite [[fault:status:402]]", parent=None)
    assert refused.cost == 0.0 and "never accepted" in refused.cost_text
    usage = conv.usage()
    # The first generation and the failed one; the replay and the refused request were free.
    assert usage["by_model"]["sora-2"] == {"generations": 2, "spent": 0.2, "unknown": 0}


def test_hidden_pricing_and_no_configuration_read_unknown_and_nothing_breaks(tmp_path):
    with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0, faults=["no_pricing"]) as sim:
        conv = conversation(sim, tmp_path)
        seen = []
        conv.subscribe(lambda turn: seen.append(turn.cost_text))
        turn = conv.send("a quiet harbour")
        assert turn.status == "completed"
        assert seen[0] == "price unknown" and turn.cost_text == "charged: unknown"
        assert repr(conv.estimate(3)).startswith("3 × sora-2: price unknown")
        usage = conv.usage()
        assert usage["by_model"]["sora-2"]["unknown"] == 1 and usage["spent"] == 0
        assert usage["balance_before"] is None and usage["balance_after"] is None
        # Configuration fills in where the relay says nothing.
        priced = conversation(sim, tmp_path, prices={"sora-2": {"per_second": 0.03}}, name="b")
        assert priced.send("a loud harbour").cost == pytest.approx(0.3)  # 10 s of sora-2


def test_discovery_is_tried_once_per_relay_and_its_failure_is_remembered(tmp_path, monkeypatch):
    with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0, faults=["no_pricing"]) as sim:
        conv = conversation(sim, tmp_path)
        asked = []
        original = conv.client.get_json

        async def counting(url, **kwargs):
            asked.append(url.rsplit("/", 1)[-1])
            return await original(url, **kwargs)

        monkeypatch.setattr(conv.client, "get_json", counting)
        conv.send("one")
        conv.send("two")
        conv.usage()
        other = conversation(sim, tmp_path, name="other")
        monkeypatch.setattr(other.client, "get_json", counting)
        other.send("three")
    # The model list and the price list are read together (discovery.py), once per relay.
    assert asked == ["models", "pricing", "subscription"]


def test_prices_file_from_the_environment(tmp_path, monkeypatch, fast_simulator):
    table = tmp_path / "prices.json"
    table.write_text(json.dumps({"my-model": 2.5}))
    monkeypatch.setenv("KKI_PRICES", str(table))
    conv = conversation(fast_simulator, tmp_path)
    assert conv.prices.price("my-model").amount == 2.5
    # The relay's published price wins over configuration for the models it lists.
    assert conv.estimate(1).each == pytest.approx(0.10)
    table.write_text("{not json")
    with pytest.raises(ConfigurationError, match="KKI_PRICES"):
        conversation(fast_simulator, tmp_path)


def test_the_key_goes_to_the_price_list_only_on_the_base_urls_origin(tmp_path):
    import asyncio
    import http.server
    import threading

    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "/api/pricing")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b'{"data": []}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": SERVE_POLL}, daemon=True).start()
    other = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0) as sim:
            conv = conversation(sim, tmp_path)
            assert asyncio.run(conv.client.get_json(other + "/api/pricing")) == {"data": []}
            with pytest.raises(Exception, match="HTTP 302"):
                asyncio.run(conv.client.get_json(other + "/redirect"))
    finally:
        server.shutdown()
    assert seen == [("/api/pricing", None), ("/redirect", None)]


def test_cost_words_for_each_state_of_a_turn():
    from kki_widgets.conversation.session import Turn

    running = Turn(index=0, prompt="x", status="generating", estimate=0.1)
    assert running.cost_text == "estimate $0.10"
    simulated = Turn(index=0, prompt="x", status="generating", estimate=0.1, simulated=True)
    assert simulated.cost_text == "estimate $0.10 (simulated relay)"
    done = Turn(index=0, prompt="x", status="completed", estimate=0.1, cost=0.1, finished_at=1.0)
    assert done.cost_text == "charged: $0.10"
    cancelled = Turn(index=0, prompt="x", status="cancelled", cost=0.0, finished_at=1.0,
                     cost_note="not charged: the relay never accepted it")  # fmt: skip
    assert cancelled.cost_text == "$0.00 — not charged: the relay never accepted it"
    assert Turn(index=0, prompt="x", status="queued").cost_text == "price unknown"


# -- an answer that ended without a video: charged or not, decided from the evidence ------------


def relay_answering(*deltas: str):
    """A relay that streams `deltas` (200, a chat-completion answer) and ends with [DONE]."""
    from kki_testing import ReplayServer

    chunks = [{"choices": [{"index": 0, "delta": {"content": d}, "finish_reason": None}]} for d in deltas]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    body = b"".join(b"data: " + json.dumps(c, ensure_ascii=False).encode() + b"\n\n" for c in chunks)
    return ReplayServer(body + b"data: [DONE]\n\n", piece=64, pause=0)


def answered(server, budget=None):
    from kki_widgets.client.relay import RelayClient
    from kki_widgets.protocol.pricing import cost_cell, usage_lines

    client = RelayClient(base_url=server.base_url, api_key=TEST_KEY, max_retries=0, poll_interval=0.01)
    conv = Conversation(client=client, store=None, prices={"sora-2": 0.4}, budget=budget)
    turn = conv.send("a fox")
    return turn, conv.usage(), cost_cell(turn), usage_lines(conv.usage()), conv


def test_an_answer_without_a_video_or_task_id_may_have_been_charged_and_says_so():
    server = relay_answering("Your request is being processed.\n", "Here is the result.\n")
    try:
        turn, usage, cell, lines, conv = answered(server, budget=2.0)
    finally:
        server.close()
    # The warning and the price say the same thing: it may have been charged.
    assert turn.status == "failed" and turn.task_id is None
    assert "Some relays charge for such answers" in turn.error
    assert turn.cost is None
    assert turn.cost_text == "charged: unknown — the relay answered without a video (estimate $0.40)"
    assert "not charged" not in turn.cost_text and "$0.00" not in turn.cost_text
    assert cell == "unknown (the relay answered without a video)"
    # Counted at an unknown price, never as $0 or left out; the budget keeps its estimate.
    assert usage["by_model"]["sora-2"] == {"generations": 1, "spent": 0.0, "unknown": 1}
    assert "spent: $0.00 + 1 at an unknown price" in lines
    assert conv.budget.spent == pytest.approx(0.4)
    assert len(server.requests) == 1


def test_a_refusal_in_the_relays_words_without_a_task_id_is_not_charged():
    server = relay_answering("❌ 生成失败: 提示词违反内容政策\n")
    try:
        turn, usage, cell, _lines, conv = answered(server, budget=2.0)
    finally:
        server.close()
    assert turn.status == "failed" and "违反内容政策" in turn.error
    assert "Some relays charge" not in turn.error
    assert turn.cost == 0.0 and turn.cost_text == "$0.00 — not charged: the relay never accepted it"
    assert cell == "$0.00 (not charged)"
    assert usage["by_model"] == {} and conv.budget.spent == 0.0


def test_a_video_still_being_made_without_a_task_id_costs_what_a_video_costs():
    server = relay_answering("🎬 视频生成中...\n", "The stream has ended, but your video may still be generating.\n")
    try:
        turn, usage, _cell, _lines, _conv = answered(server)
    finally:
        server.close()
    # The relay took the request (it says it is making the video): not "never accepted".
    assert turn.status == "still_running" and turn.task_id is None
    assert turn.cost_text == "estimate $0.40 — still being made at the relay"
    assert usage["by_model"]["sora-2"] == {"generations": 1, "spent": 0.4, "unknown": 0}


def test_the_evidence_marks_only_the_answer_that_said_nothing():
    from kki_widgets.protocol.pricing import accepted
    from kki_widgets.protocol.transcript import Generation

    assert accepted("failed", Generation(task_id="t-1", status="failed")) is True
    assert accepted("still_running", Generation(status="still_running")) is True
    assert accepted("failed", Generation(status="failed", answered_without_video=True)) is None
    assert accepted("failed", Generation(status="failed")) is False  # an HTTP error, a refusal
    # Its answer had begun, then stopped (cut, cancelled) before a task ID or a word of failing.
    assert accepted("failed", Generation(status="failed"), answer_began=True) is None
    assert accepted("cancelled", Generation(status="cancelled"), answer_began=True) is None
    assert accepted("failed", Generation(status="failed", error="违反内容政策"), answer_began=True) is False
    # The mark survives the store (a reloaded turn still reads "unknown").
    marked = Generation(status="failed", answered_without_video=True)
    assert Generation.from_dict(json.loads(json.dumps(marked.to_dict()))).answered_without_video
    assert Generation.from_dict({"answered_without_video": "yes"}).answered_without_video is False


@pytest.mark.parametrize("cut", [0, 3])  # 0: the 200 and not one event, 3: the spec half echoed
def test_an_answer_cut_before_its_task_id_may_have_been_charged_and_says_so(fast_simulator, tmp_path, cut):
    from kki_widgets.protocol.pricing import cost_cell

    conv = conversation(fast_simulator, tmp_path, budget=1.0)
    turn = conv.send(f"a kite [[fault:cut_after:{cut}]]")
    assert turn.status == "failed" and turn.task_id is None and turn.answer_began
    # The error already warned it may be charged; the price now says the same.
    assert "may still charge for it" in turn.error
    assert turn.cost is None
    assert turn.cost_text == "charged: unknown — the relay's answer stopped before it showed a task ID (estimate $0.10)"
    assert cost_cell(turn) == "unknown (the relay's answer stopped before it showed a task ID)"
    assert conv.usage()["by_model"]["sora-2"] == {"generations": 1, "spent": 0.0, "unknown": 1}
    assert conv.budget.spent == pytest.approx(0.1)  # the budget keeps its estimate
    # Reloaded from the store, it still reads unknown.
    again = Conversation(store=conv.store, base_url=fast_simulator.base_url, api_key=TEST_KEY)
    assert again.turns[-1].cost_text == turn.cost_text


def test_a_turn_cancelled_while_the_relay_answers_before_its_task_id_may_have_been_charged():
    from kki_testing import ReplayServer

    from kki_widgets.client.relay import RelayClient

    deltas = ["Queuing...\n", "Task ID: `task_held`\n"]
    chunks = [{"choices": [{"index": 0, "delta": {"content": d}, "finish_reason": None}]} for d in deltas]
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    server = ReplayServer(body, piece=64, pause=0, hold=(b"Queuing", 30))
    try:
        client = RelayClient(base_url=server.base_url, api_key=TEST_KEY, max_retries=0, poll_interval=0.01)
        conv = Conversation(client=client, store=None, prices={"sora-2": 0.4})
        seen = threading.Event()
        conv.subscribe(lambda turn: "Queuing" in turn.generation.text and seen.set())
        handle = conv.start("a fox")
        assert seen.wait(10), "the relay's first words never arrived"
        conv.cancel(0)
        with pytest.raises(concurrent.futures.CancelledError):
            handle.result(10)
        turn = conv.turns[0]
    finally:
        server.close()
    assert turn.status == "cancelled" and turn.task_id is None
    assert turn.cost is None
    assert turn.cost_text == "charged: unknown — cancelled after the relay began answering (estimate $0.40)"
