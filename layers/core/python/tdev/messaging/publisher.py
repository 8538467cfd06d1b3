"""The outbox publisher: DynamoDB stream records of new OUTBOX items -> the `t-developer` bus.

Events with a queue route (`tdev.messaging.queues.QUEUE_ROUTES`: task completions) are also sent straight
to their FIFO queue, with the message group the route takes from the message (the execution id) and the
event id as deduplication id: an EventBridge rule could only give them one fixed group. They still go on
the bus (after the queue), so every outbox event is there for whoever subscribes.

At-least-once: a record is reported failed (Lambda retries from its sequence number) unless
EventBridge accepted its event; consumers make the effect exactly-once by the event id. Order per
partition key is kept: once a record of a partition fails, later records of the same partition in
the batch are held back (reported failed too) so they are never published ahead of it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from botocore.exceptions import ClientError

from tdev import aws
from tdev.data.store import deserialize
from tdev.errors import ConfigurationError, TransientError
from tdev.messaging.queues import QueueRoute, event_bus_name, route_for
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
        route = route_for(str(item["source"]), str(item["detail_type"]), event_detail(item))
        try:
            if route is not None:
                self._send_to_queue(route, item)
            self._put_on_bus(item)
        except ClientError as exc:
            self.failed_partitions.add(partition)
            raise TransientError(f"{exc.operation_name} failed: {exc}") from exc
        except Exception:
            self.failed_partitions.add(partition)
            raise
        self.published.append(str(item["event_id"]))
        logger.info(
            "outbox event published",
            extra={
                "event_id": item["event_id"],
                "detail_type": item["detail_type"],
                "partition": partition,
                "queue": None if route is None else route.queue,
            },
        )
        return str(item["event_id"])

    def _put_on_bus(self, item: dict[str, Any]) -> None:
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
        if response.get("FailedEntryCount"):
            entry = response["Entries"][0]
            raise TransientError(f"EventBridge rejected {item['event_id']}: {entry.get('ErrorCode')}")

    @staticmethod
    def _send_to_queue(route: QueueRoute, item: dict[str, Any]) -> None:
        """One FIFO message: grouped by the route's message field, deduplicated on the event id."""
        url = os.environ.get(route.queue_url_variable)
        if not url:
            raise ConfigurationError(f"{route.queue_url_variable} is not set: cannot send {route.name}")
        detail, detail_type = event_detail(item), str(item["detail_type"])
        aws.client("sqs").send_message(
            QueueUrl=url,
            MessageBody=json.dumps(route.message(detail_type, detail), sort_keys=True),
            MessageGroupId=route.message_group(detail_type, detail),
            MessageDeduplicationId=str(item["event_id"]),
        )


def event_detail(item: dict[str, Any]) -> dict[str, Any]:
    detail: dict[str, Any] = json.loads(item["detail"])
    return detail
