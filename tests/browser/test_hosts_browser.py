"""VideoChat outside JupyterLab, in a real chromium: Voila, marimo, and a restored notebook whose
kernel no longer holds the widget (issue 22).

In each host the finished turn plays, shows its poster and a Download link, and nothing of our
own is called an "Unsafe link". Every kernel talks to a simulator run by this test process.
Screenshots land in tests/artifacts/hosts-*.png.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kki_widgets.simulator import Simulator

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
VENV_BIN = Path(sys.executable).parent
KEY = "sim-test-key"
PROMPT = "a paper boat sailing across a rain puddle"
# What `make voila` and the README give Voila: its defaults plus the widget's media folder.
VOILA_ALLOWLIST = r"['.*\.(png|jpg|gif|svg)', '(.*/)?kki_media/[^/]+\.(mp4|webm|mov|webp|png|jpe?g|gif)']"
WIDGET_CELL = (
    "from kki_widgets import VideoChat\n"
    "chat = VideoChat()\n"
    # A kernel's cell runs on its event loop: the conversation's send blocks, the widget follows.
    f"chat.conversation.send({PROMPT!r})\n"
)

# The finished turn's player: loaded far enough to show a frame, then played for a moment.
# Called on the turn's element (marimo draws widgets in a shadow root, out of document's reach).
PLAYS = """async (turn) => {
  const v = turn.querySelector('video.kki-video');
  if (!v) return null;
  v.muted = true;
  const started = Date.now();
  while (v.readyState < 2 && Date.now() - started < 20000) await new Promise((r) => setTimeout(r, 100));
  // Conditions, not fixed sleeps: on a loaded machine the decoder or the thumbnail can take a
  // few seconds, and a 500 ms window read a playing video as stopped.
  const until = async (ok, ms) => {
    const end = Date.now() + ms;
    while (!ok() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    return ok();
  };
  let played = false;
  if (v.readyState >= 2) {
    const t0 = v.currentTime;
    try { await v.play(); } catch (e) {}
    played = await until(() => v.currentTime > t0, 10000);
    v.pause();
  }
  const thumb = turn.querySelector('img.kki-thumb');
  if (thumb) await until(() => thumb.complete && thumb.naturalWidth > 0, 10000);
  const link = turn.querySelector('a.kki-download');
  let download = null;
  if (link && !link.hidden && link.href) {
    const answer = await fetch(link.href);
    download = {status: answer.status, bytes: (await answer.arrayBuffer()).byteLength, href: link.href};
  }
  return {
    src: v.currentSrc, readyState: v.readyState, played, error: v.error && v.error.code,
    poster: v.getAttribute('poster'),
    posterLoaded: Boolean(thumb && thumb.complete && thumb.naturalWidth > 0 && thumb.currentSrc === v.poster),
    download,
    text: turn.closest('.kki-chat').innerText,
  };
}"""


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(queue_seconds=0.05, generate_seconds=0.3, step_seconds=0.1, api_key=KEY, seed=22) as server:
        yield server


@pytest.fixture(scope="module")
def relay_url(sim) -> str:
    return sim.base_url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(sim: Simulator, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("JPY_SESSION_NAME", "KKI_MODEL")}
    env.update(KKI_BASE_URL=sim.base_url, KKI_API_KEY=KEY, PYTHONUNBUFFERED="1", **extra)
    return env


@contextlib.contextmanager
def _server(command: list[str], cwd: Path, env: dict, url: str, log: Path) -> Iterator[None]:
    """A host's server, started in its own session and stopped with it (only what we started)."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited early:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} never answered:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.25)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)
            process.wait(5)


def _notebook(path: Path, cells: list[str]) -> Path:
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "id": f"cell{i}", "metadata": {},
             "outputs": [], "source": source}
            for i, source in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


def _finished_turn_plays(page) -> dict:
    return page.locator('.kki-turn[data-status="completed"]').first.evaluate(PLAYS)


def _shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"hosts-{name}.png"), full_page=True)


def _assert_finished_turn_plays(result: dict | None, where: str) -> None:
    assert result is not None, f"{where}: no finished turn with a player"
    assert result["readyState"] >= 2 and result["played"], (where, result)
    assert result["poster"] and result["posterLoaded"], (where, result)
    download = result["download"]
    assert download and download["status"] == 200 and download["bytes"] > 1000, (where, result)
    assert "Unsafe link" not in result["text"], (where, result["text"])
    assert "127.0.0.1:9" not in result["src"]


