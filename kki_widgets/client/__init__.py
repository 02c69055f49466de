"""The relay over HTTP: settings and the key, the streaming client, retries and recovery.

`config` (settings from arguments or the environment; the masked key), `redact` (the key found
in untrusted text), `relay` (the client: send, read, retry, judge the ending on evidence, recover
by task ID), `http_errors` (an error answer as a typed error), `http_backend` and `fair_share`
(the client's own sockets and fair turns on the event loop), `loop` (the private event-loop
thread of the sync API), `discovery` (what a relay sells: its model list and prices, cached per
user).

Contracts
---------
`config` (pure): `Secret(value)` shows `Secret('sk-…a1b2')`; `.reveal()` is the only way to the
value. `resolve_settings(base_url, api_key, model, headers, profile) -> Settings` (frozen:
`base_url` without trailing slash and ending in `/v1`, `api_key: Secret | None`, `model`,
`headers`, `simulated`, `profile`, `profile_explicit`, `cache_identity`). Arguments win over
`KKI_API_KEY`, `KKI_BASE_URL`, `KKI_MODEL`, `KKI_RELAY_PROFILE`. No key and no base URL →
`simulated=True`, and `cache_identity == "simulator:embedded"` (its port is random, so reruns in a
fresh kernel still hit the cache); else `cache_identity` is the base URL. Refused with a
`ConfigurationError` naming the fix: `user:password@` in the base URL (httpx would send Basic auth
and reprs would show it; the message does not repeat it), a key or header value that is not
printable ASCII, an `Authorization` among `headers=`. `Settings`' repr names custom headers,
never their values.

`relay`: `AsyncRelayClient(base_url, api_key, model, headers, timeout=60.0, max_retries=3,
deadline=3600.0, max_concurrency=4, poll_interval=2.0, follow_timeout=1800.0, transport=None,
profile=None)`; `.settings`, `.simulated`, `.profile`, `.redact(text)`. `async for g in
client.stream(messages, model, orientation=, duration=, images=)` yields `Generation` snapshots;
`prepare(...)` returns the `WireRequest` unsent, `stream_request(wire)` sends a prepared one;
`generate(..., on_update=)` returns the final one and raises `GenerationFailed` (or
`StillRunning`). `follow(task_id, raw_url=None)` polls the raw-data endpoint (used after a cut
and by `resume`). `get_json` is the one GET for prices, billing, model lists and the ping: key
only to the base URL's origin, no redirects, bounded. `RelayClient` is the sync twin on the
private loop (`loop.block_on`/`iterate`/`submit`), one code path that works inside a running
Jupyter loop. The path of one request: `_send_with_retries → _send → _read_events →
_recover_or_raise`, one `_should_retry`, one backoff; retries only before the first byte.

While an answer runs, words set the state (a terminal status is shown as `generating`: a "failed"
word may be followed by the video), and reading goes on after a `finish_reason` until `[DONE]` or
the end of the body. When it ends, `_verdict` gathers evidence (`protocol.evidence.candidates`),
looks at up to 8 candidates best first (`MAX_PROBES`) with a GET of `Range: bytes=0-4095`, every
hop through `net.addresses.AddressPolicy` (the names resolved in a worker thread, checked per
hop), judges the head with `evidence.judge_head`, and lets `evidence.decide` give the verdict. A
cut answer with no evidence either way is followed through its raw-data URL, or is a
`StreamInterrupted`; a follow that gives up ends `still_running` (resumable). A followed task the
relay calls completed is judged by its video's bytes the same way; so is a relay that answers one
`chat.completion` JSON (all choices) or a bare task record. Wire quirks read: content in
`choices[i≠0]`, a growing index, `id: ""`/`created: 0`, `\\u003c` escapes (even twice), one
character per delta, `finish_reason` before the video.

Caps (all count inflated bytes: every request asks `Accept-Encoding: identity`, and a compressed
answer anyway is inflated by `protocol.encodings.Inflater`): the stream 64 MB and 1 M characters
(`ProtocolError`; a task already shown is then followed), an HTTP error body 64 KB, whole-JSON and
raw-data answers 1 MB (raw data parsed in a worker thread), a candidate's look 4 KB; `deadline`
bounds a generation from request to video on every read, even against endless keep-alives, and
names the task to resume. Raw-data GETs follow up to 5 redirects by hand, with the key and custom
headers only on hops of the relay's own origin (`same_origin`); a redirected POST is an error
naming the target; a malformed `Location` is an error naming the redirect and its host
(`http_errors.malformed_redirect`), quoting none of it.

`redact`: `KeyRedactor`/`StreamRedactor` mask the configured key as `[key …a1b2]` as is,
percent-encoded, JSON `\\u`-escaped, `\\/`-escaped, as HTML character references (mixed within one
occurrence), as hex and inside base64 at any alignment; the stream is redacted per network read,
holding back a tail that could still become the key. Not covered: encodings that need the whole
key to undo, and fragments.

`http_backend`: `AsyncioBackend`, an httpcore network backend on a plain `asyncio.Protocol` (TLS,
timeouts, flow control) for the client's direct connections; proxied URLs keep httpx's own
transports. `fair_share.take_turn`: streams that wake in one pass of the loop share a 2 ms
`SLICE`, the rest step aside to the next pass.

`discovery`: before the first send, `GET {base}/models` (else new-api's `{origin}/api/models`)
and `/api/pricing`, together, within `DISCOVERY_SECONDS` (4 s), each answer capped at `LIST_BYTES`
(2 MB); any failure is "the relay does not say", remembered for the process. Names and prices
only are cached per base URL (hashed) for 6 h in the user's cache folder (`KKI_CACHE_DIR`, else
`XDG_CACHE_HOME/kki_widgets`, never next to the notebook), written through
`store.atomic.replacing`: the one disk access of this layer. `describe(...) -> RelayDescription`
(`Conversation.relay`): the profile and why (`chosen_by`: configuration, model list, default or
simulator); explicit configuration always wins; the embedded simulator is not asked.

May import: `kki_widgets.protocol`, `kki_widgets.store`, `kki_widgets.net`, `kki_widgets.simulator`
(only to start the embedded simulator when no key is set).
"""
