"""The HTTP client for OpenAI-compatible video relays.

One request = one paid generation, so the retry rules are strict:
- retry (exponential backoff with jitter, `Retry-After` honoured) only before the first byte of
  the answer: connect errors, 408/409/429/5xx;
- once a task ID has been seen the prompt is never sent again. A stream that breaks after that
  point is *followed* through the relay's raw-data URL until the video is there (or failed).

`AsyncRelayClient` is the implementation; `RelayClient` runs it on a private event loop in a
thread, so there is one code path and the sync client also works inside a running Jupyter loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from urllib.parse import urlsplit

import httpx

from ..net.addresses import (
    AddressPolicy,
    AddressRefused,
    environment_proxy,
    is_loopback_host,
    resolve,
)
from ..net.http_transport import proxy_mounts, shared_ssl_context
from ..protocol.encodings import EncodingError, Inflater
from ..protocol.errors import (
    ConfigurationError,
    DeadlineExceeded,
    GenerationFailed,
    InsufficientQuotaError,
    MissingKeyError,
    ProtocolError,
    RateLimitError,
    RelayError,
    RelayServerError,
    StillRunning,
    StreamInterrupted,
    scrub,
)
from ..protocol.evidence import (
    NOT_VIDEO,
    UNCHECKED,
    VIDEO,
    candidates,
    completed_unverified,
    decide,
    final_message,
    judge_head,
    judge_status,
    still_running,
    task_candidates,
)
from ..protocol.profiles import RelayProfile, WireRequest
from ..protocol.raw_data import completed_text, generation_from_raw, read_raw, task_in_content
from ..protocol.request import normalize_messages, prompt_text
from ..protocol.sse import SSEDecoder, decode_chunk
from ..protocol.transcript import TERMINAL, Generation, Transcript
from .config import Secret, Settings, resolve_settings
from .fair_share import take_turn
from .http_backend import MAX_KEEPALIVE, asyncio_transport
from .http_errors import (
    RETRYABLE_STATUS,
    error_from_response,
    is_malformed_redirect,
    malformed_redirect,
    retry_after,
)
from .loop import block_on, iterate

try:  # httpcore lets socksio's error through when a SOCKS proxy hangs up mid-handshake
    from socksio.exceptions import ProtocolError as _SocksHandshakeError

    _PROXY_HANDSHAKE_ERRORS: tuple[type[Exception], ...] = (_SocksHandshakeError,)
except ImportError:  # pragma: no cover - httpx[socks] brings socksio
    _PROXY_HANDSHAKE_ERRORS = ()

log = logging.getLogger("kki_widgets.client.relay")

MAX_RETRY_AFTER = 120.0
# A real answer is a few KB; past this the stream is hostile or broken.
MAX_ANSWER_CHARS = 1_000_000
# Bounds on what a relay can make the client read, whatever it sends (see docs/architecture.md,
# "Threat model"): a whole stream (keep-alives and junk included), one error body, one raw-data
# answer (a few KB when honest; parsed in a worker thread, never on the kernel's loop).
MAX_STREAM_BYTES = 64 * 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024
MAX_RAW_BYTES = 1024 * 1024
MAX_REDIRECTS = 5
# Looking at a candidate video: its first bytes (enough for any container's signature), how many
# candidates are looked at before the verdict, and how long one look may take.
PROBE_BYTES = 4096
MAX_PROBES = 8
PROBE_TIMEOUT = 15.0
# One generation, queue included, from the request to the video (sora-2-pro: minutes, not hours).
DEFAULT_DEADLINE = 3600.0

# Per event loop and base URL: a batch of prompts must not trip the relay's rate limit.
_semaphores: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _semaphore_for(base_url: str, limit: int) -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    per_loop = _semaphores.setdefault(loop, {})
    key = (base_url, limit)
    if key not in per_loop:
        per_loop[key] = asyncio.Semaphore(limit)
    return per_loop[key]


# -- where the key may go -----------------------------------------------------------------------


def _origin(url: str) -> tuple[str, str | None, int | None] | None:
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:  # a port that is not a number
        return None
    return parts.scheme.lower(), parts.hostname, port


def same_origin(url: str, base_url: str) -> bool:
    """Same scheme, host and port: the only URLs that get the key (an `http://` link of an
    `https://` relay does not: the key would cross the network in clear text)."""
    origin = _origin(url)
    return origin is not None and origin[1] is not None and origin == _origin(base_url)


def _redirect_target(response: httpx.Response) -> tuple[str, str]:
    """Where a redirect points (an absolute http(s) URL), or "" and why it cannot be followed."""
    try:
        url = str(response.url.join(response.headers["location"]))
    except (httpx.InvalidURL, ValueError, KeyError):
        return "", "a redirect to an invalid address"
    if not url.startswith(("http://", "https://")):
        return "", "a redirect to a non-http(s) address"
    return url, ""


async def _read_capped(response: httpx.Response, limit: int, what: str = "the relay's answer") -> bytes | None:
    """The body, or None when it is (or declares it is) larger than `limit` bytes. A compressed
    body is inflated in bounded steps (kki_widgets.protocol.encodings): one that inflates past `limit`
    raises `EncodingError` naming its encoding before that much is in memory."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    inflater = Inflater(response.headers.get("content-encoding"), limit, what)
    pieces = []
    try:
        async for raw in response.aiter_raw():
            pieces.extend(inflater.feed(raw))
    except EncodingError:
        if inflater.encoded:
            raise
        return None
    return b"".join(pieces)


