"""The outbox publisher: DynamoDB stream records of new OUTBOX items -> the `t-developer` bus.

At-least-once: a record is reported failed (Lambda retries from its sequence number) unless
EventBridge accepted its event; consumers make the effect exactly-once by the event id. Order per
partition key is kept: once a record of a partition fails, later records of the same partition in
the batch are held back (reported failed too) so they are never published ahead of it.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from tdev import aws
from tdev.data.store import deserialize
from tdev.errors import TransientError
from tdev.messaging.queues import event_bus_name
from tdev.observability import logger


class HeldForOrdering(TransientError):
    """An earlier event of the same partition key failed in this batch; this one waits for it."""


class OutboxPublisher:
    def __init__(self, bus_name: str | None = None) -> None:
        self.bus_name = bus_name or event_bus_name()
        self.failed_partitions: set[str] = set()
        self.published: list[str] = []

    @staticmethod
    def outbox_item(record: dict[str, Any]) -> dict[str, Any] | None:
        """The new outbox item a stream record carries; None for every other change on the table."""
        if record.get("eventName") != "INSERT":
            return None
        image = record.get("dynamodb", {}).get("NewImage") or {}
        if image.get("entity", {}).get("S") != "OUTBOX":
            return None
        return deserialize(image)

    def handle(self, record: dict[str, Any]) -> str | None:
        item = self.outbox_item(record)
        if item is None:
            return None
        partition = str(item["partition_key"])
        if partition in self.failed_partitions:
            raise HeldForOrdering(f"event {item['event_id']} waits for an earlier event of {partition}")
        try:
            response = aws.client("events").put_events(
                Entries=[
                    {
                        "EventBusName": self.bus_name,
                        "Source": item["source"],
                        "DetailType": item["detail_type"],
                        "Detail": item["detail"],
                    }
                ]
            )
        except ClientError as exc:
            self.failed_partitions.add(partition)
            raise TransientError(f"PutEvents failed: {exc}") from exc
        except Exception:
            self.failed_partitions.add(partition)
            raise
        if response.get("FailedEntryCount"):
            self.failed_partitions.add(partition)
            entry = response["Entries"][0]
            raise TransientError(f"EventBridge rejected {item['event_id']}: {entry.get('ErrorCode')}")
        self.published.append(str(item["event_id"]))
        logger.info(
            "outbox event published",
            extra={"event_id": item["event_id"], "detail_type": item["detail_type"], "partition": partition},
        )
        return str(item["event_id"])


def event_detail(item: dict[str, Any]) -> dict[str, Any]:
    detail: dict[str, Any] = json.loads(item["detail"])
    return detail
