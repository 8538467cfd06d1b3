"""Error groups in the single table (keys: tdev.data.schema, ERROR entity).

    PK=ERROR#<signature>  SK=SIGNATURE          type, message (normalised), frame, sample (redacted),
                                                count, first_seen, last_seen, status open|resolved,
                                                episode_started_at, resolved_at, resolved_by, mttr_seconds,
                                                regressions, spike_window, last_spike
    PK=ERROR#<signature>  SK=BUCKET#<window>     count in one window (expires after BUCKET_RETENTION_SECONDS)
    PK=ERROR#<signature>  SK=RESOLUTION#<iso>    who resolved it, when, why, the MTTR (the audit trail)

An occurrence is two unconditional UpdateItems (the window's bucket, then the group with
ReturnValues=ALL_NEW); what they return decides everything else without reading: a first occurrence, a
regression (a resolved group seen again reopens) and a spike. Announcing one is a transaction of a
conditional flag on the group and its outbox item, with an event id per fact: an event exists only if its
flag was set, and the same fact is never announced twice, however many containers see it at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError

from tdev import aws
from tdev.data import schema
from tdev.data.codec import deserialize, error_code, from_item, raise_if_transient, serialize
from tdev.data.outbox import OUTBOX_RETENTION_SECONDS
from tdev.data.store import Page, cancellation_codes, query_page, transact_write
from tdev.errors import ConflictError, NotFoundError

BUCKET_RETENTION_SECONDS = 7 * 86_400
OPEN, RESOLVED = "open", "resolved"


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Occurrence:
    """What the two updates returned: the group after this occurrence and its window's count."""

    group: dict[str, Any]
    window_start: int
    window_count: int

    @property
    def first(self) -> bool:
        return int(self.group.get("count", 0)) == 1

    @property
    def resolved(self) -> bool:
        return self.group.get("status") == RESOLVED


