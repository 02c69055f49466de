"""A whole notebook session with a recognisable key — magic, widget, store, errors, DEBUG logs,
the saved notebook — and then every artifact is searched for the key: zero occurrences."""

from __future__ import annotations

import os
import sys

import nbformat
import pytest
from kki_testing import TEST_KEY
from nbclient import NotebookClient

CELLS = [
    "import logging\n"
    "logging.basicConfig(filename='session.log', level=logging.DEBUG, force=True)\n"
    "logging.getLogger('httpx').setLevel(logging.DEBUG)\n"
    "logging.getLogger('httpcore').setLevel(logging.DEBUG)",
    "%load_ext kki_widgets",
    "%%sora\na fox in the snow",
    "%%sora\nthe fox jumps [[fault:cut_after_task_id]]",
    "%sora config",
    "%sora history",
    "%sora usage",
    "%%sora\nx [[fault:status:401]]",
    "%%sora\nx [[fault:policy]]",
    "from kki_widgets import VideoChat, RelayClient, Conversation\n"
    "chat = VideoChat()\nchat",
    "turn = await chat.send('a cat on a piano')\nturn",
    "client = RelayClient()\nprint(repr(client), client.settings, client.settings.api_key)",
    "import os\nbad = RelayClient(base_url=os.environ['KKI_BASE_URL'], api_key=os.environ['KKI_API_KEY'], max_retries=0)\n"
    "bad.generate('x [[fault:status:429]]')",
    "Conversation().turns[-1].raise_for_status()",
    # The widget's password field (issue 21): the key arrives in one custom message, exactly as
    # the front end's model.send delivers it, on a VideoChat named by its base URL only.
    "import os\ntyped = os.environ.pop('KKI_API_KEY')\n"
    "connected = VideoChat(base_url=os.environ['KKI_BASE_URL'])\nprint('needs key', connected.needs_key)\n"
    "connected._handle_msg({'content': {'data': {'method': 'custom', 'content': "
    "{'type': 'connect', 'id': 'k1', 'key': typed}}}, 'buffers': []})\n"
    "os.environ['KKI_API_KEY'] = typed\ndel typed\nconnected",
    "turn = await connected.send('a heron at dawn')\nprint(turn.status, connected.needs_key, connected.relay_text)",
    "base = os.environ['KKI_BASE_URL']\n%sora connect $base",
    "%sora models",
    "import os\nprint('key length', len(os.environ.get('KKI_API_KEY', '')))",
]


@pytest.mark.slow
def test_the_key_appears_in_no_artifact(relay_env, tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "leak.ipynb"
    nbformat.write(notebook, path)

    env = {**os.environ, "KKI_BASE_URL": relay_env.base_url, "KKI_API_KEY": TEST_KEY}
    env["JPY_SESSION_NAME"] = str(path)
    client = NotebookClient(
        notebook,
        timeout=120,
        allow_errors=True,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    # The kernel must be the one of this venv, whatever kernelspecs the machine has.
    client.kernel_manager_class = _venv_kernel_manager()
    requests_before = len(relay_env.requests)
    client.execute(env=env)
    nbformat.write(notebook, path)

    # The kernel really held the key and really talked to this test's relay.
    assert f"key length {len(TEST_KEY)}" in repr(notebook.cells[-1].outputs)
    assert len(relay_env.requests) > requests_before + 4

    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    texts = repr(outputs)
    assert "Generation Complete" in texts or "completed" in texts  # the session really ran
    assert "KKI_API_KEY" in texts  # the 401 error names the fix
    assert "needs key True" in texts and "completed False" in texts  # the typed key connected
    assert "reachable, key accepted" in texts  # %sora connect pinged with the key
    assert (tmp_path / "session.log").stat().st_size > 0
    assert list((tmp_path / ".kki").glob("*.json"))

    leaks = []
    for file in tmp_path.rglob("*"):
        if file.is_file() and TEST_KEY.encode() in file.read_bytes():
            leaks.append(str(file.relative_to(tmp_path)))
    assert leaks == []
    # What the relay received is only the chat body: the key travelled in the header alone.
    assert TEST_KEY not in repr(relay_env.requests)


def _venv_kernel_manager():
    from jupyter_client.manager import KernelManager

    class VenvKernelManager(KernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            return [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file]

    return VenvKernelManager
