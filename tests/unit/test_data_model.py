"""One test per access pattern of the single table (docs/data-model.md), on moto's DynamoDB.

Plus the table's reliability primitives: optimistic locking, the 100-item transaction limit, the
distributed lock and the event-sourced history.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tdev import aws
from tdev.data import schema
from tdev.data.history import HistoryEvent, replay
from tdev.data.locks import DistributedLock, LockNotHeld
from tdev.data.store import query_page, serialize, transact_write, update_versioned
from tdev.errors import ConflictError, ValidationError
from tests.conftest import moto_table

TABLE = "tdev-model-test"


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with moto_table(monkeypatch, TABLE):
        yield aws.table(TABLE)


def put(table: Any, entity: str, key: dict[str, str], *indexes: dict[str, str], **data: Any) -> None:
    table.put_item(Item=schema.entity_item(entity, key, *indexes, **data))


def all_pages(**kwargs: Any) -> tuple[list[dict[str, Any]], int]:
    items, pages, cursor = [], 0, None
    while True:
        page = query_page(TABLE, cursor=cursor, **kwargs)
        items += page.items
        pages += 1
        if page.cursor is None:
            return items, pages
        cursor = page.cursor


# ------------------------------------------------------------------------------ access patterns
def test_user_by_id_and_by_email_through_the_sparse_lookup_index(table: Any) -> None:
    put(table, "USER", schema.user_key("u1"), schema.user_email_lookup("Ada@Example.com"), name="Ada")
    put(table, "USER", schema.user_key("u2"), name="No email")  # no lookup attributes: not in GSI4
    assert table.get_item(Key=schema.user_key("u1"))["Item"]["name"] == "Ada"
    found = query_page(TABLE, ("GSI4PK", "LOOKUP#EMAIL#ada@example.com"), index_name="GSI4")
    assert [i["PK"] for i in found.items] == ["USER#u1"]
    assert table.scan(IndexName="GSI4")["Count"] == 1  # sparse: only items that carry a lookup


def test_projects_by_user_newest_first_paged(table: Any) -> None:
    for day in range(1, 8):
        created = f"2026-01-0{day}T00:00:00Z"
        put(
            table,
            "PROJECT",
            schema.project_key(f"p{day}"),
            schema.by_user("u1", "PROJECT", created, f"p{day}"),
        )
    put(table, "PROJECT", schema.project_key("other"), schema.by_user("u2", "PROJECT", "2026-01-09", "other"))
    first = query_page(
        TABLE, ("GSI3PK", "USER#u1"), index_name="GSI3", sort_prefix="PROJECT#", newest_first=True, limit=3
    )
    assert [i["PK"] for i in first.items] == ["PROJECT#p7", "PROJECT#p6", "PROJECT#p5"]
    assert first.cursor is not None
    items, pages = all_pages(
        partition=("GSI3PK", "USER#u1"), index_name="GSI3", sort_prefix="PROJECT#", newest_first=True, limit=3
    )
    assert len(items) == 7 and pages == 3


def test_executions_by_project_newest_first_within_a_date_range(table: Any) -> None:
    for day in range(1, 10):
        created = f"2026-02-0{day}T10:00:00Z"
        put(
            table,
            "EXECUTION",
            schema.execution_key(f"e{day}"),
            schema.by_project("todo", "EXECUTION", created, f"e{day}"),
        )
    page = query_page(
        TABLE,
        ("GSI2PK", "PROJECT#todo"),
        index_name="GSI2",
        sort_between=("EXECUTION#2026-02-03", "EXECUTION#2026-02-06~"),
        newest_first=True,
    )
    assert [i["PK"] for i in page.items] == ["EXECUTION#e6", "EXECUTION#e5", "EXECUTION#e4", "EXECUTION#e3"]


def test_executions_by_status(table: Any) -> None:
    put(table, "EXECUTION", schema.execution_key("a"), schema.by_status("RUNNING", "2026-01-01", "a"))
    put(table, "EXECUTION", schema.execution_key("b"), schema.by_status("FAILED", "2026-01-02", "b"))
    put(table, "EXECUTION", schema.execution_key("c"), schema.by_status("RUNNING", "2026-01-03", "c"))
    page = query_page(TABLE, ("GSI1PK", "STATUS#RUNNING"), index_name="GSI1", newest_first=True)
    assert [i["PK"] for i in page.items] == ["EXECUTION#c", "EXECUTION#a"]


def test_an_execution_with_its_tasks_in_one_partition_query(table: Any) -> None:
    put(table, "EXECUTION", schema.execution_key("x"), status="RUNNING")
    for task in ("design", "implement", "test"):
        put(table, "TASK", schema.task_key("x", task), status="SUCCEEDED")
    put(table, "TASK", schema.task_key("y", "design"), status="SUCCEEDED")
    tasks = query_page(TABLE, ("PK", "EXECUTION#x"), sort_prefix="TASK#")
    assert sorted(i["SK"] for i in tasks.items) == ["TASK#design", "TASK#implement", "TASK#test"]


def test_agents_listed_through_gsi1(table: Any) -> None:
    for name in ("CodeAgent", "DesignAgent"):
        put(table, "AGENT", schema.agent_key(name), {"GSI1PK": "AGENT", "GSI1SK": name})
    page = query_page(TABLE, ("GSI1PK", "AGENT"), index_name="GSI1")
    assert [i["PK"] for i in page.items] == ["AGENT#CodeAgent", "AGENT#DesignAgent"]


def test_session_by_id_and_a_users_sessions(table: Any) -> None:
    put(
        table,
        "SESSION",
        schema.session_key("s1"),
        schema.by_user("u1", "SESSION", "2026-03-01", "s1"),
        state="ACTIVE",
    )
    put(
        table,
        "SESSION",
        schema.session_key("s2"),
        schema.by_user("u1", "SESSION", "2026-03-02", "s2"),
        state="ACTIVE",
    )
    put(table, "PROJECT", schema.project_key("p"), schema.by_user("u1", "PROJECT", "2026-03-03", "p"))
    assert table.get_item(Key=schema.session_key("s1"))["Item"]["state"] == "ACTIVE"
    page = query_page(
        TABLE, ("GSI3PK", "USER#u1"), index_name="GSI3", sort_prefix="SESSION#", newest_first=True
    )
    assert [i["PK"] for i in page.items] == ["SESSION#s2", "SESSION#s1"]


def test_outbox_records_of_one_partition(table: Any) -> None:
    from tdev.data.outbox import outbox_put

    actions = [
        outbox_put(
            TABLE,
            source="t-developer.executions",
            detail_type="TaskCompleted",
            data={"n": n},
            partition_key="EXECUTION#x",
            event_id=f"id-{n}",
            correlation_id="c",
            causation_id="x",
        )
        for n in range(3)
    ]
    transact_write(actions)
    page = query_page(TABLE, ("PK", "OUTBOX#EXECUTION#x"))
    assert [i["event_id"] for i in page.items] == ["id-0", "id-1", "id-2"]


def test_a_cursor_that_is_not_ours_is_a_400_naming_the_field(table: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        query_page(TABLE, ("PK", "EXECUTION#x"), cursor="not-a-cursor!")
    assert caught.value.field == "cursor"
    with pytest.raises(ValidationError):
        query_page(TABLE, ("PK", "EXECUTION#x"), limit=1000)


# ---------------------------------------------------------------------------- optimistic locking
def test_optimistic_locking_retries_a_lost_race_and_keeps_both_changes(table: Any) -> None:
    key = schema.project_key("p")
    table.put_item(Item={**key, "entity": "PROJECT", "version": 1, "components": []})
    raced = {"done": False}

    def add_component(state: dict[str, Any]) -> dict[str, Any]:
        if not raced["done"]:  # another writer commits between our read and our write
            raced["done"] = True
            update_versioned(TABLE, key, lambda s: {**s, "components": [*s["components"], "theirs"]})
        return {**state, "components": [*state["components"], "ours"]}

    result = update_versioned(TABLE, key, add_component)
    stored = table.get_item(Key=key)["Item"]
    assert stored["components"] == ["theirs", "ours"] and int(stored["version"]) == 3
    assert result["version"] == 3


def test_optimistic_locking_gives_up_after_three_retries(table: Any) -> None:
    key = schema.project_key("busy")
    table.put_item(Item={**key, "entity": "PROJECT", "version": 1})
    attempts = []

    def always_raced(state: dict[str, Any]) -> dict[str, Any]:
        attempts.append(1)
        table.update_item(Key=key, UpdateExpression="ADD version :one", ExpressionAttributeValues={":one": 1})
        return state

    with pytest.raises(ConflictError) as caught:
        update_versioned(TABLE, key, always_raced)
    assert len(attempts) == 4 and caught.value.status_code == 409


# ---------------------------------------------------------------------------------- transactions
def test_a_project_and_its_components_are_written_atomically_up_to_100_items(table: Any) -> None:
    def put_action(i: int) -> dict[str, Any]:
        return {
            "Put": {"TableName": TABLE, "Item": serialize({"PK": "PROJECT#big", "SK": f"COMPONENT#{i:03d}"})}
        }

    transact_write([put_action(i) for i in range(100)])
    assert len(query_page(TABLE, ("PK", "PROJECT#big"), limit=100).items) == 100
    with pytest.raises(ValidationError, match="at most 100 items"):
        transact_write([put_action(i) for i in range(101)])


def test_a_cancelled_transaction_writes_nothing(table: Any) -> None:
    from botocore.exceptions import ClientError

    table.put_item(Item={"PK": "PROJECT#p", "SK": "PROJECT"})
    with pytest.raises(ClientError):
        transact_write(
            [
                {"Put": {"TableName": TABLE, "Item": serialize({"PK": "PROJECT#p", "SK": "COMPONENT#1"})}},
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": serialize({"PK": "PROJECT#p", "SK": "PROJECT"}),
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                },
            ]
        )
    assert "Item" not in table.get_item(Key={"PK": "PROJECT#p", "SK": "COMPONENT#1"})


# ------------------------------------------------------------------------------------------ locks
def test_the_lock_is_exclusive_owner_checked_and_expires(table: Any) -> None:
    now = [1000.0]
    first = DistributedLock(TABLE, "build:p1", owner="a", ttl_seconds=30, clock=lambda: now[0])
    second = DistributedLock(TABLE, "build:p1", owner="b", ttl_seconds=30, clock=lambda: now[0])
    assert first.acquire()
    assert not second.acquire()
    assert not second.release()  # not the owner: nothing released
    with pytest.raises(LockNotHeld):
        second.extend()
    first.extend(60)
    now[0] += 45  # past the original 30 s, within the extension
    assert not second.acquire()
    now[0] += 30  # the lease ran out: the holder is presumed dead
    assert second.acquire()
    with pytest.raises(LockNotHeld):
        first.extend()  # the old owner can no longer extend ...
    assert not first.release()  # ... nor release the new owner's lock
    assert second.release()
    with DistributedLock(TABLE, "build:p1", clock=lambda: now[0]):
        assert not first.acquire()


# --------------------------------------------------------------------------------- event sourcing
def _event(n: int, kind: str, **data: Any) -> HistoryEvent:
    return HistoryEvent(f"e{n}", kind, f"2026-11-29T10:00:{n:02d}+00:00", data)


def test_replay_rebuilds_the_state_from_the_events_alone() -> None:
    events = [
        _event(1, "ExecutionAccepted", executionId="x"),
        _event(2, "TaskCompleted", taskId="design", status="SUCCEEDED"),
        _event(3, "TaskCompleted", taskId="code", status="FAILED"),
        _event(4, "RequestFailed", status="FAILED", compensated=["design"]),
    ]
    assert replay(events[:1]) == {"status": "PENDING", "tasks": {}}
    assert replay(events[:2]) == {"status": "RUNNING", "tasks": {"design": "SUCCEEDED"}}
    assert replay(events) == {"status": "FAILED", "tasks": {"design": "COMPENSATED", "code": "FAILED"}}
