"""VideoChat with takes, prices and a budget, against the simulator (no browser)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from kki_widgets.conversation.budget import Budget
from kki_widgets.notebook.widget import VideoChat
from kki_widgets.protocol.pricing import forget_discoveries


class FakeComm:
    kernel = object()  # ipywidgets only sends when the comm has a kernel
    comm_id = "fake-comm"

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, data=None, buffers=None, **_: Any) -> None:
        self.sent.append(data)

    def on_msg(self, callback) -> None:
        self.callback = callback

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass

    def custom(self) -> list[dict]:
        return [m["content"] for m in self.sent if m.get("method") == "custom"]


def from_js(chat: VideoChat, content: dict) -> None:
    chat._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


@pytest.fixture(scope="module")
def sim():
    from kki_widgets.simulator import Simulator

    forget_discoveries()
    with Simulator(queue_seconds=0, generate_seconds=0.2, step_seconds=0.05, seed=9) as server:
        yield server
    forget_discoveries()


def chat_for(sim, **options) -> VideoChat:
    chat = VideoChat(base_url=sim.base_url, api_key="sim-test-key", store=None, media_dir=None, **options)
    chat.comm = FakeComm()
    return chat


def test_takes_from_the_ui_are_drawn_as_a_group_and_a_pick_moves_the_head(sim):
    chat = chat_for(sim)

    async def main():
        from_js(chat, {"type": "send", "id": "a", "prompt": "a windmill", "takes": 3})
        while chat.busy or len(chat.turn_data) < 3:
            await asyncio.sleep(0.05)
        from_js(chat, {"type": "pick", "id": "b", "index": 2})

    asyncio.run(main())
    states = chat.turn_data
    assert [s["take"] for s in states] == [1, 2, 3] and {s["take_group"] for s in states} == {0}
    assert all(s["cost_text"] == "charged: $0.10" for s in states)
    assert chat.head == 2 and [s["picked"] for s in states] == [False, False, True]
    assert [m["type"] for m in chat.comm.custom()] == ["ok", "ok"]
    handle = chat.send("the wind stops")
    turn = handle.result(30)
    assert turn.parent == 2
    assert sim.requests[-1]["messages"][1]["content"] == chat.turns[2].generation.text


def test_a_widget_budget_refuses_in_the_ui_before_sending(sim):
    shared = Budget(0.10)
    chat, other = chat_for(sim, budget=shared), chat_for(sim, budget=shared)
    before = len(sim.requests)
    from_js(chat, {"type": "send", "id": "a", "prompt": "two takes", "takes": 2})
    assert chat.comm.custom()[-1]["type"] == "error"
    assert "Budget exceeded" in chat.error and "Budget.limit = ..." in chat.error  # a shared Budget
    assert len(sim.requests) == before
    other.send("one take").result(30)
    with pytest.raises(Exception, match="Budget exceeded"):
        chat.send("no money left")
    assert len(sim.requests) == before + 1


def test_the_composer_prices_the_next_send_before_it_is_sent(sim):
    before = len(sim.requests)
    chat = chat_for(sim, budget=0.50)
    # The relay's price list is asked for in the background when the widget is made.
    deadline = time.monotonic() + 10
    while "estimate" not in chat.price_text:
        assert time.monotonic() < deadline, chat.price_text
        time.sleep(0.05)
    assert chat.price_text == "estimate $0.10 · budget: $0.50 left"
    chat.takes = 3  # the takes picker, as the front end sets it
    assert chat.price_text == "estimate $0.30 for 3 takes · budget: $0.50 left"
    chat.model = "sora-2-pro"
    assert chat.price_text == "estimate $1.50 for 3 takes · budget: $0.50 left"
    chat.model, chat.takes = "veo3-pro", 1  # the relay lists no price for it: never a guess
    assert chat.price_text == "price unknown · a budget refuses what it cannot price"
    chat.model = "sora-2"
    chat.send("a paper kite").result(30)
    assert chat.price_text == "estimate $0.10 · budget: $0.40 left"
    assert len(sim.requests) == before + 1  # pricing never sends a generation
    plain = chat_for(sim)
    plain.model = "veo3-pro"
    assert plain.price_text == "price unknown"
