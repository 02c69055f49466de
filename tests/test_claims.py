"""Never pay twice (issue 20): a kernel killed or interrupted at any step of a %%sora cell, then
the same cell rerun in a new kernel, costs at most one generation; from the task ID on, the
rerun completes with the original task ID. Real processes, the simulator counting what it
accepted, and deterministic stops (`KKI_TEST_PAUSE_AT`) instead of sleeps."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from kki_testing import TEST_KEY

from kki_widgets.conversation import claims
from kki_widgets.simulator import Simulator
from kki_widgets.store.notebook_store import NotebookStore

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CELL = "%%sora\na paper boat on a rainy street"

KERNEL = textwrap.dedent(
    """
    import json, sys
    from IPython.core.interactiveshell import InteractiveShell

    store = sys.argv[1]
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "kki_widgets")
    ip.run_line_magic("config", f"SoraMagics.store_path = {store!r}")
    # The cell ID JupyterLab sends: a rerun continues what the cell continued the first time.
    ip.magics_manager.registry["SoraMagics"]._cell_id = lambda: "the-cell"
    print("ready", flush=True)
    for _ in sys.stdin:  # run the cell each time the test says so (two kernels start at once)
        result = ip.run_cell(sys.argv[2])
        turn, error = result.result, result.error_in_exec
        if turn is None and error is not None:
            turn = getattr(error, "turn", None)
        print("result " + json.dumps({
            "status": getattr(turn, "status", None),
            "task_id": getattr(turn, "task_id", None),
            "note": getattr(turn, "note", None),
            "error": getattr(turn, "error", None) or (str(error) if error else None),
            "path": getattr(turn, "path", None),
        }), flush=True)
    """
)


@pytest.fixture
def slow_relay():
    # Slow enough that every step (queued, progress, video) is seen on its own.
    with Simulator(queue_seconds=0.3, generate_seconds=1.2, step_seconds=0.1, seed=20) as sim:
        yield sim


class Kernel:
    """A Python process running one %%sora cell in an IPython shell, like a notebook kernel."""

    def __init__(self, sim, folder: Path, pause_at: str | None = None, cell: str = CELL):
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "KKI_BASE_URL": sim.base_url,
               "KKI_API_KEY": TEST_KEY}  # fmt: skip
        env.pop(claims.PAUSE_ENV, None)
        self.release_file = folder / f"release-{time.monotonic_ns()}"
        if pause_at:
            env[claims.PAUSE_ENV], env[claims.RELEASE_ENV] = pause_at, str(self.release_file)
        self.store = folder / ".kki" / "notebook.json"
        self.process = subprocess.Popen(
            [sys.executable, "-c", KERNEL, str(self.store), cell], cwd=folder, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.expect("ready")

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def release(self) -> None:
        """Let a kernel stopped at its pause point go on."""
        self.release_file.touch()

    def start(self) -> None:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def expect(self, prefix: str, timeout: float = 60) -> str:
        """The next stdout line holding `prefix`: what follows it (other lines are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {prefix!r} from the kernel within {timeout} s") from None
            if line is None:
                raise AssertionError(f"the kernel ended before {prefix!r}: {self.process.stderr.read()[-2000:]}")
            if prefix in line:  # IPython may have written "Out[n]: " before it
                return line.split(prefix, 1)[1].strip()

    def result(self) -> dict:
        return json.loads(self.expect("result "))

    def end(self) -> str:
        """Close the kernel; what it wrote on stderr."""
        self.process.stdin.close()
        self.process.wait(30)
        return self.process.stderr.read()

    def kill(self, how: int = signal.SIGKILL) -> None:
        self.process.send_signal(how)
        if how == signal.SIGKILL:
            self.process.wait(30)  # reaped, as the Jupyter server reaps a dead kernel


def claim_of(store: Path) -> dict:
    [claim] = NotebookStore(store).claims().values()
    return claim


POINTS = ["claimed", "sent", "task_id", "progress", "video"]


def stop_at(point: str, how: int, sim, folder: Path) -> str | None:
    """Run the cell in a kernel that stops at `point`, kill it there (or interrupt the cell,
    then kill the kernel: a restart after Ctrl-C); the task ID its claim recorded, if any."""
    kernel = Kernel(sim, folder, pause_at=point)
    kernel.start()
    kernel.expect(f"kki-paused-at {point}")
    task_id = claim_of(kernel.store).get("task_id")
    if how == signal.SIGINT:
        kernel.kill(signal.SIGINT)
        kernel.result()  # the cell ended: it stopped waiting
    kernel.kill(signal.SIGKILL)
    assert "Stopped waiting" in kernel.process.stderr.read() or how != signal.SIGINT
    return task_id


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "SIGINT"])
@pytest.mark.parametrize("point", POINTS)
def test_a_rerun_after_a_dead_kernel_never_pays_twice(point, how, slow_relay, tmp_path):
    task_id = stop_at(point, how, slow_relay, tmp_path)
    assert slow_relay.submissions == (0 if point == "claimed" else 1)

    rerun = Kernel(slow_relay, tmp_path)
    rerun.start()
    outcome = rerun.result()
    rerun.end()
    assert slow_relay.submissions <= 1, outcome  # the relay made at most one generation
    if point in ("claimed", "sent"):
        # Sent (or about to be) with no task ID seen: it may have been charged, so it is not
        # sent again unasked; the card says when and how to send it again.
        assert outcome["status"] == "failed"
        assert "may have been charged" in outcome["error"] and "--force" in outcome["error"]
        return
    assert task_id and outcome["task_id"] == task_id, outcome
    assert outcome["status"] == "completed"
    assert outcome["note"].startswith("picked up the generation started at ")
    assert "(no new charge)" in outcome["note"]
    assert Path(outcome["path"]).is_file()
    assert NotebookStore(rerun.store).claims() == {}  # settled


