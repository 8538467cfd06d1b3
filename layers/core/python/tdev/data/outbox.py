"""The transactional outbox: an event is stored in the same TransactWriteItems as the state change.

    PK=OUTBOX#<partition key>  SK=EVENT#<event id>   source, detail_type, detail (the envelope, JSON)

An outbox item is a table write like any other, so it lives with the data: the repositories put it in
their transactions (`ExecutionRepository`). Nothing is published here: the table's stream carries each
new outbox item to the publisher (`tdev.messaging.publisher`), so an event exists if and only if its
state change committed. Event ids are deterministic per fact, so a retried step that rewrites the
record produces a MODIFY on the stream, not a second INSERT, and is not published twice.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from tdev.data import schema
from tdev.data.codec import serialize
from tdev.models import utc_now

OUTBOX_RETENTION_SECONDS = 7 * 86_400
SOURCE_PREFIX = "t-developer."
ENVELOPE_VERSION = "1"


def envelope(
    *,
    source: str,
    data: dict[str, Any],
    correlation_id: str,
    causation_id: str,
    event_id: str | None = None,
    partition_key: str | None = None,
) -> dict[str, Any]:
    """The spec's event envelope: {version, eventId, timestamp, correlationId, causationId, metadata,
    data}."""
    if not source.startswith(SOURCE_PREFIX):
        raise ValueError(f"event sources are t-developer.<src>, not {source}")
    return {
        "version": ENVELOPE_VERSION,
        "eventId": event_id or str(uuid.uuid4()),
        "timestamp": utc_now().isoformat(),
        "correlationId": correlation_id,
        "causationId": causation_id,
        "metadata": {"source": source, "partitionKey": partition_key},
        "data": data,
    }


def outbox_put(
    table_name: str,
    *,
    source: str,
    detail_type: str,
    data: dict[str, Any],
    partition_key: str,
    event_id: str,
    correlation_id: str,
    causation_id: str,
) -> dict[str, Any]:
    """A TransactWriteItems `Put` action that records one event in the outbox."""
    detail = envelope(
        source=source,
        data=data,
        correlation_id=correlation_id,
        causation_id=causation_id,
        event_id=event_id,
        partition_key=partition_key,
    )
    item = schema.entity_item(
        "OUTBOX",
        schema.outbox_key(partition_key, event_id),
        event_id=event_id,
        source=source,
        detail_type=detail_type,
        partition_key=partition_key,
        detail=json.dumps(detail, sort_keys=True),
        expires_at=int(time.time()) + OUTBOX_RETENTION_SECONDS,
    )
    return {"Put": {"TableName": table_name, "Item": serialize(item)}}
