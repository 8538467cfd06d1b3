"""WebSocket connections and their subscriptions, on the single table (keys from `tdev.data.schema`).

    PK=CONNECTION#<connection id>  SK=CONNECTION                  principal, roles, source, expires_at
    PK=CONNECTION#<connection id>  SK=SUBSCRIPTION#<execution id> sent, lease_until, expires_at
                                   GSI4: LOOKUP#SUBSCRIBERS#<execution id> -> CONNECTION#<connection id>

`sent` is the last progress event id (tdev.data.progress) delivered to that connection: the pusher sends
what follows it, so a subscription that resumes from a `last_event_id` and the live appends go through one
cursor, in order, without gaps. `lease_until` is a short send lease: one sender per subscription at a
time, so two pushers (a burst of appends) never interleave their frames; a crashed holder's lease lapses.
Everything expires with API Gateway's longest connection (2 h) plus a margin: a connection that never
said $disconnect leaves nothing behind for long.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from tdev import aws
from tdev.data import schema
from tdev.data.store import error_code

CONNECTION_TTL_SECONDS = 2 * 3600 + 600  # API Gateway closes a WebSocket after 2 h
LEASE_SECONDS = 30  # longer than a push of one page can take (the pusher's timeout is shorter)


@dataclass(frozen=True)
class Connection:
    connection_id: str
    principal: str
    roles: tuple[str, ...]
    source: str
    api_key_id: str | None


@dataclass(frozen=True)
class Lease:
    connection_id: str
    execution_id: str
    sent: int
    until: int


class ConnectionRepository:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @property
    def _table(self) -> Any:
        return aws.table(self.table_name)

    # ------------------------------------------------------------------------------ connections
    def open(self, connection: Connection) -> None:
        self._table.put_item(
            Item=schema.entity_item(
                "CONNECTION",
                schema.connection_key(connection.connection_id),
                connection_id=connection.connection_id,
                principal=connection.principal,
                roles=json.dumps(list(connection.roles)),
                source=connection.source,
                api_key_id=connection.api_key_id or "",
                expires_at=int(time.time()) + CONNECTION_TTL_SECONDS,
            )
        )

    def get(self, connection_id: str) -> Connection | None:
        item = self._table.get_item(Key=schema.connection_key(connection_id), ConsistentRead=True).get("Item")
        if not item or int(item.get("expires_at", 0)) < time.time():
            return None
        return Connection(
            connection_id,
            str(item["principal"]),
            tuple(json.loads(str(item.get("roles") or "[]"))),
            str(item.get("source") or "jwt"),
            str(item.get("api_key_id") or "") or None,
        )

    def close(self, connection_id: str) -> int:
        """Delete the connection and its subscriptions (its whole partition); how many items went."""
        keys: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("PK").eq(schema.connection_key(connection_id)["PK"]),
            "ProjectionExpression": "PK, SK",
        }
        while True:
            page = self._table.query(**kwargs)
            keys += [{"PK": i["PK"], "SK": i["SK"]} for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        for key in keys:
            self._table.delete_item(Key=key)
        return len(keys)

    # ---------------------------------------------------------------------------- subscriptions
    def subscribe(self, connection_id: str, execution_id: str, sent: int) -> None:
        """Follow `execution_id` from after event `sent`. A new subscription is a new item (the pusher's
        stream filter reacts to its insertion), so subscribing again replaces the old one by delete + put."""
        key = schema.subscription_key(connection_id, execution_id)
        self._table.delete_item(Key=key)
        self._table.put_item(
            Item=schema.entity_item(
                "SUBSCRIPTION",
                key,
                schema.subscribers_lookup(execution_id, connection_id),
                connection_id=connection_id,
                execution_id=execution_id,
                sent=sent,
                expires_at=int(time.time()) + CONNECTION_TTL_SECONDS,
            ),
        )

    def subscribers(self, execution_id: str) -> list[str]:
        """The connection ids that follow `execution_id` (GSI4)."""
        gsi = schema.index("GSI4")
        partition = schema.subscribers_lookup(execution_id, "")["GSI4PK"]
        kwargs: dict[str, Any] = {
            "IndexName": gsi.name,
            "KeyConditionExpression": Key(gsi.partition_key).eq(partition),
        }
        found: list[str] = []
        while True:
            page = self._table.query(**kwargs)
            found += [str(i["connection_id"]) for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def acquire(self, connection_id: str, execution_id: str) -> Lease | None:
        """The send lease of one subscription with its cursor; None when another sender holds it or the
        subscription is gone."""
        now = int(time.time())
        until = now + LEASE_SECONDS
        try:
            item = self._table.update_item(
                Key=schema.subscription_key(connection_id, execution_id),
                UpdateExpression="SET lease_until = :until",
                ConditionExpression="attribute_exists(PK) AND "
                "(attribute_not_exists(lease_until) OR lease_until < :now)",
                ExpressionAttributeValues={":until": until, ":now": now},
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        return Lease(connection_id, execution_id, int(item.get("sent", 0)), until)

    def advance(self, lease: Lease, sent: int) -> Lease:
        """Record that events up to `sent` went out (only while holding the lease)."""
        self._table.update_item(
            Key=schema.subscription_key(lease.connection_id, lease.execution_id),
            UpdateExpression="SET sent = :sent",
            ConditionExpression="lease_until = :until",
            ExpressionAttributeValues={":sent": sent, ":until": lease.until},
        )
        return Lease(lease.connection_id, lease.execution_id, sent, lease.until)

    def release(self, lease: Lease) -> None:
        try:
            self._table.update_item(
                Key=schema.subscription_key(lease.connection_id, lease.execution_id),
                UpdateExpression="REMOVE lease_until",
                ConditionExpression="lease_until = :until",
                ExpressionAttributeValues={":until": lease.until},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":  # gone or lapsed: nothing to release
                raise
