"""The package's shape: no import cycles among ftpipe's own modules, layers import downward.

Imports inside functions count: a cycle held open by a deferred import is still a
cycle of ideas.  ``if TYPE_CHECKING:`` imports do not count (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import ftpipe

PACKAGE = Path(ftpipe.__file__).resolve().parent

# Lower layers never import higher ones (the folder layout shows them).
LAYERS = {
    "ftpipe._validate": 0,
    "ftpipe._runtime": 0,
    "ftpipe._priority": 0,
    "ftpipe._engine": 1,
    "ftpipe.executors": 2,
    "ftpipe.diagnose": 3,
    "ftpipe.torch": 3,
    "ftpipe._demo": 4,
    "ftpipe.__main__": 5,
    "ftpipe": 5,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """ftpipe modules ``name`` imports anywhere in its body (functions included)."""
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()

    def resolve(module: str) -> str | None:
        # The longest known module the dotted name starts with.
        parts = module.split(".")
        while parts:
            candidate = ".".join(parts)
            if candidate in known:
                return candidate
            parts.pop()
        return None

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "ftpipe" and (hit := resolve(alias.name)):
                    found.add(hit)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                module = ".".join(anchor + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] == "ftpipe":
                for alias in node.names:
                    hit = resolve(f"{module}.{alias.name}")
                    if hit or (hit := resolve(module)):
                        found.add(hit)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def _layer(module: str) -> int | None:
    best = None
    for prefix, layer in LAYERS.items():
        matches = module == prefix or module.startswith(prefix + ".")
        if matches and (best is None or len(prefix) > len(best[0])):
            best = (prefix, layer)
    return None if best is None else best[1]


def test_the_import_graph_is_read_from_the_sources() -> None:
    graph = _graph()
    assert "ftpipe._engine._pipeline" in graph
    assert "ftpipe._engine._channel" in graph["ftpipe._engine._pipeline"] or any(
        "ftpipe._engine" in m for m in graph["ftpipe._engine._pipeline"]
    )
    # A deferred import inside a function is seen.
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_no_import_cycle_among_ftpipes_modules() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (imports inside functions included):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def test_layers_import_downward_only() -> None:
    wrong = []
    for module, targets in _graph().items():
        here = _layer(module)
        for target in targets:
            there = _layer(target)
            if here is not None and there is not None and there > here:
                wrong.append(f"{module} (layer {here}) imports {target} (layer {there})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_module_is_over_350_lines() -> None:
    long = {
        name: n
        for name, path in _modules().items()
        if (n := len(path.read_text().splitlines())) > 350
    }
    assert not long, f"modules over 350 lines: {long}"
