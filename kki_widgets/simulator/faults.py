"""Fault specifications: parse ``name[:argument]`` strings into a :class:`FaultPlan`.

Pure (no I/O) so the server, the CLI and the tests share one definition of what each fault
name means. The catalogue with the observable behaviour of every fault is in the package
docstring (``kki_widgets.simulator``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from ..protocol.errors import ConfigurationError

#: HTTP statuses the ``status:`` fault can answer with, and the OpenAI-shaped error each gets.
ERROR_STATUSES: dict[int, tuple[str, str, str]] = {
    401: ("authentication_error", "invalid_api_key", "Incorrect API key provided (simulated)."),
    402: (
        "insufficient_quota",
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details (simulated).",
    ),
    429: ("rate_limit_error", "rate_limit_exceeded", "Rate limit reached, retry after 1 s (simulated)."),
    500: ("server_error", "internal_error", "The server had an error processing your request (simulated)."),
    502: ("server_error", "bad_gateway", "Bad gateway: the upstream video service did not answer (simulated)."),
    503: ("server_error", "service_unavailable", "The service is temporarily overloaded (simulated)."),
}

#: Fault names that take no argument.
FLAG_FAULTS = (
    "cut_after_task_id",
    "cut_mid_progress",
    "fail",
    "policy",
    "capacity",
    "malformed",
    "crlf",
    "keepalive",
    "pretty",
    "pretty_raw",
    "error_chunk",
    "split",
    "no_pricing",
)
#: Fault names that take an argument, with what the argument is.
ARGUMENT_FAULTS = {
    "cut_after": "a number of SSE events (integer >= 0)",
    "stall": "seconds (number between 0 and 300)",
    "status": "one of " + "|".join(str(code) for code in ERROR_STATUSES),
    "fail_first": "a number of requests (integer >= 0)",
}
ALL_FAULT_NAMES = (*FLAG_FAULTS, *ARGUMENT_FAULTS)

#: ``[[fault:name]]`` or ``[[fault:name1,name2]]`` inside a user message.
PROMPT_MARKER = re.compile(r"\[\[fault:([^\]]*)\]\]")


class FaultError(ConfigurationError):
    """A fault specification that cannot be understood; the message names the valid forms."""


@dataclasses.dataclass(frozen=True)
class FaultPlan:
    """Which faults apply to one request (or, for ``fail_first``, to a whole server)."""

    cut_after_task_id: bool = False
    cut_mid_progress: bool = False
    cut_after_events: int | None = None
    stall_seconds: float | None = None
    status: int | None = None
    fail: bool = False
    policy: bool = False
    capacity: bool = False
    malformed: bool = False
    crlf: bool = False
    keepalive: bool = False
    pretty: bool = False
    pretty_raw: bool = False
    error_chunk: bool = False
    split: bool = False
    no_pricing: bool = False
    fail_first: int | None = None

    def merged(self, other: FaultPlan) -> FaultPlan:
        """Faults of both plans; where both set a value, ``other`` wins."""
        changes = {
            field.name: getattr(other, field.name)
            for field in dataclasses.fields(other)
            # ``is`` because cut_after:0 is a real setting and 0 == False.
            if getattr(other, field.name) is not None and getattr(other, field.name) is not False
        }
        return dataclasses.replace(self, **changes)


def _split_specs(specs: str | Iterable[str] | None) -> list[str]:
    if specs is None:
        return []
    if isinstance(specs, str):
        specs = [specs]
    names: list[str] = []
    for spec in specs:
        if not isinstance(spec, str):
            raise FaultError(f"a fault must be a string like 'cut_after_task_id', got {spec!r}")
        names.extend(part.strip() for part in spec.split(",") if part.strip())
    return names


def _parse_int(name: str, argument: str) -> int:
    try:
        value = int(argument)
    except ValueError:
        raise FaultError(f"fault {name!r} needs {ARGUMENT_FAULTS[name]}, got {argument!r}") from None
    if value < 0:
        raise FaultError(f"fault {name!r} needs {ARGUMENT_FAULTS[name]}, got {argument!r}")
    return value


def parse_faults(specs: str | Iterable[str] | None) -> FaultPlan:
    """Parse ``"stall:2,crlf"`` / ``["status:429", "split"]`` into a :class:`FaultPlan`.

    Raises :class:`FaultError` naming the valid faults for anything it does not understand.
    """
    values: dict[str, object] = {}
    for item in _split_specs(specs):
        name, _, argument = item.partition(":")
        name = name.strip().lower()
        argument = argument.strip()
        if name in FLAG_FAULTS:
            if argument:
                raise FaultError(f"fault {name!r} takes no argument, got {item!r}")
            values[name] = True
        elif name in ARGUMENT_FAULTS:
            if not argument:
                raise FaultError(f"fault {name!r} needs {ARGUMENT_FAULTS[name]}, e.g. '{name}:1'")
            if name == "cut_after":
                values["cut_after_events"] = _parse_int(name, argument)
            elif name == "fail_first":
                values["fail_first"] = _parse_int(name, argument)
            elif name == "status":
                code = _parse_int(name, argument)
                if code not in ERROR_STATUSES:
                    raise FaultError(f"fault 'status' needs {ARGUMENT_FAULTS['status']}, got {argument!r}")
                values["status"] = code
            else:
                try:
                    seconds = float(argument)
                except ValueError:
                    seconds = -1.0
                if not 0 <= seconds <= 300:
                    raise FaultError(f"fault 'stall' needs {ARGUMENT_FAULTS['stall']}, got {argument!r}")
                values["stall_seconds"] = seconds
        else:
            raise FaultError(
                f"unknown fault {name!r}; valid faults: {', '.join(FLAG_FAULTS)}, "
                + ", ".join(f"{key}:<{text}>" for key, text in ARGUMENT_FAULTS.items())
            )
    return FaultPlan(**values)  # type: ignore[arg-type]


def faults_in_text(text: str) -> list[str]:
    """The fault names marked with ``[[fault:...]]`` in a prompt."""
    return [match.group(1) for match in PROMPT_MARKER.finditer(text)]
