"""The key in untrusted text: every recognised form masked, however the text is split."""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kki_widgets.client.redact import KeyRedactor

KEYS = ["kki-test-key-3b8f1e0c9d7a6b5e4f", "sk-proj-" + "A1b/C3d+" * 20, 'ab"c\\d/efgh12']


def forms(key: str) -> dict[str, str]:
    return {
        "raw": key,
        "json": json.dumps(key)[1:-1],
        "json with \\/": json.dumps(key)[1:-1].replace("/", "\\/"),
        "unicode escapes": "".join(f"\\u{ord(c):04x}" for c in key),
        "percent, upper": "".join(f"%{ord(c):02X}" for c in key),
        "percent, quoted": urllib.parse.quote(key, safe=""),
        "mixed": "".join(c if i % 3 else f"%{ord(c):02x}" for i, c in enumerate(key)),
        "hex": key.encode().hex().upper(),
        "basic auth": base64.b64encode(f"user:{key}".encode()).decode(),
        "bearer, url-safe base64": base64.urlsafe_b64encode(f"Bearer {key}".encode()).decode(),
        "html decimal": "".join(f"&#{ord(c)};" for c in key),
        "html hex": "".join(f"&#x{ord(c):x};" for c in key),
    }


CASES = [(key, name, form) for key in KEYS for name, form in forms(key).items()]


@pytest.mark.parametrize(("key", "name", "form"), CASES, ids=[f"{k[:6]}-{n}" for k, n, _ in CASES])
def test_every_form_is_masked(key, name, form):
    redactor = KeyRedactor(key, "[key]")
    text = redactor(f"Failure reason: token {form} is invalid")
    assert "[key]" in text and key not in text and form not in text
    assert text.startswith("Failure reason: token ") and text.endswith(" is invalid")


@settings(max_examples=150, deadline=None)
@given(case=st.sampled_from(CASES), cuts=st.lists(st.integers(0, 400), max_size=12))
def test_a_stream_cut_anywhere_is_redacted_like_the_whole_text(case, cuts):
    key, _, form = case
    redactor = KeyRedactor(key, "[key]")
    text = f"> Generation failed\n> reason: {form} (check it)\n"
    whole = redactor(text)
    stream, out, start = redactor.stream(), [], 0
    for cut in [*sorted(set(cuts)), len(text)]:
        stream.add(text[start:cut])
        out.append(stream.drain())
        start = max(start, cut)
    out.append(stream.flush())
    assert "".join(out) == whole


def test_honest_text_passes_unchanged_and_is_not_held_back_more_than_needed():
    redactor = KeyRedactor(KEYS[0], "[key]")
    answer = "> ID: `task_01k7dz`\n>🏃 Progress 36..44..\n[Play](https://cdn/x.mp4?a=1&b=%2F)\n"
    assert redactor(answer) == answer
    stream = redactor.stream()
    stream.add(answer + "kki-te")  # could be the start of the key: held back, nothing else
    assert stream.drain() == answer
    assert stream.flush() == "kki-te"  # never became the key: given back as it was


def test_a_long_cut_short_echo_at_the_end_is_masked():
    stream = KeyRedactor(KEYS[0], "[key]").stream()
    stream.add("invalid token kki-test-key-3b8f")  # the stream ends inside the key
    assert stream.drain() == "invalid token "
    assert stream.flush() == "[key]"


def test_short_keys_are_not_hunted_as_words():
    assert KeyRedactor("abc", "[key]")("abc abc") == "abc abc"
