"""Figure: the notebook store grows linearly. Store bytes per turn and the write time of one turn
when the conversation already has 10, 100 and 1,000 turns (a remix chain, the worst case: every
request carries the whole history).

Each turn does what a paid turn does to the store: accepted (counter, pending task, the turn) and
finished (the turn with its answer, the cache entry, pending removed): two atomic writes.
Target: bytes per turn flat (max/min ≤ 1.5 over the sizes). The write time is wall time (it
includes fsync) and is reported, with its own ratio, to show how it scales.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import emit, table

from kki_widgets.session import Turn
from kki_widgets.store import NotebookStore
from kki_widgets.transcript import Generation

ANSWER = """> task: {task}
> progress: 0% … 35% … 70% … 100%

```json
{{"task_id": "{task}", "status": "completed", "sid": "s_{task}",
  "spec": {{"model": "sora-2", "orientation": "portrait", "duration": 10}}}}
```

Your video is ready.

[▶ Watch online](https://cdn.example.com/videos/{task}/video.mp4)
[⬇ Download](https://cdn.example.com/videos/{task}/video.mp4?download=1)
![thumbnail](https://cdn.example.com/videos/{task}/thumb.webp)
[raw data](https://relay.example.com/v1/tasks/{task}/raw)
"""


def make_turn(n: int, previous: Turn | None) -> Turn:
    prompt = f"shot {n}: the camera drifts over a misty harbour at dawn, gulls, slow dolly"
    history = [*previous.messages, previous.assistant_message] if previous else []
    task = f"task_{n:06d}"
    generation = Generation.from_dict({
        "task_id": task, "status": "completed", "progress": 100, "sid": f"s_{task}",
        "video_url": f"https://cdn.example.com/videos/{task}/video.mp4",
        "thumbnail_url": f"https://cdn.example.com/videos/{task}/thumb.webp",
        "raw_url": f"https://relay.example.com/v1/tasks/{task}/raw",
        "text": ANSWER.format(task=task),
    })
    return Turn(index=n, prompt=prompt, options={"model": "sora-2"},
                parent=previous.index if previous else None, generation=generation,
                status="completed", messages=[*history, {"role": "user", "content": prompt}],
                cache_key=f"{n:064x}", path=f"kki_media/task_{n:06d}-0123456789abcdef.mp4")


def record(turn: Turn) -> dict:
    data = turn.to_dict()
    del data["index"]
    data["id"] = f"t{turn.index}"
    data["parent"] = f"t{turn.parent}" if turn.parent is not None else None
    return data


def paid_turn(store: NotebookStore, turn: Turn) -> None:
    """The store traffic of one paid turn, as `Conversation` does it."""
    with store.batch():
        store.bump("paid_requests")
        store.add_pending({"task_id": turn.task_id, "conversation": "film", "turn": turn.index})
        store.save_turns("film", [record(turn)], head=f"t{turn.index}")
    with store.batch():
        store.save_turns("film", [record(turn)], head=f"t{turn.index}")
        store.cache_put(turn.cache_key, {"generation": turn.generation.to_dict(),
                                         "assistant_message": turn.generation.text,
                                         "paths": {"video": turn.path, "thumbnail": None}})
        store.remove_pending(turn.task_id)


def measure(size: int, folder: Path, timed: int) -> tuple[float, float]:
    """(bytes per turn at `size` turns, median seconds for one more turn's writes)."""
    store = NotebookStore(folder / ".kki" / f"film-{size}.json")
    turns: list[Turn] = []
    with store.batch():  # build the first turns in one write: only the last ones are timed
        for n in range(size - timed):
            turns.append(make_turn(n, turns[-1] if turns else None))
            paid_turn(store, turns[-1])
    times = []
    for n in range(size - timed, size):
        turns.append(make_turn(n, turns[-1] if turns else None))
        started = time.perf_counter()
        paid_turn(store, turns[-1])
        times.append(time.perf_counter() - started)
    assert len(store.load_conversation("film")["turns"]) == size
    return store.path.stat().st_size / size, statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10, 30 and 100 turns")
    args = parser.parse_args(argv)
    sizes = [10, 30, 100] if args.quick else [10, 100, 1_000]
    per_turn: dict[int, float] = {}
    write: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            per_turn[size], write[size] = measure(size, Path(folder), timed=min(10, size))
            emit(f"store.bytes_per_turn@{size}", per_turn[size], "bytes/turn", turns=size)
            emit(f"store.write_ms_per_turn@{size}", write[size] * 1000, "ms/turn", turns=size)
    bytes_ratio = max(per_turn.values()) / min(per_turn.values())
    emit("store.bytes_per_turn_ratio", bytes_ratio, "max/min", target="≤ 1.5", met=bytes_ratio <= 1.5)
    emit("store.write_time_ratio", max(write.values()) / min(write.values()), "max/min",
         sizes=f"{sizes[0]}..{sizes[-1]}")
    table("Notebook store: size and write time per turn")
    return 0


if __name__ == "__main__":
    sys.exit(main())
