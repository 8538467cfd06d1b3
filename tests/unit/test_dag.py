"""The plan's graph: topological levels (Kahn), cycle and unknown-dependency rejection, failure policies."""

from __future__ import annotations

import pytest

from tdev.errors import PlanningError
from tdev.models import AgentTask, Dependency, DependencyKind, FailurePolicy
from tdev.orchestration.dag import failure_policies, topological_levels


def task(task_id: str, *hard: str, soft: tuple[str, ...] = ()) -> AgentTask:
    deps = [Dependency(task_id=d) for d in hard] + [
        Dependency(task_id=d, kind=DependencyKind.SOFT) for d in soft
    ]
    return AgentTask(
        task_id=task_id, agent="CodeAgent", intent="implement", description=task_id, depends_on=deps
    )


def test_diamond_is_three_levels_with_the_independent_tasks_together() -> None:
    # Given a diamond: two tasks after the first, one after both
    tasks = [task("alpha"), task("beta", "alpha"), task("gamma", "alpha"), task("omega", "beta", "gamma")]

    # When the levels are computed
    levels = topological_levels(tasks)

    # Then the independent middle tasks share a level
    assert levels == [["alpha"], ["beta", "gamma"], ["omega"]]


def test_order_within_a_level_does_not_depend_on_input_order() -> None:
    # Given the same tasks listed in two different orders
    forward = [task("alpha"), task("zeta"), task("mid", "alpha", "zeta")]
    backward = list(reversed(forward))

    # When / Then the levels are identical and sorted within each level
    assert topological_levels(forward) == topological_levels(backward) == [["alpha", "zeta"], ["mid"]]


def test_tasks_without_dependencies_run_in_one_level() -> None:
    assert topological_levels([task("c"), task("a"), task("b")]) == [["a", "b", "c"]]


def test_soft_edges_order_tasks_like_hard_ones() -> None:
    # Given a task that only soft-depends on another
    tasks = [task("report", soft=("scan",)), task("scan")]

    # Then it still runs after it (soft only changes what a failure means)
    assert topological_levels(tasks) == [["scan"], ["report"]]


def test_cycle_is_rejected_and_named() -> None:
    # Given alpha -> gamma -> beta -> alpha (each arrow: "depends on"), plus a task hanging off the cycle
    tasks = [task("alpha", "gamma"), task("beta", "alpha"), task("gamma", "beta"), task("omega", "alpha")]

    # When / Then the error names exactly the tasks of the cycle, in dependency order
    with pytest.raises(PlanningError) as raised:
        topological_levels(tasks)
    assert raised.value.message == "dependency cycle: alpha -> gamma -> beta -> alpha"
    assert "omega" not in raised.value.message


def test_cycle_behind_a_valid_prefix_is_still_found() -> None:
    # Given a valid first level and a two-task cycle after it
    tasks = [task("base"), task("left", "base", "right"), task("right", "left")]

    with pytest.raises(PlanningError, match=r"dependency cycle: left -> right -> left"):
        topological_levels(tasks)


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(PlanningError, match=r"dependency cycle: alpha -> alpha"):
        topological_levels([task("alpha", "alpha")])


def test_unknown_dependency_is_rejected_by_name() -> None:
    with pytest.raises(PlanningError, match=r"'beta' depends on unknown task\(s\): ghost"):
        topological_levels([task("alpha"), task("beta", "alpha", "ghost")])


def test_duplicate_task_ids_are_rejected() -> None:
    with pytest.raises(PlanningError, match="duplicate task id 'alpha'"):
        topological_levels([task("alpha"), task("alpha")])


def test_only_softly_depended_on_tasks_may_fail_without_failing_the_request() -> None:
    # Given build <- (test soft, scan soft) <- review, and build also hard-needed by review
    tasks = [
        task("build"),
        task("test", "build"),
        task("scan", "build"),
        task("review", "build", soft=("test", "scan")),
    ]

    # When the policies are derived
    policies = failure_policies(tasks)

    # Then the soft-only upstream tasks continue, the rest fail the request
    assert policies == {
        "build": FailurePolicy.FAIL,
        "test": FailurePolicy.CONTINUE,
        "scan": FailurePolicy.CONTINUE,
        "review": FailurePolicy.FAIL,
    }


def test_one_hard_dependent_is_enough_to_make_a_task_critical() -> None:
    # Given lint is soft for one dependent and hard for another
    tasks = [task("lint"), task("docs", soft=("lint",)), task("ship", "lint")]

    assert failure_policies(tasks)["lint"] is FailurePolicy.FAIL


def test_leaves_are_deliverables_and_fail_the_request() -> None:
    assert failure_policies([task("alpha"), task("beta")]) == {
        "alpha": FailurePolicy.FAIL,
        "beta": FailurePolicy.FAIL,
    }


def test_failure_policies_validate_the_graph_too() -> None:
    with pytest.raises(PlanningError, match="ghost"):
        failure_policies([task("alpha", soft=("ghost",))])
