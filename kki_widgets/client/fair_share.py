"""Fair turns on one event loop: many streams at once, and the kernel still answers.

A notebook kernel runs every stream on the loop that also reads its own messages (the next
cell, a widget's click). When 100 generations send a chunk at the same moment, asyncio runs the
100 wake-ups back to back in one pass of the loop and everything else waits for all of them
(40-90 ms measured, ``benchmarks/bench_loop_lag.py``). A stream calls `take_turn` before working
on what it read: once the current pass has run streams for `SLICE` seconds, the others step
aside to the next pass, where they ask again. A pass then holds about one slice of stream work
plus the cost of stepping aside, so nothing else waits much longer, and every stream still gets
its turn in the order it asked.

Parking the streams that step aside in a line and releasing a batch per pass was tried: the
size of a batch has to be guessed from earlier passes, and wrong guesses made the lag erratic
(9-38 ms against 12-15 ms for asking again).
"""

from __future__ import annotations

import asyncio
import time
import weakref

__all__ = ["SLICE", "take_turn"]

SLICE = 0.002  # seconds of stream work per pass of the loop

# loop → when streams began working in its current pass; forgotten at the start of the next pass.
_pass_began: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, float] = weakref.WeakKeyDictionary()


async def take_turn() -> None:
    """Return at once while this pass of the loop has time left; else wait for a later pass."""
    loop = asyncio.get_running_loop()
    while True:
        now = time.perf_counter()
        began = _pass_began.get(loop)
        if began is None:
            _pass_began[loop] = now
            # Scheduled now, so it runs at the start of the next pass, before the streams
            # that step aside below (they are scheduled after it).
            loop.call_soon(_new_pass, loop)
            return
        if now - began < SLICE:
            return
        await asyncio.sleep(0)


def _new_pass(loop: asyncio.AbstractEventLoop) -> None:
    _pass_began.pop(loop, None)