# ---------------------------------------------------------------------------- Voila
@pytest.mark.parametrize(
    ("mode", "allowlist"),
    [("tree", True), ("one-notebook", True), ("tree", False)],
    ids=["tree-media-allowed", "one-notebook-media-allowed", "tree-voila-defaults"],
)
def test_voila_plays_the_finished_turn_with_poster_and_download(sim, browser, tmp_path, mode, allowlist):
    # Tree mode (`voila folder/`) renders /voila/render/<path>; `voila nb.ipynb` (make voila)
    # serves one notebook at the root, its folder being the files root.
    folder = tmp_path / "voila root"
    notebook = _notebook(folder / "shots" / "chat.ipynb", [WIDGET_CELL + "chat"])
    port = _free_port()
    voila = VENV_BIN / "voila"
    served = str(folder) if mode == "tree" else str(notebook)
    command = [str(voila) if voila.exists() else "voila", served, "--no-browser", f"--port={port}",
               "--Voila.ip=127.0.0.1", "--Voila.port_retries=0"]  # fmt: skip
    if allowlist:
        command.append(f"--VoilaConfiguration.file_allowlist={VOILA_ALLOWLIST}")
    base = f"http://127.0.0.1:{port}"
    with _server(command, folder, _env(sim), f"{base}/", tmp_path / "voila.log"):
        context = browser.new_context(viewport={"width": 1100, "height": 1000})
        page = context.new_page()
        try:
            page.goto(f"{base}/voila/render/shots/chat.ipynb" if mode == "tree" else f"{base}/", timeout=120_000)
            try:
                page.wait_for_selector('.kki-turn[data-status="completed"] video.kki-video', state="visible", timeout=120_000)
                result = _finished_turn_plays(page)
            finally:
                _shoot(page, f"voila-{mode}-{'allowlist' if allowlist else 'defaults'}")
        finally:
            context.close()
    _assert_finished_turn_plays(result, "voila")
    if allowlist:
        # Served by Voila from the notebook's folder, as the README's setting allows.
        where = "shots/kki_media/" if mode == "tree" else "kki_media/"
        assert result["src"].startswith(f"{base}/voila/files/{where}"), result
    else:
        # Voila's default allowlist answers 403 for .mp4/.webp: the kernel sent the bytes.
        assert result["src"].startswith("blob:"), result


# ---------------------------------------------------------------------------- marimo
MARIMO_APP = '''import marimo

app = marimo.App()


@app.cell
def _():
    import marimo as mo
    from kki_widgets import VideoChat

    chat = VideoChat()
    chat.conversation.send(PROMPT)
    view = mo.ui.anywidget(chat)
    view
    return


if __name__ == "__main__":
    app.run()
'''


def test_marimo_plays_the_finished_turn_with_poster_and_download(sim, browser, tmp_path):
    pytest.importorskip("marimo")
    folder = tmp_path / "marimo"
    folder.mkdir()
    (folder / "app.py").write_text(MARIMO_APP.replace("PROMPT", repr(PROMPT)), encoding="utf-8")
    port = _free_port()
    marimo = VENV_BIN / "marimo"
    command = [str(marimo) if marimo.exists() else "marimo", "run", "app.py", "--headless", "--no-token",
               f"--port={port}", "--host=127.0.0.1"]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with _server(command, folder, _env(sim), f"{base}/", tmp_path / "marimo.log"):
        context = browser.new_context(viewport={"width": 1100, "height": 1000})
        page = context.new_page()
        try:
            page.goto(base, timeout=120_000)
            try:
                page.wait_for_selector('.kki-turn[data-status="completed"] video.kki-video', state="visible", timeout=120_000)
                result = _finished_turn_plays(page)
                # A prompt typed in marimo becomes a turn: the kernel answers this page.
                box = page.locator(".kki-input")
                box.fill("now the boat reaches the sea")
                box.press("Enter")
                page.locator('.kki-turn[data-index="1"][data-status="completed"]').wait_for(state="attached", timeout=60_000)
                assert box.input_value() == "" and page.locator(".kki-offline").is_hidden()
            finally:
                _shoot(page, "marimo")
        finally:
            context.close()
    _assert_finished_turn_plays(result, "marimo")
    assert sim.requests[-1]["messages"][-1]["content"].startswith("now the boat reaches the sea")
    # marimo serves no notebook-relative files: the player and the link hold the kernel's bytes.
    assert result["src"].startswith("blob:") and result["download"]["href"].startswith("blob:"), result


