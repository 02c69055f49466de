"""httpx and httpcore only through their public doors (issue 23).

The package once rebuilt httpx's private pools (``client._transport._pool = …``); any release can
rename such names without notice. This AST scan fails on any read or write of a ``_``-prefixed
attribute of an httpx/httpcore object or module, and on any import of a ``_``-prefixed module or
name of theirs. What is an httpx/httpcore object is traced inside each module: names imported from
them, parameters and returns annotated with their types, and anything assigned from those (calls,
attributes, ``with … as``), including ``self.x`` attributes. Our own ``self._x`` attributes are fine,
except in a class built on theirs when their class uses that very name (then it is theirs).
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("httpx", "httpcore")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _root(node: ast.AST) -> ast.AST:
    """The innermost value of an attribute/call/subscript/await chain: `a` of ``a.b(c)[d].e``."""
    while True:
        if isinstance(node, ast.Attribute | ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Await):
            node = node.value
        else:
            return node


def _dotted(node: ast.AST) -> str | None:
    """``self.direct`` for that attribute chain of plain names, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


class _Scanner:
    def __init__(self, tree: ast.Module, where: str):
        self.tree, self.where = tree, where
        self.modules: dict[str, str] = {}  # local alias -> httpx / httpcore (or a submodule)
        self.tainted: set[str] = set()  # dotted names holding an httpx/httpcore object
        self.returns_theirs: set[str] = set()  # our functions annotated to return one
        self.found: list[str] = []

    def theirs(self, node: ast.AST | None) -> bool:
        """Whether `node` evaluates to (or is derived from) an httpx/httpcore object."""
        if node is None:
            return False
        if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a string annotation
            try:
                node = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                return False
        if any(isinstance(n, ast.Name) and n.id in self.modules for n in ast.walk(node)) and (
            isinstance(node, ast.BinOp | ast.Subscript)  # `httpx.Client | None`, `list[httpx.URL]`
        ):
            return True
        dotted = _dotted(node)
        while dotted:
            if dotted in self.tainted or dotted in self.modules:
                return True
            dotted = dotted.rpartition(".")[0]
        if isinstance(node, ast.Call):
            callee = _dotted(node.func) or ""
            if callee.rpartition(".")[2] in self.returns_theirs and callee.count(".") <= 1:
                return True
        root = _root(node)
        return root is not node and self.theirs(root)

    def scan(self) -> list[str]:
        self._imports()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and self.theirs(node.returns):
                self.returns_theirs.add(node.name)
        for _ in range(3):  # assignments feed each other: settle the traced names
            self._trace(self.tree)
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ClassDef):
                self._own_attributes_of(node)
            elif self._reaches_in(node):
                self.found.append(f"{self.where}:{node.lineno}: {ast.unparse(node)}")
        return self.found

    def _imports(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    if top in LIBRARIES:
                        self.modules[alias.asname or top] = alias.name if alias.asname else top
                        self._check_module_path(alias.name, node)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIBRARIES:
                self._check_module_path(node.module, node)
                for alias in node.names:
                    if _private(alias.name):
                        self.found.append(f"{self.where}:{node.lineno}: from {node.module} import {alias.name}")
                    self.tainted.add(alias.asname or alias.name)

    def _check_module_path(self, path: str, node: ast.AST) -> None:
        if any(_private(part) for part in path.split(".")):
            self.found.append(f"{self.where}:{node.lineno}: imports {path}")

    def _trace(self, tree: ast.AST) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.arg) and self.theirs(node.annotation):
                self.tainted.add(node.arg)
            elif isinstance(node, ast.Assign | ast.AnnAssign | ast.NamedExpr):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                annotation = getattr(node, "annotation", None)
                if self.theirs(node.value) or self.theirs(annotation):
                    self.tainted.update(name for t in targets if (name := _dotted(t)))
            elif isinstance(node, ast.withitem) and node.optional_vars and self.theirs(node.context_expr):
                self.tainted.update(name for name in [_dotted(node.optional_vars)] if name)

    def _reaches_in(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute):
            return _private(node.attr) and self.theirs(node.value)
        return isinstance(node, ast.Call) and self._private_getattr(node)

    def _private_getattr(self, call: ast.Call) -> bool:
        if not (isinstance(call.func, ast.Name) and call.func.id in ("getattr", "setattr", "hasattr")):
            return False
        if len(call.args) < 2 or not isinstance(call.args[1], ast.Constant):
            return False
        name = call.args[1].value
        return isinstance(name, str) and _private(name) and self.theirs(call.args[0])

    def _own_attributes_of(self, cls: ast.ClassDef) -> None:
        """In a class built on theirs, ``self._x`` is theirs when their class uses ``_x``."""
        bases = [base for base in (self._resolve(b) for b in cls.bases) if base is not None]
        if not bases:
            return
        used = {name for base in bases for name in _private_names_of(base)}
        for node in ast.walk(cls):
            if isinstance(node, ast.Attribute) and _dotted(node) == f"self.{node.attr}" and node.attr in used:
                self.found.append(f"{self.where}:{node.lineno}: self.{node.attr} is {cls.name}'s base's")

    def _resolve(self, node: ast.AST):
        dotted = _dotted(node)
        if not dotted or dotted.split(".")[0] not in self.modules:
            return None
        first, *rest = dotted.split(".")
        value = importlib.import_module(self.modules[first])
        for part in rest:
            value = getattr(value, part)
        return value if inspect.isclass(value) else None


