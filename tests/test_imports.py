"""The package's import graph has no circles, and its modules and functions stay small.

The graph is read from the source with ``ast`` (nothing is imported): one node per module of
``fastretro/``, one edge per ``import``, at module level or inside a function alike, since a
function-level import is the same dependency run later. Imports under ``if TYPE_CHECKING:`` never
run and are left out. ``from fastretro import X`` of a lazily exported name (the package's
``_LAZY``) is an edge to the module that defines ``X``; ``from P import m`` of a submodule is an
edge to ``P.m``; any other imported name is an edge to the module it is imported from. The
compiled modules' imports are read from their Cython sources in ``ext/``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fastretro"

MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 120

# Known offenders as of issue 38 (2026-12-07), while their owners split them: these sets only
# shrink. A module or function that gets under its limit must leave its set (the test says so),
# and nothing may join them.
LONG_MODULES: set[str] = set()
LONG_FUNCTIONS: set[str] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _sources() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


@cache
def _lazy_exports() -> dict[str, str]:
    """The package's ``_LAZY`` table: public name -> the module that defines it."""
    for node in _tree(PACKAGE / "__init__.py").body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError("fastretro/__init__.py has no _LAZY table")


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif not _is_type_checking(child):
            yield from _import_nodes(child)


def _owner(name: str) -> str | None:
    """The module of ``fastretro`` that ``import name`` runs last (its longest known prefix)."""
    modules = _sources()
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _from_targets(module: str, names: list[str]) -> set[str]:
    modules = _sources()
    targets = set()
    for name in names:
        if f"{module}.{name}" in modules:
            targets.add(f"{module}.{name}")
        elif module == "fastretro" and name in _lazy_exports():
            targets.add(_lazy_exports()[name])
        elif module in modules:
            targets.add(module)
    return targets


def _imports_of(module: str, path: Path) -> set[str]:
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in _import_nodes(_tree(path)):
        if isinstance(node, ast.Import):
            targets.update(filter(None, (_owner(a.name) for a in node.names)))
            continue
        base = node.module or ""
        if node.level:
            package = module.split(".")
            package = package if is_package else package[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([base] if base else []))
        if base == "fastretro" or base.startswith("fastretro."):
            targets |= _from_targets(base, [a.name for a in node.names])
    targets.discard(module)
    return targets


_PYX_IMPORT = re.compile(r"^\s*(?:from\s+(fastretro[\w.]*)\s+import\b|import\s+(fastretro[\w.]*))")


def _compiled_imports() -> dict[str, set[str]]:
    """The Python imports of the compiled modules (``ext/*.pyx``), line by line."""
    graph = {}
    for pyx in sorted((ROOT / "ext").glob("*.pyx")):
        module = f"fastretro.runtime._ext.{pyx.stem}"
        found = (_PYX_IMPORT.match(line) for line in pyx.read_text().splitlines())
        graph[module] = {_owner(m[1] or m[2]) for m in found if m} - {None}
    return graph


@cache
def import_graph() -> dict[str, frozenset[str]]:
    """Each module of ``fastretro`` -> the modules of ``fastretro`` it imports."""
    graph = {m: _imports_of(m, p) for m, p in _sources().items()}
    for module, targets in _compiled_imports().items():
        graph.setdefault(module, set()).update(targets)
    return {m: frozenset(t) for m, t in graph.items()}


def _strongly_connected(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module, iteratively (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _path(graph: dict[str, frozenset[str]], start: str, goal: str) -> list[str] | None:
    """A shortest import chain from ``start`` to ``goal`` (breadth first), or None."""
    previous = {start: start}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        if goal in previous:
            chain = [goal]
            while chain[-1] != start:
                chain.append(previous[chain[-1]])
            return chain[::-1]
        frontier = following
    return None


def _describe(graph: dict[str, frozenset[str]], component: list[str]) -> str:
    first = component[0]
    circle = min(
        (_path(graph, child, first) for child in graph[first] if child in component),
        key=len,
    )
    return f"{' -> '.join([first, *circle])} (the circle's modules: {', '.join(component)})"


def test_the_package_imports_in_no_circle():
    graph = import_graph()
    circles = [_describe(graph, c) for c in _strongly_connected(graph)]
    assert not circles, "Import circles in fastretro:\n" + "\n".join(circles)


def test_the_graph_sees_function_level_lazy_and_compiled_imports():
    # EnvConfig.contest defers its import of the contest's rules to the call.
    assert "fastretro.contest.rules" in import_graph()["fastretro.config"]
    # `from fastretro import X`: X's own module when the package exports X lazily.
    assert _from_targets("fastretro", ["VecRetroEnv"]) == {"fastretro.runtime.pool"}
    assert _from_targets("fastretro", ["errors", "__version__"]) == {
        "fastretro.errors",
        "fastretro",
    }
    assert "fastretro.runtime.protocol" in import_graph()["fastretro.runtime._ext.handshake"]


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _line_counts() -> dict[str, int]:
    return {_relative(p): len(p.read_text().splitlines()) for p in _sources().values()}


def _function_lengths() -> dict[str, int]:
    """``module:qualname`` -> lines from ``def`` to the last line of its body, of every function."""
    lengths = {}

    def visit(node: ast.AST, prefix: str, module: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                qualname = prefix + child.name
                lengths[f"{module}:{qualname}"] = child.end_lineno - child.lineno + 1
                visit(child, qualname + ".<locals>.", module)
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".", module)
            else:
                visit(child, prefix, module)

    for module, path in _sources().items():
        visit(_tree(path), "", module)
    return lengths


def _check_limit(sizes: dict[str, int], limit: int, known: set[str], what: str) -> list[str]:
    over = {name for name, size in sizes.items() if size > limit}
    problems = [f"{n} has {sizes[n]} lines (> {limit}): split it" for n in sorted(over - known)]
    problems += [
        f"{n} is no longer over {limit} lines ({sizes.get(n, 'gone')}): take it out of {what}"
        for n in sorted(known - over)
    ]
    return problems


def test_no_module_is_longer_than_the_limit():
    problems = _check_limit(_line_counts(), MAX_MODULE_LINES, LONG_MODULES, "LONG_MODULES")
    assert not problems, "\n".join(problems)


def test_no_function_is_longer_than_the_limit():
    problems = _check_limit(
        _function_lengths(), MAX_FUNCTION_LINES, LONG_FUNCTIONS, "LONG_FUNCTIONS"
    )
    assert not problems, "\n".join(problems)
