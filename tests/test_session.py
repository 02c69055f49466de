"""Conversation: remix history, cache replays, branching, cancel/resume, persistence, stitching."""

from __future__ import annotations

import asyncio
import json

import pytest
from kki_testing import TEST_KEY, abandon_after_task_id, point_package_at

from kki_widgets import Conversation
from kki_widgets.media.downloads import probe
from kki_widgets.protocol.errors import ConfigurationError
from kki_widgets.store.notebook_store import NotebookStore


@pytest.fixture(scope="module")
def slow_simulator():
    """Slow enough to cancel a turn mid-generation."""
    from kki_widgets.simulator import Simulator

    with Simulator(queue_seconds=0.3, generate_seconds=1.5, step_seconds=0.1, seed=3) as sim:
        yield sim


def conversation(sim, tmp_path, **options) -> Conversation:
    store = NotebookStore(tmp_path / ".kki" / "notebook.json", secret=TEST_KEY)
    options.setdefault("poll_interval", 0.05)
    return Conversation(base_url=sim.base_url, api_key=TEST_KEY, store=store, **options)


def test_second_turn_remixes_the_first_verbatim(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path)
    first = conv.send("a lighthouse at dusk")
    assert first.status == "completed" and first.parent is None
    assert conv.messages == [
        {"role": "user", "content": "a lighthouse at dusk"},
        {"role": "assistant", "content": first.generation.text},
    ]
    second = conv.send("a storm rolls in", orientation="landscape")
    assert second.parent == first.index
    sent = fast_simulator.requests[-1]
    assert sent["messages"][1]["content"] == first.generation.text
    assert sent["messages"][-1]["content"] == "a storm rolls in (landscape 16:9, horizontal)"
    assert "orientation" not in sent
    assert second.sent_prompt == "a storm rolls in (landscape 16:9, horizontal)"
    assert second.prompt == "a storm rolls in"
    assert second.generation.spec["orientation"] == "landscape" and second.warnings == []
    assert second.generation.spec["sid"] == first.generation.sid
    # The next remix sends the words back verbatim, as part of the history.
    assert conv.messages[-2] == sent["messages"][-1]
    # Media are kept next to the notebook and preferred over the CDN link.
    assert second.path and second.video_url == second.path
    assert probe(second.path).duration > 0


def test_rerun_in_a_fresh_kernel_replays_without_requests(fast_simulator, tmp_path):
    first_run = conversation(fast_simulator, tmp_path)
    first_run.send("a paper boat")
    first_run.send("it reaches a river")
    before = len(fast_simulator.requests)

    second_run = conversation(fast_simulator, tmp_path)
    second_run.reset()
    again = [second_run.send("a paper boat"), second_run.send("it reaches a river")]
    assert len(fast_simulator.requests) == before
    assert all(turn.cached for turn in again)
    assert [t.generation.video_url for t in again] == [
        t.generation.video_url for t in first_run.turns
    ]
    usage = second_run.store.usage()
    assert usage["paid_requests"] == 2 and usage["cache_hits"] == 2

    forced = second_run.send("it reaches a river", parent=0, force=True)
    assert len(fast_simulator.requests) == before + 1
    assert not forced.cached


def test_branch_continues_from_an_earlier_turn(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path)
    root = conv.send("a robot wakes up")
    conv.send("it walks outside")
    conv.branch(root.index)
    branch = conv.send("it goes back to sleep")
    assert branch.parent == root.index
    assert [m["content"] for m in fast_simulator.requests[-1]["messages"] if m["role"] == "user"] == [
        "a robot wakes up",
        "it goes back to sleep",
    ]
    assert conv.undo() is branch and conv.head == root.index
    conv.reset()
    assert conv.messages == []


def test_failed_turn_keeps_the_reason_and_the_head(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path)
    good = conv.send("a calm sea")
    failed = conv.send("a stormy sea [[fault:policy]]")
    assert failed.status == "failed"
    assert "content policies" in failed.error
    assert conv.head == good.index  # the next prompt still remixes the last good video
    with pytest.raises(Exception, match="content policies"):
        failed.raise_for_status()
    with pytest.raises(ConfigurationError, match="only a completed video"):
        conv.branch(failed.index)


def test_relay_errors_become_failed_turns_with_the_fix(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path, max_retries=0)
    turn = conv.send("x [[fault:status:402]]")
    assert turn.status == "failed" and "credit" in turn.error


@pytest.mark.parametrize("prompt", ["", "  \n "])
def test_empty_prompt_is_refused(fast_simulator, tmp_path, prompt):
    with pytest.raises(ConfigurationError, match="empty"):
        conversation(fast_simulator, tmp_path).send(prompt)


def test_unknown_option_is_refused(fast_simulator, tmp_path):
    with pytest.raises(ConfigurationError, match="unknown option"):
        conversation(fast_simulator, tmp_path).send("a cat", colour="red")


def test_cancel_then_resume_without_paying_twice(slow_simulator, tmp_path):
    conv = conversation(slow_simulator, tmp_path)

    async def scenario():
        handle = conv.start("a slow sunrise")
        while not handle.turn.task_id:
            await asyncio.sleep(0.02)
        conv.cancel(handle.turn.index)
        with pytest.raises(asyncio.CancelledError):
            await handle
        return handle.turn

    submissions = slow_simulator.submissions
    turn = asyncio.run(scenario())
    assert turn.status == "cancelled"
    assert turn.task_id in turn.error and "resume" in turn.error
    assert conv.pending == [turn]

    resumed = conv.resume(turn.task_id)
    assert resumed is turn and resumed.status == "completed" and resumed.path
    assert slow_simulator.submissions == submissions + 1
    assert conv.head == turn.index


