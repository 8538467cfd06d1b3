"""Project ownership: the first principal to submit a request to a project owns it (`PK=PROJECT#<id>,
SK=OWNER`); RBAC's ownership condition compares that owner with the caller. The shared project
(`rbac.SHARED_PROJECT`) has no owner."""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from tdev import aws


class ProjectOwners:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    def _table(self) -> Any:
        return aws.table(self.table_name)

    def owner(self, project_id: str) -> str | None:
        item = (
            self._table()
            .get_item(Key={"PK": f"PROJECT#{project_id}", "SK": "OWNER"}, ConsistentRead=True)
            .get("Item")
        )
        return str(item["owner"]) if item else None

    def claim(self, project_id: str, principal: str) -> str:
        """The project's owner: `principal` if the project was unowned (it is now theirs)."""
        try:
            self._table().put_item(
                Item={
                    "PK": f"PROJECT#{project_id}",
                    "SK": "OWNER",
                    "owner": principal,
                    "created_at": int(time.time()),
                },
                ConditionExpression="attribute_not_exists(PK)",
            )
            return principal
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
        return self.owner(project_id) or principal
