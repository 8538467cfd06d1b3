"""Revoked tokens and disabled principals: a Redis key per jti that expires with the token, and a durable
item in the single table so that a flushed or failed-over Redis can be refilled (`restore`) and checks
fall back to the table when Redis is unreachable. Checks fail closed: if neither answers, 401.

    Redis   tdev:revoked:jti:<jti>   (TTL = seconds until the token expires)
            tdev:disabled:<principal>
    Table   PK=REVOKED#<jti>      SK=REVOKED     expires_at = token exp (DynamoDB TTL removes it)
            PK=PRINCIPAL#<id>     SK=STATUS      status = disabled
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from tdev import aws, cache
from tdev.data import schema
from tdev.errors import AuthenticationError
from tdev.observability import logger
from tdev.security.tokens import MAX_TOKEN_LIFETIME_SECONDS

JTI_PREFIX = "tdev:revoked:jti:"
PRINCIPAL_PREFIX = "tdev:disabled:"


class RevocationStore:
    def __init__(self, table_name: str, redis: Any = None) -> None:
        self.table_name = table_name
        self._redis = redis

    @property
    def redis(self) -> Any:
        return self._redis if self._redis is not None else cache.redis_client()

    def _table(self) -> Any:
        return aws.table(self.table_name)

    def revoke(self, jti: str, expires_at: int | None = None, *, by: str = "system") -> int:
        """Revoke token `jti` until `expires_at` (epoch s; default: the longest lifetime we accept)."""
        now = int(time.time())
        expires_at = expires_at or now + MAX_TOKEN_LIFETIME_SECONDS
        ttl = max(1, expires_at - now)
        self._table().put_item(
            Item={
                **schema.revoked_token_key(jti),
                # Listed by expiry on GSI1: restore() queries the unexpired ones, never scans.
                **schema.listed("REVOKED", f"{expires_at:0{schema.TIME_DIGITS}d}#{jti}"),
                "jti": jti,
                "revoked_by": by,
                "revoked_at": now,
                "expires_at": expires_at,
            }
        )
        self.redis.set(JTI_PREFIX + jti, "1", ex=ttl)
        logger.info("token revoked", extra={"security_event": "token_revoked", "jti": jti, "by": by})
        return ttl

    def disable_principal(self, principal: str, *, by: str = "system") -> None:
        """Every token of `principal` is refused from now on (a deleted or locked user)."""
        self._table().put_item(
            Item={
                **schema.principal_status_key(principal),
                **schema.listed("DISABLED", principal),
                "status": "disabled",
                "changed_by": by,
                "changed_at": int(time.time()),
            }
        )
        self.redis.set(PRINCIPAL_PREFIX + principal, "1")
        logger.info(
            "principal disabled", extra={"security_event": "principal_disabled", "principal": principal}
        )

    def is_revoked(self, jti: str) -> bool:
        try:
            return bool(self.redis.exists(JTI_PREFIX + jti))
        except Exception as exc:
            logger.warning("revocation check falls back to the table", extra={"error": str(exc)})
            item = self._durable_get(f"REVOKED#{jti}", "REVOKED")
            return item is not None and int(item.get("expires_at", 0)) > time.time()

    def is_principal_disabled(self, principal: str) -> bool:
        try:
            return bool(self.redis.exists(PRINCIPAL_PREFIX + principal))
        except Exception as exc:
            logger.warning("principal check falls back to the table", extra={"error": str(exc)})
            item = self._durable_get(f"PRINCIPAL#{principal}", "STATUS")
            return item is not None and item.get("status") == "disabled"

    def _durable_get(self, pk: str, sk: str) -> dict[str, Any] | None:
        try:
            item = self._table().get_item(Key={"PK": pk, "SK": sk}, ConsistentRead=True).get("Item")
        except Exception as exc:  # neither store answers: refuse rather than accept a possibly revoked token
            raise AuthenticationError("revocation status is unavailable; try again") from exc
        return dict(item) if item else None

    def restore(self) -> int:
        """Copy every unexpired revocation and every disabled principal from the table back into Redis
        (after a flush): two Queries of their GSI1 listings. Returns a count."""
        now, count = int(time.time()), 0
        for item in self._listed("REVOKED", after=f"{now:0{schema.TIME_DIGITS}d}"):
            if int(item["expires_at"]) > now:
                self.redis.set(JTI_PREFIX + item["jti"], "1", ex=int(item["expires_at"]) - now)
                count += 1
        for item in self._listed("DISABLED"):
            if item.get("status") == "disabled":
                self.redis.set(PRINCIPAL_PREFIX + str(item["PK"]).removeprefix("PRINCIPAL#"), "1")
                count += 1
        return count

    def _listed(self, kind: str, *, after: str | None = None) -> Iterator[dict[str, Any]]:
        condition = "GSI1PK = :kind" + (" AND GSI1SK > :after" if after else "")
        values: dict[str, Any] = {":kind": kind, **({":after": after} if after else {})}
        query: dict[str, Any] = {
            "IndexName": "GSI1",
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
        while True:
            page = self._table().query(**query)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
