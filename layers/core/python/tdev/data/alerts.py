"""Alerts in the single table: one item per alert, one open group per alert key (the 1 h grouping).

Grouping is one conditional write: the group item `ALERTKEY#<key>` is created (or taken over when its
window has ended) in the same transaction as the new alert; a repeat inside the window fails that
condition and instead ADDs 1 to the grouped alert's `count`. Concurrent intakes of one key therefore make
exactly one alert, whatever their order.
"""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError

from tdev import aws
from tdev.data import schema
from tdev.data.codec import error_code, from_item, raise_if_transient, serialize
from tdev.data.store import Page, cancellation_codes, query_page, transact_write
from tdev.errors import NotFoundError


class AlertRepository:
    def __init__(self, table_name: str) -> None:
        self._table_name = table_name

    def open_or_group(
        self, alert: dict[str, Any], *, now_epoch: int, window_seconds: int
    ) -> tuple[dict[str, Any], bool]:
        """Store `alert` as new, or count it on the open alert of its key: (the stored alert, created)."""
        group = {
            **schema.alert_group_key(alert["key"]),
            "entity": "ALERTGROUP",
            "alert_id": alert["id"],
            "window_ends": now_epoch + window_seconds,
            schema.TTL_ATTRIBUTE: now_epoch + window_seconds + 86_400,
        }
        item = {
            **alert,
            **schema.alert_key(alert["id"]),
            **schema.alert_listed(alert["created_at"], alert["id"]),
            "entity": "ALERT",
        }
        try:
            transact_write(
                [
                    {
                        "Put": {
                            "TableName": self._table_name,
                            "Item": serialize(group),
                            "ConditionExpression": "attribute_not_exists(PK) OR window_ends <= :now",
                            "ExpressionAttributeValues": serialize({":now": now_epoch}),
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table_name,
                            "Item": serialize(item),
                            "ConditionExpression": "attribute_not_exists(PK)",
                        }
                    },
                ]
            )
            return alert, True
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException" or cancellation_codes(exc)[0] != (
                "ConditionalCheckFailed"
            ):
                raise
        return self._count_repeat(alert["key"], alert["last_seen"]), False

    def _count_repeat(self, key: str, seen_at: str) -> dict[str, Any]:
        current = aws.table(self._table_name).get_item(Key=schema.alert_group_key(key), ConsistentRead=True)
        alert_id = str(current["Item"]["alert_id"])
        try:
            updated = aws.client("dynamodb").update_item(
                TableName=self._table_name,
                Key=serialize(schema.alert_key(alert_id)),
                UpdateExpression="ADD #count :one SET last_seen = :seen",
                ConditionExpression="attribute_exists(PK)",
                ExpressionAttributeNames={"#count": "count"},
                ExpressionAttributeValues=serialize({":one": 1, ":seen": seen_at}),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            raise_if_transient(exc)
            raise
        from boto3.dynamodb.types import TypeDeserializer

        plain = {k: TypeDeserializer().deserialize(v) for k, v in updated["Attributes"].items()}
        return _public(from_item(plain))

    def get(self, alert_id: str) -> dict[str, Any]:
        item = aws.table(self._table_name).get_item(Key=schema.alert_key(alert_id), ConsistentRead=True)
        if "Item" not in item:
            raise NotFoundError(f"alert {alert_id} not found", field="alert_id")
        return _public(from_item(item["Item"]))

    def update(self, alert_id: str, **fields: Any) -> None:
        """Set fields on an existing alert (escalation progress, notifications, outcome)."""
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {f":v{i}": value for i, value in enumerate(fields.values())}
        try:
            aws.client("dynamodb").update_item(
                TableName=self._table_name,
                Key=serialize(schema.alert_key(alert_id)),
                UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields))),
                ConditionExpression="attribute_exists(PK)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=serialize(values, drop_none=False),
            )
        except ClientError as exc:
            raise_if_transient(exc)
            if error_code(exc) == "ConditionalCheckFailedException":
                raise NotFoundError(f"alert {alert_id} not found", field="alert_id") from None
            raise

    def raise_to_escalation(self, alert_id: str, severity: str, *, open_status: str, escalating: str) -> bool:
        """A repeat of higher severity on an alert that was only notified (OPEN): it takes the severity
        and starts escalating, once (conditional: of concurrent repeats exactly one wins). True if it won."""
        try:
            aws.client("dynamodb").update_item(
                TableName=self._table_name,
                Key=serialize(schema.alert_key(alert_id)),
                UpdateExpression="SET severity = :severity, #status = :escalating",
                ConditionExpression="attribute_exists(PK) AND #status = :open",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=serialize(
                    {":severity": severity, ":escalating": escalating, ":open": open_status}
                ),
            )
            return True
        except ClientError as exc:
            raise_if_transient(exc)
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise

    def record_notifications(self, alert_id: str, level: int, entries: list[dict[str, Any]]) -> None:
        """Append one level's deliveries (channel, ok, error) to the alert's notification log."""
        try:
            aws.client("dynamodb").update_item(
                TableName=self._table_name,
                Key=serialize(schema.alert_key(alert_id)),
                UpdateExpression="SET notifications = list_append(if_not_exists(notifications, :empty), "
                ":entries), escalation_level = :level",
                ConditionExpression="attribute_exists(PK)",
                ExpressionAttributeValues=serialize({":empty": [], ":entries": entries, ":level": level}),
            )
        except ClientError as exc:
            raise_if_transient(exc)
            raise

    def acknowledge(self, alert_id: str, *, by: str, at: str) -> tuple[dict[str, Any], bool]:
        """Mark acknowledged once (the first acknowledgement wins): (the alert, whether this call did it)."""
        try:
            aws.client("dynamodb").update_item(
                TableName=self._table_name,
                Key=serialize(schema.alert_key(alert_id)),
                UpdateExpression="SET acknowledged_at = :at, acknowledged_by = :by, #status = :acked",
                ConditionExpression="attribute_exists(PK) AND attribute_not_exists(acknowledged_at)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=serialize({":at": at, ":by": by, ":acked": "ACKNOWLEDGED"}),
            )
            return self.get(alert_id), True
        except ClientError as exc:
            raise_if_transient(exc)
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        return self.get(alert_id), False  # NotFound when it does not exist; else acknowledged before

    def list(self, *, status: str | None, severity: str | None, limit: int, cursor: str | None) -> Page:
        conditions = [Attr("status").eq(status)] if status else []
        if severity:
            conditions.append(Attr("severity").eq(severity))
        condition = None
        for c in conditions:
            condition = c if condition is None else condition & c
        page = query_page(
            self._table_name,
            ("GSI1PK", schema.ALERT_LISTING),
            index_name="GSI1",
            newest_first=True,
            limit=limit,
            cursor=cursor,
            filter_expression=condition,
        )
        page.items = [_public(i) for i in page.items]
        return page


def _public(item: dict[str, Any]) -> dict[str, Any]:
    """The alert without its table bookkeeping."""
    hidden = set(schema.key_attributes()) | {"entity", schema.TTL_ATTRIBUTE}
    return {k: v for k, v in item.items() if k not in hidden}
