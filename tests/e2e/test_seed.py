"""Test data (tdev_cli.testdata) and `tdev seed`: deterministic factories, builders with real shapes,
the spec's scenarios, snapshots, loading through the domain's write paths, and the access-pattern budgets
`tdev seed --scale medium|large` holds a seeded table to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tdev.models import ExecutionStatus, TaskStatus, Usage
from tdev_cli import seed, testdata

pytestmark = pytest.mark.slow


def test_the_same_seed_gives_the_same_data_and_another_seed_other_data() -> None:
    first = testdata.at_scale(6, 3, 20, seed=7)
    again = testdata.at_scale(6, 3, 20, seed=7)
    other = testdata.at_scale(6, 3, 20, seed=8)
    ids = [e.execution_id for e, _ in first.executions]
    assert ids == [e.execution_id for e, _ in again.executions]
    assert [e.request for e, _ in first.executions] == [e.request for e, _ in again.executions]
    assert ids != [e.execution_id for e, _ in other.executions]
    assert len(set(ids)) == 20


def test_a_scale_has_its_counts_and_every_execution_belongs_to_its_projects_people() -> None:
    data = testdata.at_scale(50, 20, 400, seed=3)
    assert (len(data.users), len(data.projects), len(data.executions)) == (50, 20, 400)
    people = {p.project_id: {p.owner, *p.members} for p in data.projects}
    for execution, results in data.executions:
        assert execution.principal in people[execution.project_id]
        assert execution.usage == Usage.total(r.usage for r in results)
        assert execution.status.terminal
        assert execution.created_at < execution.updated_at
    assert 0 < len(data.failed) < 60  # ~5 % of 400


def test_the_spec_scales() -> None:
    assert {name: (s.users, s.projects, s.executions) for name, s in seed.SCALES.items()} == {
        "small": (100, 50, 1_000),
        "medium": (1_000, 500, 10_000),
        "large": (10_000, 5_000, 100_000),
    }
    assert set(seed.SCENARIO_NAMES) == set(testdata.SCENARIOS)


def test_the_scenarios() -> None:
    five = testdata.scenario_five_agent_workflow()
    [(execution, results)] = five.executions
    assert [t.agent for t in execution.tasks.values()] == list(testdata.AGENTS)
    assert execution.status is ExecutionStatus.SUCCEEDED and len(results) == 5

    grid = testdata.scenario_users_by_executions()
    assert len(grid.users) == 10 and len(grid.executions) == 200
    assert {sum(1 for e, _ in grid.executions if e.principal == u) for u in grid.users} == {20}

    failures = testdata.scenario_failures()
    assert len(failures.failed) == 50
    for execution, results in failures.executions:
        states = list(execution.tasks.values())
        failed_at = next(i for i, t in enumerate(states) if t.status is TaskStatus.FAILED)
        assert all(t.status is TaskStatus.SUCCEEDED for t in states[:failed_at])
        assert all(t.status is TaskStatus.SKIPPED for t in states[failed_at + 1 :])
        assert execution.error and results[-1].error == execution.error


def test_a_snapshot_restores_the_same_dataset(tmp_path: Path) -> None:
    data = testdata.scenario_failures(count=5)
    path = tmp_path / "snapshot.json"
    testdata.snapshot(data, path)
    restored = testdata.restore(path)
    assert restored.projects == data.projects
    assert [(e, r) for e, r in restored.executions] == data.executions


def test_tdev_seed_prints_its_timings_and_budgets(capsys: pytest.CaptureFixture[str]) -> None:
    from tdev_cli.main import main

    assert main(["seed", "--scenario", "five-agent-workflow"]) == seed.EXIT_OK
    out = capsys.readouterr().out
    assert "seeded five-agent-workflow" in out and "1 executions (0 failed), 6 execution/task items" in out
    assert "access patterns within budget: 4/4 on 1 executions" in out


@pytest.fixture(scope="module")
def seeded(redis_server: str) -> Iterator[tuple[Any, testdata.Dataset]]:
    from tdev_cli.runtime import LocalRuntime

    data = testdata.at_scale(30, 10, 120, seed=5)
    five = testdata.scenario_five_agent_workflow()
    data.users += five.users
    data.projects += five.projects
    data.executions += five.executions
    with LocalRuntime(redis_url=redis_server, rate_limit_default=None) as runtime:
        timings = testdata.load(data)
        assert timings.items == sum(1 + len(results) for _, results in data.executions)
        yield runtime, data


def test_seeded_data_is_served_by_the_api_to_its_people_only(seeded: tuple[Any, testdata.Dataset]) -> None:
    runtime, data = seeded
    execution, results = data.executions[-1]  # the five-agent workflow
    status, view = runtime.as_principal("user-00000").api("GET", f"/v1/executions/{execution.execution_id}")
    assert status == 200, view
    assert view["status"] == "SUCCEEDED"
    assert [r["agent"] for r in view["results"]] == list(testdata.AGENTS)
    assert view["results"][0]["output"] == results[0].output  # sealed on the way in, opened on the way out
    project = data.projects[0]
    member_execution = next(e for e, _ in data.executions if e.project_id == project.project_id)
    for principal in (project.owner, *project.members):
        assert (
            runtime.as_principal(principal).api("GET", f"/v1/executions/{member_execution.execution_id}")[0]
            == 200
        )
    outsider = next(u for u in data.users if u not in {project.owner, *project.members})
    status, body = runtime.as_principal(outsider).api(
        "GET", f"/v1/executions/{member_execution.execution_id}"
    )
    assert (status, body["field"]) == (404, "execution_id")


def test_every_access_pattern_is_within_its_budget_on_a_seeded_table(
    seeded: tuple[Any, testdata.Dataset],
) -> None:
    from tdev_cli.benchmarks.meter import AwsMeter

    runtime, data = seeded
    meter = AwsMeter()
    with meter.installed():
        from tdev import aws

        aws.reset_clients()  # rebuilt inside the block, so the meter sees them
        measured = seed.measure(runtime, data, meter)
    assert [m.pattern.name for m in measured] == [p.name for p in seed.ACCESS_PATTERNS]
    for m in measured:
        assert m.calls > 0, m  # it did reach the table (a meter that saw nothing would pass any budget)
        assert m.within_budget, f"{m.pattern.name}: {m.read_units} read units > {m.pattern.budget_read_units}"


def test_a_budget_catches_a_pattern_whose_cost_grows_with_the_table(
    seeded: tuple[Any, testdata.Dataset], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check can fail: a pattern that scans the table is OVER its budget."""
    from tdev_cli.benchmarks.meter import AwsMeter

    runtime, data = seeded

    def scan_everything(runtime: Any, data: testdata.Dataset) -> None:
        from tdev import aws
        from tdev.settings import get_settings

        aws.table(get_settings().table_name).scan()

    monkeypatch.setattr(seed, "ACCESS_PATTERNS", (seed.AccessPattern("a table scan", 4.0, scan_everything),))
    meter = AwsMeter()
    with meter.installed():
        from tdev import aws

        aws.reset_clients()
        [measured] = seed.measure(runtime, data, meter)
    assert not measured.within_budget and measured.read_units > 4.0
