"""Resume in a real JupyterLab + chromium: a turn whose generation is still being made at the
relay (the stream was cut after the task ID and the kernel stopped following it) offers Resume;
clicking it follows the same task to its video. The simulator, run by this test process, proves
nothing was sent again: one chat/completions POST and one paid submission in all."""

from __future__ import annotations

from pathlib import Path

import pytest

from kki_widgets.simulator import Simulator

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TURN = '.kki-turn[data-index="0"]'
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"  # gitignored


@pytest.fixture(scope="module")
def sim():
    # The relay needs 5 s for the video; the kernel's client stops following after 0.5 s.
    with Simulator(queue_seconds=0.2, generate_seconds=5.0, step_seconds=0.1, api_key="sim-test-key", seed=31) as server:
        yield server


@pytest.fixture(scope="module")
def relay_url(sim) -> str:
    return sim.base_url


def test_resume_follows_a_turn_still_being_made_at_the_relay(lab, page, sim):
    lab.write_notebook(
        "resume.ipynb",
        [
            "from kki_widgets import VideoChat\nchat = VideoChat(max_retries=0, follow_timeout=0.5)\nchat",
            "chat.conversation.client.follow_timeout = 60  # run by the test when the turn gave up",
        ],
    )
    lab.open(page, "resume.ipynb")
    run_cell(page, 0)
    page.wait_for_selector(".kki-chat", timeout=60_000)
    # Every status turn #1 shows, in order (the chat must go back to working, then done).
    page.evaluate(
        """() => {
          window.__kkiStatuses = [];
          new MutationObserver(() => {
            const turn = document.querySelector('.kki-turn[data-index="0"]');
            const last = window.__kkiStatuses[window.__kkiStatuses.length - 1];
            if (turn && turn.dataset.status !== last) window.__kkiStatuses.push(turn.dataset.status);
          }).observe(document.querySelector('.kki-chat'), {subtree: true, childList: true, attributes: true});
        }"""
    )
    page.fill(".kki-input", "a slow sunrise [[fault:cut_after_task_id]]")
    page.keyboard.press("Enter")
    still = page.wait_for_selector(f'{TURN}[data-status="still_running"]', state="attached", timeout=60_000)
    task_id = still.query_selector(".kki-task-id").inner_text()
    assert task_id in sim.tasks and sim.submissions == 1 and len(sim.requests) == 1
    assert still.query_selector(".kki-status").inner_text() == "Still running at the relay"
    resume = still.query_selector(".kki-resume")
    assert resume.is_visible() and resume.inner_text() == "Resume"
    assert not still.query_selector(".kki-retry").is_visible()  # Retry would pay again
    assert not still.query_selector(".kki-resume-why").is_visible()
    # Its words are a caution (the widget's warning colour, a polite status), not a failure.
    words = still.query_selector(".kki-turn-error")
    assert "within 0.5 s of following it" in words.inner_text()
    assert words.get_attribute("role") == "status"
    colours = page.evaluate(
        """(el) => [getComputedStyle(el).color,
                    getComputedStyle(el.closest('.kki-chat')).getPropertyValue('--kki-warn').trim()]""",
        words,
    )
    probe = page.evaluate(
        "(c) => { const s = document.createElement('span'); s.style.color = c; document.body.append(s);"
        " const v = getComputedStyle(s).color; s.remove(); return v; }",
        colours[1],
    )
    assert colours[0] == probe, colours
    page.screenshot(path=str(ARTIFACTS / "resume-still-running.png"), full_page=True)

    # A user with more patience clicks Resume while the relay still makes the video: the turn
    # works again (progress), then completes under the same task ID.
    run_cell(page, 1)
    # Its execution count says it ran (and the kernel handles the click's message after it).
    page.wait_for_function(
        "() => /\\[2\\]/.test(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')[1].textContent)"
    )
    assert sim.tasks[task_id].status != "completed"
    resume.click()
    page.wait_for_selector(f'{TURN}[data-status="generating"]', state="attached", timeout=30_000)
    assert page.is_visible(f"{TURN} .kki-cancel") and not page.is_visible(f"{TURN} .kki-resume")
    done = page.wait_for_selector(f'{TURN}[data-status="completed"]', state="attached", timeout=60_000)
    page.wait_for_selector(".kki-busy", state="hidden", timeout=60_000)  # the copy is kept
    assert done.query_selector(".kki-task-id").inner_text() == task_id
    assert sim.submissions == 1 and len(sim.requests) == 1  # never sent again
    assert page.locator(".kki-turn").count() == 1  # the same turn, not a new one
    assert not done.query_selector(".kki-resume").is_visible()
    assert not page.is_visible(".kki-error"), page.inner_text(".kki-error")
    video = done.query_selector("video.kki-video")
    page.wait_for_function("(v) => v.readyState >= 2", arg=video, timeout=20_000)
    statuses = page.evaluate("() => window.__kkiStatuses")
    assert statuses[statuses.index("still_running"):] == ["still_running", "generating", "completed"], statuses
    page.screenshot(path=str(ARTIFACTS / "resume-completed.png"), full_page=True)
    assert not page.errors.widget_errors(), page.errors.widget_errors()


def run_cell(page, index: int) -> None:
    """Run one cell of the open notebook (the second waits until the test says)."""
    page.evaluate(
        """(index) => {
          const notebook = window.jupyterapp.shell.currentWidget.content;
          notebook.activeCellIndex = index;
          return window.jupyterapp.commands.execute('notebook:run-cell');
        }""",
        index,
    )


def test_a_video_still_being_made_without_a_task_id_says_why_there_is_no_resume(lab, page):
    """A relay that ends with "may still be generating" and no task ID: nothing to follow the
    video by. The turn shows no Resume and says why, in words."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from kki_testing import ReplayServer

    deltas = ["🎬 视频生成中...\n", "The stream has ended, but your video may still be generating.\n"]
    chunks = [{"choices": [{"index": 0, "delta": {"content": d}, "finish_reason": None}]} for d in deltas]
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    relay = ReplayServer(body, piece=64, pause=0)
    try:
        lab.write_notebook(
            "no-task.ipynb",
            [f"from kki_widgets import VideoChat\nVideoChat(base_url={relay.base_url!r}, max_retries=0)"],
        )
        lab.open(page, "no-task.ipynb?reset")  # a fresh workspace: resume.ipynb's widget stays closed
        lab.run_all(page)
        page.wait_for_selector(".kki-chat", timeout=60_000)
        page.fill(".kki-input", "a fox")
        page.keyboard.press("Enter")
        turn = page.wait_for_selector(f'{TURN}[data-status="still_running"]', state="attached", timeout=60_000)
        assert len(relay.requests) == 1
    finally:
        relay.close()
    assert not turn.query_selector(".kki-resume").is_visible()
    assert not turn.query_selector(".kki-retry").is_visible()
    why = turn.query_selector(".kki-resume-why")
    assert why.is_visible()
    assert why.inner_text() == (
        "No Resume: the relay gave no task ID to follow this video by: look for it on the relay's "
        "dashboard (sending the prompt again would pay again)."
    )
    # The relay's own words are kept too, and the price says the video will cost what one costs.
    assert "may still be generating" in turn.query_selector(".kki-turn-error").inner_text()
    page.wait_for_function(
        "(t) => t.querySelector('.kki-cost').textContent === 'still being made at the relay'", arg=turn
    )
    page.screenshot(path=str(ARTIFACTS / "resume-no-task-id.png"), full_page=True)
    assert not page.errors.widget_errors(), page.errors.widget_errors()
