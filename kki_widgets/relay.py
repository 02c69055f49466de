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
import base64
import dataclasses
import json
import logging
import mimetypes
import random
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from .config import KNOWN_MODELS, Secret, Settings, resolve_settings
from .errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DeadlineExceeded,
    GenerationFailed,
    InsufficientQuotaError,
    MissingKeyError,
    ProtocolError,
    RateLimitError,
    RelayError,
    RelayServerError,
    StreamInterrupted,
    scrub,
)
from .loop import block_on, iterate
from .profiles import RelayProfile, WireRequest, get_profile
from .sse import SSEDecoder, decode_chunk
from .transcript import Generation, Transcript, parse_transcript

log = logging.getLogger("kki_widgets.relay")

RETRYABLE_STATUS = frozenset((408, 409, 429, 500, 502, 503, 504, 520, 522, 524))
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
# One generation, queue included, from the request to the video (sora-2-pro: minutes, not hours).
DEFAULT_DEADLINE = 3600.0
MAX_IMAGE_BYTES = 20 * 1024 * 1024
ROLES = ("system", "user", "assistant")

# Per event loop and base URL: a batch of prompts must not trip the relay's rate limit.
_semaphores: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


_ssl_lock = threading.Lock()
_ssl_context = None


def _shared_ssl_context():
    """httpx builds a fresh SSL context (loading the CA bundle, ~20 ms of blocked event loop) for
    every client; the clients of a process (one per event loop) share one instead."""
    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            _ssl_context = httpx.create_ssl_context()
        return _ssl_context


def _semaphore_for(base_url: str, limit: int) -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    per_loop = _semaphores.setdefault(loop, {})
    key = (base_url, limit)
    if key not in per_loop:
        per_loop[key] = asyncio.Semaphore(limit)
    return per_loop[key]


# -- request building --------------------------------------------------------------------------


def image_part(image) -> dict:
    """An OpenAI `image_url` content part from a URL, a path, bytes or a PIL image."""
    if isinstance(image, str) and image.startswith(("http://", "https://", "data:image/")):
        return {"type": "image_url", "image_url": {"url": image}}
    if isinstance(image, (str, Path)):
        path = Path(image).expanduser()
        if not path.is_file():
            raise ConfigurationError(
                f"image {str(image)!r} is neither an http(s) URL nor an existing file"
            )
        data = path.read_bytes()
        mime = mimetypes.guess_type(path.name)[0] or _sniff_image(data)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        mime = _sniff_image(data)
    elif hasattr(image, "save"):  # a PIL image, without importing PIL
        import io

        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data, mime = buffer.getvalue(), "image/png"
    else:
        raise ConfigurationError(
            f"cannot send {type(image).__name__} as an image: pass a path, URL, bytes or PIL image"
        )
    if len(data) > MAX_IMAGE_BYTES:
        raise ConfigurationError(
            f"image is {len(data) // 1024 // 1024} MB; relays accept up to 20 MB: resize it first"
        )
    if not mime or not mime.startswith("image/"):
        raise ConfigurationError("the image is not a PNG, JPEG, WebP or GIF file")
    encoded = base64.b64encode(data).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{encoded}"}}


