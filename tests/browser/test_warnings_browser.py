"""The widget shows, in a real JupyterLab + chromium, when the relay made something else than asked.

The simulator behaves like a real chat relay: it ignores top-level JSON option fields. A widget
on the `fields` profile (options as JSON fields) asks for landscape; the relay's echoed spec says
portrait, and the turn must say so, visibly, as text (never HTML).
"""

from __future__ import annotations

import pytest

from kki_widgets.simulator import Simulator

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TURN = '.kki-turn[data-index="{}"]'


@pytest.fixture(scope="module")
def sim():
    with Simulator(queue_seconds=0.1, generate_seconds=0.5, step_seconds=0.1,
                   api_key="sim-test-key", seed=11) as server:  # fmt: skip
        yield server


@pytest.fixture(scope="module")
def relay_url(sim) -> str:
    return sim.base_url


def test_a_spec_mismatch_is_a_visible_warning_in_the_widget(lab, page, sim):
    lab.write_notebook(
        "warn.ipynb",
        [
            "from kki_widgets import VideoChat\n"
            "fields = VideoChat(profile='fields')\nfields.title = 'fields profile'\nfields",
            "words = VideoChat()\nwords.title = 'words profile (default)'\nwords",
        ],
    )
    lab.open(page, "warn.ipynb")
    lab.run_all(page)
    page.wait_for_selector(".kki-chat >> nth=1", timeout=60_000)
    fields, words = page.locator(".kki-chat").nth(0), page.locator(".kki-chat").nth(1)

    # Fields profile: the orientation travels as a JSON field that the relay ignores.
    fields.locator(".kki-orientation").select_option("landscape")
    fields.locator(".kki-input").fill("a fox in the snow")
    fields.locator(".kki-input").press("Enter")
    turn = fields.locator(f'{TURN.format(0)}[data-status="completed"]')
    turn.wait_for(timeout=60_000)
    assert sim.requests[-1]["orientation"] == "landscape"  # sent where nobody reads it
    warning = turn.locator(".kki-warnings")
    warning.wait_for(state="visible")
    assert warning.inner_text() == "⚠ asked for landscape; the relay's spec says portrait"
    assert warning.evaluate("(el) => el.querySelector('li').children.length") == 0  # text only
    style = warning.evaluate(
        "(el) => { const s = getComputedStyle(el); return [s.borderLeftStyle, s.fontWeight]; }"
    )
    assert style[0] == "solid" and int(style[1]) >= 600
    assert turn.locator(".kki-sent").is_hidden()  # nothing was added to the prompt

    # Words profile (the default): the same choice is said in the prompt, read, and shown.
    words.locator(".kki-orientation").select_option("landscape")
    words.locator(".kki-input").fill("a fox in the snow")
    words.locator(".kki-input").press("Enter")
    good = words.locator(f'{TURN.format(0)}[data-status="completed"]')
    good.wait_for(timeout=60_000)
    sent = "a fox in the snow (landscape 16:9, horizontal)"
    assert sim.requests[-1]["messages"][-1]["content"] == sent
    assert good.locator(".kki-sent").inner_text() == f"sent as: {sent}"
    assert good.locator(".kki-warnings").is_hidden()

    turn.scroll_into_view_if_needed()
    page.screenshot(path=str(lab_artifact("videochat-warning.png")), full_page=True)
    assert not page.errors.widget_errors(), page.errors.widget_errors()


def lab_artifact(name: str):
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "artifacts"  # gitignored
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name
