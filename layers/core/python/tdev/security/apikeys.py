"""API keys for machine clients: created by an admin, shown once, stored only as a SHA-256 hash, expire
after 365 days by default, revocable, each with its own rate limit and, optionally, required signatures.

    key       tdk_<key id: 16 hex>_<secret: 43 url-safe chars (256 bits)>
    item      PK=APIKEY#<id> SK=APIKEY  hash, roles, owner, created_at, expires_at (also the table TTL),
              revoked, rate_limit, signing_required, metadata (envelope-encrypted: name, description and
              the HMAC signing secret; encryption context bound to the item key), and where API Gateway
              meters keys, gateway_key_id + usage_key (its twin in the machine usage plan; names the
              caller to API Gateway, authenticates nothing)

Every authenticated call reads its key's item; with a read cache (`tdev.caching`, namespace `apikeys`) the
fields that authenticate (hash, roles, revoked, expiry, rate limit; never the encrypted metadata) are cached
for an hour. A revoke writes the item, then invalidates the cached copy strictly: it is acknowledged only
when no container can authenticate the key from a cache any more (if Redis cannot be told, the revoke
fails with a retryable error; the key is already revoked in the table).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from tdev import aws
from tdev.caching import Freshness, TieredCache
from tdev.crypto import EnvelopeCipher
from tdev.data import schema
from tdev.errors import AuthenticationError, NotFoundError
from tdev.security.tokens import Identity
from tdev.security.usageplans import UsagePlans

KEY_PATTERN = re.compile(r"^tdk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
DEFAULT_EXPIRY_DAYS = 365
# What verify() and rate_limit() read: what the read cache holds of a key (no metadata, no secret).
AUTH_FIELDS = (
    *("key_id", "hash", "roles", "revoked", "expires_at"),
    *("rate_limit", "signing_required", "usage_key"),
)


@dataclass(frozen=True)
class CreatedKey:
    key_id: str
    api_key: str  # shown once, never stored
    signing_secret: str  # shown once, stored encrypted
    expires_at: int


def _hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class _UnknownKey(LookupError):
    """No item for this key id: answered as unknown, never stored in the cache."""


class ApiKeyRepository:
    def __init__(
        self,
        table_name: str,
        cipher: EnvelopeCipher,
        *,
        usage_plans: UsagePlans | None = None,
        cache: TieredCache | None = None,
    ) -> None:
        self.table_name, self.cipher, self.usage_plans = table_name, cipher, usage_plans
        self._cache = cache

    def _table(self) -> Any:
        return aws.table(self.table_name)

    @staticmethod
    def _key(key_id: str) -> dict[str, str]:
        return schema.api_key_key(key_id)

    def _context(self, key_id: str) -> dict[str, str]:
        return {"table": self.table_name, "PK": f"APIKEY#{key_id}", "field": "metadata"}

    def create(
        self,
        *,
        name: str,
        roles: list[str],
        owner: str,
        description: str = "",
        expires_in_days: int = DEFAULT_EXPIRY_DAYS,
        rate_limit: str = "60/60",
        signing_required: bool = False,
    ) -> CreatedKey:
        key_id = secrets.token_hex(8)
        api_key = f"tdk_{key_id}_{secrets.token_urlsafe(32)}"
        signing_secret = secrets.token_urlsafe(32)
        now = int(time.time())
        expires_at = now + expires_in_days * 86_400
        metadata = json.dumps({"name": name, "description": description, "signing_secret": signing_secret})
        item: dict[str, Any] = {
            **self._key(key_id),
            # Listed on GSI1 by creation time: GET /v1/api-keys is one Query, never a scan.
            **schema.listed("APIKEY", f"{now:0{schema.TIME_DIGITS}d}#{key_id}"),
            "key_id": key_id,
            "hash": _hash(api_key),
            "roles": roles,
            "owner": owner,
            "created_at": now,
            "expires_at": expires_at,
            "revoked": False,
            "rate_limit": rate_limit,
            "signing_required": signing_required,
            "metadata": self.cipher.encrypt_text(metadata, self._context(key_id)),
        }
        # Deployed, the key's twin in API Gateway's machine usage plan comes first: a key is never stored
        # without it (API Gateway would refuse its requests), and a twin whose item failed is deleted.
        gateway = self.usage_plans.register(key_id) if self.usage_plans else None
        if gateway:
            item.update(gateway_key_id=gateway.key_id, usage_key=gateway.value)
        try:
            self._table().put_item(Item=item, ConditionExpression="attribute_not_exists(PK)")
        except Exception:
            if gateway and self.usage_plans:
                self.usage_plans.delete(gateway.key_id)
            raise
        return CreatedKey(key_id, api_key, signing_secret, expires_at)

    def _item(self, key_id: str) -> dict[str, Any] | None:
        item = self._table().get_item(Key=self._key(key_id), ConsistentRead=True).get("Item")
        return dict(item) if item else None

    def _auth_fields(self, key_id: str) -> dict[str, Any] | None:
        """The authenticating fields of a key (through the read cache when there is one); None: unknown.

        Unknown ids are not cached (a flood of made-up ids must not fill the cache)."""
        if self._cache is None:
            return self._auth_fields_of(self._item(key_id))
        try:
            return self._cache.get_or_load(key_id, lambda: self._known(key_id), freshness=Freshness.WARM)
        except _UnknownKey:
            return None

    def _known(self, key_id: str) -> dict[str, Any]:
        fields = self._auth_fields_of(self._item(key_id))
        if fields is None:
            raise _UnknownKey(key_id)
        return fields

    @staticmethod
    def _auth_fields_of(item: dict[str, Any] | None) -> dict[str, Any] | None:
        if item is None:
            return None
        fields = {name: item[name] for name in AUTH_FIELDS if item.get(name) is not None}
        fields["roles"] = [str(r) for r in item.get("roles", [])]
        fields["expires_at"] = int(item["expires_at"])
        return fields

    def _forget(self, key_id: str) -> None:
        """After a change to the key's item: strict (a revoke is not acknowledged while a cache has it)."""
        if self._cache is not None:
            self._cache.invalidate(key_id, strict=True)

    def verify(self, api_key: str) -> Identity:
        """The identity of a valid key; AuthenticationError for unknown, wrong, revoked or expired keys."""
        match = KEY_PATTERN.match(api_key.strip())
        if not match:
            raise AuthenticationError("malformed API key", field="X-Api-Key")
        item = self._auth_fields(match.group(1))
        # Compare even when the key id is unknown so timing does not reveal which ids exist.
        stored = str(item["hash"]) if item else "0" * 64
        if not hmac.compare_digest(stored, _hash(api_key.strip())) or item is None:
            raise AuthenticationError("unknown API key", field="X-Api-Key")
        if item.get("revoked"):
            raise AuthenticationError("API key has been revoked", field="X-Api-Key")
        if int(item["expires_at"]) <= time.time():
            raise AuthenticationError("API key has expired", field="X-Api-Key")
        return Identity(
            principal=f"apikey:{item['key_id']}",
            roles=tuple(str(r) for r in item.get("roles", [])),
            source="api_key",
            api_key_id=str(item["key_id"]),
            expires_at=int(item["expires_at"]),
            signing_required=bool(item.get("signing_required")),
            usage_key=str(item["usage_key"]) if item.get("usage_key") else None,
        )

    def metadata(self, key_id: str) -> dict[str, Any]:
        item = self._item(key_id)
        if item is None:
            raise NotFoundError(f"no API key {key_id}", field="key_id")
        return self._metadata_of(item)

    def _metadata_of(self, item: dict[str, Any]) -> dict[str, Any]:
        key_id = str(item["key_id"])
        envelope = item["metadata"]
        envelope = bytes(getattr(envelope, "value", envelope))  # boto3 returns a Binary wrapper
        return dict(json.loads(self.cipher.decrypt_text(envelope, self._context(key_id))))

    def signing_secret(self, key_id: str) -> str:
        return str(self.metadata(key_id)["signing_secret"])

    def rate_limit(self, key_id: str) -> str:
        item = self._auth_fields(key_id)
        return str(item.get("rate_limit", "60/60")) if item else "60/60"

    def revoke(self, key_id: str, *, by: str) -> None:
        try:
            self._table().update_item(
                Key=self._key(key_id),
                UpdateExpression="SET revoked = :t, revoked_by = :by, revoked_at = :now",
                ConditionExpression="attribute_exists(PK)",
                ExpressionAttributeValues={":t": True, ":by": by, ":now": int(time.time())},
            )
        except self._table().meta.client.exceptions.ConditionalCheckFailedException as exc:
            raise NotFoundError(f"no API key {key_id}", field="key_id") from exc
        finally:
            self._forget(key_id)
        item = self._item(key_id)
        if self.usage_plans and item and item.get("gateway_key_id"):
            self.usage_plans.disable(str(item["gateway_key_id"]))

    def list(self) -> list[dict[str, Any]]:
        """Every key without secrets, oldest first: id, name, roles, owner, dates, state (Query on GSI1)."""
        table, items = self._table(), []
        query: dict[str, Any] = {
            "IndexName": "GSI1",
            "KeyConditionExpression": "GSI1PK = :kind",
            "ExpressionAttributeValues": {":kind": "APIKEY"},
        }
        while True:
            page = table.query(**query)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return [
            {
                "key_id": i["key_id"],
                "name": self._metadata_of(i)["name"],
                "roles": list(i.get("roles", [])),
                "owner": i["owner"],
                "created_at": int(i["created_at"]),
                "expires_at": int(i["expires_at"]),
                "revoked": bool(i.get("revoked")),
                "signing_required": bool(i.get("signing_required")),
            }
            for i in items
        ]
