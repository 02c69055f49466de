"""HTTP error answers mapped to typed errors with plain-words messages (pure but for reading
a response's headers)."""

from __future__ import annotations

import json
import time

import httpx

from ..protocol.errors import (
    AuthenticationError,
    BadRequestError,
    InsufficientQuotaError,
    RateLimitError,
    RelayError,
    RelayServerError,
)
from ..protocol.profiles import KNOWN_MODELS

RETRYABLE_STATUS = frozenset((408, 409, 429, 500, 502, 503, 504, 520, 522, 524))


def retry_after(response: httpx.Response) -> float | None:
    """How long the relay asks us to wait (`Retry-After-Ms`, `Retry-After` seconds or date)."""
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


def is_malformed_redirect(error: Exception) -> bool:
    """httpx builds the next request of every redirect, followed or not: a Location that is no
    URL surfaces as this RemoteProtocolError (or InvalidURL) from `send`, before any body."""
    text = str(error).lower()
    return isinstance(error, (httpx.RemoteProtocolError, httpx.InvalidURL)) and "location" in text


def malformed_redirect(where: str, url: str) -> str:
    """Words for a redirect whose Location is malformed: it names the redirect and the host that
    sent it, and quotes none of the answer (the header may hold anything)."""
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or "the relay"
    return (
        f"{where} at {host} answered with a redirect whose Location header is not a valid address; "
        "it was not followed"
    )
