"""The spec's event envelope: {version, eventId, timestamp, correlationId, causationId, metadata, data}."""

from __future__ import annotations

import uuid
from typing import Any

from tdev.messaging.queues import SOURCE_PREFIX
from tdev.models import utc_now

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
