"""The wire's vocabulary, pure: what relays send and what it means, with no I/O and no asyncio.

SSE decoding and bounded inflation of compressed answers, the transcript of a streamed answer
(`Generation`), the evidence an answer offers and the verdict on it, raw-data and task-record
answers, the relay's markdown ending, relay profiles (how options travel) and model lists, request
messages, media kinds from their first bytes, prices and charges in words, and the typed errors
every layer raises. Tested exhaustively (hypothesis splits text anywhere).

Three edges of "pure", on purpose: `request.image_part` reads an image file the user names,
`pricing.prices_from_environment` reads the price table `KKI_PRICES` names, and
`pricing.PriceBook.aload` awaits the client it is handed (`client.get_json`); none of them imports
a layer above.

Modules and their contracts
---------------------------
`sse`: `SSEDecoder` (bytes in any split → events; CR/LF/CRLF across reads; an unknown line of an
event is retried as a JSON continuation, because some relays pretty-print; an unfinished line is
kept as pieces and joined once; a line or event over 4 MB is dropped as it arrives and reported
as one malformed event), `decode_chunk` → `ChatChunk` (content of every choice joined, not only
`choices[0]`; `reasoning` from `delta.reasoning_content`; an `{"error": …}` chunk).

`transcript`: `Generation`, a frozen dataclass (`task_id, status, progress, sid, spec,
preview_url, raw_url, thumbnail_url, video_url, download_url, error, unsafe_urls, notices,
unverified`, and the answer's `.text`),
`to_dict`/`from_dict` from its fields, `merge`/`with_text`/`with_text_of`. The one home of
`STATUSES`, `TERMINAL`, `RUNNING` and `STATUS_WORDS`: `queued, generating, completed, failed,
cancelled, still_running` (`still_running`: terminal for the client, "Still running at the relay"
to a person, resumable, never a failure). `unverified`: completed on strong text evidence because
the kernel could not look at the bytes. Progress never decreases. `Transcript().feed(delta)`,
`append_reasoning(delta)` (the status channel: progress, status and failure words only, never
part of `.text`, which stays the verbatim content a remix sends back), `last_words`,
`parse_transcript(text)`. Reads on structure: the seed's markdown; `<video src>`/`<source src>`,
fenced in ```html (never taken for the spec fence) or bare; a bare URL ending the answer
(extension-less signed URLs, `…/raw?…` paths; `raw`/`view` are never task IDs); "click here" /
点击 / 观看 / 下载 links; status lines run together. The reason of `❌ 生成失败: X`, `Generation
failed: X`, `**Error:** X` is `X`. Numbers inside tags or after `:`/`=` are never progress; URLs
inside the echoed spec are never the video; only http(s) links are kept (others go to
`unsafe_urls`). Lines starting `⚠️`/`Warning:` are notices, never the verdict; a line starting
`❌` is a failure whatever its words. Every pattern runs in linear time on hostile lines.

`evidence`: `candidates(text, reasoning, base_url)` ranks every URL an ended answer offers
(markdown links and images, `src`/`poster`/`href` and inner text of `<video>`/`<a>`, bare text,
paths relative to the relay resolved against the base URL, extension-less URLs, URLs in `<think>`
or the reasoning channel, never strong; a JSON task record's `video_url`/`url`/`output` via
`raw_data.read_task`). `judge_head(head, content_type)` / `judge_status`: `VIDEO`, `NOT_VIDEO` (a
page, an image, 404/410) or `UNCHECKED` (refused by the address policy, unreachable, 401/403/5xx).
`decide` gives the verdict: the first `VIDEO` completes; else a strong candidate (a `<video>` /
`<source>` tag or inner text, or a video extension the relay presents as the result) still
`UNCHECKED` completes with `unverified=True` and a notice; else **failed** (the relay said so:
failure words, a "⚠️" with no video after it, a record's `status: failed`; the error runs from the
first failure line on, paragraphs kept, at most 2,000 characters, control characters and tags
removed; a lone "Failure reason: X" stays `X`), **still_running** (ended with a task ID, or "may
still be generating", "check back later"), or **ended without a video** (failed: the whole answer,
and that a charge may have happened).

`raw_data`: `generation_from_raw` merges any JSON shape into a `Generation` and never raises;
`read_task` is the one home of "a task as JSON" (raw data, and task records streamed as content);
`completed_text` rebuilds a recovered answer in the relay's own format so a remix still finds the
sid. `relay_text`: the relay's markdown ending, written (recovery and the simulator).

`encodings`: `Inflater` undoes gzip/deflate (always), br (`brotli>=1.2`) and zstd (`zstandard`,
the `[compression]` extra) in steps of at most 64 KB per layer, at most 4 stacked layers, pulling
input only when the next layer needs it, so every cap counts inflated bytes before they exist;
`EncodingError` names the encoding.

`profiles`: `RelayProfile.prepare(messages, model, orientation, duration) -> WireRequest(model,
messages, fields)`. `words` (default): a suffix on the last user message, "(landscape 16:9,
horizontal, duration: 15 seconds)", each piece a wording a relay documents (cited in the module).
`model`: a `ModelFamily` (stems such as `sora2pro-hd`, a template, the lengths each stem sells,
aliases such as `sora-2 → sora2`); built in: `sora2api`, `sora_video2`, `flow2api`, `veo_3_1`. A
length a known stem does not sell raises `ConfigurationError` before anything is sent; unknown
stems are spelled the family's way and sent; a full name is sent as is. A request with an image
goes to the stem's image-to-video twin (`frame_stems`, irregular spellings in `wire_overrides`),
because flow2api's text-to-video names drop the frame ("将忽略图片") and still bill the clip; a
text-only full name with an image, or an i2v name without one, is refused before paying.
`fields`: top-level JSON fields, for relays that document them. Remixes: `ModelFamily.remix_by`
(`"history"`: the seed's relays read the history sent back; `"share_id"`: sora2api reads only the
last message and remixes the `s_` + 32 hex share ID written in it), `can_remix`,
`can_remix_parent(model, parent_sid)`, `remix_messages(history, prompt, sid)`; the Veo families
(`flow2api`, `veo_3_1`) cannot remix. `spec_warnings(asked, spec)` compares asked orientation and
length with the echoed spec (`orientation`, `aspect_ratio`, `size` such as `720x1280`,
`duration`/`seconds`); `turn_warnings` adds the relay's own notices ("the relay warned: …").
`ORIENTATIONS`, `KNOWN_MODELS` (also the simulator's default list).

`relay_models`: any gateway's model list → video/image/chat, each name's family, `detect` (the
profile whose names outnumber the plain video names), the offers a picker shows, sizes.

`pricing`: `PriceBook(client, prices=None)`: `aload()` asks `{origin}/api/pricing` once per relay
per process (new-api/one-api rows with `quota_type` 1 times the `default` group ratio; token-ratio
rows stay unknown; failures silent and remembered); `price(model)` → `Price(amount, per, source,
charges_failures)` or None; `estimate`, `estimate_request(wire_model, model, duration)` (the wire
name first); the relay's price wins for the models it lists, configuration (`prices=`,
`KKI_PRICES`) fills the rest. `balance_from_billing`: `hard_limit_usd − total_usage/100`.
`charge_for` (completed → the estimate; failed/cancelled after the relay accepted it → charged
unless `charges_failures: false`; never accepted → 0; replays 0; unknown (None) after an answer
without a video, or one cut or cancelled after it began and before its task ID: `accepted`,
`unknown_note`), `cost_cell` (`$0.10`, `$0.00
(replayed, not paid)`, `unknown`, `est. $0.10`), `next_send_line`, `summarize`.

`request`: `check_prompt` (the one empty-prompt check, also the widget's), `normalize_messages`
(images as content parts; a missing or changed frame file named with its fix), `build_body`.
`sniff`: what a file is from its first bytes (mp4/mov/webm, png/jpeg/webp/gif). `errors`: the
typed errors, each naming its fix, all under `KkiError`; `StillRunning` is a `StreamInterrupted`.

May import: nothing of kki_widgets outside this package.
"""
