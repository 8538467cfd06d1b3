"""GET /v1/executions/{id}'s read (ExecutionRepository.view) through the read cache, and every writer of an
execution's partition invalidating it: two "containers" (two repositories, each with its own L1) never
read an older view after a write returned."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tdev import cache, caching
from tdev.caching import TieredCache
from tdev.crypto import EnvelopeCipher
from tdev.data.executions import ExecutionRepository
from tdev.data.verify import VerifyRepository
from tdev.messaging import consumers
from tdev.models import AgentResult, ExecutionStatus, TaskStatus, Usage, VerifyIteration
from tests.conftest import moto_table
from tests.unit.test_repositories import new_execution, planned

TABLE = "tdev-cache-unit"


@pytest.fixture
def table(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with moto_table(monkeypatch, TABLE):
        yield TABLE


class Counted(ExecutionRepository):
    """A repository that counts the partition queries it sends to the table."""

    queries = 0

    def _query_partition(self, execution_id: str) -> list[dict[str, Any]]:
        Counted.queries += 1
        return super()._query_partition(execution_id)


def two_containers(table: str) -> tuple[Counted, Counted]:
    Counted.queries = 0
    # The first is the process's own cache (what execution_changed() invalidates from other rooms).
    return Counted(table, cache=caching.named("executions")), Counted(table, cache=TieredCache("executions"))


def test_polling_reads_the_table_once_until_something_changes(table: str) -> None:
    one, two = two_containers(table)
    planned(one)
    views = [(one if i % 2 else two).view("e-1") for i in range(10)]
    assert {v.status for v in views} == {ExecutionStatus.RUNNING}
    assert Counted.queries == 1


def _result(task_id: str, agent: str) -> AgentResult:
    return AgentResult(
        task_id=task_id,
        agent=agent,
        status=TaskStatus.SUCCEEDED,
        output="done",
        usage=Usage(),
        attempts=1,
        model="offline:tdev-offline-1",
    )


def test_every_writer_of_the_partition_invalidates_the_view_in_every_container(table: str) -> None:
    one, two = two_containers(table)
    plan = planned(one)
    first = plan.levels[0][0]
    agent = plan.task(first).agent
    assert two.view("e-1").tasks[first].status == TaskStatus.PENDING
    one.view("e-1")  # both containers hold the view in their L1

    one.mark_task_running("e-1", first, 1)
    assert two.view("e-1").tasks[first].status == TaskStatus.RUNNING

    two.view("e-1")
    one.save_result("e-1", _result(first, agent))
    seen = two.view("e-1")
    assert seen.tasks[first].status == TaskStatus.SUCCEEDED and [r.task_id for r in seen.results] == [first]

    one.record_compensation("e-1", first, "undone")
    one.set_task_status("e-1", first, TaskStatus.COMPENSATED)
    assert two.view("e-1").tasks[first].status == TaskStatus.COMPENSATED

    VerifyRepository(table).save_iteration(
        "e-1",
        VerifyIteration(iteration=1, outcome="passed"),
    )
    assert [v.iteration for v in two.view("e-1").verify] == [1]

    before = Counted.queries
    consumers.notify({"eventId": "ev-1", "executionId": "e-1", "type": "RequestCompleted"})
    two.view("e-1")
    assert Counted.queries == before + 1  # the consumer's write to the item invalidated the copy too

    one.finish("e-1", ExecutionStatus.FAILED, Usage(), error="stopped")
    final = two.view("e-1")
    assert final.status == ExecutionStatus.FAILED and final.error == "stopped"


def test_a_finished_execution_is_cached_for_a_day_a_running_one_for_five_minutes(table: str) -> None:
    one, _ = two_containers(table)
    planned(one)
    one.view("e-1")
    entry = caching.named("executions").entry_key("e-1:view")
    assert 290 <= cache.redis_client().ttl(entry) <= 300
    one.finish("e-1", ExecutionStatus.SUCCEEDED, Usage())
    one.view("e-1")
    assert 86_390 <= cache.redis_client().ttl(entry) <= 86_400


def test_who_submitted_an_execution_is_cached_and_unknown_ids_are_not(table: str) -> None:
    one, two = two_containers(table)
    one.create(new_execution("e-2"), idempotency_key=None, request_hash="h")
    assert one.submitted("e-2") == two.submitted("e-2") == ("p", "alice")
    from tdev.errors import NotFoundError

    for _ in range(2):
        with pytest.raises(NotFoundError):
            one.submitted("missing")


def test_sealed_texts_stay_sealed_in_redis(table: str) -> None:
    key_id = boto3.client("kms").create_key()["KeyMetadata"]["KeyId"]
    one = ExecutionRepository(table, cipher=EnvelopeCipher(key_id), cache=caching.named("executions"))
    planned(one)
    assert one.view("e-1").request == "Design and implement a todo API with tests"
    stored = cache.redis_client().hget(caching.named("executions").entry_key("e-1:view"), "v")
    assert stored and "todo API" not in stored and "tde1:" in stored


def test_without_redis_views_come_from_the_table(table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caching, "DOWN_SECONDS", 0.0)
    one = Counted(table, cache=TieredCache("executions", redis=_refused))
    Counted.queries = 0
    planned(one)
    assert [one.view("e-1").status for _ in range(3)] == [ExecutionStatus.RUNNING] * 3
    assert Counted.queries == 3


def _refused() -> Any:
    import redis

    raise redis.exceptions.ConnectionError("Connection refused")
