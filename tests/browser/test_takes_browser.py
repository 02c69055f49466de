"""Takes in a real JupyterLab + chromium: three takes side by side, pick one, play it in sync,
and the next prompt continues the picked take (checked at the simulator)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kki_widgets.simulator import Simulator

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TURN = '.kki-turn[data-index="{}"]'
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"  # gitignored


@pytest.fixture(scope="module")
def sim():
    # sora-2 costs $0.10 a generation at this relay (its /api/pricing says so).
    with Simulator(queue_seconds=0.2, generate_seconds=1.0, step_seconds=0.1, api_key="sim-test-key",
                   seed=13) as server:  # fmt: skip
        yield server


@pytest.fixture(scope="module")
def relay_url(sim) -> str:
    return sim.base_url


def test_pick_a_take_in_the_widget_and_play_it(lab, page, sim):
    lab.write_notebook(
        "takes.ipynb",
        ["from kki_widgets import VideoChat\nchat = VideoChat(max_retries=0, budget=1.00)\nchat"],
    )
    lab.open(page, "takes.ipynb")
    lab.run_all(page)
    page.wait_for_selector(".kki-chat", timeout=60_000)

    page.select_option(".kki-takes-select", "3")
    page.fill(".kki-input", "a hot air balloon over a canyon")
    page.keyboard.press("Enter")
    # While they run, each take shows its estimate.
    page.wait_for_selector(f"{TURN.format(0)} .kki-cost >> text=estimate $0.10", timeout=30_000)
    for index in range(3):
        page.wait_for_selector(f'{TURN.format(index)}[data-status="completed"]', timeout=60_000)
    page.wait_for_selector(".kki-busy", state="hidden", timeout=30_000)
    assert len(sim.requests) == 3
    row = page.locator(".kki-takes-row")
    assert row.locator(".kki-turn").count() == 3  # side by side, in one row
    boxes = [row.locator(".kki-turn").nth(i).bounding_box() for i in range(3)]
    assert boxes[0]["y"] == boxes[1]["y"] == boxes[2]["y"]
    assert page.inner_text(f"{TURN.format(1)} .kki-cost") == "charged: $0.10"
    assert page.inner_text(f"{TURN.format(1)} .kki-take") == "take 2/3"
    assert page.get_attribute(TURN.format(0), "data-current") == "true"  # take 1 until picked

    # Pick take 2: it becomes the one the next prompt continues.
    page.click(f"{TURN.format(1)} .kki-pick")
    page.wait_for_selector(f'{TURN.format(1)}[data-current="true"]', timeout=15_000)
    assert page.get_attribute(TURN.format(0), "data-current") == "false"

    # Play take 2: it plays, and the other takes play along (synchronised comparison).
    video = page.locator(f"{TURN.format(1)} video.kki-video")
    page.wait_for_function("(v) => v.readyState >= 2", arg=video.element_handle(), timeout=20_000)
    others = page.locator(f"{TURN.format(2)} video.kki-video").element_handle()
    page.wait_for_function("(v) => v.readyState >= 2", arg=others, timeout=20_000)
    played = page.evaluate(
        """async ([v, other]) => {
          for (const x of document.querySelectorAll('.kki-takes-row video')) x.muted = true;
          await v.play();
          // Until both have advanced (a loaded machine's decoders may take seconds).
          const end = Date.now() + 10000;
          while (!(v.currentTime > 0.3 && other.currentTime > 0.2) && Date.now() < end) {
            await new Promise((r) => setTimeout(r, 50));
          }
          const result = [v.currentTime, other.currentTime, other.paused];
          return result;
        }""",
        [video.element_handle(), others],
    )
    assert played[0] > 0.3 and played[1] > 0.2 and played[2] is False, played
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "takes-widget.png"), full_page=True)
    page.evaluate("() => document.querySelectorAll('.kki-takes-row video').forEach((v) => v.pause())")

    # The next prompt continues take 2, verbatim.
    take2 = page.inner_text(f"{TURN.format(1)} .kki-task-id")
    page.fill(".kki-input", "the balloon lands")
    page.keyboard.press("Enter")
    page.wait_for_selector(f'{TURN.format(3)}[data-status="completed"]', timeout=60_000)
    sent = sim.requests[-1]["messages"]
    assert sent[1] == {"role": "assistant", "content": sim.tasks[take2].content}
    assert not page.errors.widget_errors(), page.errors.widget_errors()
