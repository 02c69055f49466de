"""The package's private event loop: where blocking calls run their asynchronous work.

A notebook cell cannot wait on the kernel's own loop (it is busy running that cell), so the
sync client, `Conversation.send()` and the `%%sora` magic run their coroutines on one daemon
thread with its own loop and wait from the calling thread. One loop per process, started on
first use; its connections (one httpx client per loop) are reused across calls.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def background_loop() -> asyncio.AbstractEventLoop:
    """The private loop (a daemon thread named ``kki-relay``), started on first use."""
    global _loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="kki-relay", daemon=True).start()
            _loop = loop
        return _loop


def submit(coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Schedule `coroutine` on the private loop; the caller decides how to wait."""
    return asyncio.run_coroutine_threadsafe(coroutine, background_loop())


def on_background_loop() -> bool:
    """Whether the caller runs on the private loop (which must never block on itself)."""
    try:
        return asyncio.get_running_loop() is background_loop()
    except RuntimeError:
        return False


def block_on(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on the private loop and wait; works inside a running notebook loop.

    Ctrl-C (or a cancelled wait) cancels the coroutine and lets the cancellation land before
    returning, so whatever the coroutine records on cancellation (a turn marked "cancelled",
    its task ID kept) is there when control returns to the user.
    """
    future = submit(coroutine)
    try:
        return future.result()
    except (KeyboardInterrupt, concurrent.futures.CancelledError):
        future.cancel()
        with contextlib.suppress(BaseException):
            future.result(timeout=5)
        raise


_END = object()


def iterate(agen: AsyncIterator[T]) -> Iterator[T]:
    """A blocking iterator over an async generator that runs on the private loop.

    The generator is pumped on the loop into a thread-safe queue and the caller drains it:
    crossing threads costs one queue operation per item instead of a scheduled coroutine and a
    future per item (which made the sync client twice as expensive per chunk as the async one).
    Leaving the loop early (break, an exception, Ctrl-C) cancels the pump, so the generator's
    own clean-up (closing the HTTP response) runs on its loop.
    """
    items: queue.SimpleQueue = queue.SimpleQueue()

    async def pump() -> None:
        try:
            async for item in agen:
                items.put((item, None))
        except Exception as error:  # handed to the caller, raised in its thread
            items.put((_END, error))
        else:
            items.put((_END, None))

    future = submit(pump())
    try:
        while True:
            item, error = items.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        if not future.done():
            future.cancel()
            with contextlib.suppress(BaseException):
                future.result(timeout=5)
