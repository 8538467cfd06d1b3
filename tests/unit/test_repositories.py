"""The single-table repositories against an emulated table built from the deployed schema."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tdev.agents.catalog import DEFAULT_AGENTS
from tdev.data.agents import AgentRepository
from tdev.data.executions import ExecutionRepository
from tdev.errors import ConflictError, IdempotencyConflictError, NotFoundError, UnknownAgentError
from tdev.models import (
    AgentResult,
    AgentSpec,
    Execution,
    ExecutionStatus,
    TaskStatus,
    Usage,
    utc_now,
)
from tdev.orchestration.planner import Supervisor
from tests.conftest import moto_table

TABLE = "tdev-unit"


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with moto_table(monkeypatch, TABLE):
        yield TABLE


def new_execution(execution_id: str = "e-1", *, project: str = "p", created: Any = None) -> Execution:
    now = created or utc_now()
    return Execution(
        execution_id=execution_id,
        request="Design and implement a todo API with tests",
        project_id=project,
        principal="alice",
        model="offline:tdev-offline-1",
        status=ExecutionStatus.PENDING,
        created_at=now,
        updated_at=now,
        correlation_id="corr-1",
    )


def planned(repo: ExecutionRepository, execution_id: str = "e-1") -> Any:
    repo.create(new_execution(execution_id), idempotency_key=None, request_hash="h")
    plan = Supervisor().plan("Design and implement a todo API with tests")
    repo.save_plan(execution_id, plan)
    return plan


def test_create_and_read_back_an_execution(table: str) -> None:
    repo = ExecutionRepository(table)

    stored, created = repo.create(new_execution(), idempotency_key=None, request_hash="h")

    assert created
    assert repo.get("e-1") == stored
    with pytest.raises(NotFoundError):
        repo.get("missing")


def test_same_idempotency_key_same_body_returns_the_first_execution(table: str) -> None:
    repo = ExecutionRepository(table)
    first, _ = repo.create(new_execution("e-1"), idempotency_key="k1", request_hash="h")

    again, created = repo.create(new_execution("e-2"), idempotency_key="k1", request_hash="h")

    assert not created and again.execution_id == first.execution_id
    with pytest.raises(NotFoundError):
        repo.get("e-2")  # the duplicate never stored a second execution


def test_same_idempotency_key_other_body_is_a_conflict(table: str) -> None:
    repo = ExecutionRepository(table)
    repo.create(new_execution("e-1"), idempotency_key="k1", request_hash="h")

    with pytest.raises(IdempotencyConflictError) as err:
        repo.create(new_execution("e-2"), idempotency_key="k1", request_hash="other")
    assert err.value.field == "Idempotency-Key"


def test_concurrent_submissions_with_one_key_create_exactly_one_execution(table: str) -> None:
    repo = ExecutionRepository(table)
    outcomes: list[tuple[str, bool]] = []
    barrier = threading.Barrier(8)

    def submit(i: int) -> None:
        barrier.wait()
        execution, created = repo.create(new_execution(f"e-{i}"), idempotency_key="same", request_hash="h")
        outcomes.append((execution.execution_id, created))

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sum(created for _, created in outcomes) == 1
    assert len({execution_id for execution_id, _ in outcomes}) == 1


def test_plan_moves_the_execution_to_running_with_pending_tasks(table: str) -> None:
    repo = ExecutionRepository(table)

    plan = planned(repo)

    execution = repo.get("e-1")
    assert execution.status == ExecutionStatus.RUNNING
    assert execution.levels == plan.levels
    assert {s.status for s in execution.tasks.values()} == {TaskStatus.PENDING}
    assert repo.get_plan("e-1") == plan


def test_a_task_result_is_stored_once(table: str) -> None:
    repo = ExecutionRepository(table)
    planned(repo)
    first = AgentResult(
        task_id="design",
        agent="DesignAgent",
        model="offline:x",
        status=TaskStatus.SUCCEEDED,
        output="first",
        usage=Usage(input_tokens=10, output_tokens=5),
    )
    second = first.model_copy(update={"output": "second", "usage": Usage(input_tokens=99)})

    assert repo.save_result("e-1", first) == first
    assert repo.save_result("e-1", second) == first  # a redelivered run keeps the first success

    execution = repo.get("e-1")
    assert execution.tasks["design"].status == TaskStatus.SUCCEEDED
    assert execution.tasks["design"].usage == Usage(input_tokens=10, output_tokens=5)


def test_task_updates_for_unknown_tasks_are_rejected(table: str) -> None:
    repo = ExecutionRepository(table)
    planned(repo)

    with pytest.raises(NotFoundError):
        repo.mark_task_running("e-1", "not-a-task", 1)


def test_finishing_is_once_and_for_all(table: str) -> None:
    repo = ExecutionRepository(table)
    planned(repo)

    done = repo.finish("e-1", ExecutionStatus.SUCCEEDED, Usage(input_tokens=3, cost_usd=0.25))
    assert done.status == ExecutionStatus.SUCCEEDED and done.usage.cost_usd == 0.25
    repo.finish("e-1", ExecutionStatus.SUCCEEDED, Usage())  # the same outcome again: a retried step
    with pytest.raises(ConflictError):
        repo.finish("e-1", ExecutionStatus.FAILED, Usage(), error="late failure")
    with pytest.raises(ConflictError):
        planned_again = Supervisor().plan("Design a thing")
        repo.save_plan("e-1", planned_again)


def test_executions_by_status_newest_first(table: str) -> None:
    from datetime import timedelta

    repo = ExecutionRepository(table)
    base = utc_now()
    for i in range(3):
        repo.create(
            new_execution(f"e-{i}", created=base + timedelta(seconds=i)),
            idempotency_key=None,
            request_hash="h",
        )

    pending = repo.list_by_status(ExecutionStatus.PENDING)

    assert [e.execution_id for e in pending] == ["e-2", "e-1", "e-0"]
    assert repo.list_by_status(ExecutionStatus.FAILED) == []


def test_view_orders_results_by_plan_level(table: str) -> None:
    repo = ExecutionRepository(table)
    plan = planned(repo)
    for task_id in reversed([t for level in plan.levels for t in level]):
        agent = plan.task(task_id).agent
        repo.save_result(
            "e-1",
            AgentResult(
                task_id=task_id,
                agent=agent,
                model="m",
                status=TaskStatus.SUCCEEDED,
                usage=Usage(input_tokens=1, output_tokens=1, cost_usd=0.001),
            ),
        )

    view = repo.view("e-1")

    assert [r.task_id for r in view.results] == [t for level in plan.levels for t in level]
    assert view.progress == 1.0
    assert view.usage.total_tokens == 2 * len(plan.tasks)
    assert view.plan == plan


def test_compensations_are_recorded_once(table: str) -> None:
    repo = ExecutionRepository(table)
    planned(repo)

    assert repo.record_compensation("e-1", "design", "withdrew")
    assert not repo.record_compensation("e-1", "design", "withdrew")


def test_agent_registry_seeds_the_built_in_agents_once(table: str) -> None:
    repo = AgentRepository(table, DEFAULT_AGENTS)

    names = [a.name for a in repo.list()]

    assert {"DesignAgent", "CodeAgent", "TestAgent", "SecurityAgent", "ReviewAgent"} <= set(names)
    assert repo.seed() == 0  # already there: an operator's edits are never overwritten


def test_agent_registry_keeps_an_operators_edit(table: str) -> None:
    repo = AgentRepository(table, DEFAULT_AGENTS)
    repo.list()
    edited = DEFAULT_AGENTS[0].model_copy(update={"version": "2.0.0"})
    repo.put(edited)
    custom = AgentSpec(
        name="DocsAgent",
        role="Technical writer",
        description="Writes documentation",
        capabilities=["documentation"],
        keywords=["docs", "readme"],
    )
    repo.put(custom)

    assert repo.get(edited.name).version == "2.0.0"
    assert repo.get("DocsAgent") == custom
    assert "DocsAgent" in {a.name for a in repo.list()}
    with pytest.raises(UnknownAgentError):
        repo.get("NoSuchAgent")


def test_a_new_built_in_reaches_an_existing_registry_a_custom_agent_stays(table: str) -> None:
    # Given a registry a deploy filled with the built-ins, where an operator then registered his own
    # CodeAgent and a custom agent
    from tdev.data.agents import forget_checked_catalogs

    old = AgentRepository(table, DEFAULT_AGENTS)
    assert old.ensure_builtins() == len(DEFAULT_AGENTS)
    operators_code = DEFAULT_AGENTS[1].model_copy(update={"version": "7.0.0", "max_concurrent": 2})
    docs = AgentSpec(name="DocsAgent", role="Writer", description="Writes docs", capabilities=["docs"])
    assert old.register(operators_code, author="ops", reason="pin")
    assert old.register(docs, author="ops", reason="add")

    # When the next deploy's code (a changed DesignAgent, a new built-in) starts cold
    changed_design = DEFAULT_AGENTS[0].model_copy(update={"version": "1.1.0", "role": "Architect"})
    new_builtin = AgentSpec(name="OpsAgent", role="SRE", description="Runs things", capabilities=["ops"])
    shipped = (changed_design, *DEFAULT_AGENTS[1:], new_builtin, docs.model_copy(update={"version": "0.1.0"}))
    forget_checked_catalogs()
    new = AgentRepository(table, shipped)
    written = new.ensure_builtins()

    # Then the new and the changed built-ins are stored, the operator's specs are untouched
    assert written == 2  # DesignAgent@1.1.0 and OpsAgent; CodeAgent and DocsAgent are the operator's
    assert new.get("DesignAgent").ref == "DesignAgent@1.1.0"
    assert new.get("DesignAgent@1.0.0").role == DEFAULT_AGENTS[0].role  # every version stays readable
    assert new.get("OpsAgent").ref == "OpsAgent@1.0.0"
    assert new.get("CodeAgent") == operators_code and new.origin("CodeAgent") == "custom"
    assert new.get("DocsAgent") == docs
    assert new.ensure_builtins() == 0  # checked once per process and catalog
    forget_checked_catalogs()
    assert new.ensure_builtins() == 0  # the stored catalog fingerprint is current: nothing to write
    assert {"OpsAgent", "DocsAgent", "DesignAgent"} <= {a.name for a in new.list()}


def test_a_registered_version_is_immutable(table: str) -> None:
    repo = AgentRepository(table, DEFAULT_AGENTS)
    docs = AgentSpec(name="DocsAgent", role="Writer", description="Writes docs", capabilities=["docs"])
    assert repo.register(docs, author="ops", reason="add")
    assert not repo.register(docs, author="ops", reason="again")  # the same spec again: nothing written
    with pytest.raises(ConflictError) as refused:
        repo.register(docs.model_copy(update={"role": "Editor"}), author="ops", reason="edit in place")
    assert refused.value.field == "version"
    assert repo.get("DocsAgent@1.0.0").role == "Writer"
    with pytest.raises(UnknownAgentError):
        repo.get("DocsAgent@9.9.9")


def test_agent_history_needs_enough_runs(table: str) -> None:
    repo = AgentRepository(table, DEFAULT_AGENTS)
    for i in range(4):
        assert repo.record_run("CodeAgent", f"e#{i}", succeeded=i != 0, duration_ms=10)

    assert repo.history(["CodeAgent", "TestAgent"]).success_rate("CodeAgent") is None
    # The same run reported again (a redelivery, a retry after a crash) counts nothing.
    assert not repo.record_run("CodeAgent", "e#3", succeeded=True, duration_ms=10)
    assert repo.history(["CodeAgent"]).success_rate("CodeAgent") is None
    repo.record_run("CodeAgent", "e#4", succeeded=True, duration_ms=10)
    history = repo.history(["CodeAgent", "TestAgent"])
    assert history.success_rate("CodeAgent") == pytest.approx(4 / 5)
    assert history.success_rate("TestAgent") is None


def test_the_registry_is_warmed_at_cold_start_and_a_registration_reaches_every_container(
    redis_url: str, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tdev import caching
    from tdev.caching import TieredCache

    first = AgentRepository(table, DEFAULT_AGENTS, cache=TieredCache("registry"))
    assert first.warm() == len(DEFAULT_AGENTS)  # every built-in, one BatchGetItem
    second = AgentRepository(table, DEFAULT_AGENTS, cache=TieredCache("registry"))
    assert second.warm() == len(DEFAULT_AGENTS)  # from Redis

    def no_table(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the warmed registry read the table")

    with monkeypatch.context() as patched:
        patched.setattr(AgentRepository, "_stored_spec", no_table)
        assert second.get("CodeAgent").name == "CodeAgent"

    code = second.get("CodeAgent")
    first.register(code.model_copy(update={"version": "9.0.0", "role": "Rewriter"}), author="ops", reason="r")
    assert second.get("CodeAgent").role == "Rewriter"  # no stale read after the write is acknowledged
    assert second.get("CodeAgent@9.0.0").role == "Rewriter"
    caching.reset()


def test_the_cached_agent_listing_follows_every_registration_in_every_container(
    redis_url: str, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tdev import caching
    from tdev.caching import TieredCache

    first = AgentRepository(table, DEFAULT_AGENTS, cache=TieredCache("registry"))
    second = AgentRepository(table, DEFAULT_AGENTS, cache=TieredCache("registry"))
    listed = [s.name for s in second.list()]  # the listing: one entry in Redis, in second's L1 too
    assert listed == sorted(s.name for s in DEFAULT_AGENTS)

    def no_query(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the cached listing queried the table")

    with monkeypatch.context() as patched:
        patched.setattr(AgentRepository, "_stored_listing", no_query)
        assert [s.name for s in first.list()] == listed  # from Redis

    # A built-in changes: the listing depends on it, so it is invalidated with the agent's own entry.
    code = first.get("CodeAgent")
    first.register(code.model_copy(update={"version": "9.1.0", "role": "Rewriter"}), author="ops", reason="r")
    assert next(s for s in second.list() if s.name == "CodeAgent").role == "Rewriter"
    # A new custom agent: the listing is invalidated by key.
    custom = code.model_copy(update={"name": "LintAgent", "version": "1.0.0", "role": "Lints."})
    first.register(custom, author="ops", reason="new")
    assert "LintAgent" in [s.name for s in second.list()]
    caching.reset()


def test_a_registration_is_written_through_and_two_racing_registrations_do_not_both_land(
    redis_url: str, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tdev import caching
    from tdev.caching import TieredCache
    from tdev.errors import ConflictError

    first = AgentRepository(table, DEFAULT_AGENTS, cache=TieredCache("registry"))
    second = AgentRepository(table, DEFAULT_AGENTS, cache=TieredCache("registry"))
    code = second.get("CodeAgent")  # cached in second
    first.register(code.model_copy(update={"version": "9.2.0", "role": "Writer"}), author="ops", reason="r")

    def no_table(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a written-through spec was read from the table")

    with monkeypatch.context() as patched:
        patched.setattr(AgentRepository, "_stored_spec", no_table)
        assert second.get("CodeAgent").role == "Writer"  # the first read after the write is a hit

    # A second operator read the revision before the first registration landed: optimistic locking.
    real_get_item = second._table.get_item

    def stale_revision(**kwargs: Any) -> Any:
        if kwargs.get("ProjectionExpression") == "revision":
            return {"Item": {"revision": 0}}  # what it read before the first registration landed
        return real_get_item(**kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(second._table, "get_item", stale_revision)
        with pytest.raises(ConflictError):
            second.register(
                code.model_copy(update={"version": "9.3.0", "role": "Racer"}), author="b", reason="r"
            )
    assert first.get("CodeAgent").role == "Writer"
    caching.reset()
