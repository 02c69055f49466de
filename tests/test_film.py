"""Continuity by last frame, and the cut: crossfades, title cards, captions, mixed clips."""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest
from kki_testing import TEST_KEY
from PIL import Image, ImageChops, ImageStat

from kki_widgets import Conversation
from kki_widgets.media.downloads import MediaError, probe
from kki_widgets.media.film import last_frame, make_film
from kki_widgets.protocol.errors import ConfigurationError
from kki_widgets.store.notebook_store import NotebookStore

SRT_CUE = re.compile(
    r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})\n(.+)\n"
)


def conversation(sim, tmp_path, **options) -> Conversation:
    store = NotebookStore(tmp_path / ".kki" / "notebook.json", secret=TEST_KEY)
    return Conversation(base_url=sim.base_url, api_key=TEST_KEY, store=store, poll_interval=0.05, **options)


def decoded_last_frame(clip) -> Image.Image:
    """Every frame decoded by imageio-ffmpeg's reader; the last one (independent of last_frame)."""
    reader = imageio_ffmpeg.read_frames(str(clip))
    meta = next(reader)
    frame = None
    for frame in reader:  # noqa: B007 - we want the final one
        pass
    return Image.frombytes("RGB", tuple(meta["size"]), frame)


def first_frame(clip) -> Image.Image:
    reader = imageio_ffmpeg.read_frames(str(clip))
    meta = next(reader)
    frame = next(reader)
    reader.close()
    return Image.frombytes("RGB", tuple(meta["size"]), frame)


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def sent_image(body: dict) -> Image.Image:
    parts = body["messages"][-1]["content"]
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert len(urls) == 1 and urls[0].startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(urls[0].split(",", 1)[1]))).convert("RGB")


def make_clip(path: Path, size: str, rate: int, *, audio: bool = False, source: str = "testsrc2") -> Path:
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y",
               "-f", "lavfi", "-i", f"{source}=s={size}:r={rate}:d=2"]  # fmt: skip
    if audio:
        command += ["-f", "lavfi", "-i", "sine=f=330:d=2", "-c:a", "aac", "-shortest"]
    command += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(command, check=True)
    return path


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    """Strict SubRip: blocks separated by one blank line, each exactly number/times/text."""
    cues = []
    for block in text.strip("\n").split("\n\n"):
        match = SRT_CUE.fullmatch(block + "\n")
        assert match, f"malformed cue {block!r}"
        g = match.groups()
        start = int(g[1]) * 3600 + int(g[2]) * 60 + int(g[3]) + int(g[4]) / 1000
        end = int(g[5]) * 3600 + int(g[6]) * 60 + int(g[7]) + int(g[8]) / 1000
        assert int(g[0]) == len(cues) + 1, "cues are numbered from 1"
        assert start < end and (not cues or cues[-1][1] <= start), "cues overlap"
        cues.append((start, end, g[9]))
    return cues

# ---------------------------------------------------------------------------- last frame
def test_from_frame_sends_the_parents_exact_last_frame(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path)
    parent = conv.send("a red kite over the dunes")
    child = conv.send("the kite lands on the sand", continue_from="last_frame")
    body = fast_simulator.requests[-1]

    assert child.status == "completed" and child.parent == parent.index
    assert child.options["continue_from"] == "last_frame"
    # Only the new prompt and the frame: the parent's answer is not sent back (no remix).
    assert [m["role"] for m in body["messages"]] == ["user"]
    image = sent_image(body)
    expected = decoded_last_frame(parent.path)
    assert image.size == expected.size
    assert mean_difference(image, expected) < 0.5, "not the decoded last frame of the parent"
    # ...and not merely a frame that looks alike: the first frame differs from the last.
    assert mean_difference(image, first_frame(parent.path)) > 1

    # The simulator's clip visibly opens on the frame it was given, then becomes its own scene.
    assert mean_difference(first_frame(child.path), image) < 6
    assert mean_difference(decoded_last_frame(child.path), image) > 6


def test_a_continued_turns_frame_is_one_file_on_disk(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path)
    parent = conv.send("a paper boat on a pond")
    conv.send("the boat drifts under a leaf", continue_from="last_frame")
    frames = Path(parent.path).parent / "frames"
    last, = frames.glob("*-last.png")
    hashed = [p for p in frames.iterdir() if re.fullmatch(r"[0-9a-f]{64}\.png", p.name)]
    # The store's content-addressed copy is the last frame itself (a hard link), not a second file.
    assert len(hashed) == 1 and hashed[0].read_bytes() == last.read_bytes()
    assert os.path.samefile(hashed[0], last) and last.stat().st_nlink == 2
    assert [p.name for p in frames.iterdir() if p.name.startswith(".tmp")] == []


