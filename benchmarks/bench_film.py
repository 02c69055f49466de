"""Films: the cost of continuity and of the cut, with the ffmpeg of imageio-ffmpeg.

- ``film.last_frame_cpu_ms``: the exact last frame of a 10 s 720x1280 clip (decoding from a second
  before the end), against ``film.last_frame_full_decode_cpu_ms`` (decoding the whole clip, the
  naive way to the same frame). Target: under 1 s, so continuing from a frame adds no wait
  worth noticing next to a generation.
- ``film.cut_cpu_seconds`` for 4 clips of 2 s (320x568, one 568x320, mixed frame rates) with
  crossfades and captions, against ``stitch`` of the same clips, and the cut's speed in seconds
  of film per second of work.

    python benchmarks/bench_film.py [--quick]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from _common import emit, median, table

from kki_widgets.media.downloads import ffmpeg_exe, probe, stitch
from kki_widgets.media.film import last_frame, make_film


def clip(path: Path, size: str, rate: int, seconds: float, audio: bool = False) -> Path:
    command = [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s={size}:r={rate}:d={seconds}"]
    if audio:
        command += ["-f", "lavfi", "-i", f"sine=d={seconds}", "-c:a", "aac", "-shortest"]
    command += ["-c:v", "libx264", "-preset", "veryfast", "-g", "250", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(command, check=True)
    return path


def timed(action, repeat: int) -> tuple[float, float]:
    """Median wall time and median CPU time of ffmpeg (the children): on a shared machine the
    wall time mostly measures the neighbours, the CPU time what the work costs."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        action()
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return median(walls), median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    repeat = 1 if quick else 3
    size, seconds = ("360x640", 4) if quick else ("720x1280", 10)
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        long = clip(folder / "long.mp4", size, 30, seconds)

        def sseof() -> None:
            last_frame(long, folder / f"f{time.perf_counter_ns()}.png")

        def full() -> None:
            # The same per-frame overwrite, from the first frame instead of a second before the end.
            subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(long), "-update", "1",
                            "-c:v", "bmp", str(folder / "full.bmp")], check=True)  # fmt: skip

        wall, cpu = timed(sseof, repeat)
        emit("film.last_frame_cpu_ms", cpu * 1000, "ms", target="< 1000 ms", met=cpu < 1.0,
             wall_ms=wall * 1000, clip=f"{seconds} s {size} 30 fps H.264, keyframes 8.3 s apart")  # fmt: skip
        wall, cpu = timed(full, repeat)
        emit("film.last_frame_full_decode_cpu_ms", cpu * 1000, "ms", wall_ms=wall * 1000)

        shots = [clip(folder / "a.mp4", "320x568", 24, 2), clip(folder / "b.mp4", "568x320", 30, 2, audio=True),
                 clip(folder / "c.mp4", "320x568", 25, 2), clip(folder / "d.mp4", "320x568", 24, 2)]  # fmt: skip
        captions = ["one", "two", "three", "four"]
        wall, cpu = timed(lambda: make_film(shots, folder / "film.mp4", captions=captions), repeat)
        length = probe(folder / "film.mp4").duration
        emit("film.cut_cpu_seconds", cpu, "s", wall_seconds=wall, shots=4, film_seconds=length)
        emit("film.cut_speed", length / cpu, "s of film per CPU s")
        wall, cpu = timed(lambda: stitch(shots, folder / "joined.mp4"), repeat)
        emit("film.stitch_cpu_seconds", cpu, "s", wall_seconds=wall)
    table("films")


if __name__ == "__main__":
    main()