def _private_names_of(cls: type) -> set[str]:
    """Every ``_x`` an httpx/httpcore class (or a class it derives from, theirs) defines or uses:
    its class attributes, and the names its methods' bytecode reads or writes."""
    names: set[str] = set()
    for klass in inspect.getmro(cls):
        if klass.__module__.split(".")[0] not in LIBRARIES:
            continue
        for name, value in vars(klass).items():
            if _private(name):
                names.add(name)
            function = value.fget if isinstance(value, property) else inspect.unwrap(value) if callable(value) else None
            code = getattr(function, "__code__", None)
            names.update(name for name in _names_in(code) if _private(name))
    return names


def _names_in(code) -> set[str]:
    if code is None:
        return set()
    nested = (const for const in code.co_consts if inspect.iscode(const))
    return set(code.co_names).union(*(_names_in(inner) for inner in nested))


def private_uses(source: str, where: str = "<sample>") -> list[str]:
    return _Scanner(ast.parse(source), where).scan()


def test_the_package_uses_only_public_httpx_and_httpcore():
    found = [
        use
        for path in sorted((ROOT / "kki_widgets").rglob("*.py"))
        for use in private_uses(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]
    assert found == []


def test_the_old_pool_swaps_are_found():
    """The two places this issue removed, as they were: the scan must catch both."""
    relay_then = '''
import httpcore
import httpx

def use_asyncio_sockets(client: httpx.AsyncClient, ssl_context, limits):
    client._transport._pool = httpcore.AsyncConnectionPool(ssl_context=ssl_context)
    return client
'''
    media_then = '''
import httpcore
import httpx

def _guarded_client(policy, timeout):
    transport = httpx.HTTPTransport(retries=0)
    transport._pool = httpcore.ConnectionPool(network_backend=policy)
    return httpx.Client(transport=transport)
'''
    assert [use.split(": ", 1)[1] for use in private_uses(relay_then)] == ["client._transport._pool", "client._transport"]
    assert [use.split(": ", 1)[1] for use in private_uses(media_then)] == ["transport._pool"]


def test_private_modules_names_and_derived_objects_are_found():
    sample = '''
import httpx
import httpx._utils
from httpx._config import DEFAULT_LIMITS
from httpcore import _exceptions
from httpx import AsyncClient as Client

class Routes:
    def __init__(self):
        self.direct = Client()

    def pool(self):
        return self.direct._transport

def make() -> "httpx.Client":
    return httpx.Client()

def later():
    client = make()
    with httpx.Client() as other:
        mounts = other._mounts
    limits = httpx.Limits()._asdict
    return getattr(client, "_transport"), httpx._utils.get_environment_proxies(), mounts, limits

class Mine(httpx.HTTPTransport):
    def handle_request(self, request):
        return self._pool.handle_request(request)
'''
    found = sorted(use.split(": ", 1)[1] for use in private_uses(sample))
    assert found == sorted([
        "imports httpx._utils",
        "imports httpx._config",
        "from httpcore import _exceptions",
        "self.direct._transport",
        "other._mounts",
        "httpx.Limits()._asdict",
        "httpx._utils",
        "getattr(client, '_transport')",
        "self._pool is Mine's base's",
    ])


def test_our_own_private_attributes_are_ours():
    sample = '''
import asyncio
import httpcore
import httpx

class Stream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, connection):
        self._transport = transport
        self._connection = connection

class Client:
    def __init__(self, transport: httpx.AsyncBaseTransport | None = None):
        self._transport = transport
        self._clients = {}

    def http(self) -> httpx.AsyncClient:
        return self._clients.get(1) or httpx.AsyncClient(transport=self._transport)
'''
    assert private_uses(sample) == []