def test_from_frame_turns_replay_for_free_in_a_fresh_kernel(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path)
    conv.send("a snowman in a garden")
    conv.send("the sun comes out", continue_from="last_frame")
    before = len(fast_simulator.requests)

    again = conversation(fast_simulator, tmp_path)
    again.reset()
    replayed = [again.send("a snowman in a garden"),
                again.send("the sun comes out", continue_from="last_frame")]  # fmt: skip
    assert len(fast_simulator.requests) == before
    assert all(turn.cached for turn in replayed)


def test_a_model_that_cannot_remix_continues_from_the_last_frame(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path, profile="flow2api")  # Veo on Flow: no remix
    assert not conv.can_remix("veo3")
    first = conv.send("a lighthouse", model="veo3")
    child = conv.send("waves crash", model="veo3")
    assert child.parent == first.index and child.options.get("continue_from") == "last_frame"
    assert "cannot remix" in child.note and "last frame of turn 0" in child.note
    body = fast_simulator.requests[-1]
    # flow2api's text-to-video models drop images: the frame goes to the image-to-video twin.
    assert fast_simulator.requests[-2]["model"] == "veo_3_1_t2v_portrait"
    assert body["model"] == "veo_3_1_i2v_s_portrait"
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert mean_difference(sent_image(body), decoded_last_frame(first.path)) < 0.5
    assert mean_difference(first_frame(child.path), sent_image(body)) < 6  # it did continue
    assert child.warnings == []
    assert "cannot remix" in child._repr_html_()


@pytest.mark.parametrize("profile, words", [
    ("flow2api", ("Continue from its last frame", "Continuing from the last frame of #1")),
    ("words", ("Remix from here", "Remixing from #1")),
])  # fmt: skip
def test_videochat_says_how_a_turn_would_be_continued(fast_simulator, tmp_path, profile, words):
    from kki_widgets.notebook.widget import VideoChat

    conv = conversation(fast_simulator, tmp_path, profile=profile)
    conv.send("a lighthouse", model="veo3")
    chat = VideoChat(conversation=conv)
    chat._flush()
    turn = chat.turn_data[0]
    assert (turn["continue_text"], turn["continuing_text"]) == words


def test_flow2api_fast_veo_frames_go_to_its_oddly_named_twin(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path, profile="flow2api")
    conv.send("a lighthouse", model="veo3-fast", orientation="landscape")
    child = conv.send("waves crash", model="veo3-fast", orientation="landscape")
    assert [r["model"] for r in fast_simulator.requests[-2:]] == [
        "veo_3_1_t2v_fast_landscape", "veo_3_1_i2v_s_fast_fl"]  # fmt: skip
    info = probe(child.path)  # the relay read "landscape" from the i2v name that carries none
    assert child.status == "completed" and info.width > info.height


def test_a_text_only_model_named_in_full_refuses_a_frame_before_paying(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path, profile="flow2api")
    conv.send("a lighthouse", model="veo_3_1_t2v_fast_landscape")
    sent = len(fast_simulator.requests)
    with pytest.raises(ConfigurationError, match=r"drop the image.*'veo_3_1_i2v_s_fast'"):
        conv.send("waves crash", model="veo_3_1_t2v_fast_landscape", continue_from="last_frame")
    with pytest.raises(ConfigurationError, match=r"has none.*--from-frame"):
        conv.send("waves crash", model="veo_3_1_i2v_s_fast_fl", parent=None)
    assert len(fast_simulator.requests) == sent


def test_a_relay_that_drops_the_frame_says_so_on_the_turn(fast_simulator, tmp_path):
    # Without the flow2api profile the user's full t2v name is sent as is; the relay (and the
    # simulator, as strict) drops the image, bills the clip and warns on its status channel.
    conv = conversation(fast_simulator, tmp_path)
    first = conv.send("a lighthouse", model="veo_3_1_t2v_fast_landscape")
    child = conv.send("waves crash", model="veo_3_1_t2v_fast_landscape", continue_from="last_frame")
    assert child.status == "completed"
    assert any("将忽略图片" in warning for warning in child.warnings), child.warnings
    assert "将忽略图片" in child._repr_html_()
    # It really did not continue: the clip does not open on the frame that was sent.
    assert mean_difference(first_frame(child.path), decoded_last_frame(first.path)) > 6


