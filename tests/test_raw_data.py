"""Reading a relay's raw-data answer (kki_widgets/protocol/raw_data.py, pure): every relay shapes it
differently and a hostile one sends anything, so any JSON value merges into what is known without
raising, and the known shapes read right."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from kki_widgets.protocol.raw_data import completed_text, generation_from_raw, read_raw
from kki_widgets.protocol.relay_text import completion_text
from kki_widgets.protocol.transcript import STATUSES, Generation, parse_transcript

TASK = "task_01k7dzptgwf2z87wj2c3t36qk0"
SID = "s_" + "ab" * 16
VIDEO = "https://cdn.example/v.mp4"
THUMB = "https://cdn.example/t.webp"
KNOWN = Generation(task_id=TASK, status="generating", progress=40, raw_url="https://r.example/source/x")

# The names relays use, so generated dicts hit the reading paths, not only unknown keys.
KEYS = st.sampled_from([
    "status", "state", "video_url", "url", "downloadable_url", "download_url", "thumbnail_url",
    "cover_url", "gif_url", "progress", "error", "fail_reason", "failure_reason", "message",
    "id", "task_id", "sid", "content", "markdown",
]) | st.text(max_size=8)
SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["completed", "FAILED", "processing", "queued", "45%", VIDEO, "ftp://x/v"])
    | st.text(max_size=40)
)
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(JSON_VALUES)
def test_any_json_shape_merges_without_raising(data):
    merged = generation_from_raw(data, KNOWN)
    assert isinstance(merged, Generation)
    assert merged.status in STATUSES
    assert merged.task_id == TASK  # what we knew is never forgotten
    assert 0 <= merged.progress <= 100
    assert merged.status != "completed" or merged.progress == 100
    if merged.status != "failed":
        assert merged.error is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | JSON_VALUES.map(json.dumps))
def test_any_answer_text_reads_or_is_unreadable_never_raises(text):
    merged = read_raw(text, KNOWN)
    assert merged is None or merged.task_id == TASK


def test_numbers_past_any_int_make_the_answer_unreadable():
    assert read_raw('{"status": "processing", "progress": "inf"}', KNOWN) is None
    assert read_raw('{"status": "processing", "progress": "n/a"}', KNOWN).progress == 40


def test_flat_and_nested_shapes():
    flat = generation_from_raw({"status": "SUCCESS", "video_url": VIDEO, "cover_url": THUMB}, KNOWN)
    assert (flat.status, flat.progress, flat.video_url, flat.thumbnail_url) == (
        "completed", 100, VIDEO, THUMB
    )
    nested = generation_from_raw({"content": {"state": "running", "progress": "55%"}}, KNOWN)
    assert (nested.status, nested.progress) == ("generating", 55)
    failed = generation_from_raw({"status": "error", "fail_reason": {"message": "policy"}}, KNOWN)
    assert (failed.status, failed.error) == ("failed", "policy")
    # A video URL that is not http(s) is no video.
    assert generation_from_raw({"status": "done", "url": "javascript:x"}, KNOWN).video_url is None


def test_markdown_answers_bring_their_text():
    markdown = f"> ID: `{TASK}`\n> Generating" + completion_text(SID, THUMB, VIDEO)
    merged = generation_from_raw({"content": markdown}, KNOWN)
    assert (merged.status, merged.sid, merged.video_url) == ("completed", SID, VIDEO)
    assert merged.text == markdown
    as_text = generation_from_raw(markdown, KNOWN)
    assert as_text.video_url == VIDEO and as_text.text == markdown
    # Markdown without a video or task keeps what we had.
    assert generation_from_raw("> Queuing.", KNOWN).text == KNOWN.text


def test_completed_text_is_the_relays_own_ending_and_reads_back():
    cut = parse_transcript(f"> ID: `{TASK}`\n> Generating\n\n>🏃 Progress 36..")
    done = generation_from_raw({"status": "completed", "video_url": VIDEO, "sid": SID}, cut)
    text = completed_text(done)
    assert text.startswith(cut.text.rstrip()) and text.endswith(completion_text(SID, None, VIDEO))
    reread = parse_transcript(text)
    assert (reread.status, reread.sid, reread.video_url, reread.task_id) == (
        "completed", SID, VIDEO, TASK
    )
    whole = done.with_text(text)
    assert completed_text(whole) == text  # already complete: unchanged


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_generation_dict_round_trip_and_text_rebuilding(text):
    generation = parse_transcript(text)
    again = Generation.from_dict(json.loads(json.dumps(generation.to_dict())))
    assert again == generation and again.text == generation.text
    assert Generation().with_text(text).text == text
    assert KNOWN.with_text_of(generation).text == generation.text
    assert KNOWN.merge(generation).text == KNOWN.text
    assert KNOWN.merge(generation, take_text=True).text == generation.text
