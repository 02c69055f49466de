"""Run every benchmark, side by side on this machine, and collect the figures.

    python benchmarks/run_all.py [--quick] [--output PATH] [--only NAME,...]
    python benchmarks/run_all.py --markdown [PATH]   # README table of a results file, no run

Each benchmark runs in its own interpreter (imports, event loops and memory do not leak from one
to the next) and prints one JSON line per figure plus a readable table; this script gathers the
JSON lines into `benchmarks/results/latest.json` (`--quick`: `benchmarks/results/quick.json`)
with the machine's description, and prints a summary of the targets. Targets are reported, never
asserted: the exit status is non-zero only when a benchmark itself failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import machine, table  # noqa: E402

# (name, script, extra arguments for a full run, extra arguments for --quick, timeout in s)
BENCHMARKS = [
    ("stream", "bench_stream.py", [], ["--quick"], 240),
    ("linearity", "bench_linearity.py", [], ["--quick"], 120),
    ("loop_lag", "bench_loop_lag.py", [], ["--quick"], 300),
    ("widget", "bench_widget.py", [], ["--quick"], 60),
    ("cold_start", "bench_cold_start.py", [], ["--quick"], 120),
    ("notebook", "bench_notebook.py", [], ["--quick"], 240),
    ("store", "bench_store.py", [], ["--quick"], 300),
    ("film", "bench_film.py", [], ["--quick"], 180),
    ("budget", "bench_budget.py", [], ["--quick"], 60),
    ("simulator_capacity", "simulator_capacity.py", [], ["--streams", "20", "--distinct", "5"], 120),
    ("hostile", "bench_hostile.py", [], ["--quick"], 300),
]


def capacity_figures(record: dict) -> list[dict]:
    """simulator_capacity.py prints one JSON object; turn it into figures."""
    streams = record["streams"]
    return [
        {"figure": "simulator.streams_ok", "value": record["streams_ok"], "unit": f"of {streams}",
         "errors": record.get("errors", [])},
        {"figure": "simulator.chunks_per_s", "value": record["chunks_per_second"],
         "unit": "chunks/s", "streams": streams},
        {"figure": "simulator.ttfb_p50", "value": record["ttfb_p50_ms"], "unit": "ms"},
        {"figure": "simulator.ttfb_p99", "value": record["ttfb_p99_ms"], "unit": "ms"},
        {"figure": "simulator.stream_p50", "value": record["stream_p50_seconds"], "unit": "s"},
        {"figure": "simulator.ffmpeg_renders", "value": record["ffmpeg_renders"],
         "unit": f"for {record['distinct_prompts']} distinct prompts"},
    ]


def run(name: str, script: str, arguments: list[str], timeout: float) -> tuple[list[dict], str | None]:
    path = HERE / script
    if not path.exists():
        return [], f"{script} not found"
    started = time.perf_counter()
    try:
        process = subprocess.run([sys.executable, str(path), *arguments], capture_output=True,
                                 text=True, timeout=timeout, cwd=HERE.parent)
    except subprocess.TimeoutExpired:
        return [], f"timed out after {timeout:.0f} s"
    elapsed = time.perf_counter() - started
    figures: list[dict] = []
    for line in process.stdout.splitlines():
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if "figure" in record:
                figures.append(record)
            elif record.get("benchmark") == "simulator_capacity":
                figures.extend(capacity_figures(record))
        else:
            print(line)
    print(f"  ({name}: {elapsed:.1f} s)", flush=True)
    error = None
    if process.returncode != 0:
        tail = process.stderr.strip().splitlines()[-5:]
        error = f"exit status {process.returncode}: " + " | ".join(tail)
        print(f"  {name} FAILED: {error}", file=sys.stderr)
    return figures, error


# The figures the README table shows, in order: (figure, label).
HEADLINE = [
    ("stream.ours.chunks_per_s", "stream: our client (SSE + transcript), 100k chunks"),
    ("stream.ours.cpu_per_chunk", "stream: our client CPU per chunk"),
    ("stream.ours-sync.chunks_per_s", "stream: our sync client (RelayClient), 100k chunks"),
    ("stream.sync_vs_async_cpu", "sync / async client, CPU per chunk"),
    ("stream.openai-sync.chunks_per_s", "stream: openai SDK (sync)"),
    ("stream.openai-async.chunks_per_s", "stream: openai SDK (async)"),
    ("stream.httpx-json.chunks_per_s", "stream: httpx lines + json.loads"),
    ("stream.httpx-bytes.chunks_per_s", "stream: httpx raw bytes (floor)"),
    ("stream.ours_vs_openai-sync", "ours / openai sync"),
    ("stream.ours_vs_openai-async", "ours / openai async"),
    ("stream.ours_slowdown_vs_httpx_bytes", "httpx bytes floor / ours"),
    ("stream.ours_slowdown_vs_httpx_json", "httpx + json / ours"),
    ("stream.ours.peak_memory", "stream: our client peak memory (10k chunks)"),
    ("linearity.transcript_feed.1000000", "Transcript.feed, 1M deltas"),
    ("linearity.transcript_feed.max_over_min", "Transcript.feed cost 10k..1M, max/min"),
    ("linearity.sse_decode.max_over_min", "SSE decode cost 10k..1M, max/min"),
    ("loop_lag.under_load.p50", "event-loop lag p50, 100 generations"),
    ("loop_lag.under_load.p99", "event-loop lag p99, 100 generations"),
    ("widget.comm_messages_per_s", "VideoChat comm messages at 1000 chunks/s"),
    ("widget.final_state_exact", "VideoChat final state exact"),
    ("cold_start.kki_widgets", "import kki_widgets"),
    ("cold_start.anywidget", "import anywidget"),
    ("cold_start.import_ratio", "import kki_widgets / import anywidget"),
    ("cold_start.load_ext_ratio", "%load_ext kki_widgets / import anywidget"),
    ("cold_start.VideoChat", "from kki_widgets import VideoChat (first use)"),
    ("notebook.sora.ipynb_size", "notebook, 20 %%sora cells"),
    ("notebook.videochat.ipynb_size", "notebook, one VideoChat with 20 turns"),
    ("notebook.sora.store_size", "store files (.kki/*.json + *.journal), 20 turns"),
    ("store.write_ms_per_turn@10", "store: one paid turn's writes, 10 turns stored"),
    ("store.write_ms_per_turn@1000", "store: one paid turn's writes, 1,000 turns stored"),
    ("store.write_time_ratio", "store write time per turn 10..1,000 turns, max/min"),
    ("store.compacted_bytes_per_turn_ratio", "store bytes per turn 10..1,000 turns, max/min"),
    ("film.last_frame_cpu_ms", "exact last frame of a 10 s 720p clip (CPU)"),
    ("budget.reserve_settle", "budget reserve + settle"),
    ("simulator.chunks_per_s", "simulator, 100 concurrent streams"),
    ("hostile.junk_stream.data_never_ends.peak_rss", "client peak RSS, 150 MB junk stream"),
    ("hostile.long_line.65536B_reads", "SSE decode of one 200 MB line"),
    ("hostile.raw_data_loop_stall.900KB_declared", "loop stall, 900 KB raw-data answers"),
]


def markdown(path: Path) -> str:
    result = json.loads(path.read_text())
    about = result["machine"]
    figures = {record["figure"]: record for record in result["figures"]}
    lines = [
        f"Machine: {about['nproc']} cores ({about['cpu']}), Python {about['python']}, "
        f"{about['system']}; shared and noisy. Full run: {result['duration_seconds']:.0f} s, "
        f"{result['finished'][:10]}.",
        "",
        "| figure | value | target |",
        "| --- | --- | --- |",
    ]
    for name, label in HEADLINE:
        record = figures.get(name)
        if record is None:
            continue
        value = record["value"]
        if isinstance(value, float):
            value = f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        target = ""
        if "target" in record:
            target = f"{record['target']} {'✅' if record['met'] else '❌ missed'}"
        lines.append(f"| {label} | {value} {record['unit']} | {target} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (well under a minute)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--only", default=None, help="comma-separated benchmark names")
    parser.add_argument("--markdown", nargs="?", type=Path, const=HERE / "results" / "latest.json",
                        default=None, help="print the README table of a results file and exit")
    args = parser.parse_args(argv)
    if args.markdown is not None:
        print(markdown(args.markdown))
        return 0
    output = args.output or HERE / "results" / ("quick.json" if args.quick else "latest.json")
    wanted = set(args.only.split(",")) if args.only else None
    about = machine()
    print(f"Machine: {about['nproc']} cores, {about['cpu']}, Python {about['python']}", flush=True)
    started = time.perf_counter()
    figures: list[dict] = []
    failures: dict[str, str] = {}
    for name, script, full, quick, timeout in BENCHMARKS:
        if wanted and name not in wanted:
            continue
        found, error = run(name, script, quick if args.quick else full, timeout)
        for record in found:
            record.setdefault("benchmark", name)
        figures.extend(found)
        if error:
            failures[name] = error
    duration = time.perf_counter() - started
    result = {
        "machine": about,
        "quick": args.quick,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_seconds": round(duration, 1),
        "figures": figures,
        "failures": failures,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    targets = [record for record in figures if "target" in record]
    table("Targets", targets)
    met = sum(1 for record in targets if record["met"])
    print(f"\n{met} of {len(targets)} targets met; {len(figures)} figures in {duration:.0f} s "
          f"written to {output}")
    for name, error in failures.items():
        print(f"FAILED {name}: {error}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
