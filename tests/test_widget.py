"""VideoChat without a browser: state after send / cancel / failure, coalescing, URL safety.

The comm is replaced by a fake that records every message, so the tests count exactly what a
front end would receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from typing import Any
from unittest import mock

import pytest

from kki_widgets.notebook.widget import (
    FLUSH_INTERVAL,
    VideoChat,
    VideoChatHandle,
    safe_url,
    turn_to_dict,
)
from kki_widgets.protocol.transcript import Generation


class FakeComm:
    kernel = object()  # ipywidgets only sends when the comm has a kernel
    comm_id = "fake-comm"

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.buffers: list[list] = []

    def send(self, data=None, buffers=None, **_: Any) -> None:
        self.sent.append(data)
        self.buffers.append(list(buffers or []))

    def on_msg(self, callback) -> None:
        self.callback = callback

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass

    def updates(self) -> list[dict]:
        return [m["state"] for m in self.sent if m.get("method") == "update"]

    def turn_updates(self) -> list[list[dict]]:
        return [s["turn_data"] for s in self.updates() if "turn_data" in s]

    def custom(self) -> list[dict]:
        return [m["content"] for m in self.sent if m.get("method") == "custom"]


def attach(chat: VideoChat) -> FakeComm:
    comm = FakeComm()
    chat.comm = comm
    return comm


def from_js(chat: VideoChat, content: dict) -> None:
    """Deliver a custom message as the front end's `model.send(content)` would."""
    chat._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


# ---- a conversation that follows the session contract, driven by the test ---------------------


@dataclasses.dataclass
class FakeTurn:
    index: int
    prompt: str
    options: dict
    parent: int | None
    generation: Generation = dataclasses.field(default_factory=Generation)
    status: str = "queued"
    cached: bool = False
    path: str | None = None
    thumbnail_path: str | None = None
    error: str | None = None
    created_at: float = dataclasses.field(default_factory=time.time)
    finished_at: float | None = None


class FakeHandle:
    def __init__(self, conversation: FakeConversation, turn: FakeTurn, task: asyncio.Task | None):
        self.conversation, self.turn, self.task = conversation, turn, task

    def __await__(self):
        async def finished():
            if self.task is not None:
                await asyncio.shield(self.task)
            return self.turn

        return finished().__await__()

    def cancel(self) -> None:
        self.conversation.cancel(self.turn.index)

    def result(self, timeout=None):
        return self.turn


class FakeConversation:
    """Turns advance through `script` (a list of Generation field updates) on the running loop."""

    simulated = True
    model = "sora-2"
    models = ("sora-2", "veo3")

    def __init__(self, script: list[dict] | None = None, step: float = 0.0):
        self.turns: list[FakeTurn] = []
        self.subscribers: list = []
        self.calls: list[tuple] = []
        self.script = script or []
        self.step = step
        self.tasks: dict[int, asyncio.Task] = {}
        self.head: int | None = None

    def subscribe(self, callback):
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def _emit(self, turn: FakeTurn) -> None:
        for callback in list(self.subscribers):
            callback(turn)

    def start(self, prompt: str, *, parent: Any = -1, force=False, **options: Any) -> FakeHandle:
        call = ("start", prompt, options) if parent == -1 else ("start", prompt, options, parent)
        self.calls.append(call)
        if parent == -1:  # the real one uses a sentinel here: continue from the latest turn
            parent = len(self.turns) - 1 if self.turns else None
        turn = FakeTurn(index=len(self.turns), prompt=prompt, options=options, parent=parent)
        self.turns.append(turn)
        self._emit(turn)
        task = asyncio.get_running_loop().create_task(self._run(turn)) if self.script else None
        if task is not None:
            self.tasks[turn.index] = task
        return FakeHandle(self, turn, task)

    async def _run(self, turn: FakeTurn) -> None:
        try:
            for change in self.script:
                await asyncio.sleep(self.step)
                self.update(turn, **change)
        except asyncio.CancelledError:
            self.update(turn, status="cancelled", error="Cancelled by you.")
            raise

    def update(self, turn: FakeTurn, **change: Any) -> None:
        turn.generation = dataclasses.replace(turn.generation, **change)
        turn.status = turn.generation.status
        if turn.status in ("completed", "failed", "cancelled"):
            turn.finished_at = time.time()
            turn.error = turn.generation.error
        self._emit(turn)

    def cancel(self, index: int | None = None) -> None:
        self.calls.append(("cancel", index))
        for i, task in list(self.tasks.items()):
            if index is None or i == index:
                task.cancel()

    def retry_options(self, index: int) -> dict:
        self.calls.append(("retry", index))
        old = self.turns[index]
        return {"prompt": old.prompt, "parent": old.parent, **old.options}


