"""Real-browser fixtures: a private Jupyter server and Debian's chromium through Playwright.

Each test module provides a `relay_url` fixture (the relay its kernels talk to); `lab` starts one
JupyterLab per module (`notebook7` one Notebook 7) with `KKI_BASE_URL`/`KKI_API_KEY` pointing at
it, so the kernel never uses the embedded simulator and the test process can inspect what the
relay received.
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
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
VENV_BIN = Path(sys.executable).parent

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Lab:
    url: str
    root: Path
    log: Path
    process: subprocess.Popen = field(repr=False)
    app: str = "lab"  # or "notebook": Notebook 7, which opens documents at /notebooks/<path>

    def write_notebook(self, name: str, cells: list[str]) -> str:
        nb = {
            "cells": [
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "id": f"cell{i}",
                    "metadata": {},
                    "outputs": [],
                    "source": source,
                }
                for i, source in enumerate(cells)
            ],
            "metadata": {
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                "language_info": {"name": "python"},
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        (self.root / name).write_text(json.dumps(nb), encoding="utf-8")
        return name

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def open(self, page, name: str) -> None:
        """Open a notebook and wait until its kernel is idle."""
        page.goto(f"{self.url}/{'notebooks' if self.app == 'notebook' else 'lab/tree'}/{name}")
        page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
        page.wait_for_selector(".jp-Notebook", timeout=60_000)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            ready = page.evaluate(
                """() => {
                  const ind = document.querySelector('.jp-Notebook-ExecutionIndicator');
                  const kernel = document.querySelector('.jp-Toolbar-kernelName');
                  const name = kernel ? kernel.textContent.trim() : '';
                  return Boolean(ind && ind.getAttribute('data-status') === 'idle'
                                 && name && name !== 'No Kernel');
                }"""
            )
            if ready:
                return
            # A "Select Kernel" dialog would block forever: accept its default.
            dialog = page.query_selector(".jp-Dialog .jp-mod-accept")
            if dialog is not None:
                dialog.click()
            time.sleep(0.25)
        raise AssertionError(f"the kernel never became idle:\n{self.log_tail()}")

    # Run All acts on the app's current notebook, which the app sets once the panel is activated.
    # On a loaded machine the command came before that and did nothing: no cell ran and the test
    # waited a minute for output (seen once in three fresh-clone runs). So the open notebook is
    # activated first, and the command's answer is read: undefined when it found no notebook,
    # else the promise of the run (pending, or true/false once every cell ran).
    _RUN_ALL = """async () => {
      const app = window.jupyterapp;
      const panel = Array.from(app.shell.widgets('main')).find(w => w.sessionContext && w.content);
      if (!panel) return 'no notebook open';
      app.shell.activateById(panel.id);
      await new Promise(resolve => requestAnimationFrame(() => resolve()));
      const run = app.commands.execute('notebook:run-all-cells').then(
        value => ({ value }), error => ({ value: String(error) }));
      const early = await Promise.race([run, new Promise(resolve => setTimeout(() => resolve(null), 500))]);
      return early === null || early.value !== undefined ? 'started' : 'no current notebook';
    }"""

    def run_all(self, page) -> None:
        """Run every cell of the open notebook, once; only a command that found no notebook is
        issued again (a dropped command ran nothing, so nothing runs twice)."""
        outcome = ""
        for _ in range(20):
            outcome = page.evaluate(self._RUN_ALL)
            if outcome == "started":
                return
            time.sleep(0.25)
        raise AssertionError(f"Run All never started: {outcome}")

    @staticmethod
    def wait_until(
        predicate, timeout: float = 30, interval: float = 0.1, message: str = ""
    ) -> object:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(message or "condition not met in time")
            time.sleep(interval)


@pytest.fixture(scope="module")
def lab(relay_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from _jupyter("lab", relay_url, tmp_path_factory.mktemp("lab"))


@pytest.fixture(scope="module")
def notebook7(relay_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from _jupyter("notebook", relay_url, tmp_path_factory.mktemp("notebook7"))


def _jupyter(app: str, relay_url: str, base: Path) -> Iterator[Lab]:
    """A private server (JupyterLab or Notebook 7) with its own config, settings and root."""
    root, config, runtime, settings, workspaces = (
        base / name for name in ("root", "config", "runtime", "settings", "workspaces")
    )
    for folder in (root, config, runtime, settings, workspaces):
        folder.mkdir()
    # The news prompt would cover the notebook on a fresh machine.
    notification = settings / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')

    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(config),
        JUPYTER_RUNTIME_DIR=str(runtime),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(workspaces),
        # The kernel inherits these: it talks to the test's relay, never to the embedded one.
        KKI_BASE_URL=relay_url,
        KKI_API_KEY="sim-test-key",
        PYTHONUNBUFFERED="1",
    )
    env.pop("KKI_MODEL", None)
    port = _free_port()
    log = base / "jupyter.log"
    jupyter = VENV_BIN / "jupyter"
    command = [
        str(jupyter) if jupyter.exists() else "jupyter",
        app,
        "--allow-root",
        "--no-browser",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.token=",
        "--ServerApp.password=",
        "--ServerApp.ip=127.0.0.1",
        # window.jupyterapp, which the tests drive (the notebook app's class is another one).
        "--LabApp.expose_app_in_browser=True" if app == "lab" else "--JupyterNotebookApp.expose_app_in_browser=True",
        f"--ServerApp.root_dir={root}",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Lab(url=f"http://127.0.0.1:{port}", root=root, log=log, process=process, app=app)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"jupyter {app} exited early:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(f"{server.url}/api/status", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter {app} did not answer /api/status:\n{server.log_tail()}")
            time.sleep(0.25)
        yield server
    finally:
        # Only the server we started (and its kernels, in its own session group).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)
            process.wait(5)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        if os.environ.get("CI"):
            pytest.fail(
                f"{CHROMIUM} is missing: CI must install Debian's chromium (apt-get install chromium)"
            )
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium to run the browser tests")
    return CHROMIUM if Path(CHROMIUM).exists() else str(shutil.which("chromium"))


@pytest.fixture(scope="module")
def browser(chromium_path: str):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=chromium_path,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        yield browser
        browser.close()
    finally:
        playwright.stop()


@dataclass
class PageErrors:
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def widget_errors(self) -> list[str]:
        # Any uncaught exception while our widget is on the page counts; JupyterLab itself is
        # quiet on a clean load, so nothing is filtered except known network noise.
        return [e for e in self.errors if "ResizeObserver loop" not in e]


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors = PageErrors()
    page.on(
        "pageerror", lambda exc: errors.errors.append(f"{exc.name}: {exc.message}\n{exc.stack}")
    )
    page.on(
        "console",
        lambda msg: (
            errors.console.append(f"{msg.type}: {msg.text}") if msg.type == "error" else None
        ),
    )
    page.errors = errors  # type: ignore[attr-defined]
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(Exception):
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-final.png"), full_page=True)
    context.close()
