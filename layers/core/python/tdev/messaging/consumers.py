"""Idempotent consumers: each message's effect is applied exactly once, by a conditional transaction.

Powertools idempotency (in the handlers) answers a redelivered message from its stored result; the
guarantee itself comes from here: the effect and an `APPLIED#<consumer>#<event id>` marker are
written in one TransactWriteItems whose marker put is conditional, so a duplicate delivery, a retry
after a crash between the effect and the acknowledgment, or two concurrent deliveries cannot apply
it twice (the Corrections: a conditional write, not check-then-insert).
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from tdev.data import progress, schema
from tdev.data.execution_cache import execution_changed
from tdev.data.store import cancellation_codes, error_code, serialize, transact_write
from tdev.errors import NotFoundError, TransientError, ValidationError
from tdev.settings import get_settings

APPLIED_RETENTION_SECONDS = 7 * 86_400


def applied_key(consumer: str, event_id: str) -> dict[str, str]:
    return {"PK": f"APPLIED#{consumer}#{event_id}", "SK": "APPLIED"}


def _marker(consumer: str, event_id: str) -> dict[str, Any]:
    """The conditional put that records `consumer` applied `event_id` (fails if it already had)."""
    return {
        "Put": {
            "TableName": get_settings().table_name,
            "Item": serialize(
                {
                    **applied_key(consumer, event_id),
                    "entity": "APPLIED",
                    "consumer": consumer,
                    "event_id": event_id,
                    "expires_at": int(time.time()) + APPLIED_RETENTION_SECONDS,
                }
            ),
            "ConditionExpression": "attribute_not_exists(PK)",
        }
    }


def apply_once(consumer: str, event_id: str, effect: dict[str, Any]) -> bool:
    """Apply `effect` (one transaction action) unless this consumer already applied this event.

    Returns True when applied now, False when it had been applied before.
    """
    try:
        transact_write([_marker(consumer, event_id), effect])
        return True
    except ClientError as exc:
        if error_code(exc) != "TransactionCanceledException":
            raise
        codes = cancellation_codes(exc)
        if codes and codes[0] == "ConditionalCheckFailed":
            return False
        if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
            raise NotFoundError("the message refers to an execution that does not exist") from exc
        raise


def _required(message: dict[str, Any], *names: str) -> None:
    for name in names:
        if not message.get(name):
            raise ValidationError(f"message has no {name}", field=name)


def notify(message: dict[str, Any]) -> dict[str, Any]:
    """A request's outcome notification: counted on the execution once per event."""
    _required(message, "eventId", "executionId", "type")
    effect = {
        "Update": {
            "TableName": get_settings().table_name,
            "Key": serialize(schema.execution_key(message["executionId"])),
            "UpdateExpression": "ADD notifications_sent :one SET last_notification = :type",
            "ConditionExpression": "attribute_exists(PK)",
            "ExpressionAttributeValues": serialize({":one": 1, ":type": message["type"]}),
        }
    }
    try:
        applied = apply_once("notifications", message["eventId"], effect)
    finally:
        execution_changed(message["executionId"])  # the cached copy of its items holds the counters
    return {"eventId": message["eventId"], "applied": applied}


def record_task_activity(message: dict[str, Any]) -> dict[str, Any]:
    """A task completion from the outbox, recorded on its execution's activity once per event."""
    _required(message, "eventId", "executionId", "taskId", "status")
    effect = {
        "Update": {
            "TableName": get_settings().table_name,
            "Key": serialize(schema.execution_key(message["executionId"])),
            "UpdateExpression": "ADD tasks_announced :one SET last_announced_task = :task",
            "ConditionExpression": "attribute_exists(PK)",
            "ExpressionAttributeValues": serialize({":one": 1, ":task": message["taskId"]}),
        }
    }
    try:
        applied = apply_once("task-activity", message["eventId"], effect)
    finally:
        execution_changed(message["executionId"])
    return {"eventId": message["eventId"], "applied": applied}


APPEND_ATTEMPTS = 8


def progress_message(event: dict[str, Any]) -> dict[str, Any]:
    """The progress consumer's message from the whole EventBridge event the rule delivers: flat, keyed
    by the envelope's eventId (fixed per fact; EventBridge's own id is new at every publish)."""
    detail = event.get("detail") or {}
    data = detail.get("data") or {}
    return {
        "eventId": detail.get("eventId"),
        "executionId": data.get("executionId"),
        "type": event.get("detail-type"),
        "timestamp": detail.get("timestamp"),
        "data": data,
    }


def record_progress(message: dict[str, Any]) -> dict[str, Any]:
    """An execution's event (`progress_message`), appended to its progress log (`tdev.data.progress`)
    once: the next sequence number, the head moved, and this consumer's marker, in one transaction. A
    redelivery finds the marker and appends nothing; when a concurrent append of another event of the
    same execution took the number, this one retries on the new head."""
    _required(message, "eventId", "executionId", "type", "timestamp")
    if message["type"] not in progress.PROGRESS_TYPES:
        raise ValidationError(f"{message['type']} is not a progress event", field="type")
    table_name, execution_id = get_settings().table_name, str(message["executionId"])
    for _ in range(APPEND_ATTEMPTS):
        current = progress.head(table_name, execution_id)
        appended = progress.ProgressEvent(
            current.sequence + 1,
            str(message["eventId"]),
            str(message["type"]),
            str(message["timestamp"]),
            dict(message.get("data") or {}),
        )
        try:
            transact_write(
                [
                    _marker("progress", appended.event_id),
                    *progress.append_actions(table_name, execution_id, current, appended),
                ]
            )
            return {"eventId": appended.event_id, "applied": True, "id": appended.sequence}
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            codes = cancellation_codes(exc)
            if codes and codes[0] == "ConditionalCheckFailed":
                return {"eventId": appended.event_id, "applied": False}
            if "ConditionalCheckFailed" not in codes[1:]:
                raise
    raise TransientError(f"execution {execution_id}: the progress log kept moving; event retried later")
