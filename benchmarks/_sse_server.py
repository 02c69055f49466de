"""A minimal, fast HTTP server for the stream benchmark: every request gets the same pre-built
SSE answer (Connection: close), so the server is never the bottleneck. Runs in its own process:
the client's CPU time is then the client's alone.

    python benchmarks/_sse_server.py CHUNKS MEM_CHUNKS [RATE]   # prints the port; serves until
                                                                # stdin closes

`/v1/...` answers CHUNKS chunks, `/warm/v1/...` 200 (warm-up), `/mem/v1/...` MEM_CHUNKS
(the tracemalloc pass, which slows the SDK down several times), `/paced/v1/...` the CHUNKS answer
at RATE events per second (in 10 ms batches, like a fast relay).
"""

from __future__ import annotations

import asyncio
import sys

from _common import deltas, http_response, sse_body


def payload_for(count: int) -> bytes:
    return http_response(sse_body(deltas(count)))


async def write_paced(writer: asyncio.StreamWriter, payload: bytes, rate: float) -> None:
    head, _, body = payload.partition(b"\r\n\r\n")
    events = [event + b"\n\n" for event in body.split(b"\n\n") if event]
    writer.write(head + b"\r\n\r\n")
    loop = asyncio.get_running_loop()
    started = loop.time()
    per_batch = max(1, round(rate / 100))
    for index in range(0, len(events), per_batch):
        writer.write(b"".join(events[index : index + per_batch]))
        await writer.drain()
        delay = started + (index + per_batch) / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)


async def serve(payloads: dict[bytes, bytes], rate: float) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            path = head.split(b" ", 2)[1]
            prefix = b"/" + path.split(b"/")[1] + b"/"
            if prefix == b"/paced/":
                await write_paced(writer, payloads[b""], rate)
            else:
                writer.write(payloads.get(prefix, payloads[b""]))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=128)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    # Serve until the parent closes our stdin.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


def main() -> None:
    count = int(sys.argv[1])
    payloads = {b"": payload_for(count), b"/warm/": payload_for(200),
                b"/mem/": payload_for(int(sys.argv[2]))}
    rate = float(sys.argv[3]) if len(sys.argv) > 3 else 1000.0
    asyncio.run(serve(payloads, rate))


if __name__ == "__main__":
    main()
