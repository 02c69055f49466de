"""The process-wide simulator that ``kki_widgets.client.config`` falls back to when no key is set."""

from __future__ import annotations

import atexit
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import Simulator

_lock = threading.Lock()
_instance: Simulator | None = None


def default_media_dir() -> Path:
    """``$XDG_CACHE_HOME/kki_widgets/simulator`` (``~/.cache/...``), or a temp folder when the
    cache is not writable. Clips are named by content, so the cache survives restarts usefully."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kki_widgets" / "simulator"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        probe = cache / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return cache
    except OSError:
        fallback = Path(tempfile.gettempdir()) / f"kki_widgets-simulator-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


def embedded_simulator() -> Simulator:
    """The shared simulator, started on first use (thread-safe) with realistic timing."""
    global _instance
    with _lock:
        if _instance is None:
            from .server import Simulator

            simulator = Simulator(media_dir=default_media_dir())
            simulator.start()
            atexit.register(simulator.stop)
            _instance = simulator
        return _instance


def embedded_base_url() -> str:
    """Base URL (``http://127.0.0.1:PORT/v1``) of the shared simulator, starting it if needed."""
    return embedded_simulator().base_url