class _Attempt:
    """What one attempt has read so far: the transcript, the redacting streams in front of it
    (a key echo may be cut between chunks: the redactor holds such a tail back until it can
    tell) and the facts the retry and recovery decisions need."""

    def __init__(self, redactor) -> None:
        self.transcript = Transcript()
        self.content = redactor.stream()
        self.reasoning = redactor.stream()
        self.received = 0  # bytes of the stream, keep-alives included
        self.received_bytes = False  # past this, a retry could pay twice
        self.malformed = 0
        self.finished = False  # the relay said the answer is over ([DONE], finish_reason)
        self.done_marker = False  # the relay sent [DONE]: nothing more will come
        self.outcome: Exception | None = None  # why the stream stopped early, if it did

    def add(self, parsed) -> None:
        self.content.add(parsed.content)
        self.reasoning.add(parsed.reasoning)

    def drain(self) -> None:
        """What the redactors can release, into the transcript."""
        self.transcript.append(self.content.drain())
        self.transcript.append_reasoning(self.reasoning.drain())

    def flush(self) -> None:
        """Everything held back, into the transcript (the answer has ended)."""
        self.transcript.append(self.content.flush())
        self.transcript.append_reasoning(self.reasoning.flush())


def _after_task_id(error: Exception, state: _Attempt) -> bool:
    """An error once the task was accepted (other than the relay's verdict): the task is
    followed, never asked again."""
    return (
        isinstance(error, RelayError)
        and not isinstance(error, GenerationFailed)
        and state.transcript.generation.task_id is not None
    )


# -- the client ---------------------------------------------------------------------------------