def progress_script(steps: int) -> list[dict]:
    script: list[dict] = [{"task_id": "task_abc", "status": "queued"}]
    script += [{"status": "generating", "progress": min(99, i)} for i in range(1, steps + 1)]
    script.append(
        {
            "status": "completed",
            "progress": 100,
            "video_url": "https://cdn.example/v.mp4",
            "thumbnail_url": "https://cdn.example/t.webp",
            "preview_url": "https://relay.example/web/task_abc",
            "raw_url": "https://relay.example/source/task_abc",
        }
    )
    return script


# ---- URL safety --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example/v.mp4",
        "http://127.0.0.1:8000/cdn/x.mp4",
        "/files/kki_media/x.mp4",
        "blob:https://lab.example/1234",
        "HTTPS://CDN.EXAMPLE/V.MP4",
    ],
)
def test_safe_url_allows_http_relative_and_blob(url):
    assert safe_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "java\nscript:alert(1)",
        "java\tscript:alert(1)",
        "\x01javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "data:video/mp4;base64,AAAA",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "//evil.example/x.mp4",
        "/\\evil.example/x.mp4",
        "http:evil",
        "https:///nohost",
        "relative/path.mp4",
        "",
        None,
        42,
    ],
)
def test_safe_url_drops_everything_else(url):
    assert safe_url(url) is None


def test_turn_dict_drops_unsafe_links_and_says_so():
    generation = Generation(
        task_id="task_1",
        status="completed",
        progress=100,
        preview_url="javascript:alert(1)",
        raw_url="data:text/html,<b>x</b>",
        video_url="https://cdn.example/v.mp4",
    )
    turn = FakeTurn(0, '<img src=x onerror="window.__pwned=1">', {"model": "sora-2"}, None)
    turn.generation, turn.status = generation, "completed"
    data = turn_to_dict(turn)
    assert data["preview_url"] is None and data["raw_url"] is None
    assert data["video_url"] == "https://cdn.example/v.mp4"
    assert (
        data["prompt"] == '<img src=x onerror="window.__pwned=1">'
    )  # literal, the JS uses textContent
    assert any("Unsafe link removed" in n for n in data["notices"])


# ---- state and messages --------------------------------------------------------------------------


def test_send_from_python_updates_state_and_finishes():
    async def main():
        conversation = FakeConversation(progress_script(5))
        chat = VideoChat(conversation=conversation)
        comm = attach(chat)
        assert chat.simulated is True
        handle = chat.send("a red fox", orientation="landscape")
        assert chat.busy is True
        turn = await handle
        await asyncio.sleep(0)
        return chat, comm, conversation, turn

    chat, comm, conversation, turn = asyncio.run(main())
    assert turn.status == "completed"
    assert conversation.calls[0] == (
        "start",
        "a red fox",
        {"model": "sora-2", "orientation": "landscape"},
    )
    assert chat.turns[0] is turn  # Python API: the Turn objects
    (state,) = chat.turn_data
    assert state["status"] == "completed" and state["progress"] == 100
    assert state["video_url"] == "https://cdn.example/v.mp4"
    assert chat.busy is False
    # The front end got the final state.
    assert comm.turn_updates()[-1][0]["status"] == "completed"


def test_updates_are_coalesced_and_the_final_state_always_arrives():
    steps = 300

    async def main():
        conversation = FakeConversation(progress_script(steps), step=0.001)
        chat = VideoChat(conversation=conversation)
        comm = attach(chat)
        started = time.monotonic()
        await chat.send("many chunks")
        return comm, time.monotonic() - started

    comm, elapsed = asyncio.run(main())
    updates = comm.turn_updates()
    # ~10 per second plus the immediate flushes (start and the terminal state).
    allowed = int(elapsed / FLUSH_INTERVAL) + 4
    assert len(updates) <= allowed, (len(updates), elapsed)
    assert len(updates) < steps / 5
    assert updates[-1][0]["status"] == "completed"
    progress = [u[0]["progress"] for u in updates]
    assert progress == sorted(progress)


