"""What VideoChat looks like in each state, in a real JupyterLab + chromium.

Idle (the composer says what the next send costs and what the budget has left), running (the bar
moves, the estimate shows, Cancel is offered), completed (the player shows a frame), failed (the
reason and Retry), and three takes side by side. Each state is checked, and saved as a screenshot
of the widget in tests/artifacts/widget-<state>.png for a person to look at.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kki_widgets.simulator import Simulator

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TURN = '.kki-turn[data-index="{}"]'
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"  # gitignored

# Nothing in the widget may be wider than the widget (a long task ID, a row of takes, the composer).
OVERFLOW = """(root) => [...root.querySelectorAll('*')]
  .filter((n) => n.getBoundingClientRect().right > root.getBoundingClientRect().right + 1)
  .map((n) => n.className || n.tagName)"""


@pytest.fixture(scope="module")
def sim():
    # Slow enough to catch a turn mid-way; sora-2 costs $0.10 here (its /api/pricing says so).
    with Simulator(queue_seconds=0.3, generate_seconds=4.0, step_seconds=0.2, api_key="sim-test-key",
                   seed=21) as server:  # fmt: skip
        yield server


@pytest.fixture(scope="module")
def relay_url(sim) -> str:
    return sim.base_url


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator(".kki-chat").screenshot(path=str(ARTIFACTS / f"widget-{name}.png"))
    assert page.locator(".kki-chat").evaluate(OVERFLOW) == [], name


def wait_text(page, selector: str, text: str, timeout: float = 30_000) -> None:
    page.wait_for_function(
        "([s, t]) => { const n = document.querySelector(s); return n && n.textContent === t; }",
        arg=[selector, text],
        timeout=timeout,
    )


def wait_playable(page, selector: str) -> None:
    handle = page.locator(selector).element_handle()
    page.wait_for_function("(v) => v.readyState >= 2", arg=handle, timeout=30_000)


def test_each_state_of_the_widget(lab, page, sim):
    lab.write_notebook(
        "looks.ipynb", ["from kki_widgets import VideoChat\nchat = VideoChat(max_retries=0, budget=1.00)\nchat"]
    )
    # Tall enough that the whole widget is on screen (a notebook scrolls inside its own panel).
    page.set_viewport_size({"width": 1280, "height": 2600})
    lab.open(page, "looks.ipynb")
    lab.run_all(page)
    page.wait_for_selector(".kki-chat", timeout=60_000)

    # Idle: the price of the next send, under Send (on the pickers' row), before anything is sent.
    wait_text(page, ".kki-price", "estimate $0.10 · budget: $1.00 left")
    price, send, picker = (page.locator(s).bounding_box() for s in (".kki-price", ".kki-send", ".kki-model"))
    assert send["y"] == picker["y"] and price["y"] >= send["y"] + send["height"]
    assert abs((price["x"] + price["width"]) - (send["x"] + send["width"])) <= 1
    shot(page, "idle")

    # Running: status words, estimate, a bar that moved, Cancel.
    page.fill(".kki-input", "a paper boat on a rainy street, close-up")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "(s) => { const bar = document.querySelector(s); const p = Number(bar && bar.dataset.progress);"
        " return p >= 30 && p < 90; }",
        arg=f"{TURN.format(0)} .kki-progress",
        timeout=30_000,
    )
    running = page.locator(TURN.format(0))
    assert running.get_attribute("data-status") == "generating"
    assert running.locator(".kki-cost").inner_text() == "estimate $0.10"
    assert running.locator(".kki-cancel").is_visible()
    assert page.inner_text(".kki-price") == "estimate $0.10 · budget: $0.90 left"  # held for it
    shot(page, "running")

    # Completed: the player shows a frame; the charge replaces the estimate.
    page.wait_for_selector(f'{TURN.format(0)}[data-status="completed"]', timeout=30_000)
    page.wait_for_selector(".kki-busy", state="hidden", timeout=30_000)
    wait_playable(page, f"{TURN.format(0)} video.kki-video")
    assert running.locator(".kki-cost").inner_text() == "charged: $0.10"
    assert not running.locator(".kki-cancel").is_visible()
    assert running.locator(".kki-remix").is_visible() and running.locator(".kki-download").is_visible()
    # Links read as links (JupyterLab's `.jp-ThemedContainer a` must not make them plain text).
    colors = page.evaluate(
        "() => ['.kki-download', '.kki-send'].map((s) => getComputedStyle(document.querySelector(s)).color"
        " === getComputedStyle(document.querySelector('.kki-send')).backgroundColor)"
    )
    assert colors == [True, False], colors
    shot(page, "completed")

    # Failed: the relay's reason, in words, and Retry.
    page.fill(".kki-input", "[[fault:fail]] the boat sails into a storm")
    page.keyboard.press("Enter")
    page.wait_for_selector(f'{TURN.format(1)}[data-status="failed"]', timeout=30_000)
    page.wait_for_selector(".kki-busy", state="hidden", timeout=30_000)
    failed = page.locator(TURN.format(1))
    assert failed.locator(".kki-turn-error").inner_text().strip()
    assert failed.locator(".kki-retry").is_visible() and not failed.locator(".kki-video").is_visible()
    shot(page, "failed")

    # Three takes: priced together before sending, then side by side, each with a frame.
    page.select_option(".kki-takes-select", "3")
    wait_text(page, ".kki-price", "estimate $0.30 for 3 takes · budget: $0.80 left")
    page.fill(".kki-input", "the boat reaches the sea")
    page.keyboard.press("Enter")
    for index in (2, 3, 4):
        page.wait_for_selector(f'{TURN.format(index)}[data-status="completed"]', timeout=60_000)
        wait_playable(page, f"{TURN.format(index)} video.kki-video")
    page.wait_for_selector(".kki-busy", state="hidden", timeout=30_000)
    boxes = [page.locator(TURN.format(i)).bounding_box() for i in (2, 3, 4)]
    assert boxes[0]["y"] == boxes[1]["y"] == boxes[2]["y"]
    shot(page, "takes")
    page.screenshot(path=str(ARTIFACTS / "widget-in-jupyterlab.png"))
    assert len(sim.requests) == 5
    assert not page.errors.widget_errors(), page.errors.widget_errors()
