"""Figure 4: front-end traffic. A VideoChat whose Conversation streams a relay answer arriving at
~1000 chunks/s: comm messages sent per widget per second (target ≤ 10/s), and whether the final
state the front end holds is exact (the same as the Python `Turn`).

The comm is a fake that records every message (as tests/test_widget.py does), so the count is
exactly what a browser would receive.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from _common import TASK_ID, VIDEO_URL, deltas, emit, table
from bench_stream import start_server


class FakeComm:
    kernel = object()  # ipywidgets only sends when the comm has a kernel
    comm_id = "bench-comm"

    def __init__(self) -> None:
        self.sent: list[tuple[float, dict]] = []

    def send(self, data=None, buffers=None, **_) -> None:
        self.sent.append((time.perf_counter(), data))

    def on_msg(self, callback) -> None:
        self.callback = callback

    def close(self, *args, **kwargs) -> None:
        pass


async def run(base_url: str, expected_text: str) -> dict:
    from kki_widgets.conversation.session import Conversation
    from kki_widgets.notebook.widget import VideoChat, turn_to_dict

    conversation = Conversation(store=None, media_dir=None, base_url=base_url, api_key="bench")
    chat = VideoChat(conversation=conversation)
    comm = FakeComm()
    chat.comm = comm
    snapshots = 0

    def count(_turn) -> None:
        nonlocal snapshots
        snapshots += 1

    conversation.subscribe(count)
    started = time.perf_counter()
    turn = await chat.send("a thousand chunks a second")
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0.3)  # any flush still due
    messages = [data for stamp, data in comm.sent if stamp >= started]
    updates = [m["state"] for m in messages if m.get("method") == "update"]
    turn_updates = [u["turn_data"] for u in updates if "turn_data" in u]
    final = turn_updates[-1][-1] if turn_updates else {}
    exact = (
        final == turn_to_dict(turn)
        and final.get("status") == "completed"
        and final.get("video_url") == VIDEO_URL
        and final.get("task_id") == TASK_ID
        and final.get("progress") == 100
        and turn.generation.text == expected_text
    )
    chat.close()
    await conversation.client.aclose()
    return {"elapsed": elapsed, "messages": len(messages), "updates": len(turn_updates),
            "snapshots": snapshots, "exact": exact}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 1 s stream instead of 4 s")
    args = parser.parse_args(argv)
    rate = 1000
    chunks = rate * (1 if args.quick else 4)
    expected = "".join(deltas(chunks))
    server, base_url = start_server(chunks, 10, rate)
    try:
        paced = base_url.removesuffix("/v1") + "/paced/v1"
        result = asyncio.run(run(paced, expected))
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    seconds = result["elapsed"]
    per_second = result["messages"] / seconds
    emit("widget.stream_rate", (chunks + 3) / seconds, "chunks/s", chunks=chunks)
    emit("widget.snapshots_per_s", result["snapshots"] / seconds, "Turn updates/s")
    emit("widget.comm_messages_per_s", per_second, "messages/s", target="≤ 10/s",
         met=per_second <= 10, messages=result["messages"], seconds=seconds)
    emit("widget.final_state_exact", result["exact"], "bool", target="exact", met=result["exact"])
    table(f"Front-end traffic: one VideoChat, a {chunks}-chunk answer at ~{rate} chunks/s")
    return 0 if result["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
