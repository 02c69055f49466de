"""js/widget.js on its own page in chromium, with a model that has no kernel behind it.

No Jupyter: a plain page imports the module and renders it with a stand-in for anywidget's model
(get/set/on/off/send), so the player and the channel are checked where nothing else interferes:
- the player keeps its position and keeps playing when its source changes (the local copy
  replacing the relay's URL while the user watches);
- a model whose messages go nowhere (a restored view) is found out: the composer keeps the typed
  prompt and says "no kernel: run the cell to reconnect";
- the widget's own ./kki_media/ path is a Download link, not an "Unsafe link".
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kki_widgets.media.downloads import ffmpeg_exe

pytestmark = [pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"

PAGE = """<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="/widget.css"></head><body><div id="root"></div>
<script type="module">
const state = {
  turn_data: [], model: "sora-2", models: ["sora-2"], orientation: "portrait",
  orientations: ["portrait", "landscape"], duration: null, durations: [10], takes: 1,
  price_text: "estimate $0.10", simulated: false, busy: false, error: "", title: "Video chat", head: null,
};
const listeners = {};
window.sent = [];
const model = {
  get: (k) => state[k],
  set: (k, v) => { state[k] = v; },
  save_changes() {},
  on(name, cb) { (listeners[name] ??= []).push(cb); },
  off(name, cb) { listeners[name] = (listeners[name] || []).filter((f) => f !== cb); },
  send(msg) { window.sent.push(msg); },  // a restored view: nothing answers
};
window.setTrait = (k, v) => { state[k] = v; for (const cb of listeners[`change:${k}`] || []) cb(); };
const widget = (await import("/widget.js")).default();
widget.initialize({ model });
widget.render({ model, el: document.getElementById("root") });
window.ready = true;
</script></body></html>"""


def turn(**fields) -> dict:
    return {
        "index": 0, "prompt": "a paper boat", "model": "sora-2", "orientation": "portrait",
        "duration": 10, "parent": None, "status": "completed", "status_text": "Completed",
        "running": False, "progress": 100, "task_id": "task_1", "preview_url": None, "raw_url": None,
        "thumbnail_url": None, "video_url": None, "download_url": None, "local_url": None,
        "local_thumbnail_url": None, "error": None, "cached": False, "created_at": 1.0,
        "finished_at": None, "notices": [], **fields,
    }  # fmt: skip


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files with byte ranges, as Jupyter's /files/ and Voila's /voila/files/ serve them
    (a browser seeks a video only where the server answers ranges)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if not match or not path.is_file():
            return super().do_GET()
        data = path.read_bytes()
        start = int(match.group(1))
        end = min(int(match.group(2) or len(data) - 1), len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self.wfile.write(data[start : end + 1])


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("site")
    shutil.copyfile(ROOT / "js" / "widget.js", folder / "widget.js")
    shutil.copyfile(ROOT / "js" / "widget.css", folder / "widget.css")
    (folder / "index.html").write_text(PAGE, encoding="utf-8")
    (folder / "relay").mkdir()
    (folder / "kki_media").mkdir()
    clip = folder / "relay" / "clip.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", "testsrc=size=160x284:rate=25:duration=6", "-c:v", "libx264", "-pix_fmt", "yuv420p",
         "-movflags", "+faststart", str(clip)],
        check=True,
    )  # fmt: skip
    shutil.copyfile(clip, folder / "kki_media" / "clip.mp4")  # the "local copy", another URL
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(RangeHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def widget_page(browser, site):
    context = browser.new_context(viewport={"width": 900, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{site}/index.html")
    page.wait_for_function("() => window.ready === true")
    yield page
    assert errors == []
    context.close()


def test_the_player_keeps_its_place_when_the_local_copy_replaces_the_relay_url(widget_page):
    page = widget_page
    # While the copy is being kept, the player plays the relay's URL.
    page.evaluate("(t) => window.setTrait('turn_data', [t])", turn(video_url="/relay/clip.mp4"))
    page.wait_for_function(
        "() => { const v = document.querySelector('video.kki-video'); return v && v.readyState >= 2; }"
    )
    page.evaluate(
        "async () => { const v = document.querySelector('video.kki-video'); v.muted = true; await v.play(); }"
    )
    page.wait_for_function("() => document.querySelector('video.kki-video').currentTime > 1.5", polling=100)
    before = page.evaluate("() => document.querySelector('video.kki-video').currentTime")
    # The copy is kept: the turn now names it, and the player switches to it.
    page.evaluate(
        "(t) => window.setTrait('turn_data', [t])",
        turn(video_url="/relay/clip.mp4", local_url="./kki_media/clip.mp4", finished_at=2.0),
    )
    page.wait_for_function(
        "() => document.querySelector('video.kki-video').currentSrc.endsWith('/kki_media/clip.mp4')"
    )
    after = page.wait_for_function(
        """() => {
          const v = document.querySelector('video.kki-video');
          return v.readyState >= 2 && !v.paused && v.currentTime > 0 && v.currentTime;
        }""",
        polling=100,
    ).json_value()
    assert after >= before - 0.1, (before, after)  # not back at 0
    link = page.locator("a.kki-download")
    assert link.get_attribute("href") == "./kki_media/clip.mp4" and link.get_attribute("download") == "clip.mp4"
    assert "Unsafe link" not in page.locator(".kki-chat").inner_text()


def test_a_model_nobody_answers_keeps_the_prompt_and_says_there_is_no_kernel(widget_page):
    page = widget_page
    assert page.evaluate("() => window.sent.map((m) => m.type)") == ["hello"]
    box = page.locator(".kki-input")
    box.fill("now the boat reaches the sea")
    box.press("Enter")  # before the greeting times out: the box does not empty on a guess
    assert box.input_value() == "now the boat reaches the sea"
    page.locator(".kki-offline").wait_for(state="visible", timeout=20_000)
    assert box.input_value() == "now the boat reaches the sea"
    assert "no kernel: run the cell to reconnect" in page.locator(".kki-error-text").inner_text()
    assert page.locator(".kki-send").is_disabled() and page.locator(".kki-price").is_hidden()
    box.press("Enter")  # once known, nothing more is sent
    assert page.evaluate("() => window.sent.map((m) => m.type)") == ["hello", "send"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "hosts-widget-js-no-kernel.png"), full_page=True)