# ---------------------------------------------------------------------------- no kernel
@pytest.fixture(scope="module")
def saved_widget_notebook(sim, tmp_path_factory) -> Path:
    """A widget notebook run headlessly (nbclient saves the widget state), like a shared copy."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from jupyter_client.manager import KernelManager

    class VenvKernelManager(KernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            return [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file]

    folder = tmp_path_factory.mktemp("restored")
    path = _notebook(folder / "restored.ipynb", [WIDGET_CELL + "chat"])
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=90, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}})  # fmt: skip
    client.kernel_manager_class = VenvKernelManager
    client.execute(env=_env(sim))
    nbformat.write(notebook, path)
    return folder


@pytest.mark.parametrize("app", ["lab", "notebook7"])
def test_a_restored_widget_without_its_kernel_keeps_the_prompt_and_says_why(saved_widget_notebook, request, page, app):
    from nbformat import read, write
    from nbformat.sign import NotebookNotary

    server = request.getfixturevalue(app)
    shutil.copytree(saved_widget_notebook / "kki_media", server.root / "kki_media", dirs_exist_ok=True)
    notebook = read(saved_widget_notebook / "restored.ipynb", as_version=4)
    # A copy of its own (see test_without_a_live_widget_the_static_card_shows_alone), trusted:
    # the front end restores the widget from its saved state.
    notebook.metadata["kki_test_copy"] = f"restored-{app}"
    NotebookNotary().sign(notebook)
    write(notebook, server.root / "restored.ipynb")
    media_requests: list[str] = []
    page.on("request", lambda r: media_requests.append(r.url))
    server.open(page, "restored.ipynb" + ("?reset" if app == "lab" else ""))
    # The kernel JupyterLab started knows nothing of this widget: the view finds out by itself.
    page.wait_for_selector(".kki-offline", state="visible", timeout=60_000)
    result = _finished_turn_plays(page)
    _assert_finished_turn_plays(result, "restored widget")
    assert "/files/kki_media/" in result["src"], result
    composer = page.locator(".kki-composer")
    assert "kki-disconnected" in (composer.get_attribute("class") or "")
    assert page.locator(".kki-send").is_disabled() and page.locator(".kki-model").is_disabled()
    assert page.locator(".kki-price").is_hidden()  # no price for a send that cannot happen
    box = page.locator(".kki-input")
    box.fill("now the boat reaches the sea")
    box.press("Enter")
    page.locator(".kki-error-text", has_text="no kernel: run the cell to reconnect").wait_for(timeout=10_000)
    assert box.input_value() == "now the boat reaches the sea"
    assert "no kernel: run the cell to reconnect" in page.locator(".kki-error-text").inner_text()
    assert page.locator('.kki-turn').count() == 1  # nothing was added
    # The cell's saved text says what is there, not an object's address.
    outputs = json.dumps(notebook.cells[0].outputs)
    assert "object at 0x" not in outputs and "VideoChatHandle" not in outputs
    # The static twin is hidden under the live widget, from before it renders, and fetches
    # nothing: not its lazy thumbnail, no poster, no video.
    twin = page.evaluate(
        """() => Array.from(document.querySelectorAll('.kki-chat-fallback img')).map((img) => ({
             shown: img.offsetParent !== null, loaded: img.naturalWidth > 0}))"""
    )
    assert twin and not any(i["shown"] or i["loaded"] for i in twin), twin
    fetched = [url for url in media_requests if "kki_media/" in url]
    # (Before the front end rewrites the twin's relative `src` to its /files/ address, chromium
    # asks once for the page-relative one, which serves no file: not counted. What is counted is
    # that no second copy comes down.)
    thumbnails = [url for url in fetched if ".webp" in url and "/files/" in url]
    assert len(thumbnails) == 1, fetched
    # The only video fetches are the widget's player's (ranges of the one file it plays).
    assert {url for url in fetched if ".mp4" in url} == {result["src"]}, fetched
    _shoot(page, f"{app}-restored-without-kernel")


@pytest.mark.parametrize(
    ("trusted", "state"),
    [(True, False), (False, True)],
    ids=["lab-defaults-no-widget-state", "untrusted-copy"],
)
def test_without_a_live_widget_the_static_card_shows_alone(saved_widget_notebook, lab, page, trusted, state):
    # JupyterLab's default saves no widget state ("model not found" where the widget was); an
    # untrusted copy draws no widget at all and falls back to the output's text.
    from nbformat import read, write
    from nbformat.sign import NotebookNotary

    shutil.copytree(saved_widget_notebook / "kki_media", lab.root / "kki_media", dirs_exist_ok=True)
    notebook = read(saved_widget_notebook / "restored.ipynb", as_version=4)
    if not state:
        notebook.metadata.pop("widgets", None)
    name = f"static-{'trusted' if trusted else 'untrusted'}.ipynb"
    # A copy of its own: the same bytes as restored.ipynb, which another test signs, would be
    # trusted by the signature database the server shares with this process.
    notebook.metadata["kki_test_copy"] = name
    if trusted:
        NotebookNotary().sign(notebook)
    write(notebook, lab.root / name)
    lab.open(page, f"{name}?reset")
    card = page.locator(".kki-chat-fallback .kki-card")
    card.first.wait_for(state="visible", timeout=60_000)
    # The widget manager gives up on the saved model ("Loading widget..." turns into an error).
    page.get_by_text("Loading widget").first.wait_for(state="hidden", timeout=30_000)
    _shoot(page, f"lab-{'defaults' if trusted else 'untrusted'}-static-card")
    outputs = page.locator(".jp-OutputArea-output")
    shown = " ".join(outputs.all_inner_texts())
    assert "object at 0x" not in shown and "VideoChat(" not in shown, shown
    errors = page.get_by_text("Error displaying widget")
    assert all(not errors.nth(i).is_visible() for i in range(errors.count()))
    if trusted:
        assert page.locator(".kki-chat").count() == 0  # no state: no live widget, only the card
    assert card.count() == 1 and PROMPT in card.first.inner_text()