def test_a_frame_model_without_a_frame_fails_in_the_relay_s_words(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path)  # words profile: the name is sent as typed
    turn = conv.send("waves crash", model="veo_3_1_i2v_s_fast_fl")
    assert turn.status == "failed" and "首尾帧模型需要 1-2 张图片" in turn.error


def test_a_profile_that_remixes_keeps_remixing(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path)  # the default profile: chat relays remix
    assert conv.can_remix("veo3")
    conv.send("a lighthouse", model="veo3")
    remix = conv.send("the storm passes", model="veo3")
    assert "continue_from" not in remix.options and remix.note is None
    assert fast_simulator.requests[-1]["messages"][-2]["role"] == "assistant"


def test_continue_from_is_checked_before_anything_is_sent(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path)
    with pytest.raises(ConfigurationError, match=r"'remix'.*'last_frame'"):
        conv.send("x", continue_from="first_frame")


def test_last_frame_is_reused_and_refuses_a_missing_clip(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", "64x48", 12)
    frame = last_frame(clip)
    assert frame == tmp_path / "frames" / "c-last.png"
    stamp = frame.stat().st_mtime_ns
    assert last_frame(clip).stat().st_mtime_ns == stamp  # no second ffmpeg run
    with pytest.raises(MediaError, match="does not exist"):
        last_frame(tmp_path / "gone.mp4")


# ---------------------------------------------------------------------------- the cut
def test_film_normalises_mixed_clips_and_lasts_the_sum_minus_crossfades(tmp_path):
    clips = [
        make_clip(tmp_path / "a.mp4", "160x284", 24),
        make_clip(tmp_path / "b.mp4", "284x160", 30, audio=True),
        make_clip(tmp_path / "c.mp4", "120x120", 25, source="testsrc"),
    ]
    seen: list[float] = []
    film = make_film(clips, tmp_path / "out" / "film.mp4", fade=0.5,
                     captions=["one", "two --> three", None], progress=seen.append)  # fmt: skip

    info = probe(film.path)
    expected = sum(probe(c).duration for c in clips) - 2 * 0.5
    assert info.video_codec == "h264" and info.pix_fmt == "yuv420p"
    assert (info.width, info.height, info.fps) == (160, 284, 24)
    assert info.has_audio  # one clip had sound: the others get silence
    assert info.duration == pytest.approx(expected, abs=0.1)
    assert film.duration == pytest.approx(expected, abs=0.01)

    cues = parse_srt(film.srt_path.read_text(encoding="utf-8"))
    assert film.srt_path == tmp_path / "out" / "film.srt"
    assert [c[2] for c in cues] == ["one", "two --> three"]  # None: no cue for that shot
    assert cues[0] == (0.0, 1.75, "one") and cues[1][:2] == (1.75, 3.25)
    assert seen and seen == sorted(seen) and seen[-1] == 1.0
    assert not list((tmp_path / "out").glob(".film-*")), "work folder left behind"


def test_film_title_cards_cuts_and_burned_captions(tmp_path):
    clips = [make_clip(tmp_path / f"{n}.mp4", "96x64", 24) for n in "ab"]
    cut = make_film(clips, tmp_path / "cut.mp4", transitions="cut", titles="The film",
                    title_seconds=1.0, captions=["first", "second"], burn_captions=True)  # fmt: skip
    assert probe(cut.path).duration == pytest.approx(1.0 + 2 + 2, abs=0.1)
    assert not probe(cut.path).has_audio
    cues = parse_srt(cut.srt_path.read_text(encoding="utf-8"))
    assert [c[:2] for c in cues] == [(1.0, 3.0), (3.0, 5.0)]  # shifted by the title card

    plain = make_film(clips, tmp_path / "plain.mp4", transitions="cut", titles="The film", title_seconds=1.0)
    assert plain.srt_path is None
    # The burned-in caption changes the picture where the caption shows.
    burned, clean = (Image.open(io.BytesIO(_frame_at(f.path, 2.0))) for f in (cut, plain))
    assert mean_difference(burned.convert("RGB"), clean.convert("RGB")) > 0.5


def test_a_long_title_card_is_wrapped_inside_the_frame(tmp_path):
    clip = make_clip(tmp_path / "a.mp4", "320x180", 24)
    title = "The long voyage of a paper boat down every rainy street of the old harbour town"
    film = make_film([clip], tmp_path / "titled.mp4", transitions="cut", titles=title, title_seconds=1.0)
    card = Image.open(io.BytesIO(_frame_at(film.path, 0.5))).convert("L")
    ink = card.point(lambda value: 255 if value > 128 else 0)  # white text on a near-black card
    box = ink.getbbox()
    assert box is not None, "the title card shows no text"
    left, top, right, bottom = box
    # Wrapped: no letter touches the frame's sides, and the text takes several lines.
    assert left >= 4 and right <= card.width - 4, box
    assert bottom - top > 2 * (card.height // 14), box


def test_burned_captions_show_braces_and_backslashes_as_written(tmp_path):
    clip = make_clip(tmp_path / "a.mp4", "192x108", 24)
    film = make_film([clip], tmp_path / "braces.mp4", captions=["{a boat}"], burn_captions=True)
    plain = make_film([clip], tmp_path / "plain.mp4")
    # libass would read "{a boat}" as a styling block and draw nothing: the picture must change.
    burned, clean = (Image.open(io.BytesIO(_frame_at(f.path, 1.0))).convert("RGB") for f in (film, plain))
    assert mean_difference(burned, clean) > 0.2
    # The captions file beside the film stays as written (it is not for libass only).
    assert parse_srt(film.srt_path.read_text(encoding="utf-8"))[0][2] == "{a boat}"


def test_libass_text_escapes_what_libass_would_read_as_markup():
    from kki_widgets.media.film import libass_text

    escaped = libass_text("{\\b1}bold\\Nline")
    assert "{\\b" not in escaped and "\\N" not in escaped
    assert escaped.replace("\u2060", "") == "\\{\\b1\\}bold\\Nline"


def _frame_at(clip, seconds: float) -> bytes:
    return subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-ss", str(seconds), "-i", str(clip),
         "-frames:v", "1", "-f", "image2", "-c:v", "png", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip


def test_film_refuses_bad_input_with_the_fix(tmp_path):
    clip = make_clip(tmp_path / "a.mp4", "64x48", 12)
    with pytest.raises(MediaError, match="one per clip"):
        make_film([clip], tmp_path / "f.mp4", captions=["a", "b"])
    with pytest.raises(MediaError, match="crossfade, cut"):
        make_film([clip], tmp_path / "f.mp4", transitions="wipe")
    with pytest.raises(MediaError, match="not shots"):
        make_film([clip], tmp_path / "f.mp4", titles={3: "late"})


def test_conversation_film_cuts_the_chain_with_the_prompts_as_captions(fast_simulator, tmp_path):
    conv = conversation(fast_simulator, tmp_path)
    prompts = ["a fox wakes", "the fox runs", "the fox sleeps"]
    for prompt in prompts:
        conv.send(prompt)
    film = conv.film(tmp_path / "fox.mp4", fade=0.4)
    shots = [probe(t.path).duration for t in conv.turns]
    assert probe(film.path).duration == pytest.approx(sum(shots) - 2 * 0.4, abs=0.1)
    assert [c[2] for c in parse_srt(film.srt_path.read_text())] == prompts
    # stitch still concatenates.
    assert probe(conv.stitch(tmp_path / "joined.mp4")).duration == pytest.approx(sum(shots), abs=0.1)


def test_an_undecodable_image_still_gets_a_clip_quickly(fast_simulator, tmp_path):
    """A PNG header with garbage behind it: the simulator renders its usual clip, without hanging."""
    from kki_widgets.client.relay import RelayClient

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with RelayClient(base_url=fast_simulator.base_url, api_key=TEST_KEY) as client:
        generation = client.generate("animate a broken picture", images=[broken])
    assert generation.status == "completed" and generation.video_url


def test_from_frame_with_media_kept_under_a_relative_folder(fast_simulator, tmp_path):
    """The notebook's own folder is the working directory: media paths may be relative."""
    store = NotebookStore(Path(".kki") / "nb.json", secret=TEST_KEY)  # cwd is tmp_path
    conv = Conversation(base_url=fast_simulator.base_url, api_key=TEST_KEY, store=store)
    parent = conv.send("a relative start")
    child = conv.send("a relative end", continue_from="last_frame")
    assert child.status == "completed"
    assert mean_difference(sent_image(fast_simulator.requests[-1]), decoded_last_frame(parent.path)) < 0.5