def test_ui_send_goes_through_the_same_path_and_errors_come_back():
    async def main():
        conversation = FakeConversation()
        chat = VideoChat(conversation=conversation)
        comm = attach(chat)
        from_js(
            chat,
            {"type": "send", "id": "r1", "prompt": "  a boat  ", "model": "veo3", "duration": 15},
        )
        from_js(chat, {"type": "send", "id": "r2", "prompt": "   "})
        from_js(chat, {"type": "remix", "id": "r3", "prompt": "now at night", "index": 0})
        from_js(chat, {"type": "bogus", "id": "r4"})
        return chat, comm, conversation

    chat, comm, conversation = asyncio.run(main())
    assert conversation.calls[0] == (
        "start",
        "a boat",
        {"model": "veo3", "orientation": "portrait", "duration": 15},
    )
    assert conversation.calls[1] == (
        "start",
        "now at night",
        {"model": "sora-2", "orientation": "portrait"},
        0,
    )
    assert chat.turns[1].parent == 0
    replies = {m["id"]: m for m in comm.custom()}
    assert replies["r1"]["type"] == "ok" and replies["r3"]["type"] == "ok"
    assert replies["r2"]["type"] == "error" and "empty" in replies["r2"]["error"]
    assert replies["r4"]["type"] == "error"
    assert chat.error  # durable too, so a second view shows it


def test_cancel_from_ui_marks_the_turn_cancelled():
    async def main():
        conversation = FakeConversation([{"status": "generating", "progress": 5}] * 50, step=0.02)
        chat = VideoChat(conversation=conversation)
        comm = attach(chat)
        chat.send("long one")
        await asyncio.sleep(0.1)
        from_js(chat, {"type": "cancel", "id": "c1", "index": 0})
        await asyncio.sleep(0.05)
        return chat, comm

    chat, comm = asyncio.run(main())
    assert chat.turn_data[0]["status"] == "cancelled"
    assert chat.busy is False
    assert comm.turn_updates()[-1][0]["status"] == "cancelled"


def test_failure_shows_the_reason_and_retry_starts_again():
    script = [
        {"task_id": "task_f", "status": "generating", "progress": 10},
        {"status": "failed", "error": "Failure reason: no available capacity"},
    ]

    async def main():
        conversation = FakeConversation(script)
        chat = VideoChat(conversation=conversation)
        comm = attach(chat)
        await chat.send("doomed")
        from_js(chat, {"type": "retry", "id": "x", "index": 0})
        await asyncio.sleep(0.05)
        return chat, comm, conversation

    chat, _comm, conversation = asyncio.run(main())
    first = chat.turn_data[0]
    assert first["status"] == "failed"
    assert first["status_text"] == "Failed"
    assert "no available capacity" in first["error"]
    assert ("retry", 0) in conversation.calls
    assert len(chat.turn_data) == 2


def test_static_fallback_is_escaped_html_next_to_the_widget_view():
    async def main():
        conversation = FakeConversation(progress_script(1))
        chat = VideoChat(conversation=conversation)
        await chat.send('<script>alert("x")</script>')
        return chat

    chat = asyncio.run(main())
    shown = []
    with mock.patch("IPython.display.display", lambda obj, **kw: shown.append((obj, kw))):
        chat._ipython_display_()
    # Two outputs: the widget view without text/html (nbconvert would prefer the view and drop
    # the HTML of the same bundle), then the static twin on its own, under a display id.
    view, fallback = shown
    assert "application/vnd.jupyter.widget-view+json" in view[0] and view[1]["raw"]
    assert "text/html" not in view[0]
    # Where the view cannot draw (an untrusted copy) its text shows: no object repr, and no
    # line frozen at display time above the twin, which says it all.
    assert view[0]["text/plain"] == ""
    html_text = fallback[0]["text/html"]
    assert fallback[1]["display_id"] == chat._fallback_id and fallback[1]["raw"]
    # Text front ends get the same turns in words, as they are now.
    assert fallback[0]["text/plain"].startswith("Video chat · 1 turn\n[turn 0] <script>")
    assert "object at 0x" not in fallback[0]["text/plain"]
    assert 'class="kki-chat-fallback"' in html_text
    # <video src>, never a <source>-only player: JupyterLab's untrusted view strips <source src>.
    assert 'src="https://cdn.example/v.mp4"' in html_text and "<source" not in html_text
    assert "<script>" not in html_text and "&lt;script&gt;" in html_text


