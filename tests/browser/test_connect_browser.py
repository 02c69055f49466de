"""Connecting from the widget in a real JupyterLab + chromium: a relay named by URL only, the key
typed into the password field, then the model picker lists the relay's models with prices and a
clip goes out under the relay's own name. Afterwards the key is searched for in the saved
notebook (with its widget state), the store and the server's log: nowhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from kki_widgets.simulator import Simulator

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TYPED_KEY = "sk-typed-in-widget-7f3a9c2e1b0d4a58"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="module")
def sim():
    with Simulator(queue_seconds=0.1, generate_seconds=0.4, step_seconds=0.1, catalog="sora2api",
                   api_key=TYPED_KEY, seed=21) as server:  # fmt: skip
        yield server


@pytest.fixture(scope="module")
def relay_url(sim) -> str:
    return sim.base_url


def test_the_key_typed_in_the_widget_connects_and_the_picker_shows_the_relays_models(lab, page, sim):
    lab.write_notebook("connect.ipynb", [
        # Only a base URL: the server's environment key is not this relay's.
        "import os\nos.environ.pop('KKI_API_KEY', None)\n"
        "from kki_widgets import VideoChat\n"
        f"chat = VideoChat(base_url={sim.base_url!r})\nchat",
    ])  # fmt: skip
    # Save the widgets' state with the notebook (ipywidgets' "Save Widget State Automatically"),
    # so the saved file holds every trait the key could have leaked into.
    manager = lab.root.parent / "settings" / "@jupyter-widgets" / "jupyterlab-manager"
    manager.mkdir(parents=True, exist_ok=True)
    (manager / "plugin.jupyterlab-settings").write_text('{"saveState": true}')
    lab.open(page, "connect.ipynb")
    lab.run_all(page)
    chat = page.locator(".kki-chat")
    key_box = chat.locator(".kki-key")
    key_box.wait_for(state="visible", timeout=60_000)
    assert chat.locator(".kki-key-input").get_attribute("type") == "password"

    chat.locator(".kki-key-input").fill(TYPED_KEY)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    chat.screenshot(path=str(ARTIFACTS / "connect-key-field.png"))
    chat.locator(".kki-connect").click()
    key_box.wait_for(state="hidden", timeout=30_000)
    assert chat.locator(".kki-key-input").input_value() == ""  # the key left the page at once

    # The relay's models replace the built-in list once discovery has read them.
    option = chat.locator(".kki-model option", has_text="sora-2-pro · ")
    option.wait_for(state="attached", timeout=30_000)
    labels = chat.locator(".kki-model option").all_inner_texts()
    assert labels[0] == "sora-2 · 10/15/25 s · $0.10", labels
    assert labels[1] == "sora-2-pro · 10/15/25 s · sd/hd · $0.50", labels
    assert labels[2].startswith("sora-2-pro hd · 10/15 s · "), labels  # HD: a choice of its own
    badge = chat.locator(".kki-badge-relay")
    assert badge.inner_text() == "profile: sora2api"
    lab.wait_until(lambda: "Chat endpoint" in (badge.get_attribute("title") or ""), timeout=30,
                   message="the balance and ping never reached the badge")  # fmt: skip
    title = badge.get_attribute("title")
    assert "sora2api-style model names" in title and "Balance: $100.00" in title, title
    assert "reachable, key accepted" in title, title

    chat.locator(".kki-orientation").select_option("landscape")
    chat.locator(".kki-duration").select_option("15")
    chat.locator(".kki-input").fill("a fox in the snow")
    chat.locator(".kki-input").press("Enter")
    chat.locator('.kki-turn[data-index="0"][data-status="completed"]').wait_for(timeout=60_000)
    assert sim.requests[-1]["model"] == "sora2-landscape-15s"
    assert sim.requests[-1]["messages"][-1]["content"] == "a fox in the snow"

    chat.locator(".kki-model").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "connect-picker.png"), full_page=True)
    chat.locator(".kki-model").screenshot(path=str(ARTIFACTS / "connect-picker-select.png"))
    # A closed <select> shows one line: drawn as a list box once, every choice and price shows.
    chat.locator(".kki-model").evaluate("(sel) => { sel.size = sel.options.length; }")
    chat.locator(".kki-model").screenshot(path=str(ARTIFACTS / "connect-picker-options.png"))
    chat.locator(".kki-model").evaluate("(sel) => { sel.size = 0; }")

    # Save with the widget state, then search every artifact for the key.
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    saved = lab.root / "connect.ipynb"
    lab.wait_until(lambda: "application/vnd.jupyter.widget-state+json" in saved.read_text(),
                   timeout=30, message="the notebook was not saved with its widget state")  # fmt: skip
    places = [saved, lab.log, *(lab.root / ".kki").rglob("*")]
    for place in places:
        if place.is_file():
            assert TYPED_KEY not in place.read_text(errors="replace"), place
    assert not page.errors.widget_errors(), page.errors.widget_errors()