def test_a_dead_kernels_pending_task_is_resumed_by_a_new_one(slow_simulator, tmp_path):
    conv = conversation(slow_simulator, tmp_path)

    task_id = abandon_after_task_id(conv, "a train at night")
    stored = conv.store.load()
    assert any(p["task_id"] == task_id for p in stored["pending"])

    new_kernel = conversation(slow_simulator, tmp_path)
    assert [t.task_id for t in new_kernel.pending] == [task_id]
    turn = new_kernel.resume()
    assert turn.status == "completed" and turn.generation.sid
    assert not any(p["task_id"] == task_id for p in new_kernel.store.pending())


def test_background_start_without_a_loop(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path)
    handles = [conv.start(f"clip {i}") for i in range(3)]
    turns = [handle.result(timeout=60) for handle in handles]
    assert all(turn.status == "completed" for turn in turns)
    seen = []
    conv.subscribe(seen.append)
    conv.send("watched")
    assert seen and seen[-1].status == "completed"


def test_stitch_makes_one_film(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path)
    clips = [conv.send("a seed"), conv.send("it sprouts"), conv.send("it blooms")]
    film = conv.stitch(tmp_path / "film.mp4")
    total = sum(probe(turn.path).duration for turn in clips)
    assert probe(film).duration == pytest.approx(total, rel=0.15)


def test_store_has_the_history_but_never_the_key(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path)
    conv.send("a secretive cat")
    journal = conv.store.path.with_suffix(".journal")
    assert journal.is_file() and TEST_KEY not in journal.read_text()
    conv.store.compact()  # the journal folded into the snapshot
    text = conv.store.path.read_text()
    assert TEST_KEY not in text
    data = json.loads(text)
    [saved] = data["conversations"]["default"]["turns"].values()
    assert saved["prompt"] == "a secretive cat" and saved["generation"]["sid"]


def test_pending_turns_are_resumed_in_the_background(slow_simulator, tmp_path):
    conv = conversation(slow_simulator, tmp_path)

    abandon_after_task_id(conv, "a kite at sea")
    new_kernel = conversation(slow_simulator, tmp_path)
    handles = new_kernel.resume_pending()
    assert len(handles) == 1
    turn = handles[0].result(timeout=60)
    assert turn.status == "completed" and new_kernel.pending == []


def test_a_refused_request_keeps_its_own_advice(fast_simulator, tmp_path):
    turn = conversation(fast_simulator, tmp_path).send("x", model="sora-9000")
    assert turn.status == "failed"
    with pytest.raises(Exception) as caught:
        turn.raise_for_status()
    message = str(caught.value)
    assert "sora-2" in message  # names the models to pick from
    assert "accepted the prompt" not in message  # nothing was accepted: no charge warning


def test_a_remix_continues_its_parents_options_unless_told_otherwise(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path)
    first = conv.send("a lighthouse", model="veo3", orientation="landscape", duration=15)
    remix = conv.send("now at night")
    assert remix.parent == first.index
    assert remix.options == {"model": "veo3", "orientation": "landscape", "duration": 15}
    # The relay hears the inherited settings (the default profile says them in words).
    assert "landscape" in fast_simulator.requests[-1]["messages"][-1]["content"]
    assert "15 seconds" in fast_simulator.requests[-1]["messages"][-1]["content"]
    assert fast_simulator.requests[-1]["model"] == "veo3"
    told = conv.send("and in fog", orientation="portrait")
    assert told.options == {"model": "veo3", "orientation": "portrait", "duration": 15}
    fresh = conv.send("a desert", parent=None)
    assert fresh.options.get("orientation") is None and fresh.options["model"] != "veo3"


def test_batch_makes_a_gallery_in_prompt_order_and_replays_for_free(fast_simulator, tmp_path):
    from kki_widgets.display.views import Gallery

    conv = conversation(fast_simulator, tmp_path)
    prompts = ["one fox", "two owls", "three cats [[fault:fail]]", "four fish"]
    gallery = conv.batch(prompts, concurrency=2, orientation="landscape")
    assert isinstance(gallery, Gallery)
    assert [t.prompt for t in gallery] == prompts
    assert [t.status for t in gallery] == ["completed", "completed", "failed", "completed"]
    assert all(t.parent is None and t.options["orientation"] == "landscape" for t in gallery)
    html_text = gallery._repr_html_()
    assert html_text.count("<video") == 3 and "<source" not in html_text
    paid = len(fast_simulator.requests)
    again = asyncio.run(conv.abatch(prompts[:2] + prompts[3:], concurrency=2, progress=False, orientation="landscape"))
    assert all(t.cached for t in again) and len(fast_simulator.requests) == paid
    assert "3 / 3 clips ready (3 replayed, not paid)" in repr(again)
    with pytest.raises(ConfigurationError, match="empty"):
        conv.batch(["ok", " "])
    with pytest.raises(ConfigurationError, match="concurrency"):
        conv.batch(["ok"], concurrency=0)


def test_constructing_a_videochat_writes_no_store(fast_simulator, tmp_path, monkeypatch):
    from kki_widgets import VideoChat

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    point_package_at(monkeypatch, fast_simulator)
    chat = VideoChat()
    chat.close()
    assert list(tmp_path.iterdir()) == []
