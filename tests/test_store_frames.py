"""Images in stored turns kept as content-addressed files (kki_media/frames/), loaded back exactly."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import pytest
from kki_testing import TEST_KEY
from PIL import Image

from kki_widgets import Conversation
from kki_widgets.protocol.errors import ConfigurationError
from kki_widgets.store.frames import FrameFiles
from kki_widgets.store.notebook_store import NotebookStore


def conversation(sim, folder) -> Conversation:
    store = NotebookStore(folder / ".kki" / "notebook.json", secret=TEST_KEY)
    return Conversation(base_url=sim.base_url, api_key=TEST_KEY, store=store, poll_interval=0.05)


def store_text(folder) -> str:
    return "".join(p.read_text() for p in sorted((folder / ".kki").glob("notebook.*")) if p.suffix != ".lock")


def kept_frames(folder) -> list:
    """The store's frame files (film.last_frame keeps its own, named after the clip, beside them)."""
    return [p for p in (folder / "kki_media" / "frames").iterdir() if len(p.stem) == 64]


def png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 36), color).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


@pytest.fixture
def film(fast_simulator, tmp_path):
    """A clip, one continued from its last frame, and a remix of that one (its history has the frame)."""
    conv = conversation(fast_simulator, tmp_path)
    conv.send("a red kite over the dunes")
    framed = conv.send("the kite lands on the sand", continue_from="last_frame")
    remix = conv.send("a gust lifts it again")
    return conv, framed, remix


def test_a_frame_is_stored_once_as_a_file_and_loads_back_byte_for_byte(fast_simulator, tmp_path, film):
    conv, framed, remix = film
    [part] = [p for p in framed.messages[-1]["content"] if p["type"] == "image_url"]
    frame = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
    assert remix.messages[0] == framed.messages[0]  # the remix sends the frame again

    [kept] = kept_frames(tmp_path)
    assert kept.name == hashlib.sha256(frame).hexdigest() + ".png" and kept.read_bytes() == frame
    text = store_text(tmp_path)
    assert "base64" not in text and "kki_media/frames/" + kept.name in text

    again = conversation(fast_simulator, tmp_path)
    assert json.dumps(again.turns[1].messages) == json.dumps(framed.messages)
    assert json.dumps(again.turns[2].messages) == json.dumps(remix.messages)
    # The same request again is the same cache key: all three replay for free.
    before = len(fast_simulator.requests)
    again.reset()
    replayed = [again.send("a red kite over the dunes"),
                again.send("the kite lands on the sand", continue_from="last_frame"),
                again.send("a gust lifts it again")]  # fmt: skip
    assert all(turn.cached for turn in replayed) and len(fast_simulator.requests) == before
    assert [t.cache_key for t in replayed] == [t.cache_key for t in conv.turns]


@pytest.mark.parametrize("damage", ["deleted", "changed"])
def test_a_missing_frame_file_is_named_only_when_its_history_is_sent(fast_simulator, tmp_path, film, damage):
    [kept] = kept_frames(tmp_path)
    if damage == "deleted":
        kept.unlink()
    else:
        kept.write_bytes(png((0, 0, 255)))
    again = conversation(fast_simulator, tmp_path)  # loading works: nothing needs the frame yet
    assert [t.prompt for t in again.turns] == [t.prompt for t in film[0].turns]
    before = len(fast_simulator.requests)
    for parent in (1, 2):  # remixing either sends the frame in its history
        with pytest.raises(ConfigurationError) as caught:
            again.send("the kite flies away", parent=parent)
        message = str(caught.value)
        assert str(kept) in message and "continue_from='last_frame'" in message and "git" in message
    assert len(fast_simulator.requests) == before  # nothing sent, nothing paid
    # What does not need the history still works: a new frame from that clip.
    turn = again.send("the kite flies away", parent=1, continue_from="last_frame")
    assert turn.status == "completed"


def test_old_stores_with_inline_images_still_load(tmp_path):
    store_path = tmp_path / ".kki" / "nb.json"
    store_path.parent.mkdir()
    message = {"role": "user", "content": [{"type": "text", "text": "from a frame"},
                                           {"type": "image_url", "image_url": {"url": data_url(png((9, 9, 9)))}}]}
    old = {"version": 2, "conversations": {"default": {"head": "a", "turns": {
        "a": {"parent": None, "prompt": "from a frame", "history": 0, "message": message,
              "generation": {"status": "completed"}}}}}}
    store_path.write_text(json.dumps(old))
    [loaded] = NotebookStore(store_path).load_conversation("default")["turns"]
    assert loaded["messages"] == [message]


def test_only_canonical_image_data_urls_move_out_and_never_through_a_link(tmp_path):
    frames = FrameFiles(tmp_path)
    image = png((1, 2, 3))
    odd = "data:image/png;base64," + base64.encodebytes(image).decode()  # with newlines
    not_image = "data:image/png;base64," + base64.b64encode(b"not an image at all").decode()
    for url in (odd, not_image):
        message = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
        assert frames(message) is message
    message = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(image), "detail": "low"}}]}
    stored = frames(message)
    assert stored["content"][0]["image_url"]["detail"] == "low"
    assert frames.inflate([stored]) == [message]

    private = tmp_path / "private"
    private.mkdir()
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "kki_media").symlink_to(private)
    other = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(png((4, 5, 6)))}}]}
    assert FrameFiles(linked)(other) is other  # kept inline
    assert list(private.iterdir()) == []
