"""media.download against a local HTTP server with Range and cuts; media.stitch with real ffmpeg."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from kki_testing import SERVE_POLL, Socks5Proxy, use_only_proxy

from kki_widgets.media import downloads as media
from kki_widgets.media.downloads import (
    MediaError,
    MediaRefusedError,
    MediaVerificationError,
    ffmpeg_exe,
    keep_copy,
    probe,
    stitch,
)


def download(url, dest_dir, **options):
    """The tests' media host is on loopback: say the relay is there too (as the simulator is)."""
    options.setdefault("relay_url", "http://127.0.0.1:1/v1")
    return media.download(url, dest_dir, **options)


def part_of(url: str, folder: Path, key: str | None = None) -> Path:
    return folder / f"{media._base_name(url, key)}.part"


PUBLIC_RELAY = "https://1.1.1.1/v1"  # a literal public address: never contacted, never resolved


class MediaHost:
    """A tiny CDN: serves ``files``, honours Range, can cut a response or ignore Range."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut_after: dict[str, int] = {}  # path -> bytes to send before dropping (once each)
        self.ignore_range = False
        self.redirects: dict[str, str] = {}  # path -> Location
        self.chunked: set[str] = set()  # paths sent without Content-Length
        self.slow: dict[str, float] = {}  # path -> seconds between 1 KiB chunks
        self.huge_headers: set[str] = set()  # paths answered with more header bytes than httpx reads
        self.requests: list[dict] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                host.requests.append({"path": path, "headers": dict(self.headers)})
                if path in host.redirects:
                    self.send_response(302)
                    self.send_header("Location", host.redirects[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = host.files.get(path)
                if path in host.huge_headers:
                    self.send_response(200)
                    # 320 KB: h11 refuses a header block once 100 KiB of it are buffered, but
                    # only checks between reads of up to 64 KiB, so a 160 KB block was accepted
                    # whenever a read happened to end just under the limit (a loaded machine).
                    for i in range(80):
                        self.send_header(f"X-Padding-{i}", "x" * 4000)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if path in host.chunked or path in host.slow:
                    self.send_response(200)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    for offset in range(0, len(body), 1024):
                        try:
                            self.wfile.write(body[offset : offset + 1024])
                            self.wfile.flush()
                        except OSError:
                            return
                        time.sleep(host.slow.get(path, 0))
                    return
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
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": SERVE_POLL}, daemon=True)

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
    assert video.parent == tmp_path / "media"
    assert re.fullmatch(r"5781a6_clip-[0-9a-f]{16}\.mp4", video.name)
    assert video.read_bytes() == mp4_bytes
    assert seen[-1] == (len(mp4_bytes), len(mp4_bytes))
    # Only the finished file is in the media folder: no lock, no .part (issue 12: `.lock` litter).
    assert [p.name for p in (tmp_path / "media").iterdir()] == [video.name]

    thumb = download(f"{host.url}/cdn/thumb.webp", tmp_path / "media")
    assert thumb.read_bytes() == WEBP

    # Already there and valid: no second request.
    before = len(host.requests)
    assert download(f"{host.url}/cdn/20251013/5781a6%20clip.mp4?sig=abc", tmp_path / "media") == video
    assert len(host.requests) == before


def test_url_without_a_usable_name_gets_a_hash(host, mp4_bytes, tmp_path):
    host.files["/api/file"] = mp4_bytes
    path = download(f"{host.url}/api/file", tmp_path, expected_type="mp4")
    assert re.fullmatch(r"file-[0-9a-f]{16}\.mp4", path.name)
    assert path.read_bytes() == mp4_bytes


def test_a_cut_transfer_resumes_with_range(host, mp4_bytes, tmp_path):
    host.files["/cdn/film.mp4"] = mp4_bytes
    host.cut_after["/cdn/film.mp4"] = 1000
    path = download(f"{host.url}/cdn/film.mp4", tmp_path)
    assert path.read_bytes() == mp4_bytes
    assert [r["headers"].get("Range") for r in host.requests] == [None, "bytes=1000-"]


def test_a_leftover_part_file_is_resumed_or_restarted(host, mp4_bytes, tmp_path):
    host.files["/cdn/film.mp4"] = mp4_bytes
    url = f"{host.url}/cdn/film.mp4"
    part_of(url, tmp_path).write_bytes(mp4_bytes[:500])
    kept = download(url, tmp_path)
    assert kept.read_bytes() == mp4_bytes
    assert host.requests[-1]["headers"]["Range"] == "bytes=500-"

    # A server that ignores Range answers 200 with the whole file: start over, do not append.
    kept.unlink()
    part_of(url, tmp_path).write_bytes(mp4_bytes[:500])
    host.ignore_range = True
    assert download(f"{host.url}/cdn/film.mp4", tmp_path).read_bytes() == mp4_bytes


def test_a_complete_part_file_is_finished_without_a_body(host, mp4_bytes, tmp_path):
    host.files["/cdn/film.mp4"] = mp4_bytes
    part_of(f"{host.url}/cdn/film.mp4", tmp_path).write_bytes(mp4_bytes)
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
    assert part_of(f"{host.url}/cdn/film.mp4", tmp_path).stat().st_size == 300


def test_headers_too_large_to_read_say_nothing_was_kept_and_keep_nothing(host, mp4_bytes, tmp_path):
    host.files["/cdn/loud.mp4"] = mp4_bytes
    host.huge_headers.add("/cdn/loud.mp4")
    with pytest.raises(MediaError) as raised:
        download(f"{host.url}/cdn/loud.mp4", tmp_path, retries=1)
    message = str(raised.value)
    # Not one body byte arrived: the message must not promise a partial file to resume.
    assert "nothing was saved; call download() again to retry" in message, message
    assert "is kept" not in message
    assert not part_of(f"{host.url}/cdn/loud.mp4", tmp_path).exists()
    assert list(tmp_path.iterdir()) == []


def test_an_error_page_is_not_saved_as_a_video(host, tmp_path):
    host.files["/cdn/expired.mp4"] = b"<html><body>Link expired</body></html>"
    with pytest.raises(MediaVerificationError, match=r"is not mov or mp4") as caught:
        download(f"{host.url}/cdn/expired.mp4", tmp_path)
    # The answer is untrusted: the error says what was wrong, never quotes what came back.
    assert "Link expired" not in str(caught.value) and "<html" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []

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


# ------------------------------------------------------------------ hostile hosts (issue 11)
def test_two_tasks_with_the_same_file_name_get_their_own_files(host, mp4_bytes, tmp_path):
    other = render_clip(tmp_path / "other.mp4", seconds=1, size="160x284").read_bytes()
    host.files["/task_A/video.mp4"] = mp4_bytes
    host.files["/task_B/video.mp4"] = other
    first = download(f"{host.url}/task_A/video.mp4", tmp_path / "m")
    second = download(f"{host.url}/task_B/video.mp4", tmp_path / "m")
    assert first != second
    assert (first.read_bytes(), second.read_bytes()) == (mp4_bytes, other)
    # Named by task ID: stable across fresh (re-signed) links of one task, distinct across tasks.
    by_task = download(f"{host.url}/task_A/video.mp4?sig=1", tmp_path / "t", key="task_A")
    again = download(f"{host.url}/task_A/video.mp4?sig=2", tmp_path / "t", key="task_A")
    assert by_task == again and "task_A" in by_task.name


def test_a_planted_part_symlink_is_refused_and_its_target_untouched(host, mp4_bytes, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = tmp_path / "kki_media"
    folder.mkdir()
    url = f"{host.url}/cdn/film.mp4"
    host.files["/cdn/film.mp4"] = mp4_bytes
    part_of(url, folder).symlink_to(victim)
    with pytest.raises(MediaError, match="symbolic link"):
        download(url, folder)
    assert victim.read_text() == "precious"
    assert host.requests == []  # refused before any byte was fetched


def test_a_planted_final_name_link_is_replaced_not_followed(host, mp4_bytes, tmp_path):
    victim = tmp_path / "victim.mp4"
    victim.write_bytes(mp4_bytes[:100])
    folder = tmp_path / "kki_media"
    folder.mkdir()
    url = f"{host.url}/cdn/film.mp4"
    host.files["/cdn/film.mp4"] = mp4_bytes
    (folder / f"{media._base_name(url, None)}.mp4").symlink_to(victim)
    kept = download(url, folder)
    assert not kept.is_symlink() and kept.read_bytes() == mp4_bytes
    assert victim.read_bytes() == mp4_bytes[:100]


def test_every_kept_file_is_type_checked(host, tmp_path):
    # A "thumbnail" link without a suffix that answers with HTML/SVG is not kept.
    host.files["/thumb"] = b"<svg onload=alert(1)></svg>"
    with pytest.raises(MediaVerificationError, match="no known video or image format"):
        download(f"{host.url}/thumb", tmp_path, expected_type="image")
    with pytest.raises(MediaVerificationError):
        download(f"{host.url}/thumb", tmp_path)  # no expected type: still must be media
    # A PNG where a video was asked for is refused; the same PNG as an image is kept as .png.
    host.files["/v.mp4"] = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    with pytest.raises(MediaVerificationError, match="a png file"):
        download(f"{host.url}/v.mp4", tmp_path, expected_type="video")
    assert download(f"{host.url}/v.mp4", tmp_path, expected_type="image").suffix == ".png"
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".png"]  # no .part left behind


def test_size_cap_from_content_length_and_while_streaming(host, mp4_bytes, tmp_path):
    host.files["/big.mp4"] = mp4_bytes
    with pytest.raises(MediaVerificationError, match=r"announces .* cap .*KKI_MEDIA_MAX_BYTES"):
        download(f"{host.url}/big.mp4", tmp_path, max_bytes=1000)
    host.files["/endless.mp4"] = mp4_bytes
    host.chunked.add("/endless.mp4")  # no Content-Length: counted while streaming
    with pytest.raises(MediaVerificationError, match="sent more than"):
        download(f"{host.url}/endless.mp4", tmp_path, max_bytes=3000)
    assert list(tmp_path.iterdir()) == []  # the .part is removed


def test_size_cap_from_the_environment(host, mp4_bytes, tmp_path, monkeypatch):
    host.files["/big.mp4"] = mp4_bytes
    monkeypatch.setenv("KKI_MEDIA_MAX_BYTES", "2048")
    with pytest.raises(MediaVerificationError, match="2048-byte cap"):
        download(f"{host.url}/big.mp4", tmp_path)


def test_a_slow_host_hits_the_overall_deadline(host, mp4_bytes, tmp_path):
    # 200 KiB at 1 KiB every 50 ms takes 10 s whatever size this machine's encoder makes the clip:
    # never idle long enough for a read timeout, far longer than the deadline.
    host.files["/slow.mp4"] = mp4_bytes + bytes(200 * 1024)
    host.slow["/slow.mp4"] = 0.05
    started = time.monotonic()
    with pytest.raises(MediaError, match="did not finish within 1 s"):
        download(f"{host.url}/slow.mp4", tmp_path, deadline=1)
    assert time.monotonic() - started < 5
    assert list(tmp_path.iterdir()) == []


def test_loopback_media_is_refused_when_the_relay_is_not_on_loopback(host, mp4_bytes, tmp_path):
    host.files["/cdn/film.mp4"] = mp4_bytes
    for url in (f"{host.url}/cdn/film.mp4", host.url.replace("127.0.0.1", "localhost") + "/cdn/film.mp4"):
        with pytest.raises(MediaRefusedError, match=r"loopback address.*KKI_MEDIA_ALLOW=loopback"):
            media.download(url, tmp_path, relay_url=PUBLIC_RELAY)
    with pytest.raises(MediaRefusedError):
        media.download(f"{host.url}/cdn/film.mp4", tmp_path)  # no relay named: public only
    assert host.requests == []  # the service on loopback was never contacted
    # The user can allow it explicitly.
    assert media.download(f"{host.url}/cdn/film.mp4", tmp_path, relay_url=PUBLIC_RELAY,
                          allow=("loopback",)).read_bytes() == mp4_bytes


@pytest.mark.parametrize(
    ("location", "kind"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/x.mp4", "link-local"),
        ("http://10.1.2.3/x.mp4", "private address"),
        ("http://[::ffff:192.168.0.1]/x.mp4", "private address"),
        ("http://0.0.0.0:9/x.mp4", "unspecified"),
        ("file:///etc/passwd", "only http"),
    ],
)
def test_redirects_are_checked_hop_by_hop(host, tmp_path, location, kind):
    host.redirects["/cdn/film.mp4"] = location
    with pytest.raises(MediaRefusedError, match=kind):
        download(f"{host.url}/cdn/film.mp4", tmp_path)
    assert [r["path"] for r in host.requests] == ["/cdn/film.mp4"]
    assert list(tmp_path.iterdir()) == []


def test_a_private_relay_may_use_private_media_but_never_link_local(tmp_path):
    from kki_widgets.net.addresses import AddressPolicy, AddressRefused, GuardedBackend

    private = AddressPolicy.for_relay("http://10.0.0.5:8000/v1")
    assert private.allowed == {"private"}
    # At connect time, too (a name that resolves differently later changes nothing).
    with pytest.raises(AddressRefused, match="link-local"):
        GuardedBackend(private).connect_tcp("169.254.169.254", 80)
    with pytest.raises(AddressRefused, match="loopback"):
        GuardedBackend(private).connect_tcp("localhost", 80)
    with pytest.raises(ValueError, match="link-local is never allowed"):
        AddressPolicy.for_relay(None, allow=("link-local",))


def test_outputs_get_the_users_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        clip = render_clip(tmp_path / "c.mp4", seconds=1)
        film = stitch([clip, clip], tmp_path / "film.mp4")
        copy = keep_copy(clip, tmp_path / "saved")
    finally:
        os.umask(old)
    assert stat.S_IMODE(film.stat().st_mode) == 0o644
    assert stat.S_IMODE(copy.stat().st_mode) == 0o644


def test_keep_copy_refuses_links(tmp_path):
    secret = tmp_path / ".env"
    secret.write_text("KKI_API_KEY=sk-x")
    link = tmp_path / "clip.mp4"
    link.symlink_to(secret)
    with pytest.raises(MediaError, match="not a plain file"):
        keep_copy(link, tmp_path / "saved")
    assert not (tmp_path / "saved" / "clip.mp4").exists()


# ---- through the environment's proxy (as the relay client goes) ------------------------------

class ForwardProxy:
    """A plain HTTP forward proxy (absolute-URI GETs): records what it was asked to fetch. Names
    in `names` resolve here only (like a proxy that reaches what this machine cannot)."""

    def __init__(self):
        proxy = self
        self.requested: list[str] = []
        self.names: dict[str, str] = {}

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                proxy.requested.append(self.path)
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("range", "accept-encoding")}
                target = httpx.URL(self.path)
                if target.host in proxy.names:
                    target = httpx.URL(proxy.names[target.host]).join(target.raw_path.decode())
                with httpx.Client(trust_env=False) as upstream:
                    answer = upstream.get(target, headers=headers)
                self.send_response(answer.status_code)
                for name in ("Content-Type", "Content-Range", "Location"):
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": SERVE_POLL}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(monkeypatch):
    forward = ForwardProxy()
    use_only_proxy(monkeypatch, HTTP_PROXY=forward.url)
    yield forward
    forward.close()


def test_media_go_through_the_proxy_the_environment_names(host, proxy, mp4_bytes, tmp_path):
    # cdn.kki.invalid resolves nowhere but at the proxy: behind it, the only way to the CDN.
    proxy.names["cdn.kki.invalid"] = host.url
    host.files["/cdn/clip.mp4"] = mp4_bytes
    url = "http://cdn.kki.invalid/cdn/clip.mp4?sig=1"
    kept = media.download(url, tmp_path, relay_url=PUBLIC_RELAY)
    assert kept.read_bytes() == mp4_bytes
    assert proxy.requested == [url]  # the proxy fetched it, not this process
    # This machine itself never goes through a proxy (the embedded simulator lives there).
    other = tmp_path / "direct"
    media.download(f"{host.url}/cdn/clip.mp4", other, relay_url="http://127.0.0.1:9/v1")
    assert proxy.requested == [url]


def test_through_a_proxy_inside_names_and_metadata_are_refused_before_asking_it(proxy, tmp_path):
    for url in ("http://169.254.169.254/latest/meta-data/", "http://metadata.google.internal/x.mp4",
                "http://printer/x.mp4", "http://10.0.0.7/x.mp4", "http://nas.local/x.mp4"):  # fmt: skip
        with pytest.raises(MediaRefusedError, match="refused to download"):
            media.download(url, tmp_path, relay_url=PUBLIC_RELAY, retries=0)
    assert proxy.requested == []
    assert list(tmp_path.iterdir()) == []


def test_media_go_through_a_socks_proxy_too(host, mp4_bytes, tmp_path, monkeypatch):
    """ALL_PROXY=socks5://… alone (Clash, ssh -D): the CDN is reached through it, and the same
    judgement by name applies (the proxy resolves names, not this machine)."""
    socks = Socks5Proxy()
    use_only_proxy(monkeypatch, ALL_PROXY=socks.url)
    socks.names["cdn.kki.invalid"] = host.url.split("//", 1)[1]
    host.files["/cdn/clip.mp4"] = mp4_bytes
    try:
        kept = media.download("http://cdn.kki.invalid/cdn/clip.mp4", tmp_path, relay_url=PUBLIC_RELAY)
        assert kept.read_bytes() == mp4_bytes
        assert socks.targets == ["cdn.kki.invalid:80"]
        with pytest.raises(MediaRefusedError, match="refused to download"):
            media.download("http://printer/x.mp4", tmp_path / "no", relay_url=PUBLIC_RELAY, retries=0)
        assert socks.targets == ["cdn.kki.invalid:80"]
    finally:
        socks.close()


def test_no_proxy_hosts_connect_directly(proxy, tmp_path, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "kki.invalid")
    url = "http://cdn.kki.invalid/cdn/clip.mp4"
    with pytest.raises(MediaError, match=r"cdn\.kki\.invalid"):  # direct: this machine cannot resolve it
        media.download(url, tmp_path, relay_url=PUBLIC_RELAY, retries=0)
    assert proxy.requested == []


def test_fake_ip_answers_are_no_verdict_but_real_private_answers_are(monkeypatch):
    from kki_widgets.net import addresses

    answers = {"cdn.example.com": ["198.18.0.5"], "files.corp.example": ["10.1.2.3"]}

    def fake_resolve(host, port):
        if host not in answers:
            raise OSError(f"cannot resolve {host}")
        return [addresses.ipaddress.ip_address(a) for a in answers[host]]

    monkeypatch.setattr(addresses, "resolve", fake_resolve)
    policy = addresses.AddressPolicy.for_relay(PUBLIC_RELAY)
    policy.check_through_proxy("cdn.example.com")  # Clash's placeholder: the proxy decides
    policy.check_through_proxy("videos.openai.com")  # unresolvable here: a public-looking name
    with pytest.raises(addresses.AddressRefused, match=r"10\.1\.2\.3"):
        policy.check_through_proxy("files.corp.example")
