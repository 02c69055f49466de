"""%%sora / %sora in a real IPython shell against the simulator, with the store in tmp_path."""

from __future__ import annotations

import json
import re
import time

import pytest
from IPython.core.error import UsageError
from kki_testing import TEST_KEY, abandon_after_task_id, point_package_at, simulated_relay
from kki_testing import run_cell as run

from kki_widgets.notebook.magics import SoraMagics, TurnTable, interpolate
from kki_widgets.simulator import Simulator
from kki_widgets.store.notebook_store import NotebookStore


@pytest.fixture
def sim(monkeypatch):
    with simulated_relay(monkeypatch, seed=3) as simulator:
        yield simulator


def test_two_cells_continue_the_video_and_a_fresh_kernel_replays_them(sim, new_shell, tmp_path):
    ip = new_shell()
    first = run(ip, "%%sora\na paper boat on a rainy street")
    assert first.status == "completed" and first.index == 0 and not first.cached
    assert ip.user_ns["_"] is first
    second = run(ip, "%%sora\nthe boat reaches the sea")
    assert second.status == "completed" and second.parent == 0

    assert len(sim.requests) == 2
    sent = sim.requests[1]["messages"]
    assert sent[0] == {"role": "user", "content": "a paper boat on a rainy street"}
    assert sent[1] == {"role": "assistant", "content": first.generation.text}  # verbatim
    assert sent[2]["content"] == "the boat reaches the sea"
    # Videos are kept next to the notebook.
    assert first.path and (tmp_path / "kki_media").is_dir()
    assert str(tmp_path / "kki_media") in first.path

    # Restart & Run All: the same cells replay from the store, nothing is sent or paid.
    ip = new_shell()
    replay_first = run(ip, "%%sora\na paper boat on a rainy street")
    replay_second = run(ip, "%%sora\nthe boat reaches the sea")
    assert len(sim.requests) == 2
    assert replay_first.cached and replay_second.cached
    assert replay_second.generation.text == second.generation.text
    assert [t.index for t in ip.magics_manager.registry["SoraMagics"].conversation().turns] == [0, 1]

    # --force pays for exactly one new generation.
    forced = run(ip, "%%sora --force --new\na paper boat on a rainy street")
    assert len(sim.requests) == 3 and not forced.cached
    usage = ip.run_line_magic("sora", "usage")
    assert usage["paid_requests"] == 3 and usage["cache_hits"] >= 2


@pytest.mark.parametrize("key", ["han1234", "sim"])  # sora2api's default; the simulator's old hint
def test_a_short_self_hosted_key_still_keeps_the_notebook_and_its_rerun_is_free(sim, new_shell, monkeypatch, tmp_path, key):
    monkeypatch.setenv("KKI_API_KEY", key)
    first = run(new_shell(), "%%sora\na paper boat on a rainy street")
    assert first.status == "completed" and not first.cached
    # A fresh kernel finds it in the store: the key never made a write refused.
    again = run(new_shell(), "%%sora\na paper boat on a rainy street")
    assert again.cached and len(sim.requests) == 1
    kept = "".join(path.read_text() for path in (tmp_path / ".kki").iterdir() if path.is_file())
    assert "simulated" in kept and not re.search(rf"(?<![\w-]){key}(?![\w-])", kept, re.ASCII)


def test_rerunning_a_cell_in_the_same_kernel_replays_it(sim, new_shell):
    ip = new_shell()
    magics = ip.magics_manager.registry["SoraMagics"]
    magics._cell_id = lambda: "cell-1"  # what JupyterLab sends in the execute request
    run(ip, "%%sora\nfirst shot")
    magics._cell_id = lambda: "cell-2"
    run(ip, "%%sora\nsecond shot")
    magics._cell_id = lambda: "cell-1"
    again = run(ip, "%%sora\nfirst shot")  # continues what it continued before: nothing
    assert again.index == 0 and again.cached
    assert len(sim.requests) == 2