class AsyncRelayClient:
    """Streams video generations from an OpenAI-compatible relay (or the embedded simulator)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | Secret | None = None,
        model: str | None = None,
        headers: dict | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        deadline: float | None = DEFAULT_DEADLINE,
        max_concurrency: int = 4,
        poll_interval: float = 2.0,
        follow_timeout: float = 1800.0,
        transport: httpx.AsyncBaseTransport | None = None,
        profile: RelayProfile | str | None = None,
    ):
        self.settings: Settings = resolve_settings(base_url, api_key, model, headers, profile)
        if self.settings.simulated:
            from ..simulator import embedded_base_url  # the relay layer starts it, on demand

            self.settings = self.settings.at(embedded_base_url())
        if self.settings.api_key is None:
            raise MissingKeyError(self.settings.base_url)
        self._redactor = self.settings.api_key.redactor()
        self.timeout = timeout
        self.max_retries = max(0, int(max_retries))
        self.deadline = deadline
        self.max_concurrency = max(1, int(max_concurrency))
        self.poll_interval = poll_interval
        self.follow_timeout = follow_timeout
        self._transport = transport
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._address_policy: AddressPolicy | None = None  # for raw-data hops, built on first use
        self.submissions = 0  # requests that reached the relay's accepting stage (paid)

    def __repr__(self) -> str:
        simulated = ", simulated" if self.simulated else ""
        return (
            f"AsyncRelayClient(base_url={self.settings.base_url!r}, model={self.model!r}, "
            f"api_key={self.settings.api_key!r}{simulated})"
        )

    @property
    def simulated(self) -> bool:
        return self.settings.simulated

    @property
    def model(self) -> str:
        return self.settings.model

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    @property
    def profile(self) -> RelayProfile:
        """How this relay reads orientation and length (`kki_widgets.protocol.profiles`)."""
        return self.settings.profile

    def prepare(self, messages, model=None, *, orientation=None, duration=None, images=None) -> WireRequest:
        """The request `stream` would send, built by this client's profile; nothing is sent."""
        normalized = normalize_messages(messages, images)
        return self.profile.prepare(normalized, model or self.model, orientation, duration)

    def _http(self) -> httpx.AsyncClient:
        # httpx connection pools belong to one event loop: keep one client per loop so the
        # connection is reused across calls without crossing loops.
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = self._clients[loop] = self._new_http_client()
        return client

    def _new_http_client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=max(10, self.max_concurrency * 2),
                              max_keepalive_connections=MAX_KEEPALIVE)  # fmt: skip
        try:
            mounts = self._proxy_mounts(limits)
        except ValueError as error:  # httpx refuses a proxy of a kind it cannot use
            if "proxy" not in str(error).lower():
                raise
            raise ConfigurationError(
                f"the proxy your environment names cannot be used ({error}): httpx speaks http://, "
                "https://, socks5:// and socks5h:// proxies. Fix ALL_PROXY / HTTPS_PROXY / "
                f"HTTP_PROXY, or add {urlsplit(self.base_url).hostname} to NO_PROXY."
            ) from None
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout, connect=min(15.0, self.timeout)),
            transport=self._transport or asyncio_transport(shared_ssl_context(), limits),
            mounts=mounts,
            # Never automatic: a redirect would carry the key and custom headers to wherever
            # the relay points. POSTs refuse them; raw-data GETs follow them by hand.
            follow_redirects=False,
        )

    def _proxy_mounts(self, limits: httpx.Limits) -> dict:
        """The environment's proxy for a relay elsewhere (as any HTTP tool), never for one on
        this machine: a proxy cannot reach the embedded simulator. A transport given to the
        client (tests) is used for everything, as httpx does."""
        if self._transport is not None or is_loopback_host(urlsplit(self.base_url).hostname):
            return {}
        return proxy_mounts(lambda proxy: httpx.AsyncHTTPTransport(
            proxy=proxy, verify=shared_ssl_context(), limits=limits))  # fmt: skip

    def _auth_headers(self) -> dict:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            # Ask for the bytes as they are: a compressed answer (a proxy may still send one) is
            # inflated by hand, in bounded steps (kki_widgets.protocol.encodings).
            "Accept-Encoding": "identity",
            **self.settings.headers,
        }
        headers["Authorization"] = f"Bearer {self.settings.api_key.reveal()}"
        return headers

    def redact(self, text: str) -> str:
        """`text` (relay text, an error) without the key in any form it can be echoed in."""
        return scrub(self._redactor(text))

    def _headers_for(self, url: str) -> dict:
        """What a GET to `url` carries: the key and custom headers only for the relay itself."""
        if not same_origin(url, self.base_url):
            return {"Accept": "application/json", "Accept-Encoding": "identity"}
        headers = self._auth_headers()
        headers.pop("Content-Type", None)
        return headers

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(MAX_RETRY_AFTER, max(0.0, retry_after))
        base = min(8.0, 0.5 * 2**attempt)
        return base * (0.75 + random.random() * 0.5)

    async def aclose(self) -> None:
        for client in list(self._clients.values()):
            await client.aclose()
        self._clients.clear()

    async def __aenter__(self) -> AsyncRelayClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    # -- streaming ------------------------------------------------------------------------

    async def stream(
        self,
        messages,
        model: str | None = None,
        *,
        orientation: str | None = None,
        duration: int | None = None,
        images=None,
    ) -> AsyncIterator[Generation]:
        """Yield `Generation` snapshots until the video is completed or failed."""
        request = self.prepare(
            messages, model, orientation=orientation, duration=duration, images=images
        )
        async for generation in self.stream_request(request):
            yield generation

    async def stream_request(self, request: WireRequest) -> AsyncIterator[Generation]:
        """`stream` for a request already built (by `prepare` or a `RelayProfile`)."""
        body = request.body()
        started = time.monotonic()
        last: Generation | None = None
        async for generation in self._send_with_retries(body, started):
            last = generation
            yield generation
        if last is None or not last.done:
            # Defensive: every path above ends in a terminal state or raises.
            raise ProtocolError("the relay's answer ended without a result")

    async def _send_with_retries(self, body: dict, started: float) -> AsyncIterator[Generation]:
        """POST the request; retry only before the answer's first byte; once the answer has
        begun, hand what was read to `_recover_or_raise` (never send a paid prompt twice)."""
        attempt = 0
        semaphore = _semaphore_for(self.base_url, self.max_concurrency)
        while True:
            state = _Attempt(self._redactor)
            async with semaphore:
                try:
                    async for generation in self._send(body, started, state):
                        yield generation
                except (RelayError, httpx.TransportError, httpx.StreamError) as error:
                    if _after_task_id(error, state):
                        state.outcome = error
                    elif self._should_retry(error, state, attempt):
                        await self._sleep_before_retry(error, attempt, started)
                        attempt += 1
                        continue
                    elif isinstance(error, RelayError):
                        raise
                    else:
                        state.outcome = error
            async for generation in self._recover_or_raise(state, started):
                yield generation
            return

    def _should_retry(self, error: Exception, state: _Attempt, attempt: int) -> bool:
        """Only before the first byte, within `max_retries`, and only for errors that may pass:
        connection failures and 408/409/429/5xx (never an empty balance)."""
        if state.received_bytes or attempt >= self.max_retries:
            return False
        if not isinstance(error, RelayError):
            return True  # a transport error before any byte: nothing was accepted
        if isinstance(error, InsufficientQuotaError):
            return False
        return isinstance(error, (RateLimitError, RelayServerError)) or (
            error.status_code in RETRYABLE_STATUS
        )

    async def _sleep_before_retry(self, error: Exception, attempt: int, started: float) -> None:
        delay = self._backoff(attempt, getattr(error, "retry_after", None))
        self._check_deadline(started, delay)
        log.debug("retrying after %s in %.1fs", type(error).__name__, delay)
        await asyncio.sleep(delay)

    async def _send(self, body: dict, started: float, state: _Attempt) -> AsyncIterator[Generation]:
        """One attempt: the POST, its status, then the answer (SSE, or one JSON completion)."""
        await take_turn()  # building and sending a request costs; many may start in one pass
        request = self._http().build_request(
            "POST", self.settings.chat_url, json=body, headers=self._auth_headers()
        )
        log.debug("POST %s model=%s", self.settings.chat_url, body["model"])
        try:
            response = await self._http().send(request, stream=True)
        except (httpx.RemoteProtocolError, httpx.InvalidURL) as error:
            if not is_malformed_redirect(error):
                raise
            raise RelayError(
                malformed_redirect("the relay", self.settings.chat_url) + "; requests to the relay "
                "never follow redirects. Check KKI_BASE_URL"
            ) from None
        try:
            if response.is_redirect:
                raise self._redirect_refused(response)
            if response.status_code >= 400:
                raise error_from_response(
                    response.status_code, await self._error_body(response), retry_after(response)
                )
            if "application/json" in response.headers.get("content-type", ""):
                payload = await _read_capped(response, MAX_RAW_BYTES)
                state.received_bytes = True
                if payload is None:
                    raise ProtocolError(f"the relay's answer passed {MAX_RAW_BYTES // 1024} KB")
                redacted_payload = self.redact(payload.decode("utf-8", "replace"))
                self._read_whole_answer(redacted_payload.encode(), state)
                return
            async for generation in self._read_events(response, started, state):
                yield generation
        finally:
            await response.aclose()

    async def _read_events(
        self, response: httpx.Response, started: float, state: _Attempt
    ) -> AsyncIterator[Generation]:
        """The SSE answer, one snapshot per network read that changed something."""
        decoder = SSEDecoder()
        transcript = state.transcript
        previous = transcript.generation
        inflater = Inflater(response.headers.get("content-encoding"), MAX_STREAM_BYTES)
        async for raw in response.aiter_raw():
            state.received_bytes = state.received_bytes or bool(raw)
            for chunk in inflater.feed(raw) if inflater.encoded else (raw,):
                state.received += len(chunk)
                self._check_stream_bounds(state.received, started, transcript)
                for data, extra in decoder.feed(chunk):
                    self._take_event(decode_chunk(data, extra), state)
            state.drain()
            if (
                transcript.generation.text_length > MAX_ANSWER_CHARS
                or transcript.reasoning_length > MAX_ANSWER_CHARS
            ):
                raise ProtocolError(f"the relay's answer passed {MAX_ANSWER_CHARS} characters")
            current = transcript.generation
            if current is not previous:
                if current.task_id and not previous.task_id:
                    self.submissions += 1
                previous = current
                yield _while_streaming(current)
            if state.done_marker:
                break
        for data, extra in decoder.close():
            parsed = decode_chunk(data, extra)
            state.add(parsed)
            state.finished = state.finished or parsed.done or bool(parsed.finish_reason)

    def _take_event(self, parsed, state: _Attempt) -> None:
        if parsed.malformed:
            state.malformed += 1
            log.debug("skipped a malformed chunk")
            return
        if parsed.error is not None:
            state.flush()
            raise self._in_stream_error(parsed.error, state.transcript)
        state.add(parsed)  # the snapshot is built once per network read, by the caller
        if parsed.done or parsed.finish_reason:
            # Read on after a finish_reason: some relays send "stop" before the video's link.
            # Only [DONE] (or the end of the body) ends the reading.
            state.finished = True
            state.done_marker = state.done_marker or parsed.done

    async def _recover_or_raise(self, state: _Attempt, started: float) -> AsyncIterator[Generation]:
        """The answer stopped: the verdict its evidence earns, the followed task, or the error
        that says why neither is possible."""
        state.flush()
        generation = state.transcript.finish()
        verdict = await self._verdict(generation, state.transcript.reasoning_text, state.finished)
        if verdict is not None and not (verdict.status == "still_running" and verdict.raw_url):
            yield verdict
            return
        if generation.task_id:
            # Accepted and paid for, but the answer stopped without the video: follow the task
            # instead of sending the prompt again.
            log.debug("stream ended early (%r); following %s", state.outcome, generation.task_id)
            try:
                async for followed in self._follow(_while_streaming(generation), started):
                    yield followed
            except StreamInterrupted as error:
                if not state.finished:
                    raise
                # The relay ended its answer and its raw-data link says nothing more: the task
                # is still the relay's; say so (resumable), never "failed".
                words = final_message(generation.text, state.transcript.reasoning_text)
                yield still_running(error.generation or generation, words)
            return
        if isinstance(state.outcome, RelayError):
            raise state.outcome
        if generation.text_length == 0 and state.malformed:
            raise ProtocolError(
                f"the relay sent {state.malformed} chunk(s) that are not chat-completion JSON and "
                "no text: check that KKI_BASE_URL points at an OpenAI-compatible /v1 endpoint"
            )
        reason = f" ({type(state.outcome).__name__})" if state.outcome else ""
        raise StreamInterrupted(
            f"the relay's answer stopped before it showed a task ID{reason}", generation=generation
        )

    def _read_whole_answer(self, payload: bytes, state: _Attempt) -> None:
        """A relay that ignores `stream: true` and answers one chat.completion JSON (or a task
        record): its text into the transcript; the verdict is `_recover_or_raise`'s."""
        text = payload.decode("utf-8", "replace")
        try:
            data = json.loads(text)
            messages = [c.get("message") or {} for c in data["choices"] if isinstance(c, dict)]
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            if task_in_content(text) is None:
                raise ProtocolError("the relay answered JSON that is not a chat completion") from None
            messages = [{"content": text}]  # a task record: read by its fields
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            reasoning = message.get("reasoning_content") if isinstance(message, dict) else None
            state.transcript.append(prompt_text(content) if isinstance(content, list) else str(content or ""))
            state.transcript.append_reasoning(reasoning if isinstance(reasoning, str) else "")
        state.finished = True

    async def _verdict(self, generation: Generation, reasoning: str, ended: bool) -> Generation | None:
        """What the ended answer proves (kki_widgets.protocol.evidence): its candidate URLs looked at
        through the address policy, then the verdict; None when nothing is decided yet."""
        record = task_in_content(generation.text)
        words = None
        ranked = candidates(generation.text, reasoning, self.base_url)
        if record is not None:
            generation = await asyncio.to_thread(generation_from_raw, record, generation)
            # A record speaks by its fields: URLs elsewhere in it may be looked at, never taken on
            # their words; a failed record's "url" (a help page) is no result at all.
            ranked = [dataclasses.replace(c, strong=False) for c in ranked]
            if generation.status == "failed":
                ranked = []
            else:
                ranked = task_candidates(generation.video_url) + ranked
            words = generation.error or ""
        # The task's raw-data URL is followed, not looked at as media (a task to follow has one).
        skip = generation.raw_url if generation.task_id else None
        checks = await self._look_at([c.url for c in ranked if c.url != skip][:MAX_PROBES])
        return decide(generation, ranked, checks, ended=ended, reasoning=reasoning, words=words)

    async def _look_at(self, urls: list[str]) -> dict[str, str]:
        """What each URL's first bytes say. The best candidate alone first (it is the video in
        the common case); the others together, all within one PROBE_TIMEOUT, so hosts that
        drop packets (a firewall) cost the end of an answer seconds, not minutes."""
        checks: dict[str, str] = {}
        if not urls:
            return checks
        checks[urls[0]] = await self._probe(urls[0])
        rest = urls[1:]
        if checks[urls[0]] == VIDEO or not rest:
            return checks
        tasks = [asyncio.ensure_future(self._probe(url)) for url in rest]
        done, pending = await asyncio.wait(tasks, timeout=PROBE_TIMEOUT)
        for task in pending:
            task.cancel()
        for url, task in zip(rest, tasks, strict=True):
            checks[url] = task.result() if task in done and not task.exception() else UNCHECKED
        return checks

    async def _probe(self, url: str) -> str:
        """VIDEO, NOT_VIDEO or UNCHECKED: the first bytes at `url` (a ranged GET), every hop
        through the address policy, as the media downloads check theirs."""
        for _hop in range(MAX_REDIRECTS + 1):
            if not await self._media_host_allowed(url):
                return UNCHECKED
            headers = {**self._headers_for(url), "Accept": "*/*", "Range": f"bytes=0-{PROBE_BYTES - 1}"}
            request = self._http().build_request("GET", url, headers=headers, timeout=PROBE_TIMEOUT)
            try:
                response = await self._http().send(request, stream=True)
            except (httpx.HTTPError, OSError, *_PROXY_HANDSHAKE_ERRORS) as error:
                # The kernel cannot look (a proxy that forbids the host, a firewall): unchecked.
                log.debug("could not look at a candidate video: %s", type(error).__name__)
                return UNCHECKED
            try:
                if response.is_redirect:
                    url, why_not = _redirect_target(response)
                    if why_not:
                        return NOT_VIDEO
                    continue
                if response.status_code >= 300:
                    return judge_status(response.status_code)
                head = await self._head_of(response)
            except (httpx.HTTPError, RelayError):
                return UNCHECKED
            finally:
                await response.aclose()
            return judge_head(head, response.headers.get("content-type"))
        return UNCHECKED

    async def _head_of(self, response: httpx.Response) -> bytes:
        inflater = Inflater(response.headers.get("content-encoding"), 1024 * 1024, "a candidate video")
        pieces, size = [], 0
        try:
            async for raw in response.aiter_raw():
                for piece in inflater.feed(raw):
                    pieces.append(piece)
                    size += len(piece)
                if size >= PROBE_BYTES:
                    break
        except EncodingError:
            pass  # judged on what could be read
        return b"".join(pieces)[:PROBE_BYTES]

    async def _media_host_allowed(self, url: str) -> bool:
        """The address policy of the media downloads (kki_widgets.net.addresses) for one hop: False
        when it refuses the host (the kernel must not look; the browser may still play it)."""
        parts = urlsplit(url)
        try:
            host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return False
        if not host or parts.scheme not in ("http", "https"):
            return False
        if self._address_policy is None:
            self._address_policy = await asyncio.to_thread(AddressPolicy.for_relay, self.base_url)
        try:
            if environment_proxy(url) is not None and not is_loopback_host(urlsplit(self.base_url).hostname):
                await asyncio.to_thread(self._address_policy.check_through_proxy, host)
            else:
                self._address_policy.check(host, await asyncio.to_thread(resolve, host, port))
        except AddressRefused as error:
            log.debug("a candidate video's host was refused: %s", error)
            return False
        except OSError:
            return False  # unresolvable here: nothing to look at
        return True

    def _in_stream_error(self, error: dict, transcript: Transcript) -> RelayError:
        # Only the fields the mapping reads, each redacted and bounded: the relay wrote them.
        fields = {}
        for name in ("message", "code", "type"):
            value = error.get(name)
            if value is not None and not isinstance(value, (dict, list)):
                fields[name] = self.redact(str(value)[:MAX_ERROR_BYTES])
        fields.setdefault("message", "the relay sent an error without a message")
        status = error.get("status") if isinstance(error.get("status"), int) else None
        if status is not None and not 100 <= status <= 599:
            status = None
        mapped = error_from_response(status or 500, json.dumps({"error": fields}).encode())
        mapped.task_id = transcript.generation.task_id
        return mapped

    async def _error_body(self, response: httpx.Response) -> bytes:
        """An HTTP error's body, bounded and redacted (error_from_response may quote it)."""
        try:
            payload = await _read_capped(response, MAX_ERROR_BYTES, "the relay's error answer")
        except EncodingError as error:
            return f"HTTP {response.status_code} ({error.message})".encode()
        if payload is None:
            return f"HTTP {response.status_code} (an error body over 64 KB)".encode()
        return self.redact(payload.decode("utf-8", "replace")).encode()

    def _redirect_refused(self, response: httpx.Response) -> RelayError:
        where = self.redact(response.headers.get("location", "")[:200])
        return RelayError(
            f"the relay answered HTTP {response.status_code}, redirecting to {where!r}; requests "
            "to the relay never follow redirects, because the key and custom headers would go "
            "along. If you trust that address, set KKI_BASE_URL to it",
            status_code=response.status_code,
        )

    def _check_stream_bounds(self, received: int, started: float, transcript) -> None:
        if received > MAX_STREAM_BYTES:
            raise ProtocolError(
                f"the relay sent more than {MAX_STREAM_BYTES // 1024 // 1024} MB for one answer",
                task_id=transcript.generation.task_id,
            )
        if self.deadline is not None and time.monotonic() - started > self.deadline:
            self._check_deadline(started, generation=transcript.generation)

    def _check_deadline(
        self, started: float, upcoming: float = 0.0, generation: Generation | None = None
    ) -> None:
        if self.deadline is not None and time.monotonic() + upcoming - started > self.deadline:
            raise DeadlineExceeded(
                f"gave up after {round(self.deadline, 1):g} s (the client's deadline)",
                task_id=generation.task_id if generation else None,
                generation=generation if generation and generation.task_id else None,
            )

    # -- following a task -------------------------------------------------------------------

    async def follow(self, task_id: str, raw_url: str | None = None) -> AsyncIterator[Generation]:
        """Follow an accepted task through the relay's raw-data URL until it ends."""
        if not task_id or not isinstance(task_id, str):
            raise ConfigurationError("follow() needs the task ID shown in the answer (task_…)")
        start = Generation(task_id=task_id, raw_url=raw_url)
        async for generation in self._follow(start, time.monotonic()):
            yield generation

    def _raw_url_for(self, generation: Generation) -> str:
        if generation.raw_url:
            return generation.raw_url
        return f"{self.settings.origin}/source/{generation.task_id}"

    async def _follow(self, generation: Generation, started: float) -> AsyncIterator[Generation]:
        url = self._raw_url_for(generation)
        interval = self.poll_interval
        deadline = time.monotonic() + self.follow_timeout
        failures = 0
        last_error = ""
        while True:
            if time.monotonic() > deadline:
                raise _still_running(
                    f"the task did not finish within {round(self.follow_timeout, 1):g} s of following it",
                    task_id=generation.task_id,
                    generation=generation,
                )
            self._check_deadline(started, generation=generation)
            try:
                updated, last_error = await self._poll_raw(url, generation)
            except httpx.TransportError as error:
                updated, last_error = None, type(error).__name__
            if updated is None:
                failures += 1
            else:
                failures = 0
                if updated.status == "completed" and not updated.video_url:
                    updated = updated.with_status("generating")
                elif updated.status == "completed" and updated.video_url != generation.video_url:
                    updated = await self._checked_completion(updated)
                if updated != generation or updated.text_length != generation.text_length:
                    if updated.status == "completed":
                        updated = updated.with_text(completed_text(updated))
                    generation = updated
                    yield generation
                if generation.done:
                    return
            if failures >= 8:
                raise _still_running(
                    f"the relay's raw-data URL kept failing ({last_error})",
                    task_id=generation.task_id,
                    generation=generation,
                )
            await asyncio.sleep(interval * (0.8 + random.random() * 0.4))
            interval = min(interval * 1.5, 15.0)

    async def _checked_completion(self, generation: Generation) -> Generation:
        """A followed task the relay calls completed, judged by its video's first bytes like a
        streamed answer: a page or a 404 is no video; a link the kernel cannot reach is taken
        on the relay's structured word, unverified."""
        check = await self._probe(generation.video_url)
        if check == VIDEO:
            return generation
        if check == UNCHECKED:
            return completed_unverified(generation)
        return generation.with_status(
            "failed", error=f"the relay calls the task completed, but its video link is no video "
                            f"(a web page, an image or a missing file): {generation.video_url}"
        )

    async def _poll_raw(self, url: str, generation: Generation) -> tuple[Generation | None, str]:
        """One look at the raw-data URL: the updated state, or None and why not."""
        for _hop in range(MAX_REDIRECTS + 1):
            # The URL came from relay text: each hop must pass the media address policy
            # (addresses.py) before anything connects to it.
            await self._check_address(url, generation)
            # By hand, hop by hop: the key and custom headers go only to the relay's own origin.
            request = self._http().build_request("GET", url, headers=self._headers_for(url))
            try:
                response = await self._http().send(request, stream=True)
            except (httpx.RemoteProtocolError, httpx.InvalidURL) as error:
                if not is_malformed_redirect(error):
                    raise
                return None, malformed_redirect("the raw-data URL", url)
            try:
                if response.is_redirect:
                    url, why_not = _redirect_target(response)
                    if why_not:
                        return None, why_not
                    continue
                if response.status_code != 200:
                    return None, f"HTTP {response.status_code}"
                body = await _read_capped(response, MAX_RAW_BYTES, "the raw-data answer")
            finally:
                await response.aclose()
            if body is None:
                return None, f"an answer over {MAX_RAW_BYTES // 1024} KB"
            # Parsing a relay's JSON can take long (or recurse deep): not on the kernel's loop.
            updated = await asyncio.to_thread(self._read_raw, body, generation)
            return updated, "" if updated is not None else "an answer that could not be read"
        return None, f"more than {MAX_REDIRECTS} redirects"

    async def _check_address(self, url: str, generation: Generation) -> None:
        """Refuse (for good: polling again would not change it) a raw-data address the policy
        of `kki_widgets.net.addresses` does not allow: link-local always, loopback and private ones
        unless the relay itself lives there or the user allowed them (KKI_MEDIA_ALLOW)."""
        parts = urlsplit(url)
        try:
            host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            host, port = None, 0
        if not host:
            raise StreamInterrupted("the raw-data address has no host", task_id=generation.task_id,
                                    generation=generation)
        if self._address_policy is None:
            # Resolving names blocks: in a worker thread, once per client.
            self._address_policy = await asyncio.to_thread(AddressPolicy.for_relay, self.base_url)
        try:
            addresses = await asyncio.to_thread(resolve, host, port)
            self._address_policy.check(host, addresses)
        except AddressRefused as error:
            raise StreamInterrupted(
                f"the raw-data address was refused: {error}", task_id=generation.task_id,
                generation=generation,
            ) from None
        except OSError:
            pass  # unresolvable: the GET fails as a transport error and counts as a failed poll

    def _read_raw(self, body: bytes, generation: Generation) -> Generation | None:
        """A raw-data answer, redacted, merged into `generation` (in a worker thread)."""
        return read_raw(self.redact(body.decode("utf-8", "replace")), generation)

    # -- side endpoints (prices, balance) ---------------------------------------------------

    async def get_json(self, url: str, *, timeout: float = 10.0, limit: int = 1_000_000):
        """GET a small JSON document (the relay's price list, its billing answers).

        The key goes only to the base URL's own origin; redirects are not followed (a redirect
        is "not here"); answers past `limit` bytes are refused. Raises `RelayError` on anything
        but a 200 with JSON: callers treat that as "the relay does not say".
        """
        async with self._http().stream(
            "GET", url, headers=self._headers_for(url), timeout=timeout, follow_redirects=False
        ) as response:
            if response.status_code != 200:
                raise RelayError(f"HTTP {response.status_code} from {urlsplit(url).path}",
                                 status_code=response.status_code)  # fmt: skip
            body = await _read_capped(response, limit, f"{urlsplit(url).path}'s answer")
        if body is None:
            raise ProtocolError(f"{urlsplit(url).path} answered more than {limit} bytes")
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise ProtocolError(f"{urlsplit(url).path} did not answer JSON") from None

    async def probe(self, body: dict, *, timeout: float = 10.0, limit: int = 4096) -> tuple[int, str]:
        """POST `body` to the chat endpoint once, not streamed, no retries: (HTTP status, the
        start of the answer, redacted). For `%sora connect`'s ping, whose body asks for nothing
        billable (a made-up model name, or max_tokens 1 on a free chat model)."""
        url = self.settings.chat_url
        async with self._http().stream(
            "POST", url, json=body, headers=self._headers_for(url), timeout=timeout, follow_redirects=False
        ) as response:
            head = await _read_capped(response, limit)
        text = self.redact((head or b"").decode("utf-8", "replace"))
        return response.status_code, text

    # -- conveniences -----------------------------------------------------------------------

    async def generate(
        self,
        messages,
        model: str | None = None,
        *,
        on_update: Callable[[Generation], None] | None = None,
        **options,
    ) -> Generation:
        """The final `Generation`; raises `GenerationFailed` when the relay reports a failure."""
        final: Generation | None = None
        async for generation in self.stream(messages, model, **options):
            final = generation
            if on_update is not None:
                on_update(generation)
        assert final is not None
        if final.status == "failed":
            raise GenerationFailed(
                final.error or "the relay reported a failed generation",
                task_id=final.task_id,
                generation=final,
            )
        if final.status == "still_running":
            raise StillRunning(final.error or "still running at the relay", task_id=final.task_id,
                               generation=final)
        return final

    async def resume(self, task_id: str, raw_url: str | None = None, on_update=None) -> Generation:
        final = None
        async for generation in self.follow(task_id, raw_url):
            final = generation
            if on_update is not None:
                on_update(generation)
        assert final is not None
        return final