def test_static_fallback_prefers_the_local_copy_next_to_the_notebook(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kki_media").mkdir()
    local = tmp_path / "kki_media" / "a b.mp4"
    local.write_bytes(b"")

    async def main():
        conversation = FakeConversation(progress_script(1))
        chat = VideoChat(conversation=conversation)
        await chat.send("boat")
        conversation.turns[0].path = str(local)
        chat.refresh()
        return chat

    fallback = asyncio.run(main())._static_html()
    assert '<video class="kki-card-video"' in fallback
    assert 'src="./kki_media/a%20b.mp4"' in fallback
    assert "cdn.example/v.mp4" not in fallback.split("<video", 1)[1].split(">", 1)[0]


def test_a_new_view_gets_every_turn_from_the_traits():
    async def main():
        conversation = FakeConversation(progress_script(2))
        chat = VideoChat(conversation=conversation)
        await chat.send("one")
        await chat.send("two")
        return chat

    chat = asyncio.run(main())
    state = chat.get_state()
    assert [t["prompt"] for t in state["turn_data"]] == ["one", "two"]
    assert state["simulated"] is True


# ---- the real Conversation against the embedded relay simulator ---------------------------------


@pytest.fixture(scope="module")
def sim():
    from kki_widgets.simulator import Simulator

    with Simulator(queue_seconds=0, generate_seconds=0.6, step_seconds=0.05, seed=4) as server:
        yield server


def real_chat(sim) -> VideoChat:
    return VideoChat(base_url=sim.base_url, api_key="sim-test-key", store=None, media_dir=None)


def test_real_send_remix_and_failure_reach_the_widget_state(sim):
    async def main():
        chat = real_chat(sim)
        comm = attach(chat)
        first = await chat.send("a lighthouse at dawn")
        second = await chat.send("now in a storm")
        failed = await chat.send("a ship [[fault:fail]]")
        return chat, comm, first, second, failed

    chat, comm, first, second, failed = asyncio.run(main())
    assert [t.status for t in chat.turns] == ["completed", "completed", "failed"]
    states = chat.turn_data
    assert states[0]["video_url"] == first.generation.video_url
    assert states[0]["task_id"] == first.generation.task_id and states[0]["progress"] == 100
    # The remix sent the first answer back verbatim (the relay finds the sid there).
    remix_request = sim.requests[-2]
    assert {"role": "assistant", "content": first.generation.text} in remix_request["messages"]
    assert second.parent == 0 and states[1]["parent"] == 0
    assert states[2]["status"] == "failed" and states[2]["error"]
    assert failed.error and states[2]["error"] == failed.error
    final = comm.turn_updates()[-1]
    assert [t["status"] for t in final] == ["completed", "completed", "failed"]


def test_real_cancel_from_the_ui(sim):
    async def main():
        chat = real_chat(sim)
        comm = attach(chat)
        handle = chat.send("a very slow sunrise [[fault:stall:5]]")
        await asyncio.sleep(0.3)
        from_js(chat, {"type": "cancel", "id": "c", "index": handle.turn.index})
        with contextlib.suppress(asyncio.CancelledError):
            await handle
        await asyncio.sleep(0.05)
        return chat, comm

    chat, comm = asyncio.run(main())
    assert chat.turns[0].status == "cancelled"
    assert chat.turn_data[0]["status"] == "cancelled" and chat.busy is False
    assert comm.turn_updates()[-1][0]["status"] == "cancelled"
    assert {"type": "ok", "id": "c"} in comm.custom()


def test_several_turns_run_at_once(sim):
    async def main():
        chat = real_chat(sim)
        comm = attach(chat)
        first = chat.send("a red kite", parent=None)
        second = chat.send("a blue kite", parent=None)
        assert chat.busy and len(chat.turn_data) == 2
        turns = await asyncio.gather(first, second)
        return chat, turns, comm

    chat, turns, comm = asyncio.run(main())
    assert [t.status for t in turns] == ["completed", "completed"]
    # Concurrent, not one after the other: some state the browser saw has both turns generating
    # with progress at once (judged on state, not wall time, so a loaded machine cannot fail it).
    assert any(
        len(data) == 2 and all(d["status"] == "generating" and d["progress"] > 0 for d in data)
        for data in comm.turn_updates()
    ), [[(d["status"], d["progress"]) for d in data] for data in comm.turn_updates()]
    assert [d["status"] for d in chat.turn_data] == ["completed", "completed"]


def test_blocking_result_from_plain_code(sim):
    # No running loop: the turn runs on the session's private loop thread and updates arrive
    # from there; the widget still coalesces them and ends with the final state.
    chat = real_chat(sim)
    comm = attach(chat)
    turn = chat.send("a quiet harbour").result(timeout=30)
    assert turn.status == "completed"
    deadline = time.monotonic() + 5
    while chat.turn_data[0]["finished_at"] is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert chat.turn_data[0]["status"] == "completed" and chat.busy is False
    assert comm.turn_updates()[-1][0]["status"] == "completed"


def test_a_remix_keeps_its_parents_settings_and_the_pickers_follow_the_head(sim, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def main():
        chat = VideoChat(base_url=sim.base_url, api_key="sim-test-key", store=None, media_dir=tmp_path / "kki_media")
        attach(chat)
        first = await chat.send("a lighthouse", orientation="landscape", model="veo3")
        # The pickers now show what the next prompt continues: the head's settings.
        assert (chat.model, chat.orientation) == ("veo3", "landscape")
        second = await chat.send("at night")
        branch = await chat.remix(first.index, "in fog")  # from Python: the parent's settings
        return chat, first, second, branch

    chat, first, second, branch = asyncio.run(main())
    assert second.options["orientation"] == "landscape" and second.options["model"] == "veo3"
    assert branch.parent == first.index and branch.options["orientation"] == "landscape"
    assert "landscape" in sim.requests[-1]["messages"][-1]["content"]
    # A saved notebook keeps the relative copy and no loopback URL of the finished turns.
    state = json.dumps(chat.get_state()["turn_data"])
    assert "127.0.0.1" not in state and str(tmp_path) not in state and "./kki_media/" in state


def test_the_bytes_of_a_local_copy_travel_over_the_comm_on_request(sim, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def main():
        chat = VideoChat(base_url=sim.base_url, api_key="sim-test-key", store=None, media_dir=tmp_path / "kki_media")
        comm = attach(chat)
        turn = await chat.send("a kite")
        from_js(chat, {"type": "media", "id": "m1", "index": turn.index, "kind": "video"})
        return turn, comm

    turn, comm = asyncio.run(main())
    replies = [(m["content"], b) for m, b in zip(comm.sent, comm.buffers, strict=True) if m.get("method") == "custom"]
    media = [(c, b) for c, b in replies if c.get("type") == "media"]
    assert media and media[0][0]["mime"] == "video/mp4" and media[0][0]["id"] == "m1"
    with open(turn.path, "rb") as file:
        assert bytes(media[0][1][0]) == file.read()


def test_text_reprs_say_the_turn_count_and_the_last_status_as_they_are_now():
    updates: list[str] = []

    class Shown:
        def update(self, obj, **kw):
            updates.append(obj["text/plain"])

    async def main():
        conversation = FakeConversation(progress_script(3), step=0.01)
        chat = VideoChat(conversation=conversation)
        assert repr(chat) == "VideoChat 'Video chat': no turns yet"
        handle = chat.send("boat")
        shown = []
        with mock.patch("IPython.display.display", lambda obj, **kw: shown.append(obj) or Shown()):
            handle._ipython_display_()  # the cell's value, drawn when the cell ends
        await handle
        return chat, handle, shown

    chat, handle, shown = asyncio.run(main())
    assert shown == [{"text/plain": "<VideoChatHandle turn #1: Queued>"}]
    assert repr(chat) == "VideoChat 'Video chat': 1 turn, the last completed"
    assert repr(handle) == "<VideoChatHandle turn #1: Completed>"
    # The drawn line follows the turn, so a saved notebook does not keep "queued" next to a video.
    assert updates and updates[-1] == "<VideoChatHandle turn #1: Completed>"
    assert "object at 0x" not in repr(chat)


def test_a_card_says_what_it_remixes_shows_its_poster_and_the_twin_loads_nothing(tmp_path, monkeypatch):
    from kki_widgets.conversation.turn import Turn
    from kki_widgets.display.views import chat_html, turn_html, turn_text
    from kki_widgets.protocol.transcript import Generation

    monkeypatch.chdir(tmp_path)
    media = tmp_path / "kki_media"
    media.mkdir()
    turns = []
    for index, parent in ((0, None), (1, 0)):
        (media / f"v{index}.mp4").write_bytes(b"x")
        (media / f"t{index}.webp").write_bytes(b"x")
        turns.append(Turn(index=index, prompt=f"shot {index}", parent=parent, status="completed",
                          generation=Generation(status="completed", progress=100),
                          path=str(media / f"v{index}.mp4"), thumbnail_path=str(media / f"t{index}.webp"),
                          finished_at=1.0))  # fmt: skip
    card = turn_html(turns[1])
    assert 'remix of <a href="#kki-turn-0">#0</a>' in card and 'id="kki-turn-1"' in card
    assert "remix of" not in turn_html(turns[0])
    assert "remix of #0" in turn_text(turns[1])
    video = card.split("<video", 1)[1].split(">", 1)[0]
    assert 'poster="./kki_media/t1.webp"' in video and 'preload="metadata"' in video
    # The widget's hidden twin fetches no video while the live widget is shown.
    twin = chat_html(turns)
    assert twin.count('preload="none"') == 2 and 'preload="metadata"' not in twin
    # Nor a thumbnail: lazy images (skipped while hidden), and no poster on its players (a
    # video's poster loads even in a hidden output). Its thumbnails still show where it is seen.
    assert twin.count('loading="lazy"') == 2 and twin.count('class="kki-poster"') == 2
    assert all("poster=" not in v.split(">", 1)[0] for v in twin.split("<video")[1:])


# ---- Resume: a turn still being made at the relay, followed under its own task -----------------


@pytest.fixture(scope="module")
def slow_sim():
    from kki_widgets.simulator import Simulator

    # Slow enough that a follow of 0.3 s gives up while the relay still makes the video.
    with Simulator(queue_seconds=0.2, generate_seconds=2.5, step_seconds=0.1, seed=12) as server:
        yield server


async def until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("asked_from", ["the front end", "Python"])
def test_resume_follows_a_still_running_turn_to_its_video_under_the_same_task(slow_sim, tmp_path, asked_from):
    async def main():
        # The stream is cut after the task ID and following the raw data gives up after 0.3 s:
        # the turn ends "still running at the relay", the relay goes on making the video.
        chat = VideoChat(base_url=slow_sim.base_url, api_key="sim-test-key", store=None,
                         media_dir=tmp_path, follow_timeout=0.3, poll_interval=0.05)  # fmt: skip
        comm = attach(chat)
        turn = await chat.send("a slow sunrise [[fault:cut_after_task_id]]")
        before = dict(chat.turn_data[0]), len(slow_sim.requests), slow_sim.submissions
        assert slow_sim.tasks[turn.task_id].status != "completed"  # the relay is still at it
        # A user with more patience now: Resume follows until the video is there.
        chat.conversation.client.follow_timeout = 60
        if asked_from == "Python":
            handle = chat.resume(0)
            assert isinstance(handle, VideoChatHandle) and handle.turn is turn
            assert await handle is turn
        else:
            from_js(chat, {"type": "resume", "id": "r1", "index": 0})
        await until(lambda: chat.turn_data[0]["status"] == "completed" and not chat.busy, "resumed")
        return chat, comm, turn, before

    chat, comm, turn, (still, posts, submissions) = asyncio.run(main())
    assert still["status"] == "still_running" and still["resumable"] is True
    assert still["resume_note"] == "" and turn.generation.raw_url.endswith(f"/source/{turn.task_id}")
    assert "within 0.3 s of following it" in still["error"]  # not "0 s": the real limit
    if asked_from == "the front end":
        assert {"type": "ok", "id": "r1"} in comm.custom()
    # The same turn and task: no second chat/completions POST, no second paid submission.
    assert chat.turns == [turn] and turn.status == "completed" and turn.generation.video_url
    assert chat.turn_data[0]["task_id"] == still["task_id"] == turn.task_id
    assert len(slow_sim.requests) == posts and slow_sim.submissions == submissions
    assert slow_sim.requests[-1]["messages"][-1]["content"].startswith("a slow sunrise")
    # The chat showed it generating again (the relay had not finished), then completed; done, it
    # offers no Resume.
    seen = [turns[0]["status"] for turns in comm.turn_updates()]
    resumed = seen[seen.index("still_running"):]
    assert "generating" in resumed and resumed[-1] == "completed", seen
    assert chat.turn_data[0]["resumable"] is False and not chat.error


def test_a_turn_without_a_task_id_or_raw_data_link_says_why_it_cannot_be_resumed():
    from kki_testing import TEST_KEY, ReplayServer

    from kki_widgets.client.relay import RelayClient
    from kki_widgets.conversation.session import Conversation

    answers = {
        # "May still be generating", no task ID: nothing to follow it by.
        "no task ID": ["🎬 视频生成中...\n", "The stream has ended, but your video may still be generating.\n"],
        # A task ID and an invitation to check later, but no raw-data link to follow.
        "task ID only": ["Task submitted.\n", "Task ID: `gen-4f2a9c`\n", "Query its status later with this ID.\n"],
    }
    words = {}
    for name, deltas in answers.items():
        chunks = [{"choices": [{"index": 0, "delta": {"content": d}, "finish_reason": None}]} for d in deltas]
        body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
        server = ReplayServer(body, piece=64, pause=0)
        try:
            client = RelayClient(base_url=server.base_url, api_key=TEST_KEY, max_retries=0, poll_interval=0.01)
            chat = VideoChat(conversation=Conversation(client=client, store=None))
            comm = attach(chat)
            chat.conversation.send("a fox")
            chat._flush()
            state = chat.turn_data[0]
            assert state["status"] == "still_running" and state["resumable"] is False, state
            assert "Resume button" not in state["error"]  # the turn's words offer no button either
            with pytest.raises(ValueError) as refused:
                chat.resume(0)
            from_js(chat, {"type": "resume", "id": "r2", "index": 0})
            assert len(server.requests) == 1  # nothing was sent again
        finally:
            server.close()
        words[name] = state["resume_note"]
        assert str(refused.value) in words[name]
        assert {"type": "error", "id": "r2", "error": str(refused.value)} in comm.custom()
    assert words["no task ID"] == (
        "No Resume: the relay gave no task ID to follow this video by: look for it on the relay's "
        "dashboard (sending the prompt again would pay again)."
    )
    assert "gave task ID gen-4f2a9c but no raw-data link" in words["task ID only"]


def test_resume_is_refused_for_a_finished_turn_and_a_turn_that_does_not_exist(sim):
    async def main():
        chat = real_chat(sim)
        comm = attach(chat)
        await chat.send("a lighthouse at dawn")
        from_js(chat, {"type": "resume", "id": "r3", "index": 0})
        from_js(chat, {"type": "resume", "id": "r4", "index": 7})
        return chat, comm

    chat, comm = asyncio.run(main())
    errors = {m["id"]: m["error"] for m in comm.custom() if m.get("type") == "error"}
    assert errors["r3"].startswith("turn 0 is completed: only a turn still being made at the relay")
    assert errors["r4"] == "there is no turn 7 (this chat has 1)"
    assert chat.turn_data[0]["resumable"] is False and chat.turn_data[0]["resume_note"] == ""


def test_the_turns_note_reaches_the_widget_as_plain_text():
    from kki_widgets.conversation.turn import Turn

    note = "picked up the generation started at 14:02 (no new charge) <b>not markup</b>"
    turn = Turn(index=0, prompt="x", status="generating", note=note)
    assert turn_to_dict(turn)["note"] == note  # the JS draws it with textContent
    assert turn_to_dict(Turn(index=0, prompt="x"))["note"] == ""
