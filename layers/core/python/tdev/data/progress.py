"""An execution's live progress log: the bus's events about it, numbered 1, 2, 3 ... as they arrive.

    PK=PROGRESS#<execution id>  SK=HEAD              sequence (the last number given), terminal, expires_at
    PK=PROGRESS#<execution id>  SK=SEQ#<n, 10 digits> event_id, type, at, data, expires_at

The progress consumer (`tdev.messaging.consumers.record_progress`) appends each event the bus carries
for an execution (ExecutionAccepted, TaskCompleted, RequestCompleted, RequestFailed); the sequence number
is the event id a stream client resumes from (`Last-Event-ID`), so "everything after n" is one Query.
An append is one transaction: the event at `head + 1` (absent before), the head moved from `head` to
`head + 1` (so two concurrent appends cannot take the same number: the loser retries on the new head),
and the consumer's applied-marker (so a redelivered event is not appended twice).

This is not the execution's history (`tdev.data.history`, the outbox in event time): it is the order in
which subscribers heard the events, which is what a resumable stream needs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tdev import aws
from tdev.data import schema
from tdev.data.store import query_page, serialize

PROGRESS_RETENTION_SECONDS = 7 * 86_400  # as long as the outbox keeps the history
TERMINAL_TYPES = frozenset({"RequestCompleted", "RequestFailed"})
PROGRESS_TYPES = ("ExecutionAccepted", "TaskCompleted", *sorted(TERMINAL_TYPES))
MAX_PAGE = 100


@dataclass(frozen=True)
class ProgressEvent:
    sequence: int
    event_id: str
    type: str
    at: str
    data: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.sequence,
            "event_id": self.event_id,
            "type": self.type,
            "at": self.at,
            "data": self.data,
        }


@dataclass(frozen=True)
class Head:
    sequence: int
    terminal: bool


def head(table_name: str, execution_id: str) -> Head:
    """The last number given and whether a terminal event has been appended (consistent read)."""
    item = (
        aws.table(table_name)
        .get_item(Key=schema.progress_head_key(execution_id), ConsistentRead=True)
        .get("Item")
        or {}
    )
    return Head(int(item.get("sequence", 0)), bool(item.get("terminal", False)))


def append_actions(
    table_name: str, execution_id: str, current: Head, event: ProgressEvent
) -> list[dict[str, Any]]:
    """The two TransactWriteItems actions that append `event` as number `current.sequence + 1`."""
    expires_at = int(time.time()) + PROGRESS_RETENTION_SECONDS
    item = schema.entity_item(
        "PROGRESS",
        schema.progress_event_key(execution_id, event.sequence),
        execution_id=execution_id,
        sequence=event.sequence,
        event_id=event.event_id,
        type=event.type,
        at=event.at,
        data=event.data,
        expires_at=expires_at,
    )
    values: dict[str, Any] = {
        ":next": event.sequence,
        ":expires": expires_at,
        ":terminal": current.terminal or event.type in TERMINAL_TYPES,
    }
    condition = "attribute_not_exists(PK)"
    if current.sequence:
        values[":current"] = current.sequence
        condition = "#sequence = :current"
    return [
        {
            "Put": {
                "TableName": table_name,
                "Item": serialize(item),
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        },
        {
            "Update": {
                "TableName": table_name,
                "Key": serialize(schema.progress_head_key(execution_id)),
                "UpdateExpression": "SET #sequence = :next, terminal = :terminal, expires_at = :expires",
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#sequence": "sequence"},
                "ExpressionAttributeValues": serialize(values),
            }
        },
    ]


def events_after(
    table_name: str, execution_id: str, after: int = 0, *, limit: int = MAX_PAGE
) -> dict[str, Any]:
    """The events numbered above `after`, in order (at most `limit`), the last number in this answer, and
    `terminal`: the log holds a terminal event and this answer reaches the end of the log (a stream ends)."""
    current = head(table_name, execution_id)
    page = query_page(
        table_name,
        ("PK", schema.progress_head_key(execution_id)["PK"]),
        sort_between=(
            schema.progress_event_key(execution_id, after + 1)["SK"],
            schema.progress_event_key(execution_id, 9_999_999_999)["SK"],
        ),
        limit=limit,
    )
    events = [
        ProgressEvent(int(i["sequence"]), str(i["event_id"]), str(i["type"]), str(i["at"]), dict(i["data"]))
        for i in page.items
    ]
    last = events[-1].sequence if events else after
    return {
        "execution_id": execution_id,
        "events": [e.as_dict() for e in events],
        "last_id": last,
        "terminal": current.terminal and last >= current.sequence,
    }
