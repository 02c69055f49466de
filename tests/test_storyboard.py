"""%%sora --storyboard and --from-frame in a real IPython shell; %sora film / export."""

from __future__ import annotations

import base64
import io
import re

import pytest
from IPython.core.error import UsageError
from kki_testing import run_cell as run
from kki_testing import simulated_relay
from PIL import Image

from kki_widgets.conversation.storyboard import parse_shots
from kki_widgets.media.downloads import probe

BOARD = """%%sora --storyboard
- a fox wakes up in its den
- the fox steps into the snow
- the fox {verb} across a frozen lake
- the fox reaches the far shore
"""


@pytest.fixture
def sim(monkeypatch):
    with simulated_relay(monkeypatch, seed=5) as simulator:
        yield simulator


def test_parse_shots_lists_lines_and_continuations():
    assert parse_shots("# Title\n\n- one\n  more of one\n* two\nnotes, not a shot\n3. three\n") == [
        "one more of one", "two", "three",
    ]  # fmt: skip
    assert parse_shots("\n## Act 1\nfirst line\n\n second line \n") == ["first line", "second line"]
    assert parse_shots("   \n") == []


def test_four_shot_board_chains_replays_and_regenerates_only_what_changed(sim, new_shell):
    ip = new_shell()
    ip.user_ns["verb"] = "runs"
    board = run(ip, BOARD)
    turns = board.turns
    assert [t.status for t in turns] == ["completed"] * 4
    assert [t.parent for t in turns] == [None, 0, 1, 2]  # a chain
    assert len(sim.requests) == 4
    # Each shot remixes the previous one: its answer is sent back verbatim.
    for shot in (1, 2, 3):
        messages = sim.requests[shot]["messages"]
        assert messages[-2] == {"role": "assistant", "content": turns[shot - 1].generation.text}
    assert turns[2].prompt == "the fox runs across a frozen lake"
    html = board._repr_html_()
    assert html.count("<video") == 4 and "4 of 4 shots ready" in html

    # Restart & Run All: the whole board replays, nothing is sent.
    ip = new_shell()
    ip.user_ns["verb"] = "runs"
    again = run(ip, BOARD)
    assert len(sim.requests) == 4
    assert all(t.cached for t in again.turns)
    assert [t.generation.video_url for t in again.turns] == [t.generation.video_url for t in turns]

    # Editing shot 3 regenerates shots 3 and 4 only.
    ip = new_shell()
    ip.user_ns["verb"] = "slides"
    edited = run(ip, BOARD)
    assert len(sim.requests) == 6
    assert [t.cached for t in edited.turns] == [True, True, False, False]
    assert edited.turns[2].parent == turns[1].index and edited.turns[3].parent == edited.turns[2].index


def test_a_board_rerun_in_the_same_kernel_keeps_its_start(sim, new_shell):
    ip = new_shell(cell_id="intro")
    run(ip, "%%sora\nan empty stage")
    ip.magics_manager.registry["SoraMagics"]._cell_id = lambda: "board"
    ip.user_ns["verb"] = "runs"
    first = run(ip, BOARD)
    assert first.turns[0].parent == 0 and len(sim.requests) == 5
    again = run(ip, BOARD)  # the head is now shot 4; the board still starts after "intro"
    assert len(sim.requests) == 5 and again.turns[0].index == first.turns[0].index
    ip.user_ns["verb"] = "swims"
    run(ip, BOARD)
    assert len(sim.requests) == 7


def test_board_from_frame_sends_each_previous_last_frame(sim, new_shell):
    ip = new_shell()
    board = run(ip, "%%sora --storyboard --from-frame\nsunrise over a bay\na boat leaves the bay\n")
    first, second = board.turns
    assert second.parent == first.index and second.options["continue_from"] == "last_frame"
    body = sim.requests[-1]
    assert [m["role"] for m in body["messages"]] == ["user"]
    url = body["messages"][0]["content"][1]["image_url"]["url"]
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size == (probe(first.path).width, probe(first.path).height)


