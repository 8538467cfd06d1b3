"""Event-sourced history: append-only events per aggregate, written with conditional puts.

    PK=AGGREGATE#<type>#<id>  SK=EVENT#<sequence, zero-padded>

`append(expected_sequence=n)` writes event n+1 only if no event n+1 exists, so two writers that read
the same state cannot both append (the loser gets ConflictError and re-reads). `replay` folds the
events, in order, through a reducer and so rebuilds the aggregate's state from history alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from tdev import aws
from tdev.data import schema
from tdev.data.codec import to_item
from tdev.data.store import error_code, query_page, raise_if_transient
from tdev.errors import ConflictError
from tdev.models import utc_now


@dataclass(frozen=True)
class StoredEvent:
    sequence: int
    type: str
    data: dict[str, Any]
    at: str


Reducer = Callable[[dict[str, Any], StoredEvent], dict[str, Any]]


class EventStore:
    def __init__(self, table_name: str, aggregate_type: str) -> None:
        self.table_name = table_name
        self.aggregate_type = aggregate_type

    def append(self, aggregate_id: str, expected_sequence: int, event_type: str, data: dict[str, Any]) -> int:
        """Append the event after `expected_sequence`; returns its sequence number."""
        sequence = expected_sequence + 1
        try:
            aws.table(self.table_name).put_item(
                Item=to_item(
                    {
                        **schema.event_key(self.aggregate_type, aggregate_id, sequence),
                        "entity": "EVENT",
                        "sequence": sequence,
                        "type": event_type,
                        "data": data,
                        "at": utc_now().isoformat(),
                    }
                ),
                ConditionExpression="attribute_not_exists(PK)",
            )
        except ClientError as exc:
            raise_if_transient(exc)
            if error_code(exc) == "ConditionalCheckFailedException":
                raise ConflictError(
                    f"{self.aggregate_type} {aggregate_id} already has event {sequence}; re-read and retry",
                    field="sequence",
                ) from exc
            raise
        return sequence

    def events(self, aggregate_id: str, *, after: int = 0) -> Iterator[StoredEvent]:
        """Every event in sequence order, read page by page."""
        cursor: str | None = None
        partition = schema.aggregate_partition(self.aggregate_type, aggregate_id)
        start = f"EVENT#{after + 1:0{schema.SEQUENCE_DIGITS}d}"
        end = "EVENT#" + "9" * schema.SEQUENCE_DIGITS
        while True:
            page = query_page(
                self.table_name, ("PK", partition), sort_between=(start, end), limit=100, cursor=cursor
            )
            for item in page.items:
                yield StoredEvent(
                    int(item["sequence"]), str(item["type"]), dict(item.get("data") or {}), item["at"]
                )
            if page.cursor is None:
                return
            cursor = page.cursor

    def replay(
        self, aggregate_id: str, reducer: Reducer, initial: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], int]:
        """(state rebuilt from every event, last sequence)."""
        state: dict[str, Any] = dict(initial or {})
        last = 0
        for event in self.events(aggregate_id):
            if event.sequence != last + 1:
                raise ConflictError(f"history of {aggregate_id} has a gap before event {event.sequence}")
            state = reducer(state, event)
            last = event.sequence
        return state, last


def execution_reducer(state: dict[str, Any], event: StoredEvent) -> dict[str, Any]:
    """An execution's state from its events: status and per-task status."""
    tasks = dict(state.get("tasks", {}))
    if event.type == "ExecutionAccepted":
        return {**state, "status": "PENDING", "request": event.data.get("request"), "tasks": {}}
    if event.type == "ExecutionPlanned":
        return {**state, "status": "RUNNING", "tasks": {t: "PENDING" for t in event.data.get("tasks", [])}}
    if event.type == "TaskCompleted":
        tasks[str(event.data["task_id"])] = str(event.data["status"])
        return {**state, "tasks": tasks}
    if event.type == "TaskCompensated":
        tasks[str(event.data["task_id"])] = "COMPENSATED"
        return {**state, "tasks": tasks}
    if event.type == "ExecutionFinished":
        return {**state, "status": event.data["status"]}
    return state
