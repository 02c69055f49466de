"""Shared helpers for the benchmarks: figures as JSON lines, medians, the machine, a fast server.

Every benchmark prints one JSON line per figure (``{"figure": ..., "value": ..., "unit": ...}``)
and a readable table; `run_all.py` collects the JSON lines. Figures are never asserted: targets
are printed next to them with ``met: true/false``.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FIGURES: list[dict] = []


def emit(figure: str, value, unit: str, *, target: str | None = None, met: bool | None = None,
         **extra) -> dict:
    """Print one figure as a JSON line (and remember it for the table)."""
    record = {"figure": figure, "value": _round(value), "unit": unit}
    if target is not None:
        record["target"] = target
        record["met"] = met
    record.update({key: _round(value) for key, value in extra.items()})
    FIGURES.append(record)
    print(json.dumps(record, ensure_ascii=False), flush=True)
    return record


def _round(value):
    if isinstance(value, float):
        if value != value:  # NaN
            return None
        return float(f"{value:.4g}") if abs(value) < 1e4 else round(value, 1)
    return value


def table(title: str, records: list[dict] | None = None) -> None:
    """A readable table of the figures printed so far (or of `records`)."""
    rows = records if records is not None else FIGURES
    print(f"\n{title}")
    if not rows:
        return
    width = max(len(r["figure"]) for r in rows)
    for r in rows:
        target = ""
        if "target" in r:
            target = f"  target {r['target']}: {'met' if r['met'] else 'MISSED'}"
        print(f"  {r['figure']:<{width}}  {r['value']!s:>12} {r['unit']}{target}")


def median(values) -> float:
    return statistics.median(values)


def percentile(values, fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def machine() -> dict:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": f"{platform.system()} {platform.release()}",
    }


# -- a realistic relay answer, split into many small chat-completion chunks ------------------

TASK_ID = "task_01k7dzptgwf2z87wj2c3t36qk0"
VIDEO_URL = "https://filesystem.site/cdn/20251013/5781a601c5ce5e216e914fef119c99.mp4"
THUMB_URL = "https://filesystem.site/cdn/20251013/929d094fcd1844c3ee38be9476fd03.webp"
SID = "s_68ec8accd80c8191ae1fc957af78caaa"

_HEAD = [
    "```", "json", "\n{\n", '  "prompt": ', '"Generate a ', "high-definition ", "video of ",
    "cattle and ", 'horses dancing",\n', '  "orientation": ', '"portrait"\n', "}\n", "```",
    "\n\n", "> ID: ", "`task_", TASK_ID[5:], "`\n", ">[Data Preview]",
    f"(https://asyncdata.net/web/{TASK_ID})", " | ", "[Raw Data]",
    f"(https://asyncdata.net/source/{TASK_ID})", "\n", "> Queuing",
]
_TAIL = [
    "\n\n> Generation Complete ✅\n", "> sid: ", SID, "\n\n",
    f"![{THUMB_URL}]", f"({THUMB_URL})", "\n", "[Play Online▶️]", f"({VIDEO_URL})",
]
_PHRASES = ["\n> Generating", ".", "\n\n>🏃 Progress ", "..", " still ", "working", " on it"]


def deltas(count: int, seed: int = 7) -> list[str]:
    """`count` content deltas like the seed stream: dots, `44..`, short phrases, then the end
    (task ID, links, `Generation Complete`, sid, webp, mp4) so the answer is a completed one."""
    rng = random.Random(seed)
    body_count = max(0, count - len(_HEAD) - len(_TAIL))
    body: list[str] = []
    queued = body_count // 5
    body += ["."] * queued
    body.append("\n> Generating")
    progress = 0
    while len(body) < body_count:
        roll = rng.random()
        if roll < 0.55:
            body.append(".")
        elif roll < 0.8 and progress < 99:
            progress = min(99, progress + rng.choice((0, 0, 1)))
            body.append(f"{progress}..")
        elif roll < 0.9:
            body.append(rng.choice(_PHRASES))
        else:
            body.append("\n>🏃 Progress ")
    return (_HEAD + body[:body_count] + _TAIL)[:count] if count < len(_HEAD) + len(_TAIL) else (
        _HEAD + body + _TAIL
    )


def sse_body(parts: list[str], pretty: bool = False) -> bytes:
    """The SSE answer an OpenAI-compatible relay sends for these deltas (compact JSON lines)."""
    head = ('{"id":"chatcmpl-89C77NMqv7oh6ajWBZful0xBNsJN1","object":"chat.completion.chunk",'
            '"created":1760338775,"model":"sora-2","choices":[{"index":0,"delta":')
    out = [f'data: {head}{{"role":"assistant","content":""}},"finish_reason":null}}]}}\n\n']
    for part in parts:
        content = json.dumps({"content": part}, ensure_ascii=False)
        out.append(f'data: {head}{content},"finish_reason":null}}]}}\n\n')
    out.append(f'data: {head}{{}},"finish_reason":"stop"}}]}}\n\n')
    out.append("data: [DONE]\n\n")
    return "".join(out).encode()


def http_response(body: bytes) -> bytes:
    """A Connection: close HTTP/1.1 answer (the body ends with the connection)."""
    head = (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/event-stream; charset=utf-8\r\n"
        "Cache-Control: no-cache\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class SimulatorProcess:
    """The relay simulator in its own process (so its work does not share our GIL).

    >>> with SimulatorProcess(queue_seconds=0.2) as base_url: ...
    """

    def __init__(self, media_dir: str | None = None, **timing: float) -> None:
        import subprocess
        import tempfile

        self._tmp = None if media_dir else tempfile.TemporaryDirectory(prefix="kki-bench-")
        command = [sys.executable, "-m", "kki_widgets.simulator", "--seed", "1",
                   "--media-dir", media_dir or self._tmp.name]
        for name, value in timing.items():
            command += [f"--{name.replace('_', '-')}", str(value)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        text=True, cwd=ROOT)
        self.base_url = self.process.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            self.stop()
            raise RuntimeError("the simulator did not start")

    def stop(self) -> None:
        import signal
        import subprocess

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> str:
        return self.base_url

    def __exit__(self, *exc) -> None:
        self.stop()
