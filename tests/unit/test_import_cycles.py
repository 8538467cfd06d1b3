"""No import cycles in the domain (`tdev`) or the CLI (`tdev_cli`).

The graph is built statically from the source (`ast`), so an import hidden inside a function or under
`if TYPE_CHECKING:` counts like one at the top: a cycle is a design fault (two rooms that each need the
other) whether or not Python happens to survive it at import time. Two levels are checked:
- modules: `tdev.data.executions` → `tdev.data.schema` → …;
- rooms of the domain, the packages directly under `tdev` (`tdev.data`, `tdev.messaging`, `tdev.llm`, …)
  and its top-level modules (`tdev.container`): a room may only import rooms that do not import it back,
  however indirectly (`data → messaging → data` and `llm ↔ agents` were such cycles).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from itertools import pairwise
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {"tdev": REPO / "layers" / "core" / "python", "tdev_cli": REPO / "cli"}


def modules_of(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `package` under `root`."""
    found: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported_names(module: str, path: Path) -> Iterable[tuple[str, int]]:
    """Every name an import statement anywhere in the file refers to (module or module.attribute)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, `level - 1` packages up
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                yield f"{source}.{alias.name}", node.lineno


def import_graph(root: Path, package: str) -> dict[str, dict[str, int]]:
    """module -> {imported module of the same package: line of the first such import}."""
    modules = modules_of(root, package)

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {module: {} for module in modules}
    for module, path in modules.items():
        for name, line in imported_names(module, path):
            target = resolve(name)
            if target is not None and target != module:
                graph[module].setdefault(target, line)
    return graph


def room_graph(graph: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, str]]:
    """room -> {imported room: one module-level import that makes the edge, for the message}."""
    rooms: dict[str, dict[str, str]] = {}
    for module, targets in graph.items():
        room = ".".join(module.split(".")[:2])
        rooms.setdefault(room, {})
        for target, line in targets.items():
            other = ".".join(target.split(".")[:2])
            if other != room:
                rooms[room].setdefault(other, f"{module}:{line} imports {target}")
    return rooms


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Each strongly connected component of more than one node, as one cycle through it (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(_one_cycle(graph, sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _one_cycle(graph: Mapping[str, Iterable[str]], component: list[str]) -> list[str]:
    """A path from the component's first node back to itself, inside the component (breadth first)."""
    members, start = set(component), component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph.get(node, ())):
            if target == start:
                return [*paths[node], start]
            if target in members and target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    return component


def describe(cycle: list[str], edges: Mapping[str, Mapping[str, object]]) -> str:
    steps = [f"{a} -> {b} ({edges[a][b]})" for a, b in pairwise(cycle)]
    return " ; ".join(steps)


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_module_imports_itself_back(package: str) -> None:
    graph = import_graph(PACKAGES[package], package)
    assert len(graph) > 10  # the package was found
    found = [
        describe(c, {m: {t: f"line {n}" for t, n in ts.items()} for m, ts in graph.items()})
        for c in cycles(graph)
    ]
    assert found == [], "import cycles:\n" + "\n".join(found)


def test_no_room_of_the_domain_imports_itself_back() -> None:
    rooms = room_graph(import_graph(PACKAGES["tdev"], "tdev"))
    assert {"tdev.data", "tdev.messaging", "tdev.llm", "tdev.agents", "tdev.container"} <= set(rooms)
    found = [describe(c, rooms) for c in cycles(rooms)]
    assert found == [], "import cycles between rooms:\n" + "\n".join(found)


def test_the_cycle_finder_finds_and_names_a_cycle() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert describe(["a", "b", "a"], {"a": {"b": "x"}, "b": {"a": "y"}}) == "a -> b (x) ; b -> a (y)"
    assert cycles({"a": {"b": 1}, "b": {}}) == []
