"""VideoChat after a kernel restart (issue 20), in a real JupyterLab + chromium: a kernel was
killed mid-generation; the notebook's new kernel makes a VideoChat, which shows the claimed turn
and follows it to its video under the original task ID, without a second generation."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from kki_widgets.simulator import Simulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_claims import stop_at  # the kill -9 harness of tests/test_claims.py

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def sim():
    with Simulator(queue_seconds=0.3, generate_seconds=1.2, step_seconds=0.1, seed=21) as server:
        yield server


@pytest.fixture(scope="module")
def relay_url(sim) -> str:
    return sim.base_url


def test_a_videochat_after_a_kernel_restart_shows_and_follows_the_claimed_turn(lab, page, sim):
    # The notebook's store (.kki/restart.json, next to restart.ipynb) after a kernel died there.
    task_id = stop_at("progress", signal.SIGKILL, sim, lab.root)
    for suffix in (".json", ".journal"):  # the harness's store, named for this notebook
        (lab.root / ".kki" / f"notebook{suffix}").rename(lab.root / ".kki" / f"restart{suffix}")
    assert task_id and sim.submissions == 1

    lab.write_notebook("restart.ipynb", ["from kki_widgets import VideoChat\nVideoChat()"])
    lab.open(page, "restart.ipynb")
    lab.run_all(page)
    turn = page.wait_for_selector('.kki-turn[data-index="0"]', state="attached", timeout=60_000)
    page.wait_for_selector('.kki-turn[data-index="0"][data-status="completed"]', state="attached", timeout=60_000)
    assert task_id in turn.inner_text()  # the original task, shown and finished
    # The turn says how it was made, as the %%sora card does: picked up, no new charge.
    note = turn.query_selector(".kki-note")
    assert note.is_visible(), turn.inner_text()
    assert note.inner_text().startswith("picked up the generation started at")
    assert note.inner_text().endswith("(no new charge)")
    assert sim.submissions == 1  # followed, never sent again
    page.wait_for_selector(".kki-busy", state="hidden", timeout=60_000)  # the copy is kept
    page.wait_for_selector(".kki-turn video", state="attached", timeout=30_000)
    page.screenshot(path=str(Path(__file__).resolve().parents[1] / "artifacts" / "restart-videochat.png"))
    assert not page.errors.widget_errors(), page.errors.widget_errors()
