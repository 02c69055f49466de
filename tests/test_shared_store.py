"""The store as shared, untrusted state (issues 11, 12, 13): merges, tampering, moves, headless runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kki_testing import TEST_KEY, end_ipython, new_ipython

from kki_widgets import Conversation
from kki_widgets.store.notebook_store import NotebookStore, StoreError

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def conversation(sim, folder: Path, **options) -> Conversation:
    store = NotebookStore(folder / ".kki" / "notebook.json", secret=TEST_KEY)
    options.setdefault("poll_interval", 0.05)
    return Conversation(base_url=sim.base_url, api_key=TEST_KEY, store=store, **options)


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from kki_widgets import Conversation
    from kki_widgets.store.notebook_store import NotebookStore

    base_url, key, folder, who = sys.argv[1:5]
    store = NotebookStore(Path(folder) / ".kki" / "notebook.json", secret=key)
    conv = Conversation(base_url=base_url, api_key=key, store=store, poll_interval=0.01)
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    for i in range(8):
        conv.send(f"{who} shot {i}")
    print("done", flush=True)
    """
)


def test_two_processes_on_one_conversation_keep_all_sixteen_turns(fast_simulator, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, fast_simulator.base_url, TEST_KEY, str(tmp_path), who],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
        )
        for who in ("A", "B")
    ]
    for writer in writers:
        assert writer.stdout.readline().strip() == "ready"
    for writer in writers:
        writer.stdin.write("go\n")
        writer.stdin.flush()
    for writer in writers:
        assert writer.stdout.readline().strip() == "done"
        assert writer.wait(60) == 0

    merged = conversation(fast_simulator, tmp_path)
    prompts = sorted(turn.prompt for turn in merged.turns)
    assert prompts == sorted(f"{who} shot {i}" for who in "AB" for i in range(8))
    # Each kernel's chain is intact: every turn continues its own kernel's previous shot.
    for turn in merged.turns:
        who, _, i = turn.prompt.split()
        if i == "0":
            assert turn.parent is None
        else:
            assert merged.turns[turn.parent].prompt == f"{who} shot {int(i) - 1}"
            assert turn.messages[-2]["content"] == merged.turns[turn.parent].generation.text


def test_a_tampered_store_is_neither_played_linked_nor_copied(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path)
    turn = conv.send("a quiet harbour")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / ".env").write_text("KKI_API_KEY=sk-private")
    link = tmp_path / "kki_media" / "looks-fine.mp4"
    link.symlink_to(tmp_path / "notes" / ".env")

    conv.store.compact()  # the whole store in the snapshot, the file a user would edit
    path = conv.store.path
    data = json.loads(path.read_text())
    [record] = data["conversations"]["default"]["turns"].values()
    [entry] = data["cache"].values()
    # A media folder that is itself a link to somewhere private: only media files count there.
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----")
    (tmp_path / "private" / "id.mp4").write_text("-----BEGIN OPENSSH PRIVATE KEY-----")
    for target, (video, thumb) in {
        "/etc/passwd": ("/etc/passwd", "notes/.env"),
        "notes/.env": ("notes/.env", "../outside.png"),
        "link": (str(link), str(link)),
        "not media": ("kki_media/id_ed25519", "kki_media/id.mp4"),
    }.items():
        if target == "not media":
            shutil.move(tmp_path / "kki_media", tmp_path / "old_media")
            (tmp_path / "kki_media").symlink_to(tmp_path / "private")
        record["path"], record["thumbnail_path"] = video, thumb
        entry["paths"] = {"video": video, "thumbnail": thumb}
        path.write_text(json.dumps(data))

        reloaded = conversation(fast_simulator, tmp_path)
        [loaded] = reloaded.turns
        assert loaded.path is None and loaded.thumbnail_path is None, target
        html = loaded._repr_html_() + repr(loaded)
        assert "passwd" not in html and ".env" not in html and "looks-fine" not in html
        assert "id_ed25519" not in html and "id.mp4" not in html
        assert loaded.playable_url == turn.generation.video_url  # the relay's link, not the file
        # The cache entry is used the same way: a replay never points at the planted path.
        reloaded.reset()
        replayed = reloaded.send("a quiet harbour", force=False)
        assert replayed.cached and replayed.path is None


