"""Function lengths of the package's JavaScript and Python, longest first.

    python tools/function_lengths.py [--limit-js 80] [--limit-py 60] [--top 10] [files...]

Issue 13's rule is "no function over 60 lines in Python or 80 in JS"; this prints every function
over the limit (or the `--top` longest) and exits 1 when any is over. A function's length is the
span from its header line to its closing line, nested functions included (a 300-line `render`
made of small closures is still a 300-line function to read).

Python uses `ast`. JavaScript has no parser in the standard library and the project ships no
node_modules, so `js_functions` is a small scanner: it skips strings, template literals, comments
and regex literals, matches braces, and calls a `{` a function body when it follows `=>`, or a
`(...)` preceded by `function [name]`, or by a method name in a class or object literal
(`update(turn) {`, `constructor() {`, `get x() {`). Control statements (`if (…) {`) are excluded
by keyword. Enough for the plain ESM this project writes; not a general JS parser.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTROL = {"if", "for", "while", "switch", "catch", "with", "return", "typeof", "await"}
# After these tokens a `/` starts a regex literal, not a division.
REGEX_BEFORE = set("(,=:[!&|?{};+-*%<>~^") | {"", "return", "typeof", "case", "in", "of"}


@dataclass(frozen=True)
class Function:
    path: str
    name: str
    start: int
    end: int

    @property
    def lines(self) -> int:
        return self.end - self.start + 1


def _skip_string(src: str, i: int) -> int:
    """Index after the string or template literal starting at `src[i]` (templates: no nesting of
    `${…}` containing backticks, which this project does not write)."""
    quote = src[i]
    i += 1
    while i < len(src) and src[i] != quote:
        i += 2 if src[i] == "\\" else 1
    return i + 1


def _skip_regex(src: str, i: int) -> int:
    i += 1
    in_class = False
    while i < len(src):
        c = src[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            in_class = True
        elif c == "]":
            in_class = False
        elif c == "/" and not in_class:
            break
        i += 1
    i += 1
    while i < len(src) and src[i].isalpha():  # flags
        i += 1
    return i


def _tokens(src: str):
    """(kind, text, offset) for identifiers, punctuation and `=>`; literals and comments skipped
    (a literal yields one ("lit", "", offset) token so what precedes a `/` is known)."""
    i, n = 0, len(src)
    last = ""
    while i < n:
        c = src[i]
        if c.isspace():
            i += 1
        elif src.startswith("//", i):
            i = src.find("\n", i)
            i = n if i < 0 else i
        elif src.startswith("/*", i):
            end = src.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c in "\"'`":
            yield "lit", "", i
            i, last = _skip_string(src, i), "lit"
        elif c == "/" and last in REGEX_BEFORE:
            yield "lit", "", i
            i, last = _skip_regex(src, i), "lit"
        elif c.isalnum() or c in "_$#":
            m = re.compile(r"[\w$#]+").match(src, i)
            assert m is not None
            yield "id", m.group(), i
            i, last = m.end(), m.group()
        elif src.startswith("=>", i):
            yield "punct", "=>", i
            i, last = i + 2, "=>"
        else:
            yield "punct", c, i
            i, last = i + 1, c


def _function_name(toks: list, k: int) -> str | None:
    """Name of the function whose body `{` is `toks[k]`, or None if it is a plain block."""
    prev = toks[k - 1] if k else ("", "", 0)
    if prev[1] == "=>":
        return _arrow_name(toks, k - 1)
    if prev[1] != ")":
        return None
    depth, j = 0, k - 1
    while j >= 0:  # back to the matching "("
        depth += {")": 1, "(": -1}.get(toks[j][1], 0)
        if depth == 0:
            break
        j -= 1
    before = toks[j - 1] if j > 0 else ("", "", 0)
    if before[1] == "function":
        return "function"
    if before[0] == "id" and before[1] not in CONTROL:
        two = toks[j - 2] if j > 1 else ("", "", 0)
        return "function " + before[1] if two[1] == "function" else before[1]
    return None


def _arrow_name(toks: list, arrow: int) -> str:
    """`const name = (…) =>`, `name: (…) =>`, else "arrow" (a callback)."""
    j = arrow - 1
    if toks[j][1] == ")":
        depth = 0
        while j >= 0:
            depth += {")": 1, "(": -1}.get(toks[j][1], 0)
            if depth == 0:
                break
            j -= 1
    j -= 1
    if j >= 1 and toks[j][1] in ("=", ":") and toks[j - 1][0] == "id":
        return toks[j - 1][1]
    return "arrow"


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def js_functions(path: Path) -> list[Function]:
    src = path.read_text(encoding="utf-8")
    toks = list(_tokens(src))
    line_of = lambda offset: src.count("\n", 0, offset) + 1  # noqa: E731
    stack: list[tuple[str | None, int, str | None]] = []  # (function name, start, class name)
    found: list[Function] = []
    for k, (_kind, text, offset) in enumerate(toks):
        if text == "{":
            name = _function_name(toks, k)
            cls = _class_name(toks, k) if name is None else None
            owner = next((c for _n, _s, c in reversed(stack) if c), None)
            if name and owner and stack and stack[-1][2]:  # a method: Class.method
                name = f"{owner}.{name}"
            # The header starts on the line of the name/params, not of the brace.
            stack.append((name, toks[k - 1][2] if name else offset, cls))
        elif text == "}" and stack:
            name, start, _cls = stack.pop()
            if name is not None:
                found.append(Function(_shown(path), name, line_of(start), line_of(offset)))
    return found


def _class_name(toks: list, k: int) -> str | None:
    """`class Name {` / `class Name extends Base {` → "Name"."""
    for back in (2, 4):
        if k >= back and toks[k - back][1] == "class" and toks[k - back + 1][0] == "id":
            return toks[k - back + 1][1]
    return None


def py_functions(path: Path) -> list[Function]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        Function(_shown(path), node.name, node.lineno, node.end_lineno or node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--limit-js", type=int, default=80)
    parser.add_argument("--limit-py", type=int, default=60)
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args(argv)
    files = [f.resolve() for f in args.files] or [
        *sorted((ROOT / "js").glob("*.js")),
        *sorted((ROOT / "kki_widgets").rglob("*.py")),
    ]
    over = 0
    for suffix, reader, limit in ((".js", js_functions, args.limit_js), (".py", py_functions, args.limit_py)):
        funcs = sorted((f for p in files if p.suffix == suffix for f in reader(p)), key=lambda f: -f.lines)
        if not funcs:
            continue
        long = [f for f in funcs if f.lines > limit]
        over += len(long)
        print(f"{suffix}: {len(funcs)} functions, longest {funcs[0].lines} lines, {len(long)} over {limit}")
        for f in long or funcs[: args.top]:
            print(f"  {f.lines:4d}  {f.path}:{f.start}  {f.name}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