def test_options_branching_and_config(sim, new_shell):
    ip = new_shell()
    ip.run_line_magic("config", 'SoraMagics.model = "sora-2-pro"')
    assert ip.magics_manager.registry["SoraMagics"].model == "sora-2-pro"
    run(ip, "%%sora --orientation landscape --duration 15\na lighthouse")
    assert sim.requests[-1]["model"] == "sora-2-pro"
    words = "a lighthouse (landscape 16:9, horizontal, duration: 15 seconds)"
    assert sim.requests[-1]["messages"][-1]["content"] == words
    made = list(sim.tasks.values())[-1]  # what the relay read from the words
    assert (made.orientation, made.duration) == ("landscape", 15)
    run(ip, "%%sora -m veo3\nat night")
    assert sim.requests[-1]["model"] == "veo3"
    branch = run(ip, "%%sora --from 0\nin fog")
    assert branch.parent == 0
    assert len(sim.requests[-1]["messages"]) == 3
    fresh = run(ip, "%%sora --new\na desert")
    assert fresh.parent is None and len(sim.requests[-1]["messages"]) == 1
    other = run(ip, "%%sora --session trailer\na title card")
    assert other.index == 0 and other.parent is None


def test_variables_are_interpolated(sim, new_shell):
    ip = new_shell()
    ip.user_ns.update(animal="otter", shot={"lens": "35mm"})
    turn = run(ip, '%%sora\na {animal} with a {shot[lens]} lens, {{literal}}, {unknown}, {"json": 1}')
    expected = 'a otter with a 35mm lens, {literal}, {unknown}, {"json": 1}'
    assert turn.prompt == expected
    assert sim.requests[-1]["messages"][-1]["content"] == expected


def test_interpolate_edge_cases():
    ns = {"n": 3, "name": "Ann", "items": [1, 2]}
    assert interpolate("{n:03d} {name!r} {items[1]}", ns) == "003 'Ann' 2"
    assert interpolate("{} {0} {n.missing} {items[9]}", ns) == "{} {0} {n.missing} {items[9]}"
    assert interpolate("unbalanced } and {", ns) == "unbalanced } and {"
    assert interpolate("{{n}} is {n}", ns) == "{n} is 3"


def test_line_commands(sim, new_shell, capsys):
    ip = new_shell()
    run(ip, "%%sora\nshot one")
    run(ip, "%%sora\nshot two")

    table = ip.run_line_magic("sora", "history")
    assert isinstance(table, TurnTable)
    text = repr(table)
    assert "shot one" in text and "shot two" in text and "1*" in text
    assert "<table>" in table._repr_html_() and "completed" in table._repr_html_()

    ip.run_line_magic("sora", "show 0")
    ip.run_line_magic("sora", "undo")
    assert "continues from turn 0" in capsys.readouterr().out
    after_undo = run(ip, "%%sora\nshot two, take two")
    assert after_undo.parent == 0

    ip.run_line_magic("sora", "reset")
    assert run(ip, "%%sora\nanother film").parent is None

    run(ip, "%%sora --session b\nb roll")
    capsys.readouterr()
    ip.run_line_magic("sora", "sessions")
    listing = capsys.readouterr().out
    assert "default" in listing and "b (1 turn)" in listing
    ip.run_line_magic("sora", "use b")
    assert ip.magics_manager.registry["SoraMagics"].session == "b"

    ip.run_line_magic("sora", "config")
    config = capsys.readouterr().out
    assert sim.base_url in config and "…" in config  # the key is shown masked
    assert TEST_KEY not in config

    report = ip.run_line_magic("sora", "cost")
    assert "paid requests" in repr(report) and report["paid_requests"] >= 1


def test_resume_fetches_a_task_by_id(sim, new_shell):
    ip = new_shell()
    turn = run(ip, "%%sora\na kite")
    task_id = turn.generation.task_id
    # A task accepted in another kernel: adopt it by ID.
    ip2 = new_shell()
    ip2.run_line_magic("config", "SoraMagics.session = 'recovered'")
    before = len(sim.requests)
    resumed = ip2.run_line_magic("sora", f"resume {task_id}")
    assert resumed.status == "completed"
    assert resumed.generation.video_url == turn.generation.video_url
    assert len(sim.requests) == before  # polling the raw-data URL is not a new generation


def test_a_bare_resume_says_why_a_task_without_a_raw_data_link_cannot_be_followed(new_shell, monkeypatch):
    """The widget's Resume button and `%sora resume` read one rule (`turn.follow_blocker`)."""
    from kki_testing import ReplayServer, sse_body

    from kki_widgets.conversation.turn import follow_blocker

    server = ReplayServer(sse_body(["Task submitted.\n", "Task ID: `gen-4f2a9c`\n", "Query its status later.\n"]),
                          piece=64, pause=0)  # fmt: skip
    try:
        monkeypatch.setenv("KKI_BASE_URL", server.base_url)
        monkeypatch.setenv("KKI_API_KEY", TEST_KEY)
        ip = new_shell()
        ended = ip.run_cell("%%sora\na fox")
        turn = ended.result or ended.error_in_exec.turn
        assert turn.status == "still_running" and turn.task_id == "gen-4f2a9c"
        with pytest.raises(UsageError) as refused:
            ip.run_line_magic("sora", "resume")
        assert str(refused.value) == follow_blocker(turn)
        assert "gave task ID gen-4f2a9c but no raw-data link" in str(refused.value)
        assert len(server.requests) == 1  # nothing sent again, nothing guessed
    finally:
        server.close()