class ErrorRepository:
    def __init__(self, table_name: str) -> None:
        self._table_name = table_name

    def _update(self, key: dict[str, str], **kwargs: Any) -> dict[str, Any]:
        try:
            response = aws.client("dynamodb").update_item(
                TableName=self._table_name, Key=serialize(key), **kwargs
            )
        except ClientError as exc:
            raise_if_transient(exc)
            raise
        return deserialize(response.get("Attributes") or {})

    # ------------------------------------------------------------------------------- occurrences
    def occur(
        self,
        *,
        signature: str,
        error_type: str,
        message: str,
        frame: str,
        sample: str,
        source: str,
        now: float,
        window_seconds: int,
    ) -> Occurrence:
        window = int(now // window_seconds) * window_seconds
        bucket = self._update(
            schema.error_bucket_key(signature, window),
            UpdateExpression="ADD #count :one SET window_start = :w, entity = :entity, expires_at = :ttl",
            ExpressionAttributeNames={"#count": "count"},
            ExpressionAttributeValues=serialize(
                {
                    ":one": 1,
                    ":w": window,
                    ":entity": "ERROR_BUCKET",
                    ":ttl": window + BUCKET_RETENTION_SECONDS,
                }
            ),
            ReturnValues="UPDATED_NEW",
        )
        seen = iso(now)
        listed = schema.errors_listed(seen, signature)
        latest = {  # every occurrence writes these (names through placeholders: several are reserved words)
            "entity": "ERROR",
            "signature": signature,
            "type": error_type,
            "message": message,
            "frame": frame,
            "sample": sample,
            "last_source": source,
            "last_seen": seen,
            "last_seen_epoch": int(now),
            **listed,
        }
        once = {  # ... and these only the first time
            "first_seen": seen,
            "first_seen_epoch": int(now),
            "episode_started_at": seen,
            "episode_started_epoch": int(now),
            "status": OPEN,
        }
        names = {"#count": "count"}
        values: dict[str, Any] = {":one": 1}
        sets = []
        for i, (name, value) in enumerate(latest.items()):
            names[f"#l{i}"], values[f":l{i}"] = name, value
            sets.append(f"#l{i} = :l{i}")
        for i, (name, value) in enumerate(once.items()):
            names[f"#o{i}"], values[f":o{i}"] = name, value
            sets.append(f"#o{i} = if_not_exists(#o{i}, :o{i})")
        group = self._update(
            schema.error_signature_key(signature),
            UpdateExpression="ADD #count :one SET " + ", ".join(sets),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=serialize(values),
            ReturnValues="ALL_NEW",
        )
        return Occurrence(group, window, int(bucket.get("count", 1)))

    def reopen(self, signature: str, now: float) -> dict[str, Any] | None:
        """A resolved group seen again: open, a new episode from now; None when another container did it."""
        try:
            return self._update(
                schema.error_signature_key(signature),
                UpdateExpression=(
                    "SET #status = :open, episode_started_at = :seen, episode_started_epoch = :now, "
                    "reopened_at = :seen ADD regressions :one REMOVE resolved_at, resolved_by"
                ),
                ConditionExpression="#status = :resolved",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=serialize(
                    {":open": OPEN, ":resolved": RESOLVED, ":seen": iso(now), ":now": int(now), ":one": 1}
                ),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise

    def announce(
        self,
        signature: str,
        *,
        flag: str,
        fact: str | int,
        flag_values: dict[str, Any],
        source: str,
        detail_type: str,
        detail: dict[str, Any],
        now: float,
    ) -> bool:
        """Set `flag` to `fact` on the group and put the event in the outbox, in one transaction, unless the
        flag already holds `fact` (announced before: False)."""
        event_id = f"{detail_type}-{signature}-{fact}"
        names = {"#flag": flag, **{f"#f{i}": k for i, k in enumerate(flag_values)}}
        sets = ", ".join(f"#f{i} = :f{i}" for i in range(len(flag_values)))
        values = {":fact": fact, **{f":f{i}": v for i, v in enumerate(flag_values.values())}}
        outbox = schema.entity_item(
            "OUTBOX",
            schema.outbox_key(schema.error_partition(signature), event_id),
            event_id=event_id,
            source=source,
            detail_type=detail_type,
            partition_key=schema.error_partition(signature),
            detail=json.dumps({**detail, "eventId": event_id, "timestamp": iso(now)}, sort_keys=True),
            expires_at=int(now) + OUTBOX_RETENTION_SECONDS,
        )
        try:
            transact_write(
                [
                    {
                        "Update": {
                            "TableName": self._table_name,
                            "Key": serialize(schema.error_signature_key(signature)),
                            "UpdateExpression": "SET #flag = :fact" + (f", {sets}" if sets else ""),
                            "ConditionExpression": "attribute_exists(PK) AND "
                            "(attribute_not_exists(#flag) OR #flag <> :fact)",
                            "ExpressionAttributeNames": names,
                            "ExpressionAttributeValues": serialize(values),
                        }
                    },
                    {"Put": {"TableName": self._table_name, "Item": serialize(outbox)}},
                ],
                token=event_id,
            )
        except ClientError as exc:
            if "ConditionalCheckFailed" in cancellation_codes(exc):
                return False  # the flag already holds this fact: announced by someone else
            raise
        return True

    # ----------------------------------------------------------------------------------- reading
    def get(self, signature: str) -> dict[str, Any]:
        item = aws.table(self._table_name).get_item(Key=schema.error_signature_key(signature)).get("Item")
        if item is None:
            raise NotFoundError(f"error signature {signature} not found", field="signature")
        return _public(from_item(item))

    def buckets(self, signature: str, since_window: int) -> list[dict[str, int]]:
        """Counts per window from `since_window` on, oldest first (one Query of the group's partition)."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = query_page(
                self._table_name,
                (schema.PARTITION_KEY, schema.error_partition(signature)),
                sort_between=(
                    schema.error_bucket_key(signature, since_window)["SK"],
                    schema.error_bucket_key(signature, 10**schema.TIME_DIGITS - 1)["SK"],
                ),
                limit=100,
                cursor=cursor,
            )
            items += page.items
            cursor = page.cursor
            if not cursor or len(items) >= 2_000:
                break
        return [{"window_start": int(i["window_start"]), "count": int(i["count"])} for i in items]

    def resolutions(self, signature: str) -> list[dict[str, Any]]:
        page = query_page(
            self._table_name,
            (schema.PARTITION_KEY, schema.error_partition(signature)),
            sort_prefix="RESOLUTION#",
            newest_first=True,
            limit=20,
        )
        return [{k: v for k, v in i.items() if k not in ("PK", "SK", "entity")} for i in page.items]

    def page(self, *, status: str | None, since: str | None, limit: int, cursor: str | None) -> Page:
        """Groups by last occurrence, newest first; `since` (ISO) bounds last_seen from below."""
        page = query_page(
            self._table_name,
            ("GSI1PK", schema.ERRORS_LISTING),
            index_name="GSI1",
            sort_between=(since, "~") if since else None,
            newest_first=True,
            limit=limit,
            cursor=cursor,
            filter_expression=Attr("status").eq(status) if status else None,
        )
        return Page([_public(i) for i in page.items], page.cursor)

    # --------------------------------------------------------------------------------- resolving
    def resolve(self, signature: str, *, by: str, reason: str, now: float) -> dict[str, Any]:
        """Open -> resolved with who and when; MTTR = now - the episode's start. 409 when already resolved,
        404 when unknown. The resolution is also kept as its own item (the audit trail)."""
        at = iso(now)
        try:
            group = self._update(
                schema.error_signature_key(signature),
                UpdateExpression=(
                    "SET #status = :resolved, resolved_at = :at, resolved_by = :by, "
                    "resolution_reason = :why, mttr_seconds = :now - episode_started_epoch "
                    "ADD resolutions :one"
                ),
                ConditionExpression="attribute_exists(PK) AND #status = :open",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=serialize(
                    {
                        ":resolved": RESOLVED,
                        ":open": OPEN,
                        ":at": at,
                        ":by": by,
                        ":why": reason,
                        ":now": int(now),
                        ":one": 1,
                    }
                ),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            current = self.get(signature)  # NotFoundError when there is no such group
            raise ConflictError(
                f"error signature {signature} is already {current['status']} "
                f"(since {current.get('resolved_at')})",
                field="signature",
            ) from None
        aws.table(self._table_name).put_item(
            Item=schema.entity_item(
                "ERROR_RESOLUTION",
                schema.error_resolution_key(signature, at),
                signature=signature,
                resolved_at=at,
                resolved_by=by,
                reason=reason,
                episode_started_at=group.get("episode_started_at"),
                mttr_seconds=int(group.get("mttr_seconds", 0)),
                count_at_resolution=int(group.get("count", 0)),
            )
        )
        return _public(group)


_INTERNAL = {
    "PK",
    "SK",
    "GSI1PK",
    "GSI1SK",
    "entity",
    "first_seen_epoch",
    "last_seen_epoch",
    "episode_started_epoch",
}


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in _INTERNAL}
