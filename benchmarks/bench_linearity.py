"""Figure 2: the parsers stay linear. Cost per delta of `Transcript.feed` (a snapshot per delta,
the worst case), of the status channel (`append_reasoning` + a snapshot per delta, the same text)
and of the SSE decoder + chunk decoding, for 10k, 100k and 1M deltas.

Target: cost per delta flat, max/min ≤ 1.5 over the sizes. CPU time (time.process_time),
median of several repetitions for the small sizes.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc

from _common import deltas, emit, median, sse_body, table

from kki_widgets.protocol.sse import SSEDecoder, decode_chunk
from kki_widgets.protocol.transcript import Transcript

READ = 65536


def transcript_cost(parts: list[str]) -> float:
    transcript = Transcript()
    feed = transcript.feed
    started = time.process_time()
    for part in parts:
        feed(part)
    generation = transcript.finish()
    elapsed = time.process_time() - started
    assert generation.status == "completed", generation
    return elapsed


def reasoning_cost(parts: list[str]) -> float:
    """The same text on the status channel (`delta.reasoning_content`), a snapshot per delta."""
    transcript = Transcript()
    append = transcript.append_reasoning
    started = time.process_time()
    for part in parts:
        append(part)
        transcript.generation  # noqa: B018 - building the snapshot is the cost measured
    generation = transcript.finish()
    elapsed = time.process_time() - started
    assert generation.progress > 0 and generation.text == "", generation
    return elapsed


def sse_cost(block: bytes, repeat: int) -> float:
    """Decode `repeat` back-to-back copies of `block` (one continuous stream) in 64 KB reads."""
    reads = [block[i : i + READ] for i in range(0, len(block), READ)]
    decoder = SSEDecoder()
    events = 0
    started = time.process_time()
    for _ in range(repeat):
        for read in reads:
            for data, extra in decoder.feed(read):
                decode_chunk(data, extra)
                events += 1
    elapsed = time.process_time() - started
    assert events >= repeat
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1k, 10k, 100k deltas")
    args = parser.parse_args(argv)
    sizes = [1_000, 10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    reps = {sizes[0]: 5, sizes[1]: 3, sizes[2]: 1 if not args.quick else 2}
    block_deltas = sizes[0]
    block = sse_body(deltas(block_deltas))  # events per block: deltas + 3
    per_block = block_deltas + 3
    feed_cost: dict[int, float] = {}
    reasoning: dict[int, float] = {}
    decode_cost: dict[int, float] = {}
    for size in sizes:
        parts = deltas(size)
        feed_cost[size] = median(transcript_cost(parts) for _ in range(reps[size])) / size * 1e6
        reasoning[size] = median(reasoning_cost(parts) for _ in range(reps[size])) / size * 1e6
        repeat = size // block_deltas
        decode_cost[size] = (
            median(sse_cost(block, repeat) for _ in range(reps[size])) / (repeat * per_block) * 1e6
        )
        emit(f"linearity.transcript_feed.{size}", feed_cost[size], "µs/delta", reps=reps[size])
        emit(f"linearity.transcript_reasoning.{size}", reasoning[size], "µs/delta", reps=reps[size])
        emit(f"linearity.sse_decode.{size}", decode_cost[size], "µs/event", reps=reps[size])
    for name, cost in (
        ("transcript_feed", feed_cost),
        ("transcript_reasoning", reasoning),
        ("sse_decode", decode_cost),
    ):
        spread = max(cost.values()) / min(cost.values())
        emit(f"linearity.{name}.max_over_min", spread, "×", target="≤ 1.5", met=spread <= 1.5)
    parts = deltas(sizes[1])
    tracemalloc.start()
    transcript = Transcript()
    for part in parts:
        transcript.feed(part)
    transcript.finish()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    emit("linearity.transcript_memory_per_delta", peak / sizes[1], "bytes/delta (tracemalloc)",
         deltas=sizes[1])
    table("Linearity: cost per delta over stream length")
    return 0


if __name__ == "__main__":
    sys.exit(main())
