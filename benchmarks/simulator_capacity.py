"""How many concurrent streaming generations the embedded simulator serves, and how fast.

Starts a Simulator with short timing, runs N concurrent streaming generations with
httpx.AsyncClient, prints one JSON line of figures and a readable table, and exits non-zero if
any stream failed. ``--distinct`` prompts are spread over the streams, so that many clips are
really rendered by ffmpeg (the rest come from the content-addressed cache).

    python benchmarks/simulator_capacity.py [--streams 100] [--distinct 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kki_widgets.simulator import Simulator


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def one_stream(client: httpx.AsyncClient, base_url: str, prompt: str) -> dict[str, object]:
    body = {"model": "sora-2", "messages": [{"role": "user", "content": prompt}], "stream": True}
    started = time.perf_counter()
    first_byte: float | None = None
    events = 0
    text_parts: list[str] = []
    try:
        async with client.stream("POST", f"{base_url}/chat/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if first_byte is None:
                    first_byte = time.perf_counter() - started
                if line.startswith("data: {"):
                    events += 1
                    delta = json.loads(line[6:])["choices"][0]["delta"]
                    text_parts.append(delta.get("content") or "")
        text = "".join(text_parts)
        ok = "Generation Complete" in text and ".mp4" in text
        error = None if ok else "stream ended without a completed generation"
    except (httpx.HTTPError, ValueError, KeyError) as failure:
        ok, error = False, f"{type(failure).__name__}: {failure}"
    return {"ok": ok, "error": error, "events": events, "ttfb": first_byte, "seconds": time.perf_counter() - started}


async def run(streams: int, distinct: int, timing: dict[str, float]) -> dict[str, object]:
    # variants=1: a repeated prompt reuses its clip, so --distinct is the number of renders (by
    # default every repeat is a new render, as takes need, and this measured ffmpeg instead).
    with Simulator(seed=1, variants=1, **timing) as sim:
        limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
        async with httpx.AsyncClient(headers={"Authorization": "Bearer sim"}, timeout=120, limits=limits) as client:
            started = time.perf_counter()
            results = await asyncio.gather(
                *(one_stream(client, sim.base_url, f"benchmark clip {index % distinct}") for index in range(streams))
            )
            wall = time.perf_counter() - started
        renders = sim.renderer.renders
    ok = [result for result in results if result["ok"]]
    ttfbs = [float(result["ttfb"]) for result in results if result["ttfb"] is not None]
    durations = [float(result["seconds"]) for result in results]
    events = sum(int(result["events"]) for result in results)
    return {
        "benchmark": "simulator_capacity",
        "streams": streams,
        "distinct_prompts": distinct,
        "ffmpeg_renders": renders,
        "timing": timing,
        "streams_ok": len(ok),
        "streams_failed": streams - len(ok),
        "errors": sorted({str(result["error"]) for result in results if not result["ok"]})[:5],
        "events_served": events,
        "chunks_per_second": round(events / wall, 1),
        "wall_seconds": round(wall, 3),
        "ttfb_p50_ms": round(percentile(ttfbs, 0.5) * 1000, 1),
        "ttfb_p99_ms": round(percentile(ttfbs, 0.99) * 1000, 1),
        "stream_p50_seconds": round(statistics.median(durations), 3),
        "stream_max_seconds": round(max(durations), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=100, help="concurrent generations (default 100)")
    parser.add_argument("--distinct", type=int, default=10, help="distinct prompts, i.e. real renders (default 10)")
    parser.add_argument("--queue-seconds", type=float, default=0.2)
    parser.add_argument("--generate-seconds", type=float, default=0.5)
    parser.add_argument("--step-seconds", type=float, default=0.05)
    args = parser.parse_args(argv)
    if args.streams < 1 or not 1 <= args.distinct <= args.streams:
        parser.error("need --streams >= 1 and 1 <= --distinct <= --streams")
    timing = {"queue_seconds": args.queue_seconds, "generate_seconds": args.generate_seconds,
              "step_seconds": args.step_seconds}  # fmt: skip
    figures = asyncio.run(run(args.streams, args.distinct, timing))
    print(json.dumps(figures), flush=True)
    rows = [
        ("streams ok / failed", f"{figures['streams_ok']} / {figures['streams_failed']}"),
        ("ffmpeg renders (distinct prompts)", f"{figures['ffmpeg_renders']} ({figures['distinct_prompts']})"),
        ("SSE events served", figures["events_served"]),
        ("chunks per second", figures["chunks_per_second"]),
        ("wall time", f"{figures['wall_seconds']} s"),
        ("time to first byte p50 / p99", f"{figures['ttfb_p50_ms']} ms / {figures['ttfb_p99_ms']} ms"),
        ("stream duration p50 / max", f"{figures['stream_p50_seconds']} s / {figures['stream_max_seconds']} s"),
    ]
    width = max(len(label) for label, _ in rows)
    print(f"\nSimulator capacity: {args.streams} concurrent streaming generations")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    for error in figures["errors"]:
        print(f"  error: {error}", file=sys.stderr)
    return 0 if figures["streams_failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
