"""media.download against a local HTTP server with Range and cuts; media.stitch with real ffmpeg."""

from __future__ import annotations

import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from kki_widgets.media import (
    MediaError,
    MediaVerificationError,
    download,
    ffmpeg_exe,
    probe,
    stitch,
)


class MediaHost:
    """A tiny CDN: serves ``files``, honours Range, can cut a response or ignore Range."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut_after: dict[str, int] = {}  # path -> bytes to send before dropping (once each)
        self.ignore_range = False
        self.requests: list[dict] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                host.requests.append({"path": path, "headers": dict(self.headers)})
                body = host.files.get(path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "9")
                    self.end_headers()
                    self.wfile.write(b"not found")
                    return
                start = 0
                match = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
                if match and not host.ignore_range:
                    start = int(match.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("Content-Type", "video/mp4")
                self.end_headers()
                payload = body[start:]
                cut = host.cut_after.pop(path, None)
                if cut is not None:
                    self.wfile.write(payload[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def host():
    with MediaHost() as media_host:
        yield media_host


def render_clip(path: Path, *, seconds: float, size: str = "320x568", rate: int = 25, audio=True):
    audio_args = (
        ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac", "-shortest"]
        if audio
        else []
    )
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}:duration={seconds}",
         *audio_args, "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )
    return path


@pytest.fixture(scope="module")
def mp4_bytes(tmp_path_factory) -> bytes:
    return render_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=1).read_bytes()


WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 24


def test_download_verifies_and_names_from_the_url(host, mp4_bytes, tmp_path):
    host.files["/cdn/20251013/5781a6%20clip.mp4"] = mp4_bytes
    host.files["/cdn/thumb.webp"] = WEBP
    seen = []
    video = download(
        f"{host.url}/cdn/20251013/5781a6%20clip.mp4?sig=abc",
        tmp_path / "media",
        progress=lambda done, total: seen.append((done, total)),
    )
    assert video == tmp_path / "media" / "5781a6_clip.mp4"
    assert video.read_bytes() == mp4_bytes
    assert seen[-1] == (len(mp4_bytes), len(mp4_bytes))
    # Only the finished files are visible next to the notebook (the lock is a dotfile).
    assert sorted(p.name for p in (tmp_path / "media").glob("[!.]*")) == ["5781a6_clip.mp4"]

    thumb = download(f"{host.url}/cdn/thumb.webp", tmp_path / "media")
    assert thumb.read_bytes() == WEBP

    # Already there and valid: no second request.
    before = len(host.requests)
    assert download(f"{host.url}/cdn/20251013/5781a6%20clip.mp4?sig=abc", tmp_path / "media") == video
    assert len(host.requests) == before


def test_url_without_a_usable_name_gets_a_hash(host, mp4_bytes, tmp_path):
    host.files["/api/file"] = mp4_bytes
    path = download(f"{host.url}/api/file", tmp_path, expected_type="mp4")
    assert re.fullmatch(r"file-[0-9a-f]{24}\.mp4", path.name)
    assert path.read_bytes() == mp4_bytes


def test_a_cut_transfer_resumes_with_range(host, mp4_bytes, tmp_path):
    host.files["/cdn/film.mp4"] = mp4_bytes
    host.cut_after["/cdn/film.mp4"] = 1000
    path = download(f"{host.url}/cdn/film.mp4", tmp_path)
    assert path.read_bytes() == mp4_bytes
    assert [r["headers"].get("Range") for r in host.requests] == [None, "bytes=1000-"]


def test_a_leftover_part_file_is_resumed_or_restarted(host, mp4_bytes, tmp_path):
    host.files["/cdn/film.mp4"] = mp4_bytes
    (tmp_path / "film.mp4.part").write_bytes(mp4_bytes[:500])
    assert download(f"{host.url}/cdn/film.mp4", tmp_path).read_bytes() == mp4_bytes
    assert host.requests[-1]["headers"]["Range"] == "bytes=500-"

    # A server that ignores Range answers 200 with the whole file: start over, do not append.
    (tmp_path / "film.mp4").unlink()
    (tmp_path / "film.mp4.part").write_bytes(mp4_bytes[:500])
    host.ignore_range = True
    assert download(f"{host.url}/cdn/film.mp4", tmp_path).read_bytes() == mp4_bytes


def test_a_complete_part_file_is_finished_without_a_body(host, mp4_bytes, tmp_path):
    host.files["/cdn/film.mp4"] = mp4_bytes
    (tmp_path / "film.mp4.part").write_bytes(mp4_bytes)
    assert download(f"{host.url}/cdn/film.mp4", tmp_path).read_bytes() == mp4_bytes


def test_repeated_cuts_give_up_with_a_clear_error_and_keep_the_part(host, mp4_bytes, tmp_path):
    host.files["/cdn/film.mp4"] = mp4_bytes
    host.cut_after["/cdn/film.mp4"] = 100

    class CutEveryTime(dict):
        def pop(self, key, default=None):
            return 100

    host.cut_after = CutEveryTime()
    with pytest.raises(MediaError, match="call download\\(\\) again to resume"):
        download(f"{host.url}/cdn/film.mp4", tmp_path, retries=2)
    assert (tmp_path / "film.mp4.part").stat().st_size == 300


def test_an_error_page_is_not_saved_as_a_video(host, tmp_path):
    host.files["/cdn/expired.mp4"] = b"<html><body>Link expired</body></html>"
    with pytest.raises(MediaVerificationError, match=r"not an MP4 .*Link expired"):
        download(f"{host.url}/cdn/expired.mp4", tmp_path)
    assert not (tmp_path / "expired.mp4").exists()
    assert not (tmp_path / "expired.mp4.part").exists()

    host.files["/cdn/empty.webp"] = b""
    with pytest.raises(MediaVerificationError, match="empty"):
        download(f"{host.url}/cdn/empty.webp", tmp_path)


def test_http_errors_name_the_fix(host, tmp_path):
    with pytest.raises(MediaError, match=r"HTTP 404.*expired"):
        download(f"{host.url}/cdn/missing.mp4", tmp_path)


def test_the_relay_key_is_never_sent_to_the_media_host(host, mp4_bytes, tmp_path):
    host.files["/cdn/film.mp4"] = mp4_bytes
    with httpx.Client(headers={"Authorization": "Bearer sk-secret"}) as relay_client:
        download(f"{host.url}/cdn/film.mp4", tmp_path, client=relay_client)
        assert relay_client.headers["Authorization"] == "Bearer sk-secret"  # untouched
    assert all("Authorization" not in r["headers"] for r in host.requests)
    assert all("sk-secret" not in str(r["headers"]) for r in host.requests)


def test_stitch_same_format_is_lossless(tmp_path):
    clips = [render_clip(tmp_path / f"c{i}.mp4", seconds=s) for i, s in enumerate([1, 2, 1.5])]
    film = stitch(clips, tmp_path / "out" / "film.mp4")
    info = probe(film)
    assert info.duration == pytest.approx(4.5, abs=0.15)
    assert (info.video_codec, info.width, info.height, info.pix_fmt) == ("h264", 320, 568, "yuv420p")
    assert info.has_audio
    assert not list((tmp_path / "out").glob(".stitch-*"))


def test_stitch_mixed_sizes_and_audio_reencodes_to_the_first_clip(tmp_path):
    clips = [
        render_clip(tmp_path / "portrait.mp4", seconds=1, size="320x568"),
        render_clip(tmp_path / "landscape.mp4", seconds=1, size="640x360", rate=30, audio=False),
        render_clip(tmp_path / "small.mp4", seconds=0.5, size="160x284"),
    ]
    film = stitch(clips, tmp_path / "film.mp4")
    info = probe(film)
    assert info.duration == pytest.approx(2.5, abs=0.2)
    assert (info.width, info.height, info.pix_fmt, info.video_codec) == (320, 568, "yuv420p", "h264")
    assert info.has_audio
    # +faststart: the moov box comes before the media data so browsers can start playing at once.
    head = film.read_bytes()[:200_000]
    assert head.find(b"moov") < head.find(b"mdat")


def test_stitch_errors(tmp_path):
    with pytest.raises(MediaError, match="at least one clip"):
        stitch([], tmp_path / "film.mp4")
    with pytest.raises(MediaError, match="does not exist"):
        stitch([tmp_path / "missing.mp4"], tmp_path / "film.mp4")