def test_interrupt_stops_the_wait_not_the_generation_and_a_rerun_picks_it_up(monkeypatch, new_shell, capsys):
    from kki_widgets.notebook import magics

    with simulated_relay(monkeypatch, generate_seconds=1.5, step_seconds=0.1, seed=5) as slow:
        ip = new_shell()

        def interrupt_once_accepted(self, turn, *, final=False):
            if turn.generation.task_id and not final:
                raise KeyboardInterrupt  # what "Interrupt Kernel" raises in the waiting cell

        monkeypatch.setattr(magics._CompactView, "update", interrupt_once_accepted)
        turn = run(ip, "%%sora\na slow sunrise")
        task_id = turn.generation.task_id
        said = capsys.readouterr().err
        assert task_id and "keeps running at the relay" in said and "rerun this cell" in said
        assert turn.status not in ("cancelled", "failed")  # the wait stopped, not the generation

        monkeypatch.undo()
        point_package_at(monkeypatch, slow)
        again = run(ip, "%%sora\na slow sunrise")  # the same cell, run again
        assert again is turn and again.status == "completed" and again.task_id == task_id
        assert len(slow.requests) == 1 and slow.submissions == 1  # picked up, not paid again


def test_save_copies_the_video(sim, new_shell, tmp_path):
    ip = new_shell()
    turn = run(ip, "%%sora --save exports\na comet")
    saved = tmp_path / "exports" / turn.path.rsplit("/", 1)[-1]
    assert saved.is_file() and saved.read_bytes()[4:8] == b"ftyp"


def test_background_returns_at_once(sim, new_shell):
    ip = new_shell()
    handle = run(ip, "%%sora --background\na quick one")
    turn = handle.result(timeout=30)
    assert turn.status == "completed"


def test_widget_display(sim, new_shell):
    ip = new_shell(display="widget")
    turn = run(ip, "%%sora\nwith a widget")
    assert turn.status == "completed"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("%%sora\n   \n", "needs a prompt"),
        ("%%sora --bogus\na cat", "unrecognized arguments"),
        ("%%sora --from 5\na cat", "--from 5"),
        ("%%sora --image nowhere.png\na cat", "--image nowhere.png"),
        ("%sora dance", "unknown command"),
        ("%sora use nope", "no session 'nope'"),
        ("%sora show 9", "no turns yet"),
    ],
)
def test_usage_errors_name_the_fix(sim, new_shell, source, message):
    ip = new_shell()
    with pytest.raises(UsageError, match=message):
        run(ip, source)


def test_missing_key_is_a_usage_error(monkeypatch, new_shell):
    monkeypatch.setenv("KKI_BASE_URL", "https://relay.example/v1")
    ip = new_shell()
    with pytest.raises(UsageError, match="KKI_API_KEY"):
        run(ip, "%%sora\na cat")


def test_the_key_never_reaches_the_store(sim, new_shell, tmp_path):
    ip = new_shell()
    run(ip, "%%sora\na cat")
    ip.run_line_magic("sora", "history")
    journal = tmp_path / ".kki" / "notebook.journal"
    assert journal.is_file() and TEST_KEY not in journal.read_text()
    NotebookStore(tmp_path / ".kki" / "notebook.json").compact()  # the journal into the snapshot
    text = (tmp_path / ".kki" / "notebook.json").read_text()
    assert TEST_KEY not in text
    [turn] = json.loads(text)["conversations"]["default"]["turns"].values()  # turns by ID
    assert turn["prompt"] == "a cat"


def test_extension_loads_once_and_help_lists_options(new_shell):
    ip = new_shell()
    ip.run_line_magic("reload_ext", "kki_widgets")
    assert isinstance(ip.magics_manager.registry["SoraMagics"], SoraMagics)
    doc = ip.find_cell_magic("sora").__doc__
    for option in ("--model", "--orientation", "--duration", "--new", "--session", "--from",
                   "--image", "--force", "--background", "--save"):
        assert option in doc


