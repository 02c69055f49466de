"""Settings from arguments and the environment, and the masked `Secret` that carries the key.

Arguments win over `KKI_API_KEY`, `KKI_BASE_URL`, `KKI_MODEL`, `KKI_RELAY_PROFILE`. With neither a key nor a base URL
the package talks to the embedded relay simulator, and says so (`Settings.simulated`), so a new
user sees the whole product without paying and nobody mistakes simulated output for real output.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from ..protocol.errors import ConfigurationError
from ..protocol.profiles import RelayProfile, get_profile

DEFAULT_BASE_URL = "https://www.kkiai.com/v1"
DEFAULT_MODEL = "sora-2"
SIMULATOR_KEY = "simulated-relay"
# What the request cache calls the embedded simulator: its port changes with every kernel, and a
# rerun in a new kernel must find the answers the previous kernel paid (simulated) for.
EMBEDDED_IDENTITY = "simulator:embedded"


class Secret:
    """A string that never shows itself: repr, str and format give a mask."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        if not isinstance(value, str):
            raise TypeError("an API key must be a string")
        self._value = value

    def redactor(self):
        """A `redact.KeyRedactor` that masks this key in untrusted text."""
        from .redact import KeyRedactor

        return KeyRedactor(self._value, f"[key {self.masked}]")

    def reveal(self) -> str:
        return self._value

    @property
    def masked(self) -> str:
        tail = self._value[-4:] if len(self._value) >= 16 else ""
        return f"…{tail}" if tail else "****"

    def __repr__(self) -> str:
        return f"Secret('{self.masked}')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self):
        # Pickling would write the key into whatever stores the pickle.
        raise TypeError("Secret cannot be pickled")


@dataclass(frozen=True)
class Settings:
    base_url: str
    api_key: Secret | None
    model: str
    # Custom headers may carry credentials of their own: the repr names them, never the values.
    headers: dict = field(default_factory=dict, repr=False)
    simulated: bool = False
    profile: RelayProfile = field(default_factory=get_profile)
    # Whether the profile was asked for (argument or KKI_RELAY_PROFILE): then it always wins over
    # the one the relay's model list suggests (discovery.describe).
    profile_explicit: bool = False

    @property
    def cache_identity(self) -> str:
        """The relay's name in request-cache keys: the base URL, or a stable name for the
        embedded simulator (whose random port is not part of what was asked)."""
        return EMBEDDED_IDENTITY if self.simulated else self.base_url

    def __repr__(self) -> str:
        return (
            f"Settings(base_url={self.base_url!r}, api_key={self.api_key!r}, model={self.model!r}, "
            f"headers={sorted(self.headers)!r}, simulated={self.simulated!r})"
        )

    def at(self, base_url: str) -> Settings:
        """These settings for a relay found at `base_url` (the embedded simulator, once started)."""
        return replace(self, base_url=normalize_base_url(base_url))

    @property
    def chat_url(self) -> str:
        return f"{self.base_url}/chat/completions"

    @property
    def origin(self) -> str:
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}"


def normalize_base_url(url: str) -> str:
    """Accept `https://host`, `https://host/`, `https://host/v1` and `.../v1/chat/completions`."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if "@" in parts.netloc:
        # httpx would send `user:pass` as Basic auth instead of the key, and every repr and
        # `%sora config` would show the password: refuse, without repeating it.
        host = parts.netloc.rsplit("@", 1)[1]
        raise ConfigurationError(
            f"KKI_BASE_URL must not contain a user name or password ({parts.scheme}://…@{host}): "
            "remove the `user:password@` part and pass the key as api_key= or KKI_API_KEY"
        )
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"KKI_BASE_URL must be an http(s) URL such as {DEFAULT_BASE_URL!r}, got {url!r}"
        )
    for suffix in ("/chat/completions", "/chat"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    if not url.endswith("/v1"):
        url += "/v1"
    return url


def resolve_settings(
    base_url: str | None = None,
    api_key: str | Secret | None = None,
    model: str | None = None,
    headers: dict | None = None,
    profile: RelayProfile | str | None = None,
) -> Settings:
    """Settings from explicit arguments, else the environment, else the embedded simulator."""
    asked_profile = profile or os.environ.get("KKI_RELAY_PROFILE") or None
    chosen_profile = get_profile(asked_profile)
    key = api_key if api_key is not None else os.environ.get("KKI_API_KEY") or None
    if isinstance(key, str):
        key = Secret(key.strip()) if key.strip() else None
    if key is not None:
        check_key(key)
    url = base_url or os.environ.get("KKI_BASE_URL") or None
    chosen_model = (model or os.environ.get("KKI_MODEL") or DEFAULT_MODEL).strip()
    if not chosen_model:
        raise ConfigurationError("model must be a non-empty name such as 'sora-2'")
    extra = dict(headers or {})
    check_headers(extra)
    if any(name.lower() == "authorization" for name in extra):
        raise ConfigurationError(
            "pass the key as api_key= or KKI_API_KEY, not as an Authorization header"
        )
    if key is None and url is None:
        # Pure: this only says "the embedded simulator"; the client starts it (relay.py), so
        # configuration never imports the simulator (which reads KNOWN_MODELS from the profiles).
        return Settings(
            base_url=EMBEDDED_IDENTITY,
            api_key=Secret(SIMULATOR_KEY),
            model=chosen_model,
            headers=extra,
            simulated=True,
            profile=chosen_profile,
            profile_explicit=asked_profile is not None,
        )
    return Settings(
        base_url=normalize_base_url(url or DEFAULT_BASE_URL),
        api_key=key,
        model=chosen_model,
        headers=extra,
        simulated=False,
        profile=chosen_profile,
        profile_explicit=asked_profile is not None,
    )


def check_key(key: Secret) -> None:
    """A key goes into an HTTP header: printable ASCII only, named in plain words otherwise."""
    for position, char in enumerate(key.reveal(), 1):
        if not "!" <= char <= "~":
            import unicodedata

            name = unicodedata.name(char, f"U+{ord(char):04X}")
            raise ConfigurationError(
                f"the API key contains {name} at character {position}, which no key has (only "
                "printable ASCII without spaces): copy the key again from the relay's dashboard, "
                "as plain text, into KKI_API_KEY or api_key="
            )


def check_headers(headers: dict) -> None:
    """Custom headers: names and values that HTTP can carry, as text."""
    for name, value in headers.items():
        if not isinstance(name, str) or not name or not all("!" <= c <= "~" for c in name):
            raise ConfigurationError(f"header name {name!r} must be a non-empty ASCII token")
        if not isinstance(value, str) or not all(" " <= c <= "~" for c in value):
            # The value is not shown: custom headers may be credentials.
            raise ConfigurationError(
                f"the value of header {name!r} must be printable ASCII text"
            )
