"""A hostile relay cannot run script in the notebook page through VideoChat.

The relay here is a tiny SSE server in the test process that answers in the real chunk format
with `javascript:`/`data:text/html` links and HTML in its failure reason. A second widget gets
hostile turn data assigned directly from Python, bypassing the Python-side URL check, to prove the
JavaScript check holds on its own (a saved notebook's widget state can be edited by anyone).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

XSS = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>'

COMPLETED = (
    "```json\n" + json.dumps({"prompt": XSS, "orientation": "portrait"}, indent=2) + "\n```\n\n"
    "> ID: `task_hostile01`\n"
    ">[Data Preview](javascript:window.__pwned=1) | "
    "[Raw Data](data:text/html,<script>window.__pwned=1</script>)\n"
    "> Queuing.\n> Generating.\n\n>🏃 Progress 37..68..\n\n"
    "> Generation Complete ✅\n> sid: s_hostile01\n\n"
    "![thumb](javascript:window.__pwned=1)\n"
    # One honest video link among the hostile ones (.invalid never resolves), so the generation
    # completes the way a real one would.
    "[Play Online▶️](https://cdn.invalid/v.mp4)\n"
    "[download](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX19wd25lZD0xPC9zY3JpcHQ+.mp4)\n"
    "[download](vbscript:msgbox(1).mp4)"
)
FAILED = (
    "> ID: `task_hostile02`\n"
    "> Queuing.\n> Generating.\n\n>🏃 Progress 12..\n\n"
    "> Generation failed ❌\n"
    f"> Failure reason: {XSS}"
)

HOSTILE_TURN = {
    "index": 0,
    "prompt": XSS,
    "model": "sora-2",
    "orientation": "portrait",
    "duration": None,
    "parent": None,
    "status": "completed",
    "status_text": XSS,
    "progress": 100,
    "task_id": XSS,
    "sid": None,
    "preview_url": "javascript:window.__pwned=1",
    "raw_url": " JaVaScRiPt:window.__pwned=1",
    "thumbnail_url": "java\nscript:window.__pwned=1",
    "video_url": "data:text/html,<script>window.__pwned=1</script>",
    "download_url": "//evil.example/x.mp4",
    "local_url": "javascript:window.__pwned=1",
    "error": XSS,
    "cached": False,
    "created_at": None,
    "finished_at": None,
    "notices": [XSS],
}


class HostileRelay(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    requests: ClassVar[list] = []

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        HostileRelay.requests.append(body)
        text = FAILED if "fail" in body["messages"][-1]["content"] else COMPLETED
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

        def event(delta: dict, finish: str | None = None) -> bytes:
            chunk = {
                "id": "chatcmpl-hostile",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body.get("model", "sora-2"),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(chunk)}\n\n".encode()

        self.wfile.write(event({"role": "assistant", "content": ""}))
        for start in range(0, len(text), 23):  # split anywhere, even inside a URL
            self.wfile.write(event({"content": text[start : start + 23]}))
            self.wfile.flush()
            time.sleep(0.01)
        self.wfile.write(event({}, "stop"))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


@pytest.fixture(scope="module")
def relay_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), HostileRelay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


UNSAFE_ATTRIBUTES = """() => {
  const bad = [];
  for (const node of document.querySelectorAll('.kki-chat, .kki-chat *')) {
    for (const attr of node.attributes) {
      const value = attr.value.replace(/[\\u0000-\\u0020]/g, '').toLowerCase();
      if (/^(javascript|data|vbscript):/.test(value) || value.startsWith('//')) {
        bad.push(`${node.tagName}.${attr.name}=${attr.value}`);
      }
      if (attr.name.startsWith('on')) bad.push(`${node.tagName}.${attr.name}`);
    }
  }
  return bad;
}"""


def test_hostile_relay_output_stays_text(lab, page):
    HostileRelay.requests.clear()
    lab.write_notebook(
        "hostile.ipynb",
        [
            "from kki_widgets import VideoChat\nchat = VideoChat()\nchat",
            # Defence in depth: hostile state straight into the trait, no Python URL check.
            f"raw = VideoChat()\nraw.title = 'raw state'\nraw.turn_data = [{HOSTILE_TURN!r}]\nraw",
        ],
    )
    lab.open(page, "hostile.ipynb")
    lab.run_all(page)
    page.wait_for_selector(".kki-chat >> nth=1", timeout=60_000)
    chat = page.locator(".kki-chat").nth(0)
    raw = page.locator(".kki-chat").nth(1)
    assert "raw state" in raw.locator(".kki-title").inner_text()

    chat.locator(".kki-input").fill(XSS)
    chat.locator(".kki-send").click()
    done = chat.locator('.kki-turn[data-index="0"][data-status="completed"]')
    done.wait_for(state="attached", timeout=30_000)
    chat.locator(".kki-input").fill("please fail " + XSS)
    chat.locator(".kki-input").press("Enter")
    failed = chat.locator('.kki-turn[data-index="1"][data-status="failed"]')
    failed.wait_for(state="attached", timeout=30_000)
    assert len(HostileRelay.requests) == 2

    time.sleep(0.5)  # give any injected onerror handler a chance to fire
    assert page.evaluate("() => window.__pwned") is None
    assert page.evaluate(UNSAFE_ATTRIBUTES) == []
    assert page.locator(".kki-chat script, .kki-chat img[src='x']").count() == 0

    # The hostile text is shown, literally, where it belongs.
    assert done.locator(".kki-prompt").inner_text() == XSS
    # (the error wording trims the reason's final ">" as if it were punctuation)
    assert XSS[:-1] in failed.locator(".kki-turn-error").inner_text()
    assert done.locator(".kki-task-id").inner_text() == "task_hostile01"
    assert "unsafe link removed" in done.locator(".kki-notices").inner_text().lower()
    # Only the honest link made it: as the player's source and the download link.
    assert done.locator("video.kki-video").get_attribute("src") == "https://cdn.invalid/v.mp4"
    hrefs = done.locator("a[href]").evaluate_all("(links) => links.map((a) => a.href)")
    assert hrefs == ["https://cdn.invalid/v.mp4"], hrefs

    # The raw-state widget: every field is text, every URL dropped and each drop is reported.
    raw_turn = raw.locator(".kki-turn")
    assert raw_turn.locator(".kki-prompt").inner_text() == XSS
    assert raw_turn.locator(".kki-status").inner_text() == XSS
    notices = raw_turn.locator(".kki-notices").inner_text().lower()
    for label in ("preview", "raw data", "thumbnail", "video", "download"):
        assert f"unsafe link removed ({label})" in notices, notices
    assert raw_turn.locator("a[href], video[src], video[poster], img[src]").count() == 0

    folder = Path(__file__).resolve().parents[1] / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / "hostile.png"), full_page=True)
    assert not page.errors.widget_errors(), page.errors.widget_errors()
