"""`benchmarks/run_all.py --quick` runs to the end and writes valid JSON.

Figures and targets are printed by the benchmarks, never asserted here: timings on a shared
machine are not a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.notebook  # its notebook benchmark runs two notebooks with nbclient
@pytest.mark.timeout(300)
def test_run_all_quick_writes_figures(tmp_path):
    output = tmp_path / "quick.json"
    process = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick", "--output", str(output)],
        capture_output=True, text=True, timeout=280, cwd=ROOT,
    )
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
    benchmarks = {record["benchmark"] for record in figures}
    assert benchmarks >= {"stream", "linearity", "loop_lag", "widget", "cold_start", "notebook"}
