"""Continuous video generation in Jupyter: the `VideoChat` widget and the `%%sora` magic.

Imports are lazy so `import kki_widgets` and `%load_ext kki_widgets` stay as fast as importing
anywidget alone; the heavy parts (httpx, the widget, the simulator) load on first use.
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

# What a notebook user meets: the front ends, conversations and their turns, the clients, the
# relay profiles and the errors. Internals (Transcript, NotebookStore, Settings, the simulator…)
# are imported from their own modules.
_EXPORTS = {
    "AsyncRelayClient": "client.relay",
    "RelayClient": "client.relay",
    "Generation": "protocol.transcript",
    "Conversation": "conversation.session",
    "Turn": "conversation.turn",
    "TurnHandle": "conversation.turn",
    "TakesHandle": "conversation.turn",
    "Budget": "conversation.budget",
    "VideoChat": "notebook.widget",
    "RelayProfile": "protocol.profiles",
    "ModelFamily": "protocol.profiles",
    "KkiError": "protocol.errors",
    "ConfigurationError": "protocol.errors",
    "MissingKeyError": "protocol.errors",
    "RelayError": "protocol.errors",
    "AuthenticationError": "protocol.errors",
    "InsufficientQuotaError": "protocol.errors",
    "RateLimitError": "protocol.errors",
    "BadRequestError": "protocol.errors",
    "RelayServerError": "protocol.errors",
    "GenerationFailed": "protocol.errors",
    "StreamInterrupted": "protocol.errors",
    "TurnFailed": "protocol.errors",
    "ProtocolError": "protocol.errors",
    "DeadlineExceeded": "protocol.errors",
    "BudgetExceeded": "protocol.errors",
}

__all__ = [*sorted(_EXPORTS), "generate", "load_ipython_extension"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kki_widgets' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__


def generate(prompt, **options):
    """One video from one prompt, blocking: `kki_widgets.generate("a cat surfing").video_url`.

    Takes every `RelayClient` argument (base_url, api_key, model, deadline, …) and every
    `RelayClient.generate` option (orientation, duration, images, on_update, …).
    """
    import inspect

    from .client.relay import AsyncRelayClient, RelayClient

    # The client's own signature decides which options are the client's, so a new client
    # argument works here without a second list to keep in step.
    client_names = set(inspect.signature(AsyncRelayClient).parameters)
    client_options = {key: options.pop(key) for key in list(options) if key in client_names}
    with RelayClient(**client_options) as client:
        return client.generate(prompt, **options)


def load_ipython_extension(ipython) -> None:
    """`%load_ext kki_widgets`: registers `%%sora` and `%sora`."""
    from .notebook.magics import load_ipython_extension as load

    load(ipython)

