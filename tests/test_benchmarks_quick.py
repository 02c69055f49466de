"""`benchmarks/run_all.py --quick` runs every benchmark to the end and writes valid JSON.

Figures and targets are printed by the benchmarks, never asserted here: timings on a shared
machine are not a test. One test per benchmark (`--only NAME`), so they spread over the workers
of `make test`; `make test-fast` leaves them out (marker `benchmark`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from run_all import BENCHMARKS  # noqa: E402

sys.path.remove(str(ROOT / "benchmarks"))

NAMES = [entry[0] for entry in BENCHMARKS]
# bench_notebook runs two notebooks with nbclient: with the notebook tests.
MARKS = {"notebook": [pytest.mark.notebook]}


@pytest.mark.slow
@pytest.mark.benchmark
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", [pytest.param(name, marks=MARKS.get(name, [])) for name in NAMES])
def test_run_all_quick_writes_figures(tmp_path, name):
    output = tmp_path / "quick.json"
    process = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick", "--only", name,
         "--output", str(output)],
        capture_output=True, text=True, timeout=280, cwd=ROOT,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-2000:]
    result = json.loads(output.read_text())
    assert result["quick"] is True
    assert result["failures"] == {}
    assert {"nproc", "cpu", "python"} <= set(result["machine"])
    figures = result["figures"]
    assert figures
    for record in figures:
        assert {"figure", "value", "unit", "benchmark"} <= set(record), record
        if "target" in record:
            assert isinstance(record["met"], bool), record
    assert {record["benchmark"] for record in figures} == {name}
