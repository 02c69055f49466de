"""Figure 1: stream throughput of our client vs the openai SDK vs raw httpx, on one local stream.

A separate process serves the same pre-built SSE answer (N small chat-completion chunks like the
seed's, ending with a task ID and an mp4 link) to every consumer. The consumers run round-robin,
`--reps` times each, and the medians are reported: wall-clock chunks/s and client CPU time per
chunk (time.process_time of this process; the server is another process). Peak Python memory
(tracemalloc) is measured in one extra pass per consumer.

Consumers:
- ours:          AsyncRelayClient.stream(): SSE decoding, chunk JSON, transcript parsing,
                 `Generation` snapshots (one per network read);
- ours-sync:     RelayClient.stream(), the same on the package's private loop, handed over to
                 the calling thread (CPU time counts both threads);
- openai-sync / openai-async: the openai SDK iterating the same stream (text deltas only);
- httpx-json:    httpx `aiter_lines` + `json.loads` per event: the least any parsing client does;
- httpx-bytes:   httpx `aiter_raw`, no parsing at all: the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import tracemalloc

from _common import ROOT, deltas, emit, median, table

BODY = {"model": "sora-2", "messages": [{"role": "user", "content": "bench"}], "stream": True}


def start_server(chunks: int, mem_chunks: int, rate: float = 1000.0
                 ) -> tuple[subprocess.Popen, str]:
    """The `_sse_server.py` process and its base URL (`http://127.0.0.1:PORT/v1`)."""
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "_sse_server.py"), str(chunks), str(mem_chunks),
         str(rate)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    port = int(server.stdout.readline())
    return server, f"http://127.0.0.1:{port}/v1"


def make_consumers(base_url: str, expected_text: str):
    import httpx
    import openai

    from kki_widgets.client.relay import AsyncRelayClient, RelayClient

    ours_client = AsyncRelayClient(base_url=base_url, api_key="bench", max_retries=0)
    sync_openai = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0)

    async def ours() -> int:
        snapshots = 0
        last = None
        async for generation in ours_client.stream("bench"):
            snapshots += 1
            last = generation
        await ours_client.aclose()
        assert last is not None and last.status == "completed", last
        assert last.text == expected_text, "our client lost text"
        return snapshots

    sync_client = RelayClient(base_url=base_url, api_key="bench", max_retries=0)

    def ours_sync() -> int:
        snapshots = 0
        last = None
        for generation in sync_client.stream("bench"):
            snapshots += 1
            last = generation
        assert last is not None and last.status == "completed", last
        assert last.text == expected_text, "our sync client lost text"
        return snapshots

    def openai_sync() -> int:
        parts = []
        stream = sync_openai.chat.completions.create(model="sora-2", messages=BODY["messages"],
                                                     stream=True)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
        assert "".join(parts) == expected_text
        return len(parts)

    async def openai_async() -> int:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)
        parts = []
        stream = await client.chat.completions.create(model="sora-2", messages=BODY["messages"],
                                                      stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
        await client.close()
        assert "".join(parts) == expected_text
        return len(parts)

    async def httpx_json() -> int:
        parts = []
        async with httpx.AsyncClient() as client, client.stream(
            "POST", f"{base_url}/chat/completions", json=BODY
        ) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    content = json.loads(line[6:])["choices"][0]["delta"].get("content")
                    if content:
                        parts.append(content)
        assert "".join(parts) == expected_text
        return len(parts)

    async def httpx_bytes() -> int:
        size = 0
        async with httpx.AsyncClient() as client, client.stream(
            "POST", f"{base_url}/chat/completions", json=BODY
        ) as response:
            async for data in response.aiter_raw():
                size += len(data)
        assert size > len(expected_text)
        return size

    return {
        "ours": ours,
        "ours-sync": ours_sync,
        "openai-sync": openai_sync,
        "openai-async": openai_async,
        "httpx-json": httpx_json,
        "httpx-bytes": httpx_bytes,
    }


def run_one(consumer) -> tuple[float, float]:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if asyncio.iscoroutinefunction(consumer):
        asyncio.run(consumer())
    else:
        consumer()
    return time.perf_counter() - wall0, time.process_time() - cpu0


def peak_memory(consumer) -> float:
    tracemalloc.start()
    try:
        if asyncio.iscoroutinefunction(consumer):
            asyncio.run(consumer())
        else:
            consumer()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k chunks, fewer repetitions")
    parser.add_argument("--chunks", type=int, default=None)
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--only", default=None, help="comma-separated consumers")
    args = parser.parse_args(argv)
    chunks = args.chunks or (10_000 if args.quick else 100_000)
    reps = args.reps or (2 if args.quick else 3)
    expected = "".join(deltas(chunks))
    events = chunks + 3  # role chunk + content chunks + finish chunk + [DONE]
    mem_chunks = min(chunks, 2_000 if args.quick else 10_000)
    server, base_url = start_server(chunks, mem_chunks)
    origin = base_url.removesuffix("/v1")
    try:
        consumers = make_consumers(base_url, expected)
        # The same consumers against `/warm/v1` (200 chunks: imports, first connection) and
        # `/mem/v1` (≤ 10k chunks: tracemalloc slows the SDK down several times).
        warm = make_consumers(f"{origin}/warm/v1", "".join(deltas(200)))
        mem = make_consumers(f"{origin}/mem/v1", "".join(deltas(mem_chunks)))
        if args.only:
            wanted = args.only.split(",")
            consumers = {k: v for k, v in consumers.items() if k in wanted}
        for name in consumers:
            run_one(warm[name])
        walls: dict[str, list[float]] = {name: [] for name in consumers}
        cpus: dict[str, list[float]] = {name: [] for name in consumers}
        for _ in range(reps):
            for name, consumer in consumers.items():  # round-robin: noise hits all alike
                wall, cpu = run_one(consumer)
                walls[name].append(wall)
                cpus[name].append(cpu)
        memory = {name: peak_memory(mem[name]) for name in consumers}
    finally:
        server.stdin.close()
        server.wait(timeout=10)

    rate = {name: events / median(walls[name]) for name in consumers}
    for name in consumers:
        emit(f"stream.{name}.chunks_per_s", rate[name], "chunks/s", chunks=chunks, reps=reps,
             wall_s_median=median(walls[name]))
        emit(f"stream.{name}.cpu_per_chunk", median(cpus[name]) / events * 1e6, "µs/chunk")
        emit(f"stream.{name}.peak_memory", memory[name], "MB (tracemalloc)", chunks=mem_chunks)
    if "ours" in rate:
        for sdk in ("openai-sync", "openai-async"):
            if sdk in rate:
                ratio = rate["ours"] / rate[sdk]
                emit(f"stream.ours_vs_{sdk}", ratio, "× chunks/s", target="≥ 10×", met=ratio >= 10)
        if "ours-sync" in rate:
            ratio = median(cpus["ours-sync"]) / median(cpus["ours"])
            emit("stream.sync_vs_async_cpu", ratio, "× CPU per chunk", target="≤ 1.2×",
                 met=ratio <= 1.2)
        if "httpx-bytes" in rate:
            slowdown = rate["httpx-bytes"] / rate["ours"]
            emit("stream.ours_slowdown_vs_httpx_bytes", slowdown, "× wall time",
                 target="≤ 2×", met=slowdown <= 2)
        if "httpx-json" in rate:
            slowdown = rate["httpx-json"] / rate["ours"]
            emit("stream.ours_slowdown_vs_httpx_json", slowdown, "× wall time",
                 target="≤ 2×", met=slowdown <= 2)
    table(f"Stream throughput: {chunks} chunks, median of {reps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
