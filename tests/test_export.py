"""The exported page without a browser: what reaches src/href, escaping, where media go."""

from __future__ import annotations

import dataclasses
import re
import stat

import pytest
from kki_testing import TEST_KEY

from kki_widgets import Conversation
from kki_widgets.protocol.errors import ConfigurationError
from kki_widgets.store.notebook_store import NotebookStore

URL_ATTRIBUTE = re.compile(r"""\b(?:src|href|poster)\s*=\s*['"]([^'"]*)['"]""")


@pytest.fixture
def conv(fast_simulator, tmp_path):
    store = NotebookStore(tmp_path / "nb" / ".kki" / "nb.json", secret=TEST_KEY)
    return Conversation(base_url=fast_simulator.base_url, api_key=TEST_KEY, store=store)


def test_page_urls_are_relative_or_http_and_text_is_escaped(conv, tmp_path):
    conv.send("</title><script>alert('x')</script> & friends")
    conv.send("second shot")
    page = conv.export(tmp_path / "site" / "page.html", film=False)
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text and "&lt;/title&gt;&lt;script&gt;" in text
    urls = URL_ATTRIBUTE.findall(text)
    assert urls and all(u.startswith("./page_files/") for u in urls)
    copied = list((tmp_path / "site" / "page_files").iterdir())
    assert {p.suffix for p in copied} == {".mp4", ".webp"}
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o044 == 0o044 for p in copied)  # web-readable
    assert TEST_KEY not in text and "Relay: 127.0.0.1" in text


def test_a_hostile_link_without_a_local_copy_never_reaches_the_page(conv, tmp_path):
    turn = conv.send("a shot")
    turn.path = turn.thumbnail_path = None
    turn.generation = dataclasses.replace(
        turn.generation, video_url="javascript:alert(1)", thumbnail_url="data:text/html,<b>x</b>"
    )
    text = conv.export(tmp_path / "p.html", film=False).read_text()
    assert "javascript:" not in text and "data:text/html" not in text
    assert "video not available" in text


def test_embedded_page_carries_its_media_and_exports_after_a_reset(conv, tmp_path):
    conv.send("one")
    conv.reset()
    page = conv.export(tmp_path / "one.html", embed=True)
    text = page.read_text()
    assert not (tmp_path / "one_files").exists()
    urls = URL_ATTRIBUTE.findall(text)
    assert urls and all(u.startswith(("data:video/mp4;base64,", "data:image/webp;base64,", "data:text/vtt;base64,")) for u in urls)


def test_export_refuses_what_it_cannot_publish(conv, tmp_path):
    with pytest.raises(ConfigurationError, match="no completed shot"):
        conv.export(tmp_path / "empty.html")
    conv.send("one")
    with pytest.raises(ConfigurationError, match=r"\.html"):
        conv.export(tmp_path / "film.mp4")