def _sniff_image(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    return None


def prompt_text(content) -> str:
    """The text of a message content, whether a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def normalize_messages(messages, images=None) -> list[dict]:
    """Validate the OpenAI message list; a plain string is one user message."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, list) or not messages:
        raise ConfigurationError("messages must be a prompt string or a non-empty list of messages")
    normalized = []
    for number, message in enumerate(messages, 1):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ConfigurationError(
                f"message {number} needs a role of {', '.join(ROLES)} and a content"
            )
        content = message.get("content")
        if not isinstance(content, (str, list)):
            raise ConfigurationError(f"message {number} content must be a string or a list of parts")
        normalized.append({"role": message["role"], "content": content})
    last = normalized[-1]
    if last["role"] != "user":
        raise ConfigurationError("the last message must be the user's prompt")
    if not prompt_text(last["content"]).strip():
        raise ConfigurationError("the prompt is empty: describe the video you want")
    if images:
        text = prompt_text(last["content"])
        parts = [{"type": "text", "text": text}] + [image_part(image) for image in images]
        normalized[-1] = {"role": "user", "content": parts}
    return normalized


def build_body(
    messages: list[dict], model: str, orientation=None, duration=None, profile=None
) -> dict:
    """The JSON body of one request: `profile` (default: words after the prompt) decides where
    `orientation` and `duration` go, and refuses values the relay does not sell."""
    return get_profile(profile).prepare(messages, model, orientation, duration).body()


# -- HTTP errors -------------------------------------------------------------------------------


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def error_from_response(status: int, body: bytes, retry_after: float | None = None) -> RelayError:
    """Map an HTTP error answer to a typed error with a plain-words message."""
    message, code, kind = "", None, ""
    try:
        payload = json.loads(body)
        error = payload.get("error", payload) if isinstance(payload, dict) else {}
        if isinstance(error, dict):
            message = str(error.get("message") or "")
            code = error.get("code")
            kind = str(error.get("type") or "")
        elif isinstance(error, str):
            message = error
    except (ValueError, AttributeError, RecursionError):
        # Not JSON (or nested past what the parser takes): quote its start as text.
        message = body[:300].decode("utf-8", "replace").strip()
    code = str(code) if code is not None else None
    message = message or f"HTTP {status}"
    wording = f"{message} {code or ''} {kind}".lower()
    quota = any(word in wording for word in ("quota", "balance", "insufficient", "余额", "credit"))
    kwargs = {"status_code": status, "code": code}
    if status in (401, 403):
        return AuthenticationError(message, **kwargs)
    if status == 402 or quota:
        return InsufficientQuotaError(message, **kwargs)
    if status == 429:
        return RateLimitError(message, retry_after=retry_after, **kwargs)
    if status >= 500:
        return RelayServerError(message, **kwargs)
    if status in (400, 404, 422) and "model" in wording:
        return BadRequestError(
            f"{message} (models seen on relays: {', '.join(KNOWN_MODELS)})", **kwargs
        )
    if 400 <= status < 500:
        return BadRequestError(message, **kwargs)
    return RelayError(message, **kwargs)


# -- raw-data recovery --------------------------------------------------------------------------

_STATUS_WORDS = {
    "completed": "completed",
    "complete": "completed",
    "success": "completed",
    "succeeded": "completed",
    "done": "completed",
    "finished": "completed",
    "failed": "failed",
    "failure": "failed",
    "error": "failed",
    "cancelled": "failed",
    "canceled": "failed",
    "pending": "queued",
    "queued": "queued",
    "queuing": "queued",
    "waiting": "queued",
    "submitted": "queued",
    "processing": "generating",
    "running": "generating",
    "in_progress": "generating",
    "generating": "generating",
    "started": "generating",
}


def generation_from_raw(data, previous: Generation) -> Generation:
    """Merge a raw-data answer (whose shape differs between relays) into what we know."""
    if isinstance(data, str):
        parsed = parse_transcript(data)
        return _merge(previous, parsed, text=data if parsed.task_id or parsed.video_url else None)
    if not isinstance(data, dict):
        return previous
    content = data.get("content")
    nested = content if isinstance(content, dict) else {}
    markdown = content if isinstance(content, str) else data.get("markdown")
    parsed = parse_transcript(markdown) if isinstance(markdown, str) and markdown else None

    def pick(*names):
        for source in (data, nested):
            for name in names:
                value = source.get(name)
                if value not in (None, ""):
                    return value
        return None

    status_word = str(pick("status", "state") or "").lower()
    status = _STATUS_WORDS.get(status_word)
    video = pick("video_url", "url", "downloadable_url", "download_url")
    if not (isinstance(video, str) and video.startswith(("http://", "https://"))):
        video = parsed.video_url if parsed else None
    thumbnail = pick("thumbnail_url", "cover_url", "gif_url")
    if not isinstance(thumbnail, str):
        thumbnail = None
    progress = pick("progress")
    try:
        progress_value = int(float(str(progress).rstrip("%"))) if progress is not None else 0
    except ValueError:
        progress_value = 0
    error = pick("error", "fail_reason", "failure_reason", "message") if status == "failed" else None
    if isinstance(error, dict):
        error = error.get("message")
    merged = _merge(previous, parsed, text=markdown if parsed and parsed.video_url else None)
    if video and status != "failed":
        status = "completed"
    if status is None:
        status = merged.status
    return Generation(
        task_id=merged.task_id or pick("id", "task_id"),
        status=status,
        progress=100 if status == "completed" else max(merged.progress, min(100, progress_value)),
        sid=merged.sid or (pick("sid") if isinstance(pick("sid"), str) else None),
        spec=merged.spec,
        preview_url=merged.preview_url,
        raw_url=merged.raw_url,
        thumbnail_url=merged.thumbnail_url or thumbnail,
        video_url=merged.video_url or video,
        download_url=merged.download_url,
        error=(str(error) if error else merged.error) if status == "failed" else None,
        unsafe_urls=merged.unsafe_urls,
        text_length=merged.text_length,
        _log=merged._log,
        _parts=merged._parts,
    )


def _merge(previous: Generation, parsed: Generation | None, text: str | None) -> Generation:
    if parsed is None:
        return previous
    source = parsed if text is not None else previous
    return Generation(
        task_id=previous.task_id or parsed.task_id,
        status=parsed.status if parsed.status != "queued" else previous.status,
        progress=max(previous.progress, parsed.progress),
        sid=parsed.sid or previous.sid,
        spec=previous.spec or parsed.spec,
        preview_url=previous.preview_url or parsed.preview_url,
        raw_url=previous.raw_url or parsed.raw_url,
        thumbnail_url=parsed.thumbnail_url or previous.thumbnail_url,
        video_url=parsed.video_url or previous.video_url,
        download_url=parsed.download_url or previous.download_url,
        error=parsed.error or previous.error,
        unsafe_urls=tuple(dict.fromkeys(previous.unsafe_urls + parsed.unsafe_urls)),
        text_length=source.text_length,
        _log=source._log,
        _parts=source._parts,
    )


def completed_text(generation: Generation) -> str:
    """The assistant message to send back for a remix when the stream itself was cut.

    A remix needs the sid in the history; when the relay's raw data has no markdown we write the
    missing tail in the relay's own format so the next turn can still continue this video.
    """
    text = generation.text
    if generation.video_url and generation.video_url in text:
        return text
    lines = [text.rstrip(), "", "> Generation Complete ✅"]
    if generation.sid:
        lines.append(f"> sid: {generation.sid}")
    lines.append("")
    if generation.thumbnail_url:
        lines.append(f"![{generation.thumbnail_url}]({generation.thumbnail_url})")
    lines.append(f"[Play Online▶️]({generation.video_url})")
    return "\n".join(lines)


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


async def _read_capped(response: httpx.Response, limit: int) -> bytes | None:
    """The body, or None when it is (or declares it is) larger than `limit` bytes."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    pieces, size = [], 0
    async for piece in response.aiter_bytes():  # decoded: a gzip bomb counts at its full size
        size += len(piece)
        if size > limit:
            return None
        pieces.append(piece)
    return b"".join(pieces)


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
        """How this relay reads orientation and length (`kki_widgets.profiles`)."""
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
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout, connect=min(15.0, self.timeout)),
                transport=self._transport,
                verify=_shared_ssl_context(),
                # Never automatic: a redirect would carry the key and custom headers to wherever
                # the relay points. POSTs refuse them; raw-data GETs follow them by hand.
                follow_redirects=False,
                limits=httpx.Limits(max_connections=max(10, self.max_concurrency * 2)),
            )
            self._clients[loop] = client
        return client

    def _auth_headers(self) -> dict:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
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
            return {"Accept": "application/json"}
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
        async for generation in self._stream_body(body, started):
            last = generation
            yield generation
        if last is None or not last.done:
            # Defensive: every path above ends in a terminal state or raises.
            raise ProtocolError("the relay's answer ended without a result")

    async def _stream_body(self, body: dict, started: float) -> AsyncIterator[Generation]:
        attempt = 0
        semaphore = _semaphore_for(self.base_url, self.max_concurrency)
        while True:
            transcript = Transcript()
            # Relay text is redacted before the transcript reads it (a key echo may be cut
            # between chunks: the redactor holds such a tail back until it can tell).
            redacted = self._redactor.stream()
            redacted_reasoning = self._redactor.stream()
            received = 0
            received_bytes = False
            malformed = 0
            outcome: Exception | None = None
            finished = False
            async with semaphore:
                try:
                    request = self._http().build_request(
                        "POST", self.settings.chat_url, json=body, headers=self._auth_headers()
                    )
                    log.debug("POST %s model=%s", self.settings.chat_url, body["model"])
                    response = await self._http().send(request, stream=True)
                    try:
                        if response.is_redirect:
                            raise self._redirect_refused(response)
                        if response.status_code >= 400:
                            raise error_from_response(
                                response.status_code,
                                await self._error_body(response),
                                _retry_after(response),
                            )
                        content_type = response.headers.get("content-type", "")
                        if "application/json" in content_type:
                            payload = await _read_capped(response, MAX_RAW_BYTES)
                            received_bytes = True
                            if payload is None:
                                raise ProtocolError(
                                    f"the relay's answer passed {MAX_RAW_BYTES // 1024} KB"
                                )
                            redacted_payload = self.redact(payload.decode("utf-8", "replace"))
                            yield self._from_whole_answer(redacted_payload.encode())
                            return
                        decoder = SSEDecoder()
                        previous = transcript.generation
                        async for chunk in response.aiter_raw():
                            if chunk:
                                received_bytes = True
                            received += len(chunk)
                            self._check_stream_bounds(received, started, transcript)
                            events = decoder.feed(chunk)
                            for data, extra in events:
                                parsed = decode_chunk(data, extra)
                                if parsed.malformed:
                                    malformed += 1
                                    log.debug("skipped a malformed chunk")
                                    continue
                                if parsed.error is not None:
                                    transcript.append(redacted.flush())
                                    transcript.append_reasoning(redacted_reasoning.flush())
                                    raise self._in_stream_error(parsed.error, transcript)
                                # One snapshot per network read, built below.
                                redacted.add(parsed.content)
                                redacted_reasoning.add(parsed.reasoning)
                                if parsed.done or parsed.finish_reason:
                                    finished = True
                            transcript.append(redacted.drain())
                            transcript.append_reasoning(redacted_reasoning.drain())
                            if (
                                transcript.generation.text_length > MAX_ANSWER_CHARS
                                or transcript.reasoning_length > MAX_ANSWER_CHARS
                            ):
                                raise ProtocolError(
                                    f"the relay's answer passed {MAX_ANSWER_CHARS} characters"
                                )
                            current = transcript.generation
                            if current is not previous:
                                if current.task_id and not previous.task_id:
                                    self.submissions += 1
                                previous = current
                                yield current
                            if finished:
                                break
                        for data, extra in decoder.close():
                            parsed = decode_chunk(data, extra)
                            redacted.add(parsed.content)
                            redacted_reasoning.add(parsed.reasoning)
                            finished = finished or parsed.done or bool(parsed.finish_reason)
                    finally:
                        await response.aclose()
                except RelayError as error:
                    if transcript.generation.task_id and not isinstance(error, GenerationFailed):
                        outcome = error
                    else:
                        retryable = isinstance(error, (RateLimitError, RelayServerError)) or (
                            error.status_code in RETRYABLE_STATUS
                        )
                        if (
                            not received_bytes
                            and retryable
                            and not isinstance(error, InsufficientQuotaError)
                            and attempt < self.max_retries
                        ):
                            delay = self._backoff(attempt, getattr(error, "retry_after", None))
                            self._check_deadline(started, delay)
                            log.debug("retrying after %s in %.1fs", type(error).__name__, delay)
                            attempt += 1
                            await asyncio.sleep(delay)
                            continue
                        raise
                except (httpx.TransportError, httpx.StreamError) as error:
                    if not received_bytes and attempt < self.max_retries:
                        delay = self._backoff(attempt, None)
                        self._check_deadline(started, delay)
                        log.debug("retrying after %s in %.1fs", type(error).__name__, delay)
                        attempt += 1
                        await asyncio.sleep(delay)
                        continue
                    outcome = error
            transcript.append(redacted.flush())
            transcript.append_reasoning(redacted_reasoning.flush())
            generation = transcript.finish()
            if generation.done:
                yield generation
                return
            if finished and not generation.task_id:
                # Ended normally, with no video and nothing to follow: the relay has spoken.
                yield _ended_without_video(generation, transcript)
                return
            if generation.task_id:
                # Accepted and paid for, but the answer stopped early: follow the task instead
                # of sending the prompt again.
                log.debug("stream ended early (%r); following %s", outcome, generation.task_id)
                async for followed in self._follow(generation, started):
                    yield followed
                return
            if isinstance(outcome, RelayError):
                raise outcome
            if generation.text_length == 0 and malformed:
                raise ProtocolError(
                    f"the relay sent {malformed} chunk(s) that are not chat-completion JSON and no "
                    "text: check that KKI_BASE_URL points at an OpenAI-compatible /v1 endpoint"
                )
            reason = f" ({type(outcome).__name__})" if outcome else ""
            raise StreamInterrupted(
                f"the relay's answer stopped before it showed a task ID{reason}",
                generation=generation,
            )

    def _from_whole_answer(self, payload: bytes) -> Generation:
        """A relay that ignores `stream: true` and answers with one chat.completion JSON."""
        try:
            data = json.loads(payload)
            message = data["choices"][0]["message"]
            content = message["content"]
        except (ValueError, KeyError, IndexError, TypeError, RecursionError):
            raise ProtocolError("the relay answered JSON that is not a chat completion") from None
        transcript = Transcript()
        transcript.feed(prompt_text(content) if isinstance(content, list) else str(content or ""))
        reasoning = message.get("reasoning_content") if isinstance(message, dict) else None
        transcript.append_reasoning(reasoning if isinstance(reasoning, str) else "")
        generation = transcript.finish()
        if not generation.done and not generation.task_id:
            return _ended_without_video(generation, transcript)
        if not generation.done:
            raise StreamInterrupted(
                "the relay's answer has no video and no failure", task_id=generation.task_id,
                generation=generation,
            )
        return generation

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
        payload = await _read_capped(response, MAX_ERROR_BYTES)
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
                f"gave up after {self.deadline:.0f} s (the client's deadline)",
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
                raise StreamInterrupted(
                    f"the task did not finish within {self.follow_timeout:.0f} s of following it",
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
                if updated != generation or updated.text_length != generation.text_length:
                    if updated.status == "completed":
                        updated = _with_text(updated, completed_text(updated))
                    generation = updated
                    yield generation
                if generation.done:
                    return
            if failures >= 8:
                raise StreamInterrupted(
                    f"the relay's raw-data URL kept failing ({last_error})",
                    task_id=generation.task_id,
                    generation=generation,
                )
            await asyncio.sleep(interval * (0.8 + random.random() * 0.4))
            interval = min(interval * 1.5, 15.0)

    async def _poll_raw(self, url: str, generation: Generation) -> tuple[Generation | None, str]:
        """One look at the raw-data URL: the updated state, or None and why not."""
        for _hop in range(MAX_REDIRECTS + 1):
            # By hand, hop by hop: the key and custom headers go only to the relay's own origin.
            request = self._http().build_request("GET", url, headers=self._headers_for(url))
            response = await self._http().send(request, stream=True)
            try:
                if response.is_redirect:
                    try:
                        url = str(response.url.join(response.headers["location"]))
                    except (httpx.InvalidURL, ValueError):
                        return None, "a redirect to an invalid address"
                    if not url.startswith(("http://", "https://")):
                        return None, "a redirect to a non-http(s) address"
                    continue
                if response.status_code != 200:
                    return None, f"HTTP {response.status_code}"
                body = await _read_capped(response, MAX_RAW_BYTES)
            finally:
                await response.aclose()
            if body is None:
                return None, f"an answer over {MAX_RAW_BYTES // 1024} KB"
            # Parsing a relay's JSON can take long (or recurse deep): not on the kernel's loop.
            updated = await asyncio.to_thread(self._read_raw, body, generation)
            return updated, "" if updated is not None else "an answer that could not be read"
        return None, f"more than {MAX_REDIRECTS} redirects"

    def _read_raw(self, body: bytes, generation: Generation) -> Generation | None:
        """A raw-data answer merged into `generation` (in a worker thread); None: unreadable."""
        text = self.redact(body.decode("utf-8", "replace"))
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            data = text
        try:
            return generation_from_raw(data, generation)
        except Exception as error:  # hostile shapes: nesting, huge numbers, odd types
            log.debug("unreadable raw-data answer: %s", type(error).__name__)
            return None

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
                raise RelayError(f"HTTP {response.status_code} from {urlsplit(url).path}")
            body = await _read_capped(response, limit)
        if body is None:
            raise ProtocolError(f"{urlsplit(url).path} answered more than {limit} bytes")
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise ProtocolError(f"{urlsplit(url).path} did not answer JSON") from None

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
        return final

    async def resume(self, task_id: str, raw_url: str | None = None, on_update=None) -> Generation:
        final = None
        async for generation in self.follow(task_id, raw_url):
            final = generation
            if on_update is not None:
                on_update(generation)
        assert final is not None
        return final


def _ended_without_video(generation: Generation, transcript: Transcript) -> Generation:
    """An answer that ended normally with neither a video nor a task ID: failed, in the relay's
    own last words (there is no task to follow, and nothing was said to be still running)."""
    words = transcript.last_words or "the relay ended its answer without a video or a task ID"
    return generation.with_status("failed", error=words)


def _with_text(generation: Generation, text: str) -> Generation:
    """The same state carrying `text` as its markdown (what a remix sends back)."""
    if text == generation.text:
        return generation
    rebuilt = parse_transcript(text)
    return dataclasses.replace(
        generation, text_length=rebuilt.text_length, _log=rebuilt._log, _parts=rebuilt._parts
    )


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
