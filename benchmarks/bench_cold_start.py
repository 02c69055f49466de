"""Figure 5: cold start. `import kki_widgets` and `%load_ext kki_widgets` (in an IPython shell),
each in a fresh interpreter, as a ratio to `import anywidget` alone. Target ≤ 1.3×.

Each variant runs in a new subprocess (`python -c`), round-robin, median of N; the time is
measured inside the child (perf_counter around the statement), so interpreter start-up is left
out and the ratio compares the imports themselves; the whole process (start-up included) is
reported too. The IPython shell is created before the clock
starts: a kernel already has one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from _common import ROOT, emit, median, table

SNIPPETS = {
    "anywidget": ("pass", "import anywidget"),
    "kki_widgets": ("pass", "import kki_widgets"),
    "load_ext": (
        "from IPython.testing.globalipapp import start_ipython; ip = start_ipython()",
        "ip.run_line_magic('load_ext', 'kki_widgets')",
    ),
    # First real use: the widget class (anywidget, ipywidgets, traitlets, the session). No target:
    # it is what displaying a VideoChat costs anyway.
    "VideoChat": ("pass", "from kki_widgets import VideoChat"),
}

CHILD = """
import time, json, sys
{setup}
started = time.perf_counter()
{statement}
elapsed = time.perf_counter() - started
print(json.dumps({{"seconds": elapsed, "modules": len(sys.modules)}}))
"""


def measure(name: str) -> dict:
    setup, statement = SNIPPETS[name]
    started = time.perf_counter()
    output = subprocess.run(
        [sys.executable, "-c", CHILD.format(setup=setup, statement=statement)],
        capture_output=True, text=True, cwd=ROOT, check=True,
    ).stdout
    wall = time.perf_counter() - started
    return {**json.loads(output.strip().splitlines()[-1]), "process": wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions instead of 7")
    parser.add_argument("--reps", type=int, default=None)
    args = parser.parse_args(argv)
    reps = args.reps or (3 if args.quick else 7)
    for name in SNIPPETS:  # warm the OS file cache
        measure(name)
    seconds: dict[str, list[float]] = {name: [] for name in SNIPPETS}
    process: dict[str, list[float]] = {name: [] for name in SNIPPETS}
    modules: dict[str, int] = {}
    for _ in range(reps):
        for name in SNIPPETS:
            result = measure(name)
            seconds[name].append(result["seconds"])
            process[name].append(result["process"])
            modules[name] = result["modules"]
    base = median(seconds["anywidget"])
    for name in SNIPPETS:
        emit(f"cold_start.{name}", median(seconds[name]) * 1e3, "ms", reps=reps,
             modules_loaded=modules[name])
    ratio = median(seconds["kki_widgets"]) / base
    emit("cold_start.import_ratio", ratio, "× import anywidget", target="≤ 1.3×", met=ratio <= 1.3)
    ext = median(seconds["load_ext"]) / base
    emit("cold_start.load_ext_ratio", ext, "× import anywidget", target="≤ 1.3×", met=ext <= 1.3)
    # The whole `python -c "import …"` process (interpreter start-up included).
    for name in ("anywidget", "kki_widgets"):
        emit(f"cold_start.process.{name}", median(process[name]) * 1e3, "ms")
    whole = median(process["kki_widgets"]) / median(process["anywidget"])
    emit("cold_start.process_ratio", whole, "× python -c 'import anywidget'", target="≤ 1.3×",
         met=whole <= 1.3)
    table(f"Cold start: fresh interpreter each, median of {reps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
