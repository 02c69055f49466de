"""Typed errors. Each message says, in plain words, what happened and what to do next.

Messages never contain the API key: they are built from relay text and our own words only, and
`RelayError.__str__` scrubs anything that looks like a bearer token as a last line of defence.
"""

from __future__ import annotations

import re

_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"']+")
_KEYLIKE = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")


def scrub(text: str) -> str:
    """Remove bearer tokens and sk-style keys from text that came from elsewhere."""
    return _KEYLIKE.sub("sk-****", _BEARER.sub(r"\1****", text))


class KkiError(Exception):
    """Base class of every error this package raises on purpose."""

    def __str__(self) -> str:
        return scrub(super().__str__())


class ConfigurationError(KkiError, ValueError):
    """Bad input on our side: empty prompt, missing key, malformed base URL, bad option."""


class MissingKeyError(ConfigurationError):
    def __init__(self, base_url: str):
        super().__init__(
            f"No API key for {base_url}: set the KKI_API_KEY environment variable (or pass "
            "api_key=...). Unset KKI_BASE_URL too to use the free embedded simulator instead."
        )


class RelayError(KkiError):
    """The relay answered with an error, or the answer could not be read."""

    hint = ""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        task_id: str | None = None,
        generation=None,
    ):
        self.message = scrub(message)
        self.status_code = status_code
        self.code = code
        self.task_id = task_id
        self.generation = generation
        super().__init__(self._compose())

    def _compose(self) -> str:
        parts = [self.message.rstrip(".") + "."]
        if self.hint:
            parts.append(self.hint)
        if self.task_id:
            parts.append(f"(task {self.task_id})")
        return " ".join(parts)


class AuthenticationError(RelayError):
    hint = "Check KKI_API_KEY: the relay rejected the key (HTTP 401/403)."


class InsufficientQuotaError(RelayError):
    hint = "Your relay account is out of credit: top it up, or unset KKI_API_KEY to use the simulator."


class RateLimitError(RelayError):
    hint = "The relay is rate limiting: wait a little, or lower max_concurrency."

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs):
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class BadRequestError(RelayError):
    hint = "The relay refused the request: check the model name and the prompt."


class RelayServerError(RelayError):
    hint = "The relay had a server error; nothing was generated, so trying again later is safe."


class GenerationFailed(RelayError):
    hint = (
        "The relay accepted the prompt but the generation failed; some relays charge for "
        "failed generations, so it was not retried automatically. Change the prompt and retry."
    )


class TurnFailed(RelayError):
    """A turn that ended failed or cancelled; its message is the turn's own plain-words error."""

    def __init__(self, message: str, *, turn=None, **kwargs):
        self.turn = turn
        super().__init__(message, **kwargs)

    def _compose(self) -> str:
        # The turn's error already says what happened and what to do: add nothing to it.
        return self.message


class StreamInterrupted(RelayError):
    """The answer stopped early. With a task ID the video can still be recovered."""

    @property
    def hint(self) -> str:  # type: ignore[override]
        if self.task_id:
            return (
                "The relay accepted the prompt, so it was NOT resubmitted (that would pay twice); "
                f"resume it with %sora resume {self.task_id} or Conversation.resume()."
            )
        return (
            "The relay never showed a task ID, so there is nothing to follow. If it had already "
            "accepted the prompt it may still charge for it: check the relay's dashboard before "
            "sending the prompt again."
        )


class StillRunning(StreamInterrupted):
    """The relay's answer ended while the video is still being made there (it gave a task ID or
    said so). Not a failure: the task is resumed by its ID, never sent again."""

    def _compose(self) -> str:
        # The message already says what happened, the task ID and how to fetch the video.
        return self.message


class ProtocolError(RelayError):
    hint = "The relay's answer was not in the expected chat-completion stream format."


class DeadlineExceeded(RelayError):
    hint = "Raise the client's deadline, or resume the task later."


class BudgetExceeded(ConfigurationError):
    """A request refused before anything was sent: its estimate would pass the budget, or its
    price is unknown while a budget is set. The message says the spend, the estimate and the fix."""
