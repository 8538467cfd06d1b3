"""The configuration's audit trail: every change to a scope (config, flags) as a numbered version.

    PK=CONFIG#<scope>  SK=HEAD                 the latest version number
    PK=CONFIG#<scope>  SK=VERSION#<n>          who, what (each key from -> to), why, approver, the whole
                                               layer it produced and its SHA-256 checksum
    PK=CONFIG#<scope>  SK=CHANGE#<id>          a protected change waiting for an approver

A version and the head move in one transaction, conditional on the head the writer read, so two writers
never get the same number and no version is lost. Versions keep the whole layer so a rollback can restore
any of them exactly; the checksum lets anyone verify a stored layer was not altered.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from tdev import aws
from tdev.data.codec import from_item, serialize, to_item
from tdev.data.schema import (
    CONFIG_VERSION_DIGITS,
    config_change_key,
    config_head_key,
    config_partition,
    config_version_key,
)
from tdev.data.store import transact_write
from tdev.errors import ConflictError, NotFoundError

PENDING_TTL_SECONDS = 7 * 86_400  # an unapproved change lapses after a week


def checksum(layer: dict[str, Any]) -> str:
    """SHA-256 of the layer's canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(layer, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class ConfigAudit:
    def __init__(self, table_name: str) -> None:
        self._table_name = table_name

    @property
    def _table(self) -> Any:
        return aws.table(self._table_name)

    def head(self, scope: str) -> int:
        item = self._table.get_item(Key=config_head_key(scope), ConsistentRead=True).get("Item")
        return int(item["version"]) if item else 0

    def record(
        self,
        scope: str,
        *,
        layer: dict[str, Any],
        changed: dict[str, dict[str, Any]],
        author: str,
        reason: str,
        kind: str = "set",
        approved_by: str | None = None,
        expected_head: int | None = None,
    ) -> dict[str, Any]:
        """Append version head+1; ConflictError when another writer moved the head first."""
        previous = self.head(scope) if expected_head is None else expected_head
        version = previous + 1
        record = {
            "scope": scope,
            "version": version,
            "kind": kind,
            "author": author,
            "reason": reason,
            "approved_by": approved_by,
            "changed": changed,
            "layer": layer,
            "checksum": checksum(layer),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        head_condition = "attribute_not_exists(version)" if previous == 0 else "version = :previous"
        head_values: dict[str, Any] = {":version": version}
        if previous:
            head_values[":previous"] = previous
        table_name = self._table_name
        try:
            transact_write(
                [
                    {
                        "Update": {
                            "TableName": table_name,
                            "Key": serialize(config_head_key(scope)),
                            "UpdateExpression": "SET version = :version",
                            "ConditionExpression": head_condition,
                            "ExpressionAttributeValues": serialize(head_values),
                        }
                    },
                    {
                        "Put": {
                            "TableName": table_name,
                            "Item": serialize(
                                {**config_version_key(scope, version), "entity": "CONFIG_VERSION", **record}
                            ),
                            "ConditionExpression": "attribute_not_exists(PK)",
                        }
                    },
                ]
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                raise ConflictError(
                    f"the {scope} changed while this change was written (version {version} is taken); "
                    "read it again and retry",
                    field="version",
                ) from None
            raise
        return record

    def version(self, scope: str, version: int) -> dict[str, Any]:
        item = self._table.get_item(Key=config_version_key(scope, version), ConsistentRead=True).get("Item")
        if not item:
            raise NotFoundError(f"{scope} version {version} does not exist", field="version")
        return _record(item)

    def history(self, scope: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first."""
        page = self._table.query(
            KeyConditionExpression=Key("PK").eq(config_partition(scope)) & Key("SK").begins_with("VERSION#"),
            ScanIndexForward=False,
            Limit=limit,
            ConsistentRead=True,
        )
        return [_record(item) for item in page.get("Items", [])]

    # ---------------------------------------------------------------------------- pending changes
    def propose(self, scope: str, change: dict[str, Any], *, author: str, reason: str) -> dict[str, Any]:
        change_id = uuid.uuid4().hex[:16]
        pending: dict[str, Any] = {
            "change_id": change_id,
            "scope": scope,
            "change": change,
            "author": author,
            "reason": reason,
            "base_version": self.head(scope),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self._table.put_item(
            Item={
                **config_change_key(scope, change_id),
                "entity": "CONFIG_CHANGE",
                **to_item({**pending, "expires_at": int(time.time()) + PENDING_TTL_SECONDS}),
            }
        )
        return pending

    def pending(self, scope: str, change_id: str) -> dict[str, Any]:
        item = self._table.get_item(Key=config_change_key(scope, change_id), ConsistentRead=True).get("Item")
        if not item or int(item.get("expires_at", 0)) < time.time():
            raise NotFoundError(f"no pending {scope} change {change_id}", field="change_id")
        data = from_item(item)
        return {k: data[k] for k in ("change_id", "scope", "change", "author", "reason", "base_version")}

    def close(self, scope: str, change_id: str) -> None:
        self._table.delete_item(Key=config_change_key(scope, change_id))


def _record(item: dict[str, Any]) -> dict[str, Any]:
    data = from_item(item)
    return {k: v for k, v in data.items() if k not in ("PK", "SK", "entity")}


__all__ = ["CONFIG_VERSION_DIGITS", "ConfigAudit", "checksum"]