def test_a_tampered_store_cannot_feed_save_a_foreign_file(tmp_path, monkeypatch):
    from kki_widgets.simulator import Simulator

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / ".env").write_text("KKI_API_KEY=sk-private")
    store = tmp_path / ".kki" / "notebook.json"

    def cell(source: str):
        ip = new_ipython(store)
        result = ip.run_cell(source)
        assert result.error_in_exec is None and result.error_before_exec is None
        return result.result

    with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0, seed=5) as sim:
        monkeypatch.setenv("KKI_BASE_URL", sim.base_url)
        monkeypatch.setenv("KKI_API_KEY", TEST_KEY)
        try:
            cell("%%sora\na comet")
            NotebookStore(store).compact()  # the whole store in the file edited below
            data = json.loads(store.read_text())
            for record in data["conversations"]["default"]["turns"].values():
                record["path"] = "/etc/passwd"
            for entry in data["cache"].values():
                entry["paths"] = {"video": "notes/.env", "thumbnail": "/etc/passwd"}
            store.write_text(json.dumps(data))
            turn = cell("%%sora --save exports\na comet")
        finally:
            end_ipython()
    assert turn.cached and turn.path is None
    [saved] = (tmp_path / "exports").iterdir()
    assert saved.read_bytes()[4:8] == b"ftyp"  # the video, fetched again from its link
    assert b"sk-private" not in saved.read_bytes() and b"root:" not in saved.read_bytes()


@pytest.mark.parametrize("version", [1, 2])
def test_parent_cycles_are_broken_on_load_so_stitch_ends(fast_simulator, tmp_path, version):
    conv = conversation(fast_simulator, tmp_path)
    conv.send("a tower")
    conv.send("it sways")
    conv.store.compact()  # the whole store in the snapshot, the file edited below
    path = conv.store.path
    data = json.loads(path.read_text())
    turns = data["conversations"]["default"]["turns"]
    first, second = turns
    if version == 2:
        turns[first]["parent"] = second  # a parent that comes later: a loop through both
        turns[second]["parent"] = second  # and one that is its own parent
    else:
        data = {"version": 1, "conversations": {"default": {"head": 1, "turns": [
            {"index": 0, "prompt": "a tower", "parent": 1, "status": "completed",
             "generation": {"status": "completed"}},
            {"index": 1, "prompt": "it sways", "parent": 1, "status": "completed",
             "generation": {"status": "completed"}},
        ]}}}
    path.write_text(json.dumps(data))
    reloaded = conversation(fast_simulator, tmp_path)
    assert [turn.parent for turn in reloaded.turns] == [None, None]
    assert reloaded.chain(1) == [reloaded.turns[1]]


def test_a_planted_lock_symlink_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    store = NotebookStore(tmp_path / ".kki" / "nb.json")
    (tmp_path / ".kki").mkdir()
    Path(str(store.path) + ".lock").symlink_to(victim)
    with pytest.raises(StoreError, match="symbolic link"):
        store.bump("paid_requests")
    assert victim.read_text() == "precious"


def test_a_turn_is_one_write_per_state_change(fast_simulator, tmp_path, monkeypatch):
    conv = conversation(fast_simulator, tmp_path)
    conv.send("warm up")  # creates the file
    writes = []
    original = NotebookStore._write
    monkeypatch.setattr(NotebookStore, "_write", lambda self, store: (writes.append(1), original(self, store)))
    conv.send("a paid turn")
    # Claimed (before the first byte is sent), accepted (task ID, counter, pending, the claim's
    # task ID), the share ID seen (added to the claim the moment it shows: a verdict waits for
    # the media's bytes, so the sid comes a snapshot before "completed") and finished (turn,
    # cache, pending, claim settled): four state changes.
    assert len(writes) == 4


def test_store_size_is_linear_in_turns(tmp_path):
    """Each answer once, each turn referring to its parent: bytes per turn stay flat."""
    store = NotebookStore(tmp_path / ".kki" / "nb.json")
    answer = "> task: task_{n}\n" + "progress line\n" * 40
    messages: list = []
    sizes = {}
    for n in range(60):
        parent = f"t{n - 1}" if n else None
        messages = [*messages, {"role": "user", "content": f"shot {n} " + "words " * 20}]
        text = answer.format(n=n)
        turn = {"id": f"t{n}", "parent": parent, "prompt": f"shot {n}", "messages": messages,
                "generation": {"status": "completed", "text": text}}
        with store.batch():
            store.save_turns("film", [turn], head=turn["id"])
            store.cache_put(f"key{n}", {"generation": {"text": text}, "assistant_message": text})
        messages = [*messages, {"role": "assistant", "content": text}]
        if n + 1 in (10, 60):
            sizes[n + 1] = store.path.stat().st_size
    per_turn = {n: size / n for n, size in sizes.items()}
    assert per_turn[60] < per_turn[10] * 1.2, per_turn
    # And the history comes back exactly as it was sent.
    loaded = store.load_conversation("film")["turns"][-1]
    assert loaded["messages"] == messages[:-1]


