"""Issue 13's size rule: no function over 80 lines in the widget's JavaScript, 60 in Python.

Checked with tools/function_lengths.py (a scanner, since the project ships no JS parser); the
scanner itself is checked here on a sample it must read right.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("function_lengths", ROOT / "tools" / "function_lengths.py")
assert _spec and _spec.loader
lengths = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("function_lengths", lengths)  # dataclasses look their module up
_spec.loader.exec_module(lengths)

SAMPLE = """
const re = /[{}]/g;  // braces in a regex literal are not blocks
function outer(a) {
  const s = "}{";
  if (a) {
    return `${a}}`;
  }
  const inner = (x) => {
    return x / 2;  // a division, not a regex
  };
  return inner(a);
}
class View {
  constructor() {
    this.n = 1;
  }
  update(turn) {
    for (const t of turn) {
      this.n += t;
    }
  }
}
"""


def test_the_scanner_finds_functions_and_their_spans(tmp_path):
    sample = tmp_path / "sample.js"
    sample.write_text(SAMPLE, encoding="utf-8")
    found = {(f.name, f.lines) for f in lengths.js_functions(sample)}
    assert found == {("function outer", 10), ("inner", 3), ("View.constructor", 3), ("View.update", 5)}


def test_no_widget_function_is_over_80_lines():
    too_long = [f for f in lengths.js_functions(ROOT / "js" / "widget.js") if f.lines > 80]
    assert too_long == []


def test_no_package_function_is_over_60_lines():
    too_long = [
        (f.name, f.lines)
        for path in sorted((ROOT / "kki_widgets").rglob("*.py"))
        for f in lengths.py_functions(path)
        if f.lines > 60
    ]
    assert too_long == []
