"""Every demo notebook in notebooks/ runs top to bottom (nbclient, a real kernel of this venv)
against a test simulator, saves small and self-contained, and a second Run All pays nothing."""

from __future__ import annotations

import html
import os
import re
import shutil
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from kki_testing import TEST_KEY

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from kki_widgets.simulator import Simulator  # noqa: E402

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
MAX_BYTES = 200_000
ATTRIBUTE = re.compile(r"""\b(?:src|href|poster)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
BASE64_RUN = re.compile(r"[A-Za-z0-9+/=]{4000,}")

pytestmark = [pytest.mark.slow, pytest.mark.notebook]

# Notebooks whose rerun is known to pay again, with the reason. A fixed notebook fails its test
# until it is removed from here (so the list cannot go stale).


def test_there_are_demo_notebooks():
    names = {path.name for path in NOTEBOOKS}
    assert {"quickstart.ipynb", "batch.ipynb"} <= names


@pytest.fixture
def sim():
    # Short but non-zero timings: the cells really see queued/generating before the video.
    with Simulator(queue_seconds=0.05, generate_seconds=0.3, step_seconds=0.1, seed=11) as simulator:
        yield simulator


@pytest.mark.parametrize("source", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_saves_small_and_replays_for_free(source, sim, tmp_path):
    path = tmp_path / source.name
    shutil.copyfile(source, path)

    run_all(path, sim)
    first = check_saved(path)
    paid = len(sim.requests)
    assert paid > 0, "the notebook generated nothing"

    # Restart & Run All on the saved copy: everything replays from the store next to it.
    run_all(path, sim)
    second = check_saved(path)
    assert second["videos"] >= first["videos"] > 0
    repaid = [request["messages"][-1]["content"] for request in sim.requests[paid:]]
    assert repaid == [], f"Restart & Run All sent {len(repaid)} new request(s)"


# ---------------------------------------------------------------------------- helpers
def run_all(path: Path, sim: Simulator) -> None:
    """A fresh kernel of this venv runs every cell of `path`, and the result is saved over it."""
    notebook = nbformat.read(path, as_version=4)
    env = {
        **os.environ,
        "KKI_BASE_URL": sim.base_url,
        "KKI_API_KEY": TEST_KEY,
        "JPY_SESSION_NAME": str(path),
    }
    env.pop("KKI_MODEL", None)
    client = nbclient.NotebookClient(
        notebook,
        timeout=60,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.kernel_manager_class = _venv_kernel_manager()
    try:
        client.execute(env=env)
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{path.name}: a cell raised\n{error}")
    nbformat.write(notebook, path)


def check_saved(path: Path) -> dict:
    """Assert the saved notebook is small, embeds no video and references only real local media."""
    text = path.read_text(encoding="utf-8")
    size = len(text.encode())
    assert size < MAX_BYTES, f"{path.name} saved as {size} bytes"
    assert "data:video" not in text
    # Media are named relative to the notebook: no absolute path of this machine is saved.
    assert str(path.parent) not in text
    assert not BASE64_RUN.search(text), "a base64 blob is embedded in the saved notebook"

    notebook = nbformat.read(path, as_version=4)
    errors = [
        (cell.id, output.get("ename"))
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert errors == []
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    for output in outputs:
        assert not any(mime.startswith("video/") for mime in output.get("data", {})), output
    assert all(cell.execution_count for cell in notebook.cells if cell.cell_type == "code")

    references = set()
    for output in outputs:
        for mime, value in output.get("data", {}).items():
            if mime == "text/html":
                value = "".join(value) if isinstance(value, list) else value
                references.update(html.unescape(m) for m in ATTRIBUTE.findall(value))

    views = {o["data"][WIDGET_VIEW]["model_id"] for o in outputs if WIDGET_VIEW in o.get("data", {})}
    if views:
        states = notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
        assert views <= set(states), "a displayed widget has no saved state"
        chats = [states[v]["state"] for v in views if "turn_data" in states[v]["state"]]
        for chat in chats:
            assert not chat["busy"]
            for turn in chat["turn_data"]:
                assert turn["status"] == "completed", turn
                assert turn["local_url"], f"turn {turn['index']} has no local copy"
                references.add(turn["local_url"])
        assert any(chat["turn_data"] for chat in chats), "no widget shows a finished turn"

    local = {ref for ref in references if not urlsplit(ref).scheme and not ref.startswith(("/", "#"))}
    videos = 0
    for ref in sorted(local):
        file = path.parent / unquote(urlsplit(ref).path)
        assert file.is_file(), f"{path.name} references {ref!r}, which is not next to it"
        head = file.read_bytes()[:12]
        if file.suffix == ".mp4":
            assert head[4:8] == b"ftyp", f"{ref} is not an mp4"
            videos += 1
        elif file.suffix == ".webp":
            assert head[:4] == b"RIFF" and head[8:12] == b"WEBP", f"{ref} is not a webp"
    return {"videos": videos, "bytes": size}


def _venv_kernel_manager():
    from jupyter_client.manager import KernelManager

    class VenvKernelManager(KernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            return [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file]

    return VenvKernelManager


def _headless_run(path: Path, sim: Simulator, cells: list[str]) -> list[str]:
    """`cells` run like `jupyter nbconvert --execute` (no JPY_SESSION_NAME); each cell's text."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    env = {k: v for k, v in os.environ.items() if k not in ("JPY_SESSION_NAME", "KKI_MODEL", "KKI_NOTEBOOK")}
    env.update(KKI_BASE_URL=sim.base_url, KKI_API_KEY=TEST_KEY)
    client = nbclient.NotebookClient(notebook, timeout=60, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})  # fmt: skip
    client.kernel_manager_class = _venv_kernel_manager()
    client.execute(env=env)
    nbformat.write(notebook, path)
    return [
        "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in cell.outputs)
        for cell in notebook.cells
    ]


def test_headless_runs_say_what_they_count_and_a_named_notebook_gets_its_own_store(sim, tmp_path):
    # Two notebooks executed in one folder by a host that does not say which notebook runs.
    _headless_run(tmp_path / "one.ipynb", sim, ["%load_ext kki_widgets", "%%sora\na fox", "%%sora\nit runs"])
    texts = _headless_run(tmp_path / "two.ipynb", sim, ["%load_ext kki_widgets", "%%sora\nan owl", "%sora usage", "%sora history"])
    usage, history = texts[2], texts[3]
    # The counters are the folder's (3 paid requests by two notebooks), and the words say so.
    assert "this folder's headless runs: 3 paid requests" in usage, usage
    assert "this notebook" not in usage
    assert "this run's turns only" in history and "KKI_NOTEBOOK" in history, history

    # Named as papermill would (a parameters cell): its own store, its own counts.
    texts = _headless_run(tmp_path / "three.ipynb", sim, ['KKI_NOTEBOOK = "three"', "%load_ext kki_widgets",
                                                         "%%sora\na heron", "%sora usage"])  # fmt: skip
    assert "this notebook: 1 paid requests" in texts[3], texts[3]
    assert (tmp_path / ".kki" / "three.json").is_file()
    assert "three" not in (tmp_path / ".kki" / "default.json").read_text(encoding="utf-8")