def test_a_version_1_store_migrates_on_load(fast_simulator, tmp_path):
    first = "a lantern"
    conv = conversation(fast_simulator, tmp_path)
    a = conv.send(first)
    b = conv.send("it flickers")
    # Write the same conversation as main wrote it: full history in every turn, absolute paths.
    v1_turns = []
    for turn in (a, b):
        record = turn.to_dict()
        v1_turns.append(record)
    cache = {t.cache_key: {"generation": t.generation.to_dict(), "assistant_message": t.generation.text,
                           "paths": {"video": t.path, "thumbnail": t.thumbnail_path}} for t in (a, b)}
    old = {"version": 1, "conversations": {"default": {"turns": v1_turns, "head": 1}},
           "cache": cache, "pending": [], "usage": {"paid_requests": 2}}
    conv.store.compact()  # main wrote no journal: only the file below
    conv.store.path.write_text(json.dumps(old, indent=1))
    before = len(fast_simulator.requests)

    migrated = conversation(fast_simulator, tmp_path)
    assert [t.prompt for t in migrated.turns] == [first, "it flickers"]
    assert migrated.turns[1].parent == 0 and migrated.head == 1
    assert migrated.turns[1].messages == b.messages and migrated.turns[1].path == b.path
    migrated.reset()
    assert migrated.send(first).cached and len(fast_simulator.requests) == before
    assert json.loads(migrated.store.path.read_text())["version"] == 2


def test_a_moved_folder_replays_with_zero_generations(fast_simulator, tmp_path):
    original = tmp_path / "project"
    original.mkdir()
    conv = conversation(fast_simulator, original)
    prompts = ["a glass bridge", "fog rolls over it"]
    for prompt in prompts:
        conv.send(prompt)
    before = len(fast_simulator.requests)

    moved = tmp_path / "elsewhere" / "clone"
    moved.parent.mkdir()
    shutil.move(original, moved)
    restored = conversation(fast_simulator, moved)
    # The kept videos are found in the moved folder.
    assert all(turn.path and Path(turn.path).is_relative_to(moved / "kki_media") for turn in restored.turns)
    restored.reset()
    again = [restored.send(prompt) for prompt in prompts]
    assert all(turn.cached for turn in again)
    assert all(Path(turn.path).is_file() and Path(turn.path).is_relative_to(moved) for turn in again)
    assert len(fast_simulator.requests) == before
    assert str(original) not in restored.store.path.read_text()


def test_an_unidentified_kernel_keeps_its_conversation_to_itself(tmp_path, monkeypatch, caplog):
    from kki_widgets.store import notebook_store as store_module

    monkeypatch.setattr(store_module, "_in_kernel", lambda: True)
    with caplog.at_level("INFO", logger="kki_widgets.store.notebook_store"):
        first = NotebookStore.for_notebook(None)
    assert "kept in memory for this kernel only" in caplog.text
    second = NotebookStore.for_notebook(None)
    first.save_turns("default", [{"id": "a", "prompt": "notebook one"}])
    assert second.load_conversation("default") is None
    assert "conversations" not in json.dumps(first.load()["conversations"]) or not first.load()["conversations"]
    # The request cache stays shared: a rerun of any notebook replays for free.
    first.cache_put("k", {"assistant_message": "shared"})
    assert second.cache_get("k")["assistant_message"] == "shared"
    # Named explicitly, the store is the notebook's own.
    monkeypatch.setenv("KKI_NOTEBOOK", str(tmp_path / "films" / "one.ipynb"))
    assert NotebookStore.for_notebook(None).path == tmp_path / "films" / ".kki" / "one.json"


def test_headless_notebooks_in_one_folder_do_not_share_conversations(fast_simulator, tmp_path):
    """nbclient (like nbconvert --execute and papermill) tells the kernel nothing but its cwd."""
    import nbclient
    import nbformat
    from jupyter_client.manager import KernelManager

    class VenvKernelManager(KernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            return [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file]

    def run(name: str, prompt: str) -> list[str]:
        source = (
            "from kki_widgets import Conversation\n"
            "conv = Conversation(poll_interval=0.02)\n"
            f"turn = conv.send({prompt!r})\n"
            "print('TURNS', [t.prompt for t in conv.turns], turn.cached)"
        )
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
        nbformat.write(notebook, tmp_path / name)
        env = {**os.environ, "KKI_BASE_URL": fast_simulator.base_url, "KKI_API_KEY": TEST_KEY,
               "PYTHONPATH": str(PROJECT_ROOT)}
        env.pop("JPY_SESSION_NAME", None)
        client = nbclient.NotebookClient(notebook, timeout=60, kernel_name="python3",
                                         resources={"metadata": {"path": str(tmp_path)}})
        client.kernel_manager_class = VenvKernelManager
        client.execute(env=env)
        outputs = notebook.cells[0].outputs
        text = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
        printed = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
        # Said in a log line, not printed into the saved notebook (with this machine's paths).
        assert str(tmp_path) not in printed
        return text.split("TURNS ", 1)[1].strip()

    assert run("one.ipynb", "notebook one's shot") == "[\"notebook one's shot\"] False"
    assert run("two.ipynb", "notebook two's shot") == "[\"notebook two's shot\"] False"
    before = len(fast_simulator.requests)
    # A rerun of the first notebook replays from the shared request cache: no new generation.
    assert run("one.ipynb", "notebook one's shot") == "[\"notebook one's shot\"] True"
    assert len(fast_simulator.requests) == before
