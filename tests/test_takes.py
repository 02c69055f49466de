"""Takes: several generations of one request, each cached under its take number, one picked."""

from __future__ import annotations

import asyncio

import pytest
from kki_testing import TEST_KEY

from kki_widgets import Conversation
from kki_widgets.protocol.errors import ConfigurationError
from kki_widgets.store.notebook_store import NotebookStore


def conversation(sim, tmp_path, **options) -> Conversation:
    store = NotebookStore(tmp_path / ".kki" / "notebook.json", secret=TEST_KEY)
    return Conversation(base_url=sim.base_url, api_key=TEST_KEY, store=store, **options)


def test_takes_are_separate_generations_and_rerun_for_free(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path)
    before = len(fast_simulator.requests)
    turns = conv.send("a glass of water falls", takes=3)
    assert len(fast_simulator.requests) == before + 3
    assert [t.take for t in turns] == [1, 2, 3] and {t.takes for t in turns} == {3}
    assert {t.take_group for t in turns} == {turns[0].index}
    assert len({t.task_id for t in turns}) == 3 and len({t.cache_key for t in turns}) == 3
    assert conv.head == turns[0].index  # the first take, until one is picked
    assert conv.takes_of() == turns == conv.takes_of(turns[2].index)

    rerun = conversation(fast_simulator, tmp_path)
    rerun.reset()
    again = rerun.send("a glass of water falls", takes=3)
    assert len(fast_simulator.requests) == before + 3
    assert [t.index for t in again] == [t.index for t in turns] and all(t.cached for t in again)
    # A plain send of the same request is take 1 (shared cache entry): free as well.
    rerun.reset()
    assert rerun.send("a glass of water falls").index == turns[0].index


def test_picking_a_take_makes_the_next_prompt_continue_it_verbatim(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path)
    turns = conv.send("a paper plane", takes=3)
    conv.pick(turns[1])
    assert conv.head == turns[1].index and [t.picked for t in conv.takes_of()] == [False, True, False]
    follow = conv.send("it lands on a roof")
    assert follow.parent == turns[1].index
    sent = fast_simulator.requests[-1]["messages"]
    assert sent[1] == {"role": "assistant", "content": turns[1].generation.text}
    # The other takes stay listed and can be picked later; the pick survives a new kernel.
    conv.pick(turns[2].index)
    restored = conversation(fast_simulator, tmp_path)
    assert restored.head == turns[2].index
    assert [t.picked for t in restored.takes_of(turns[0].index)] == [False, False, True]


def test_start_with_takes_returns_their_handles(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path)

    async def main():
        handles = conv.start("a river delta", takes=2)
        return handles, await handles

    handles, turns = asyncio.run(main())
    assert [t.take for t in turns] == [1, 2] and handles.done()
    assert handles.turns == turns


def test_bad_takes_and_picks_name_the_fix(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path)
    for bad in (0, 17, "3", True):
        with pytest.raises(ConfigurationError, match="takes must be"):
            conv.send("x", takes=bad)
    with pytest.raises(ConfigurationError, match="no request with takes yet"):
        conv.takes_of()
    failed = conv.send("broken [[fault:fail]]")
    with pytest.raises(ConfigurationError, match="only a completed video can be picked"):
        conv.pick(failed)


def test_the_cards_pick_buttons_pick_a_take(fast_simulator, tmp_path):
    from kki_widgets.display.takes_view import TakesCard, pick_buttons

    conv = conversation(fast_simulator, tmp_path)
    turns = conv.send("a lantern on a lake", takes=2)
    row = pick_buttons(conv, turns)
    buttons, label = row.children[:-1], row.children[-1]
    assert [b.description for b in buttons] == ["Pick take 1", "Pick take 2"]
    assert label.value == "the next cell continues take 1"
    buttons[1].click()
    assert conv.head == turns[1].index and label.value == "the next cell continues take 2"
    card = TakesCard(conv, turns)
    assert f"take 2: turn {turns[1].index} completed" in repr(card)
    assert repr(card).splitlines()[2].endswith("<- continues from here")
    # Relay text is escaped in the card.
    hostile = conv.send("<script>alert(1)</script>", parent=None, takes=2)
    assert "<script>alert" not in TakesCard(conv, hostile)._repr_html_()