@pytest.mark.slow
def test_run_all_in_a_real_kernel_records_finished_cells_and_replays(sim, tmp_path):
    """nbclient (Run All): each cell waits for its video; a second run pays nothing."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("%load_ext kki_widgets\n%config SoraMagics.display = 'compact'"),
        nbformat.v4.new_code_cell("%%sora\na red balloon"),
        nbformat.v4.new_code_cell("%%sora\nit pops"),
        nbformat.v4.new_code_cell("%sora usage"),
    ]
    for _ in range(2):
        nbclient.NotebookClient(
            notebook, timeout=120, kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path)}},
        ).execute()
    assert len(sim.requests) == 2
    for cell, prompt in zip(notebook.cells[1:3], ("a red balloon", "it pops"), strict=True):
        # One output per cell: the card, updated in place to the video. The returned Turn is
        # the cell's value (`_`) but is not drawn a second time.
        assert [o["output_type"] for o in cell.outputs] == ["display_data"], cell.outputs
        card = cell.outputs[0]["data"]
        assert "replayed, not paid" in card["text/plain"]
        assert card["text/html"].count("<video") == 1
        assert card["text/html"].count(prompt) == 1
        assert card["text/plain"].count(prompt) == 1
        assert "<source" not in card["text/html"]
    usage = [o["data"]["text/plain"] for o in notebook.cells[3].outputs if o["output_type"] == "execute_result"]
    assert "2 paid requests" in usage[0]
    assert len(list((tmp_path / "kki_media").glob("*.mp4"))) == 2


def test_a_new_kernel_fetches_what_a_dead_one_paid_for(new_shell, tmp_path, monkeypatch, capsys):
    from kki_widgets import Conversation
    from kki_widgets.store.notebook_store import NotebookStore

    with simulated_relay(monkeypatch, queue_seconds=0.2, generate_seconds=1.0, step_seconds=0.1) as slow:
        store = NotebookStore(tmp_path / ".kki" / "notebook.json")
        dying = Conversation(store=store, poll_interval=0.05)

        task_id = abandon_after_task_id(dying, "a kite over the dunes")
        ip = new_shell()
        run(ip, "%sora history")
        assert task_id in capsys.readouterr().err
        conversation = ip.magics_manager.registry["SoraMagics"].conversation()
        deadline = time.time() + 30
        while (conversation.pending or conversation.running) and time.time() < deadline:
            time.sleep(0.1)
        assert conversation.turns[0].status == "completed"
        assert slow.submissions == 1


def test_config_profile_says_options_in_the_model_name(sim, new_shell):
    ip = new_shell()
    ip.run_line_magic("config", 'SoraMagics.profile = "sora2api"')
    run(ip, "%%sora --orientation landscape --duration 15\na lighthouse")
    assert sim.requests[-1]["model"] == "sora2-landscape-15s"
    assert sim.requests[-1]["messages"][-1]["content"] == "a lighthouse"
    with pytest.raises(UsageError, match="10, 15, 25"):
        run(ip, "%%sora --duration 12\na lighthouse")
    assert len(sim.requests) == 1  # refused before sending
    ip.run_line_magic("config", 'SoraMagics.profile = "carrier-pigeon"')
    with pytest.raises(UsageError, match="unknown relay profile"):
        run(ip, "%%sora\na lighthouse")


def test_embedded_simulator_reruns_are_free_in_a_fresh_kernel(new_shell, monkeypatch):
    """No key: each kernel starts the embedded simulator on a new random port. The port is not
    part of what was asked, so Restart & Run All must replay every cell from the store."""
    from kki_widgets.simulator import embedded

    cells = ["%%sora\na paper boat", "%%sora --orientation landscape\nthe boat reaches the sea"]
    ports = []
    for _kernel in range(2):
        with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0) as kernel_sim:
            monkeypatch.setattr(embedded, "_instance", kernel_sim)  # this kernel's embedded relay
            ports.append(kernel_sim.base_url)
            ip = new_shell()
            turns = [run(ip, cell) for cell in cells]
            assert all(turn.status == "completed" and turn.simulated for turn in turns)
            usage = ip.run_line_magic("sora", "usage")
            requests = len(kernel_sim.requests)
    assert ports[0] != ports[1]
    assert requests == 0 and all(turn.cached for turn in turns)
    assert usage["paid_requests"] == 2 and usage["cache_hits"] == 2
