"""VideoChat in a real JupyterLab + chromium, talking to a simulator run by this test process.

Drive the UI like a user, then assert what reached the relay (the simulator records every request
body), which is the Python-side state that matters: the prompt, the options and, for a remix, the
earlier answer sent back verbatim.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from kki_widgets.simulator import Simulator

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TURN = '.kki-turn[data-index="{}"]'


@pytest.fixture(scope="module")
def sim():
    # fail_first:1 makes the very first chat request fail with a 503; the kernel's client is
    # created with max_retries=0 so that failure reaches the UI and Retry has something to do.
    with Simulator(
        queue_seconds=0.2,
        generate_seconds=1.5,
        step_seconds=0.1,
        faults=["fail_first:1"],
        api_key="sim-test-key",
        seed=7,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def relay_url(sim) -> str:
    return sim.base_url


# The orientation picker says portrait; the default relay profile says it in words.
WORDS = " (portrait 9:16, vertical)"


def user_prompts(sim) -> list[str]:
    return [request["messages"][-1]["content"] for request in sim.requests]


def wait_for_turn(page, index: int, status: str, timeout: float = 30_000):
    turn = page.wait_for_selector(
        f'{TURN.format(index)}[data-status="{status}"]', state="attached", timeout=timeout
    )
    # "working…" stays until the kernel has kept the media and moved the conversation's head:
    # a prompt sent before that would continue from the previous head.
    page.wait_for_selector(".kki-busy", state="hidden", timeout=timeout)
    return turn


def test_chat_in_jupyterlab(lab, page, sim):
    started = time.monotonic()
    lab.write_notebook(
        "chat.ipynb",
        [
            "from kki_widgets import VideoChat\nchat = VideoChat(max_retries=0)\nchat",
            "chat  # a second view of the same widget",
        ],
    )
    lab.open(page, "chat.ipynb")
    lab.run_all(page)
    page.wait_for_selector(".kki-chat >> nth=1", timeout=60_000)
    # The kernel talks to an explicit KKI_BASE_URL with a key: not the embedded simulator.
    assert page.is_hidden(".kki-badge-sim")

    # Record every progress value the bar shows, to check it only moves forward.
    page.evaluate(
        """() => {
          window.__kkiProgress = [];
          const root = document.querySelector('.kki-chat');
          new MutationObserver((records) => {
            for (const r of records) {
              if (r.attributeName === 'data-progress') {
                window.__kkiProgress.push([r.target.closest('.kki-turn').dataset.index,
                                           Number(r.target.dataset.progress)]);
              }
            }
          }).observe(root, {subtree: true, attributes: true, attributeFilter: ['data-progress']});
        }"""
    )

    # 1. The first request fails at the relay (503): the turn says why and offers Retry.
    page.click(".kki-input")
    page.keyboard.type("a lighthouse")
    page.keyboard.press("Shift+Enter")  # a new line, not a send
    page.keyboard.type("at dawn")
    assert page.input_value(".kki-input") == "a lighthouse\nat dawn"
    page.keyboard.press("Enter")
    failed = wait_for_turn(page, 0, "failed")
    assert page.input_value(".kki-input") == ""
    error_text = failed.query_selector(".kki-turn-error").inner_text()
    assert "overloaded" in error_text, error_text
    assert failed.query_selector(".kki-status").inner_text() == "Failed"
    assert user_prompts(sim) == ["a lighthouse\nat dawn" + WORDS]

    # 2. Retry sends the same prompt again; this time it completes.
    failed.query_selector(".kki-retry").click()
    done = wait_for_turn(page, 1, "completed")
    assert user_prompts(sim) == ["a lighthouse\nat dawn" + WORDS] * 2
    bar = done.query_selector(".kki-progress")
    assert bar.get_attribute("data-progress") == "100"
    assert bar.get_attribute("aria-valuenow") == "100"
    task0 = done.query_selector(".kki-task-id").inner_text()
    assert task0 in sim.tasks and sim.tasks[task0].status == "completed"
    # A finished turn plays and links the copy next to the notebook, served by JupyterLab; the
    # loopback relay's pages die with it, so a saved notebook keeps no links to them.
    download = done.query_selector(".kki-download")
    assert download.get_attribute("href").startswith("/files/kki_media/")
    assert download.get_attribute("rel") == "noopener noreferrer"
    assert download.get_attribute("target") == "_blank"
    for selector in (".kki-preview", ".kki-raw"):
        assert not done.query_selector(selector).is_visible()

    # The video has a source and a poster, loads and plays.
    video = done.query_selector("video.kki-video")
    video_src = video.get_attribute("src")
    assert video_src.startswith("/files/kki_media/") and video_src.endswith(".mp4")
    # This turn's own copy: local names are derived from the task ID (never shared by two tasks).
    assert video_src.rsplit("/", 1)[-1].startswith(task0)
    assert video.get_attribute("poster").startswith("/files/kki_media/")
    page.wait_for_function("(v) => v.readyState >= 2", arg=video, timeout=20_000)
    advanced = page.evaluate(
        """async (v) => {
          v.muted = true;
          const t0 = v.currentTime;
          await v.play();
          // Until it advances (a loaded machine's decoder may take seconds), not a fixed window.
          const end = Date.now() + 10000;
          while (!(v.currentTime > t0) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
          const t1 = v.currentTime;
          v.pause();
          return [t0, t1];
        }""",
        video,
    )
    assert advanced[1] > advanced[0], advanced

    # 3. A second prompt remixes the first video: its request carries the first answer (sid).
    page.fill(".kki-input", "now in a storm")
    page.click(".kki-send")
    wait_for_turn(page, 2, "completed")
    remix = sim.requests[-1]["messages"]
    assistant = [m for m in remix if m["role"] == "assistant"]
    assert len(assistant) == 1 and sim.tasks[task0].sid in assistant[0]["content"]
    task2 = page.inner_text(f"{TURN.format(2)} .kki-task-id")
    assert sim.tasks[task2].parent_sid == sim.tasks[task0].sid

    # 4. "Remix from here" on the earlier turn branches from it, not from the latest turn.
    # The words are Python's (Conversation.can_remix): this relay remixes.
    assert page.inner_text(f"{TURN.format(1)} .kki-remix") == "Remix from here"
    page.click(f"{TURN.format(1)} .kki-remix")
    assert page.inner_text(".kki-remix-text") == "Remixing from #2"
    page.fill(".kki-input", "the same lighthouse at night")
    page.keyboard.press("Enter")
    wait_for_turn(page, 3, "completed")
    task3 = page.inner_text(f"{TURN.format(3)} .kki-task-id")
    assert sim.tasks[task3].parent_sid == sim.tasks[task0].sid
    assert "remix of #2" in page.inner_text(f"{TURN.format(3)} .kki-branch")
    branch = sim.requests[-1]["messages"]
    assert [m["content"] for m in branch if m["role"] == "user"] == [
        "a lighthouse\nat dawn" + WORDS,
        "the same lighthouse at night" + WORDS,
    ]

    # 5. A failure reported inside the stream shows the relay's reason in plain words.
    page.fill(".kki-input", "a ship [[fault:policy]]")
    page.keyboard.press("Enter")
    bad = wait_for_turn(page, 4, "failed")
    reason = bad.query_selector(".kki-turn-error").inner_text()
    assert "polic" in reason.lower(), reason
    assert bad.query_selector(".kki-retry").is_visible()

    progress = page.evaluate("() => window.__kkiProgress")
    by_turn: dict[str, list[int]] = {}
    for index, value in progress:
        by_turn.setdefault(index, []).append(value)
    assert by_turn, "the progress bar never moved"
    for values in by_turn.values():
        assert values == sorted(values), values

    # The second view shows every turn from the synced traits, with the same video.
    second = page.locator(".kki-chat").nth(1)
    statuses = second.locator(".kki-turn").evaluate_all("(ts) => ts.map((t) => t.dataset.status)")
    assert statuses == ["failed", "completed", "completed", "completed", "failed"]
    assert second.locator(f"{TURN.format(1)} video").get_attribute("src") == video_src

    page.screenshot(path=str(lab_artifact("videochat.png")), full_page=True)

    # Readable in both themes: text and background contrast in light and dark.
    for theme in ("JupyterLab Dark", "JupyterLab Light"):
        page.evaluate(
            "(theme) => window.jupyterapp.commands.execute('apputils:change-theme', {theme})",
            theme,
        )
        page.wait_for_function(
            "(dark) => document.body.dataset.jpThemeLight === String(!dark)",
            arg=theme.endswith("Dark"),
        )
        time.sleep(0.3)
        ratio = page.evaluate(CONTRAST, ".kki-prompt")
        assert ratio >= 4.5, (theme, ratio)
        if theme.endswith("Dark"):
            page.screenshot(path=str(lab_artifact("videochat-dark.png")))
    assert not page.errors.widget_errors(), page.errors.widget_errors()
    assert time.monotonic() - started < 150


def test_a_relay_that_cannot_remix_offers_to_continue_from_the_last_frame(lab, page, sim):
    """Veo on a flow2api relay never remixes: the button and the chip say the next clip starts
    from the last frame, and that is what reaches the relay (an image-to-video model and a frame)."""
    if not sim.requests:  # run alone: spend the module simulator's fail_first (for the test above)
        httpx.post(f"{sim.base_url}/chat/completions", json={}, headers={"Authorization": "Bearer sim-test-key"})
    lab.write_notebook(
        "veo.ipynb",
        ['from kki_widgets import VideoChat\nVideoChat(max_retries=0, profile="flow2api", model="veo3")'],
    )
    lab.open(page, "veo.ipynb?reset")  # a fresh workspace: chat.ipynb's widget stays closed
    lab.run_all(page)
    page.wait_for_selector(".kki-chat", timeout=60_000)
    page.fill(".kki-input", "a lighthouse")
    page.click(".kki-send")
    wait_for_turn(page, 0, "completed")
    button = page.locator(f"{TURN.format(0)} .kki-remix")
    assert button.inner_text() == "Continue from its last frame"
    button.click()
    assert page.inner_text(".kki-remix-text") == "Continuing from the last frame of #1"
    page.fill(".kki-input", "waves crash on the rocks")
    page.click(".kki-send")
    wait_for_turn(page, 1, "completed")
    body = sim.requests[-1]
    assert body["model"] == "veo_3_1_i2v_s_portrait"
    assert [part["type"] for part in body["messages"][-1]["content"]] == ["text", "image_url"]
    assert not page.errors.widget_errors(), page.errors.widget_errors()


# WCAG contrast ratio between an element's text colour and the turn card's background.
CONTRAST = """(selector) => {
  const el = document.querySelector(selector);
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const fg = lum(rgb(getComputedStyle(el).color));
  const bg = lum(rgb(getComputedStyle(el.closest('.kki-turn')).backgroundColor));
  return (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
}"""


def lab_artifact(name: str) -> Path:
    folder = Path(__file__).resolve().parents[1] / "artifacts"  # gitignored
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name
