"""A distributed lock on the single table: a lease with a TTL whose release/extend check the owner.

Acquire succeeds when there is no lock item or its lease has run out (a crashed holder cannot block
others longer than the TTL); release and extend are conditional on `owner = me` and a live lease, so
a holder whose lease expired and was taken over can never release or extend the new owner's lock.
`expires_at` (the table's TTL attribute) lets DynamoDB delete abandoned lock items eventually.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from botocore.exceptions import ClientError

from tdev import aws
from tdev.data import schema
from tdev.data.store import error_code, raise_if_transient
from tdev.errors import ConflictError

DEFAULT_TTL_SECONDS = 30


class LockNotHeld(ConflictError):
    code = "LockNotHeld"


class DistributedLock:
    def __init__(
        self,
        table_name: str,
        name: str,
        *,
        owner: str | None = None,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Any = time.time,
    ) -> None:
        self.table_name = table_name
        self.name = name
        self.owner = owner or str(uuid.uuid4())
        self.ttl_seconds = ttl_seconds
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def acquire(self) -> bool:
        """Take the lock if it is free or its lease ran out; False when someone else holds it."""
        now = self._now_ms()
        lease_until = now + int(self.ttl_seconds * 1000)
        try:
            aws.table(self.table_name).put_item(
                Item={
                    **schema.lock_key(self.name),
                    "entity": "LOCK",
                    "owner": self.owner,
                    "lease_until": lease_until,
                    "expires_at": lease_until // 1000 + 3600,
                },
                ConditionExpression="attribute_not_exists(PK) OR lease_until < :now OR #owner = :me",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":now": now, ":me": self.owner},
            )
            return True
        except ClientError as exc:
            raise_if_transient(exc)
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise

    def extend(self, ttl_seconds: float | None = None) -> None:
        """Push the lease out; only while this owner still holds a live lease."""
        now = self._now_ms()
        lease_until = now + int((ttl_seconds or self.ttl_seconds) * 1000)
        try:
            aws.table(self.table_name).update_item(
                Key=schema.lock_key(self.name),
                UpdateExpression="SET lease_until = :until, expires_at = :exp",
                ConditionExpression="#owner = :me AND lease_until >= :now",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={
                    ":until": lease_until,
                    ":exp": lease_until // 1000 + 3600,
                    ":me": self.owner,
                    ":now": now,
                },
            )
        except ClientError as exc:
            raise_if_transient(exc)
            if error_code(exc) == "ConditionalCheckFailedException":
                raise LockNotHeld(f"lock {self.name} is not held by {self.owner}", field="owner") from exc
            raise

    def release(self) -> bool:
        """Give the lock up; False (nothing deleted) when this owner no longer holds it."""
        try:
            aws.table(self.table_name).delete_item(
                Key=schema.lock_key(self.name),
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":me": self.owner},
            )
            return True
        except ClientError as exc:
            raise_if_transient(exc)
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise

    def __enter__(self) -> DistributedLock:
        if not self.acquire():
            raise LockNotHeld(f"lock {self.name} is held by another owner", field="lock")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
