"""Media: reaching, keeping and cutting the relay's videos and images.

Downloads kept next to the notebook, each hop through the address policy (`downloads`), a clip's
last frame and the film cut (`film`, ffmpeg), and the publishable HTML page (`export`).

`downloads.download(url, dest_dir, *, relay_url, key, expected_type, max_bytes, deadline, allow,
…) -> Path` treats the URL as hostile (it comes from relay text): http(s) only; the address policy
of `kki_widgets.net.addresses` on every redirect hop (followed by hand) after DNS, and again at
connect time on the resolved address (`GuardedBackend`), so DNS rebinding changes nothing; no
header of the relay client (the key) reaches a media host. The file name comes from the task ID or
the whole URL (two tasks' `video.mp4` never share a file); `<name>.part` is opened with
`O_NOFOLLOW` (a planted link is refused) and resumed with `Range` after a cut; at most
`KKI_MEDIA_MAX_BYTES` (1 GiB), checked from `Content-Length` and while streaming, within 900 s;
the magic bytes must be mp4/mov/webm or webp/png/jpeg/gif as asked, and the kept file's suffix
follows its real type; any failure but a resumable cut removes the `.part`. Errors name the URL
and the fix, never the bytes that came back. Download locks live in a private per-user folder of
the temp directory, not in `kki_media/`.

`downloads.kept_file(path, media_dir)`: the path only if it is a plain file (not a link) directly
in the media folder; every path read back from a store goes through it, so a tampered
`/etc/passwd` or `notes/.env` is never played, linked or copied. `stitch(paths, out)` joins clips
with imageio-ffmpeg's ffmpeg; `keep_copy` copies a kept clip (`%%sora --save`); outputs get the
user's umask permissions.

`film.last_frame(clip, out=None) -> Path`: the last *decoded* frame as PNG (decoding starts a
second before the end and runs to it; a keyframe or thumbnail would show the seam), kept as
`frames/<stem>-last.png` beside the clip and reused, so a rerun sends identical bytes and hits the
cache. `film.make_film(clips, out_path, *, captions, transitions="crossfade"|"cut", fade, titles,
burn_captions, size, fps, progress) -> Film(path, srt_path, duration, shot_times)`: one
`-filter_complex` graph (each clip normalised to the first's size/fps, title cards from `color` +
`drawtext textfile=`, `xfade`/`acrossfade`, silence for silent clips, `subtitles` for burned
captions), run with `-progress pipe:1`. Text reaches ffmpeg only through files.

`export.export_page(conversation, path, *, film=True, embed=False, title=None)`: one page with no
script and a strict CSP, every text escaped; `src`/`href` are our relative URLs (relative to the
page), http(s), or our own `data:` (embed, captions); it uses the public `Conversation.chain`.

May import: `kki_widgets.protocol`, `kki_widgets.store`, `kki_widgets.net`.
"""