@pytest.mark.parametrize("point", POINTS)
def test_an_interrupted_cell_rerun_in_the_same_kernel_picks_the_generation_up(point, slow_relay, tmp_path):
    kernel = Kernel(slow_relay, tmp_path, pause_at=point)
    kernel.start()
    kernel.expect(f"kki-paused-at {point}")
    kernel.kill(signal.SIGINT)
    interrupted = kernel.result()
    assert interrupted["status"] not in ("failed", "cancelled")  # the wait stopped, not the generation
    kernel.release()
    kernel.start()  # the same cell again
    again = kernel.result()
    said = kernel.end()
    assert "Stopped waiting" in said and "rerun this cell to pick it up at no charge" in said
    assert again["status"] == "completed" and slow_relay.submissions == 1, again
    if interrupted["task_id"]:
        assert again["task_id"] == interrupted["task_id"]


def test_a_forced_rerun_sends_again_when_the_user_asks(slow_relay, tmp_path):
    stop_at("sent", signal.SIGKILL, slow_relay, tmp_path)
    forced = Kernel(slow_relay, tmp_path, cell=CELL.replace("%%sora", "%%sora --force"))
    forced.start()
    assert forced.result()["status"] == "completed"
    forced.end()
    assert slow_relay.submissions == 2  # the user asked: paid again, knowingly


@pytest.mark.parametrize("after", [None, "task_id"], ids=["fresh", "after-a-dead-kernel"])
def test_two_kernels_rerunning_one_cell_at_once_cost_one_generation(after, slow_relay, tmp_path):
    task_id = stop_at(after, signal.SIGKILL, slow_relay, tmp_path) if after else None
    kernels = [Kernel(slow_relay, tmp_path) for _ in range(2)]
    for kernel in kernels:
        kernel.start()
    outcomes = [kernel.result() for kernel in kernels]
    for kernel in kernels:
        kernel.end()
    assert slow_relay.submissions == 1, outcomes
    assert [o["status"] for o in outcomes] == ["completed", "completed"], outcomes
    assert outcomes[0]["task_id"] == outcomes[1]["task_id"]
    if task_id:
        assert outcomes[0]["task_id"] == task_id
    assert NotebookStore(kernels[0].store).claims() == {}


def test_a_videochat_after_a_kernel_restart_shows_the_claimed_turn_and_follows_it(slow_relay, tmp_path, monkeypatch):
    from kki_widgets.notebook.widget import VideoChat

    task_id = stop_at("progress", signal.SIGKILL, slow_relay, tmp_path)
    monkeypatch.setenv("KKI_NOTEBOOK", str(tmp_path / "notebook.ipynb"))  # the store's notebook
    monkeypatch.setenv("KKI_BASE_URL", slow_relay.base_url)
    monkeypatch.setenv("KKI_API_KEY", TEST_KEY)
    chat = VideoChat()
    [handle] = chat.resumed
    assert handle.turn.task_id == task_id and not handle.turn.done  # shown as unfinished
    turn = handle.result(timeout=60)
    assert turn.status == "completed" and turn.task_id == task_id
    assert turn.note.startswith("picked up the generation started at ")
    assert slow_relay.submissions == 1  # followed, not sent again
    chat._flush()
    [shown] = chat.turn_data
    assert shown["status"] == "completed" and shown["task_id"] == task_id
    chat.close()


def test_a_claim_older_than_the_window_is_settled_as_failed_not_sent(slow_relay, tmp_path):
    from kki_widgets import Conversation

    stop_at("task_id", signal.SIGKILL, slow_relay, tmp_path)
    store = NotebookStore(tmp_path / ".kki" / "notebook.json", secret=TEST_KEY)
    conv = Conversation(base_url=slow_relay.base_url, api_key=TEST_KEY, store=store, claim_window=0)
    turn = conv.send(CELL.split("\n", 1)[1])
    assert turn.status == "failed" and "more than 0 h ago" in turn.error and "--force" in turn.error
    assert slow_relay.submissions == 1  # neither sent again nor followed


def claim(**fields) -> dict:
    return {"id": "c", "sent_at": time.time() - 60, "state": "sent", **fields}


def test_what_a_rerun_does_with_a_claim():
    me, key = claims.owner(), "key-of-a-request"
    dead = {**me, "pid": 2**22 + 12345}  # above pid_max's default: no such process
    reused = {**me, "started": -1}  # this pid, but a process that started at another time
    assert claims.verdict(claim(owner=dead), key) == "ask"
    assert claims.verdict(claim(owner=dead, task_id="task_1"), key) == "follow"
    assert claims.verdict(claim(owner={**me, "host": "elsewhere"}, task_id="task_1"), key) == "follow"
    assert claims.verdict(claim(owner={**me, "pid": os.getppid(), "started": None}), key) == "wait"
    assert claims.verdict(claim(owner=me), key) == "ask"  # this process, not following it
    claims.hold(key)
    try:
        assert claims.verdict(claim(owner=me), key) == "wait"
        assert claims.verdict(claim(owner=reused), key) == "wait"  # own pid: held decides
    finally:
        claims.release(key)
    assert claims.verdict(claim(owner=None, task_id="t", state="failed", error="policy"), key) == "failed"
    assert claims.verdict(claim(owner=dead, sent_at=time.time() - 90_000), key) == "expired"
    assert claims.verdict(claim(owner=dead, sent_at=time.time() - 90), key, window=60) == "expired"
    words = claims.message("ask", claim(owner=dead))
    assert "may have been charged" in words and "--force" in words and "Retry" in words
