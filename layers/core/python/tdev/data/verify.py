"""The verify loop's records, in the execution's partition (one Query reads them with the execution).

    PK=EXECUTION#<id>  SK=VERIFY#<n>   one test run: outcome, counts, files changed, usage, trimmed output
    PK=EXECUTION#<id>  SK=FIX#<n>      the code agent's fix that verify iteration n tests

Writes are puts of whole records: a retried step writes the same record again.
"""

from __future__ import annotations

import time
from typing import Any

from boto3.dynamodb.conditions import Key

from tdev import aws
from tdev.data.codec import from_item, to_item
from tdev.data.execution_cache import execution_changed
from tdev.data.schema import fix_key, verify_key
from tdev.models import FixRun, VerifyIteration


def iterations_from_items(items: list[dict[str, Any]]) -> list[VerifyIteration]:
    """The VERIFY# items of a partition, in order (file hashes included, for the next diff)."""
    records = []
    for item in sorted((i for i in items if i["SK"].startswith("VERIFY#")), key=lambda i: i["SK"]):
        data = from_item(item)
        record = VerifyIteration.model_validate(data["record"])
        record.file_hashes = data.get("file_hashes", {})
        records.append(record)
    return records


class VerifyRepository:
    def __init__(self, table_name: str, *, retention_days: int = 90) -> None:
        self._table_name = table_name
        self._retention_seconds = retention_days * 86_400

    @property
    def _table(self) -> Any:
        return aws.table(self._table_name)

    def _partition(self, execution_id: str, prefix: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("PK").eq(f"EXECUTION#{execution_id}")
            & Key("SK").begins_with(prefix),
            "ConsistentRead": True,
        }
        while True:
            page = self._table.query(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _changed(self, execution_id: str) -> None:
        execution_changed(execution_id)  # the execution's view lists these items

    def save_iteration(self, execution_id: str, record: VerifyIteration) -> None:
        try:
            self._put_iteration(execution_id, record)
        finally:
            self._changed(execution_id)

    def _put_iteration(self, execution_id: str, record: VerifyIteration) -> None:
        self._table.put_item(
            Item={
                **verify_key(execution_id, record.iteration),
                **to_item(
                    {
                        "record": record.model_dump(mode="json"),
                        "file_hashes": record.file_hashes,
                        "expires_at": int(time.time()) + self._retention_seconds,
                    }
                ),
            }
        )

    def iterations(self, execution_id: str) -> list[VerifyIteration]:
        return iterations_from_items(self._partition(execution_id, "VERIFY#"))

    def save_fix(self, execution_id: str, fix: FixRun) -> None:
        try:
            self._put_fix(execution_id, fix)
        finally:
            self._changed(execution_id)

    def _put_fix(self, execution_id: str, fix: FixRun) -> None:
        self._table.put_item(
            Item={
                **fix_key(execution_id, fix.iteration),
                **to_item(
                    {
                        "fix": fix.model_dump(mode="json"),
                        "expires_at": int(time.time()) + self._retention_seconds,
                    }
                ),
            }
        )

    def fixes(self, execution_id: str) -> list[FixRun]:
        return [FixRun.model_validate(from_item(i)["fix"]) for i in self._partition(execution_id, "FIX#")]
