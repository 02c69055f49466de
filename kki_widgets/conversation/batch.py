"""Many prompts at once: one clip per prompt, at most `concurrency` generating together, and a
`views.Gallery` of their turns in prompt order. A prompt the budget refuses does not stop the
others (the gallery's `refused` says which and why). The blocking form draws the live counter
from the caller's thread: a notebook records only output its cell sends.

`Conversation.batch` / `abatch` (kki_widgets.conversation.session) are the entry points; `send` is its `asend`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Awaitable, Callable

from ..protocol.errors import BudgetExceeded, ConfigurationError

log = logging.getLogger("kki_widgets.conversation.session")


def check_prompts(prompts, concurrency) -> list[str]:
    """The prompts as a list, every one describing a video, and a usable concurrency."""
    if isinstance(prompts, str):
        raise ConfigurationError("batch() takes a list of prompts, not one string: batch([prompt])")
    prompts = list(prompts)
    empty = [i for i, p in enumerate(prompts) if not isinstance(p, str) or not p.strip()]
    if empty or not prompts:
        raise ConfigurationError(
            f"prompt(s) {empty} are empty: every prompt must describe a video" if empty
            else "batch() needs at least one prompt"
        )
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigurationError(f"concurrency={concurrency!r}: give a whole number of at least 1")
    return prompts


def live_counter(total: int):
    """A live "n / N clips ready" line, shown at once (a no-op outside a notebook)."""
    from ..display.views import (
        Counter,  # presentation: a live line in a notebook, nothing elsewhere
    )

    shown = Counter(total)
    shown.update([])
    return shown


async def run_all(send: Callable[[str], Awaitable], prompts: list[str], concurrency: int, on_update):
    """`send` every prompt, at most `concurrency` at a time; `on_update(turns so far)` after each."""
    from ..display.views import Gallery

    limit = asyncio.Semaphore(concurrency)
    turns: list = [None] * len(prompts)
    refused: list[tuple[str, str]] = []

    async def one(position: int, prompt: str) -> None:
        async with limit:
            try:
                turns[position] = await send(prompt)
            except BudgetExceeded as error:  # refused before sending: the others go on
                refused.append((prompt, str(error)))
        if on_update is not None:
            on_update([t for t in turns if t is not None])

    await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
    gallery = Gallery(t for t in turns if t is not None)
    gallery.refused = refused  # (prompt, why) of the prompts the budget did not allow
    if refused:
        log.warning("%d of %d prompts were not sent: %s", len(refused), len(prompts), refused[0][1])
    return gallery


def wait_drawing(future: concurrent.futures.Future, shown, finished: list):
    """Block until the batch running on another loop ends, redrawing `shown` (a counter, or
    None) from `finished` (the turns so far) meanwhile; an interrupt cancels the batch."""
    try:
        while True:
            if shown is not None:
                shown.update(list(finished))
            try:
                gallery = future.result(timeout=0.2)
                break
            except concurrent.futures.TimeoutError:
                continue
    except KeyboardInterrupt:
        future.cancel()
        raise
    if shown is not None:
        shown.update(gallery)
    return gallery