def test_from_frame_cell_and_its_errors(sim, new_shell):
    ip = new_shell()
    with pytest.raises(UsageError, match=r"--from-frame.*new video"):
        run(ip, "%%sora --from-frame\nno parent here")
    assert not sim.requests
    run(ip, "%%sora\na kite")
    child = run(ip, "%%sora --from-frame\nthe kite dives")
    assert child.options["continue_from"] == "last_frame"
    assert "from the last frame of turn 0" in child._repr_html_()
    assert sim.requests[-1]["messages"][-1]["content"][1]["type"] == "image_url"
    with pytest.raises(UsageError, match="needs shots"):
        run(ip, "%%sora --storyboard\n\n# only a heading\n")
    with pytest.raises(UsageError, match="drop --background"):
        run(ip, "%%sora --storyboard --background\none\ntwo\n")


def test_a_failed_shot_stops_the_board(sim, new_shell):
    ip = new_shell()
    with pytest.raises(Exception, match="content policies"):
        run(ip, "%%sora --storyboard\nshot one [[fault:policy]]\nshot two\n")
    assert len(sim.requests) == 1  # shot two was never sent: it would continue nothing


def test_film_and_export_commands(sim, new_shell, tmp_path):
    ip = new_shell()
    ip.user_ns["verb"] = "runs"
    run(ip, BOARD)
    film = ip.run_line_magic("sora", "film cut/fox.mp4 --fade 0.25 --title Fox")
    assert probe(film.path).duration == pytest.approx(film.duration, abs=0.1)
    assert film.srt_path.read_text().count(" --> ") == 4
    with pytest.raises(UsageError, match="usage"):
        ip.run_line_magic("sora", "film")
    page = ip.run_line_magic("sora", "export site/fox.html")
    text = page.read_text()
    assert text.count("class='kki-shot'") == 4 and "kki-tree" in text
    with pytest.raises(UsageError, match=r"\.html"):
        ip.run_line_magic("sora", "export fox.mp4")


def test_the_strip_fills_in_live(monkeypatch, new_shell):
    from IPython.utils.capture import capture_output

    with simulated_relay(monkeypatch, queue_seconds=0.1, generate_seconds=0.8, step_seconds=0.1, seed=2):
        ip = new_shell()
        with capture_output() as captured:
            board = run(ip, "%%sora --storyboard\n- a kettle on a stove\n- the kettle boils\n")
    strips = [o.data.get("text/html", "") for o in captured.outputs if "kki-storyboard" in o.data.get("text/html", "")]
    updates = [o for o in captured.outputs if o.update]
    assert updates, "the strip is updated in place, not printed again"
    states = [tuple(re.findall(r"<b>\d</b> · <small>(\w+)", s)) for s in strips]
    # Seen while it ran: shot 1 generating with shot 2 waiting; then shot 1 done, shot 2 running.
    assert ("generating", "waiting") in states
    assert ("completed", "generating") in states
    assert any(s.count("<video") == 1 for s in strips)
    assert [t.status for t in board.turns] == ["completed", "completed"]


def test_a_board_on_a_relay_without_remix_chains_by_frame(sim, new_shell):
    ip = new_shell()
    ip.run_line_magic("config", 'SoraMagics.profile = "flow2api"')
    board = run(ip, "%%sora --storyboard -m veo3\n- a lantern is lit\n- the lantern floats away\n")
    first, second = board.turns
    assert second.parent == first.index and second.options["continue_from"] == "last_frame"
    assert "cannot remix" in second.note and "cannot remix" in board._repr_html_()
    # The frame goes to the image-to-video twin: flow2api's text-to-video models drop images.
    assert sim.requests[-1]["model"] == "veo_3_1_i2v_s_portrait"
    assert sim.requests[-1]["messages"][0]["content"][1]["type"] == "image_url"
