"""The exported page in Debian's chromium from file://: the film plays, every shot and the tree show."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from kki_testing import TEST_KEY

from kki_widgets import Conversation
from kki_widgets.media.downloads import probe
from kki_widgets.store.notebook_store import NotebookStore

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
HOSTILE = 'a paper boat <img src=x onerror="document.title=1"> <script>document.title=2</script>'


@pytest.fixture
def story(fast_simulator, tmp_path):
    """Four turns with a branch: 0 → 1 → 3 (by last frame) is the cut; 2 branches off 0."""
    store = NotebookStore(tmp_path / "nb" / ".kki" / "nb.json", secret=TEST_KEY)
    conv = Conversation(base_url=fast_simulator.base_url, api_key=TEST_KEY, store=store)
    root = conv.send(HOSTILE)
    river = conv.send("the boat reaches a river")
    conv.branch(root.index)
    conv.send("the boat sinks in a puddle")
    conv.branch(river.index)
    conv.send("the river meets the sea", continue_from="last_frame")
    return conv


def play(page, selector: str) -> dict:
    page.evaluate(f"() => {{ const v = document.querySelector({selector!r}); v.muted = true; return v.play(); }}")
    page.wait_for_function(f"() => document.querySelector({selector!r}).currentTime > 0.5", timeout=20_000)
    return page.evaluate(
        f"""() => {{ const v = document.querySelector({selector!r});
              return {{duration: v.duration, width: v.videoWidth, error: v.error && v.error.code}}; }}"""
    )


def test_exported_page_plays_the_film_and_shows_every_shot_and_the_tree(story, page, tmp_path):
    site = tmp_path / "site"
    exported = story.export(site / "film.html", title="The boat")
    film = probe(site / "film_files" / "film.mp4")
    page.goto(exported.resolve().as_uri())

    facts = play(page, "#kki-film")
    assert facts["error"] is None and facts["width"] > 0
    assert facts["duration"] == pytest.approx(film.duration, abs=0.2)
    cues = page.evaluate("() => document.querySelector('#kki-film').textTracks[0].cues.length")
    assert cues == 3  # one caption per shot of the cut, from the .srt
    first_cue = page.evaluate(
        "() => document.querySelector('#kki-film').textTracks[0].cues[0].getCueAsHTML().textContent"
    )
    assert first_cue == HOSTILE  # shown as written, not read as cue markup

    shots = page.locator(".kki-shot .kki-prompt").all_text_contents()
    chain = [0, 1, 3]
    assert shots == [story.turns[i].prompt for i in chain]
    assert page.locator(".kki-shot video").count() == 3
    assert "from the last frame of turn 1" in page.locator(".kki-shot").nth(2).inner_text()
    play(page, ".kki-shot:nth-child(2) video")

    # The tree: every turn once; turn 2 hangs under turn 0, turn 3 under turn 1.
    nodes = page.locator(".kki-tree .kki-node")
    assert sorted(int(n) for n in nodes.evaluate_all("ns => ns.map(n => n.dataset.turn)")) == [0, 1, 2, 3]
    parent_of = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('.kki-tree .kki-node')].map(n => {
             const up = n.parentElement.parentElement.closest('li');
             return [n.dataset.turn, up ? up.querySelector(':scope > .kki-node').dataset.turn : null];
           }))"""
    )
    assert parent_of == {"0": None, "1": "0", "2": "0", "3": "1"}
    in_film = page.locator(".kki-tree .kki-in-film").evaluate_all("ns => ns.map(n => n.dataset.turn)")
    assert in_film == ["0", "1", "3"]

    # Relay text stayed text: no element was injected, nothing ran.
    assert page.evaluate("() => document.scripts.length") == 0
    assert page.locator(".kki-shot img").count() == 0
    assert page.title() == "The boat"
    assert HOSTILE in page.locator(".kki-shot .kki-prompt").first.inner_text()
    assert not page.errors.widget_errors()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "export-page.png"), full_page=True)


def test_embedded_page_is_one_file_that_plays_anywhere(story, page, tmp_path):
    exported = story.export(tmp_path / "made" / "one.html", embed=True)
    assert not (tmp_path / "made" / "one_files").exists()
    moved = tmp_path / "elsewhere" / "one.html"
    moved.parent.mkdir()
    shutil.move(exported, moved)  # nothing next to it: everything is inside the page
    page.goto(moved.as_uri())
    facts = play(page, "#kki-film")
    assert facts["error"] is None and facts["width"] > 0
    assert page.locator(".kki-shot video").count() == 3
