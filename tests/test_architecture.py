"""The shape of the code, checked: small modules, a thin Session, no import cycle (TYPE_CHECKING
imports and imports inside functions included), and no module reaching into another object's
private attributes (tests included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "onthefly_nb"
MAX_LINES = 400
SESSION_LINES = 300
# Private names of other libraries with no public equivalent, each with the reason.
FOREIGN_PRIVATE = {
    "_repr_mimebundle_": "IPython's display protocol",
    "_ipython_display_": "IPython's display protocol",
    "_get_collator_with_removed_columns": "transformers.Trainer: the collator that drops unused columns",
    "_iterator": "torch DataLoader caches persistent workers in it; dropping it is the only way to end them",
    "_forward_hooks": "torch.nn.Module has no public list of its forward hooks (tests check they are removed)",
    "_dynamo": "torch.compile's graph-break and graph counters (torch._dynamo.utils.counters) have no public API",
}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports anywhere in its body (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        found |= {t for t in targets if t in known and t != name}
    return found


def test_no_module_is_over_400_lines_and_the_session_is_a_thin_facade():
    lengths = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {n: k for n, k in lengths.items() if k > MAX_LINES} == {}
    assert lengths["onthefly_nb.session"] <= SESSION_LINES


def test_the_package_has_no_import_cycle():
    found = modules()
    graph = {name: imported(name, path, set(found)) for name, path in found.items()}
    graph = {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in graph.items()}
    # a package's __init__ may re-export from its own modules; nothing else imports a package's parent
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def private_reaches(path: Path) -> list[str]:
    """Lines where an attribute starting with ``_`` is read or written on anything but self, cls or a
    class of the same module."""
    tree = ast.parse(path.read_text())
    own_classes = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls", *own_classes):
            continue
        if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
            continue
        if node.attr in FOREIGN_PRIVATE:
            continue
        found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    return found


@pytest.mark.parametrize("folder", ["onthefly_nb", "onthefly", "tests", "bench"])
def test_no_module_touches_another_objects_private_attributes(folder):
    reaches = [r for path in sorted((ROOT / folder).rglob("*.py")) for r in private_reaches(path)]
    assert reaches == []


def third_party(path: Path) -> set[str]:
    """The top-level names of the libraries a module imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found - {"onthefly_nb", "__future__"}


@pytest.mark.parametrize(("transport", "allowed"), [
    ("onthefly_nb.dashboard.bridge", set()),
    ("onthefly_nb.dashboard.widget", {"anywidget", "traitlets", "IPython", "comm"}),
])
def test_the_transports_import_nothing_of_training(transport, allowed):
    found = modules()
    closure, todo = set(), [transport]
    while todo:
        name = todo.pop()
        if name not in closure:
            closure.add(name)
            todo += sorted(imported(name, found[name], set(found)) - {"onthefly_nb", "onthefly_nb.dashboard"})
    assert closure <= {transport, "onthefly_nb.dashboard.contract", "onthefly_nb.dashboard.schema",
                       "onthefly_nb.dashboard.frames", "onthefly_nb.dashboard.publisher", "onthefly_nb.errors"}
    libraries = set().union(*(third_party(found[name]) for name in closure))
    standard = {"asyncio", "hmac", "secrets", "threading", "collections", "http", "pathlib", "typing", "urllib",
                "json", "math", "os", "struct", "time", "dataclasses", "websockets", "weakref"}
    assert libraries - standard <= allowed, "a transport imports more than it needs"
