"""An execution's history, event-sourced: the facts its outbox recorded, in order, and the state they
replay to.

Every state change of an execution that others must hear of writes its event into the outbox in the same
transaction (`ExecutionRepository`: ExecutionAccepted, TaskCompleted per task and status, and the outcome,
RequestCompleted or RequestFailed). Those outbox items are the execution's event log:

    PK=OUTBOX#EXECUTION#<id>  SK=EVENT#<event id>   detail_type, detail (the envelope, with its timestamp)

`execution_history` reads that partition (a Query, page by page; an execution has a bounded number of
events) and orders it by the envelope's timestamp; `replay` folds the events through `apply` and rebuilds
the execution's status and per-task status from history alone. `GET /v1/executions/{id}/history` answers
with both. The log is kept as long as the outbox keeps its items (`OUTBOX_RETENTION_SECONDS`, 7 days);
after that the route answers with the events that are left, and says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tdev.data import schema
from tdev.data.outbox import OUTBOX_RETENTION_SECONDS
from tdev.data.store import query_page

TERMINAL_EVENTS = {"RequestCompleted", "RequestFailed"}


@dataclass(frozen=True)
class HistoryEvent:
    event_id: str
    type: str
    at: str
    data: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "type": self.type, "at": self.at, "data": self.data}


def execution_history(table_name: str, execution_id: str, *, max_events: int = 1_000) -> list[HistoryEvent]:
    """The execution's events in the order they happened (timestamp, then event id)."""
    partition = schema.outbox_key(f"EXECUTION#{execution_id}", "")["PK"]
    events: list[HistoryEvent] = []
    cursor: str | None = None
    while len(events) < max_events:
        page = query_page(table_name, ("PK", partition), limit=100, cursor=cursor)
        for item in page.items:
            detail = json.loads(str(item["detail"]))
            events.append(
                HistoryEvent(
                    str(item["event_id"]), str(item["detail_type"]), str(detail["timestamp"]), detail["data"]
                )
            )
        if page.cursor is None:
            break
        cursor = page.cursor
    return sorted(events, key=lambda e: (e.at, e.event_id))[:max_events]


def apply(state: dict[str, Any], event: HistoryEvent) -> dict[str, Any]:
    """One event's effect on the execution's state: status, and each task's last reported status."""
    tasks = dict(state.get("tasks", {}))
    if event.type == "ExecutionAccepted":
        return {**state, "status": "PENDING", "tasks": tasks}
    if event.type == "TaskCompleted":
        tasks[str(event.data["taskId"])] = str(event.data["status"])
        return {
            **state,
            "status": "RUNNING" if state.get("status") == "PENDING" else state["status"],
            "tasks": tasks,
        }
    if event.type in TERMINAL_EVENTS:
        compensated = {str(t): "COMPENSATED" for t in event.data.get("compensated") or []}
        return {**state, "status": str(event.data["status"]), "tasks": {**tasks, **compensated}}
    return state


def replay(events: list[HistoryEvent]) -> dict[str, Any]:
    """The state the events rebuild, from nothing."""
    state: dict[str, Any] = {"status": None, "tasks": {}}
    for event in events:
        state = apply(state, event)
    return state


def history_view(table_name: str, execution_id: str) -> dict[str, Any]:
    """What `GET /v1/executions/{id}/history` answers."""
    events = execution_history(table_name, execution_id)
    complete = bool(events) and events[0].type == "ExecutionAccepted"
    return {
        "execution_id": execution_id,
        "events": [e.as_dict() for e in events],
        "replayed": replay(events),
        "complete": complete,
        "retention_days": OUTBOX_RETENTION_SECONDS // 86_400,
    }
