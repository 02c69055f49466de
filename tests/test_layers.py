"""The folders are the layers: every module lives in its layer's package, no package imports one
above it, and no modules import each other in a circle (function-level imports count too: a lazy
import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kki_widgets"

# Bottom to top. `net` holds the doors both the media and the client go through (the address
# policy, transports on httpcore pools). The simulator is the other end of the wire: it may use
# the pure protocol, the store's atomic writes and the media layer's fonts; the client starts it
# when no key is set.
LAYERS = [
    "protocol", "store", "net", "media", "simulator", "client", "display", "conversation", "notebook",
]

# Modules kept at the top on purpose: the public API, and old import paths users rely on.
TOP_LEVEL = {"__init__", "transcript"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Absolute kki_widgets module names a file imports, at any depth of its code."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("kki_widgets"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module and node.module.startswith("kki_widgets"):
                target = node.module
            else:
                continue
            found.add(target)
            # `from . import pricing` names modules, not attributes
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                if module_file(candidate) is not None:
                    found.add(candidate)
    return found


def module_file(name: str) -> Path | None:
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def layer_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_lives_in_its_layer_package():
    stray = [
        name
        for name, path in MODULES.items()
        if layer_of(name) is None and path.stem not in TOP_LEVEL and name != "kki_widgets"
    ]
    assert stray == []
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(LAYERS)


def test_each_layer_package_says_what_it_promises_and_may_import():
    for layer in LAYERS:
        doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text(encoding="utf-8")))
        assert doc, layer
        if layer != "simulator":
            assert "May import" in doc, layer


def test_no_package_imports_one_above_it():
    upward = []
    for name, path in MODULES.items():
        own = layer_of(name)
        if own is None:
            continue
        for target in imports_of(path):
            theirs = layer_of(target)
            if theirs is not None and LAYERS.index(theirs) > LAYERS.index(own):
                upward.append(f"{name} -> {target}")
    assert upward == []


def test_the_top_level_shims_only_re_export():
    for stem in TOP_LEVEL - {"__init__"}:
        tree = ast.parse((PACKAGE / f"{stem}.py").read_text(encoding="utf-8"))
        kinds = {type(node).__name__ for node in tree.body}
        assert kinds <= {"Expr", "ImportFrom", "Assign"}, (stem, kinds)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that reach each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return groups


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        # A package's __init__ is not a dependency of its modules' own imports: count modules only.
        graph[name] = {t for t in imports_of(path) if t in MODULES and t != name and not t.endswith("__init__")}
    return graph


def test_no_import_circle():
    graph = import_graph()
    # A package importing its own submodules (a re-export) is not a circle of code.
    for name in graph:
        graph[name] = {t for t in graph[name] if not (t.startswith(name + ".") or name.startswith(t + "."))}
    assert strongly_connected(graph) == []


def test_the_circle_finder_finds_circles():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []
