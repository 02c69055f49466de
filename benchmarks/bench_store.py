"""Figure: the notebook store's write cost is flat per turn. Write time of one turn and store
bytes per turn when the conversation already has 10, 100 and 1,000 turns (a remix chain, the
worst case: every request carries the whole history).

Each turn does what a paid turn does to the store: accepted (counter, pending task, the turn) and
finished (the turn with its answer, the cache entry, pending removed): two state changes, each one
fsynced journal line. Targets: write time per turn flat (max/min ≤ 1.5 over the sizes) and bytes
per turn (snapshot + journal) flat (max/min ≤ 1.5). The write time is the median wall time of the
timed turns (fsync included); the journal is folded into the snapshot when it outgrows it, and
that rewrite is reported on its own with what it adds per turn when spread over the turns between
two rewrites (it grows with the store, the number of turns between rewrites grows with it too).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import emit, table

from kki_widgets.conversation.session import Turn
from kki_widgets.protocol.transcript import Generation
from kki_widgets.store.notebook_store import NotebookStore

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


def files_size(store: NotebookStore) -> int:
    return sum(p.stat().st_size for p in (store.path, store.path.with_suffix(".journal")) if p.exists())


def build(size: int, folder: Path, timed: int) -> tuple[NotebookStore, list[Turn]]:
    """A store with `size - timed` turns, written in one go (only the last turns are timed)."""
    store = NotebookStore(folder / ".kki" / f"film-{size}.json")
    turns: list[Turn] = []
    with store.batch():
        for n in range(size - timed):
            turns.append(make_turn(n, turns[-1] if turns else None))
            paid_turn(store, turns[-1])
    return store, turns


def one_more_turn(store: NotebookStore, turns: list[Turn]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one more paid turn's writes."""
    turns.append(make_turn(len(turns), turns[-1] if turns else None))
    wall, cpu = time.perf_counter(), time.process_time()
    paid_turn(store, turns[-1])
    return time.perf_counter() - wall, time.process_time() - cpu


def compaction(store: NotebookStore, timed: int) -> tuple[float, float]:
    """(seconds of one compaction, those seconds spread over the turns between two of them)."""
    journal = store.path.with_suffix(".journal")
    journal_per_turn = journal.stat().st_size / timed
    started = time.perf_counter()
    store.compact()
    seconds = time.perf_counter() - started
    # A rewrite comes once the journal outgrows the snapshot: after this many turns.
    between = max(store.path.stat().st_size, store.compact_min_bytes) / journal_per_turn
    return seconds, seconds / between


def measure(sizes: list[int], folder: Path, timed: int) -> dict[int, dict[str, float]]:
    """Per size: bytes per turn (snapshot + journal), median wall and CPU time of one more turn,
    and the compaction. The sizes take turns, one turn each, so that the other work on a shared
    machine (its disk above all: every write is fsynced) lands on every size alike."""
    stores = {size: build(size, folder, min(timed, size)) for size in sizes}
    os.sync()
    samples: dict[int, list[tuple[float, float]]] = {size: [] for size in sizes}
    for round_ in range(timed):
        for size in sizes:
            if round_ < min(timed, size):
                samples[size].append(one_more_turn(*stores[size]))
    results = {}
    for size, (store, _) in stores.items():
        assert len(store.load_conversation("film")["turns"]) == size
        files = [p for p in (store.path, store.path.with_suffix(".journal")) if p.exists()]
        found = {"bytes_per_turn": sum(p.stat().st_size for p in files) / size,
                 "write": statistics.median(w for w, _ in samples[size]),
                 "cpu": statistics.median(c for _, c in samples[size])}
        found["compact"], found["compact_per_turn"] = compaction(store, min(timed, size))
        found["snapshot_bytes_per_turn"] = store.path.stat().st_size / size
        results[size] = found
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10, 30 and 100 turns")
    args = parser.parse_args(argv)
    sizes = [10, 30, 100] if args.quick else [10, 100, 1_000]
    with tempfile.TemporaryDirectory() as folder:
        results = measure(sizes, Path(folder), timed=20)
    for size, found in results.items():
        emit(f"store.bytes_per_turn@{size}", found["bytes_per_turn"], "bytes/turn", turns=size,
             compacted=found["snapshot_bytes_per_turn"])
        emit(f"store.write_ms_per_turn@{size}", found["write"] * 1000, "ms/turn", turns=size,
             cpu_ms=found["cpu"] * 1000)
        emit(f"store.compact_ms@{size}", found["compact"] * 1000, "ms", turns=size,
             amortized_ms_per_turn=found["compact_per_turn"] * 1000)
    ratios = {}
    for figure, key in (("bytes_per_turn", "bytes_per_turn"), ("compacted_bytes_per_turn", "snapshot_bytes_per_turn"),
                        ("write_time", "write"), ("write_cpu", "cpu")):
        values = [found[key] for found in results.values()]
        ratios[figure] = max(values) / min(values)
    # Live bytes (snapshot + journal) carry no target: a journal line holds a turn twice
    # (accepted, then finished) and the journal may grow to the snapshot's size before it is
    # folded in, so it moves within 1x..2x of the compacted store, which is what is kept.
    emit("store.bytes_per_turn_ratio", ratios["bytes_per_turn"], "max/min", sizes=f"{sizes[0]}..{sizes[-1]}")
    for figure in ("compacted_bytes_per_turn", "write_time", "write_cpu"):
        emit(f"store.{figure}_ratio", ratios[figure], "max/min", target="≤ 1.5", met=ratios[figure] <= 1.5,
             sizes=f"{sizes[0]}..{sizes[-1]}")
    table("Notebook store: size and write time per turn")
    return 0


if __name__ == "__main__":
    sys.exit(main())