def _still_running(why: str, *, task_id: str | None, generation: Generation) -> StillRunning:
    """Following a task gave up, but the relay has it and may still finish it: not a failure."""
    return StillRunning(
        f"{why}. The relay has task {task_id} and may still finish it; it was not sent again: "
        f"%sora resume {task_id} (or Conversation.resume) fetches it later",
        task_id=task_id, generation=generation,
    )


def _while_streaming(generation: Generation) -> Generation:
    """While the answer runs, its words set the state; only the evidence at its end sets the
    verdict (a "failed" word may be followed by the video, a link may be a web page)."""
    if generation.status in TERMINAL:
        return dataclasses.replace(generation, status="generating", error=None)
    return generation


class RelayClient:
    """The synchronous twin of `AsyncRelayClient` (same arguments, same behaviour)."""

    def __init__(self, *args, **kwargs):
        self._async = AsyncRelayClient(*args, **kwargs)

    def __repr__(self) -> str:
        return repr(self._async).replace("AsyncRelayClient", "RelayClient", 1)

    @property
    def settings(self) -> Settings:
        return self._async.settings

    @property
    def simulated(self) -> bool:
        return self._async.simulated

    @property
    def model(self) -> str:
        return self._async.model

    @property
    def profile(self) -> RelayProfile:
        return self._async.profile

    @property
    def async_client(self) -> AsyncRelayClient:
        return self._async

    def prepare(self, messages, model: str | None = None, **options) -> WireRequest:
        return self._async.prepare(messages, model, **options)

    def stream(self, messages, model: str | None = None, **options) -> Iterator[Generation]:
        return iterate(self._async.stream(messages, model, **options))

    def follow(self, task_id: str, raw_url: str | None = None) -> Iterator[Generation]:
        return iterate(self._async.follow(task_id, raw_url))

    def generate(self, messages, model: str | None = None, *, on_update=None, **options):
        return block_on(
            self._async.generate(messages, model, on_update=on_update, **options)
        )

    def resume(self, task_id: str, raw_url: str | None = None, on_update=None) -> Generation:
        return block_on(self._async.resume(task_id, raw_url, on_update))

    def close(self) -> None:
        block_on(self._async.aclose())

    def __enter__(self) -> RelayClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
