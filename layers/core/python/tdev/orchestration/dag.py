"""The plan's dependency graph: topological levels for the parallel executor, and failure policies.

Levels are what the workflow runs: every task of a level can start together, because all the tasks it
depends on sit in earlier levels. That is also the whole of the spec's "optimise (parallelise
independent steps)": Kahn's algorithm already puts independent tasks in the same level.
"""

from __future__ import annotations

from collections.abc import Sequence

from tdev.errors import PlanningError
from tdev.models import AgentTask, DependencyKind, FailurePolicy


def _dependencies(tasks: Sequence[AgentTask]) -> dict[str, set[str]]:
    """Task id -> ids it depends on; rejects duplicate ids and dependencies on tasks not in the plan."""
    graph: dict[str, set[str]] = {}
    for task in tasks:
        if task.task_id in graph:
            raise PlanningError(f"duplicate task id {task.task_id!r}", field="tasks")
        graph[task.task_id] = {dep.task_id for dep in task.depends_on}
    for task_id, deps in graph.items():
        unknown = sorted(deps - graph.keys())
        if unknown:
            raise PlanningError(
                f"task {task_id!r} depends on unknown task(s): {', '.join(unknown)}", field="tasks"
            )
    return graph


def topological_levels(tasks: Sequence[AgentTask]) -> list[list[str]]:
    """Task ids grouped in levels (Kahn's algorithm); ids are sorted within a level for determinism.

    Raises PlanningError naming the cycle ("a -> b -> a") when the dependencies loop.
    """
    graph = _dependencies(tasks)
    waiting = {task_id: len(deps) for task_id, deps in graph.items()}
    dependents: dict[str, list[str]] = {task_id: [] for task_id in graph}
    for task_id, deps in graph.items():
        for dep in deps:
            dependents[dep].append(task_id)
    levels: list[list[str]] = []
    ready = sorted(task_id for task_id, count in waiting.items() if count == 0)
    while ready:
        levels.append(ready)
        unlocked = []
        for task_id in ready:
            for dependent in dependents[task_id]:
                waiting[dependent] -= 1
                if waiting[dependent] == 0:
                    unlocked.append(dependent)
        ready = sorted(unlocked)
    placed = {task_id for level in levels for task_id in level}
    if len(placed) < len(graph):
        raise PlanningError(f"dependency cycle: {' -> '.join(_find_cycle(graph, placed))}", field="tasks")
    return levels


def _find_cycle(graph: dict[str, set[str]], placed: set[str]) -> list[str]:
    """One cycle among the tasks Kahn's algorithm could not place, closed: ["a", "b", "a"].

    Every unplaced task depends on at least one other unplaced task (otherwise it would have been
    placed), so following such dependencies from any of them must come back to a task already seen.
    """
    path: list[str] = []
    seen: dict[str, int] = {}
    current = min(set(graph) - placed)
    while current not in seen:
        seen[current] = len(path)
        path.append(current)
        current = min(graph[current] - placed)
    return [*path[seen[current] :], current]


def failure_policies(tasks: Sequence[AgentTask]) -> dict[str, FailurePolicy]:
    """CONTINUE for a task whose dependents all depend on it only softly; FAIL for everything else.

    A leaf has no dependent, so it is a deliverable of the request and its failure must fail the
    request; a task that anything hard-depends on would leave that dependent without its input.
    """
    _dependencies(tasks)
    edges: dict[str, list[DependencyKind]] = {task.task_id: [] for task in tasks}
    for task in tasks:
        for dep in task.depends_on:
            edges[dep.task_id].append(dep.kind)
    return {
        task_id: FailurePolicy.CONTINUE
        if kinds and all(kind == DependencyKind.SOFT for kind in kinds)
        else FailurePolicy.FAIL
        for task_id, kinds in edges.items()
    }
