"""Projects: an owner and members, and who may see what in them.

    PROJECT#<id>   OWNER              owner      (the first principal to submit into the project claims it)
    PROJECT#<id>   MEMBER#<principal> added_by   (the owner or an admin adds and removes members)

RBAC's project conditions compare these with the caller (`owner` equals, `members` contains
`${principal}`). Executions, their results and sessions of a project are visible to its owner and members
and to admins; in the shared project (`rbac.SHARED_PROJECT`, no owner, no members) each principal sees only
what it submitted. Anything a caller may not see answers 404, as if it did not exist.
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from tdev import aws
from tdev.data import schema
from tdev.errors import AuthorizationError, NotFoundError, ValidationError
from tdev.security.rbac import SHARED_PROJECT
from tdev.security.tokens import Identity

MAX_MEMBERS = 100


def is_admin(identity: Identity) -> bool:
    return "admin" in identity.roles


class ProjectOwners:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    def _table(self) -> Any:
        return aws.table(self.table_name)

    def owner(self, project_id: str) -> str | None:
        item = (
            self._table().get_item(Key=schema.project_owner_key(project_id), ConsistentRead=True).get("Item")
        )
        return str(item["owner"]) if item else None

    def claim(self, project_id: str, principal: str) -> str:
        """The project's owner: `principal` if the project was unowned (it is now theirs)."""
        try:
            self._table().put_item(
                Item={
                    **schema.project_owner_key(project_id),
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

    def members(self, project_id: str) -> list[str]:
        """The project's members (not its owner): one Query of its partition, bounded."""
        response = self._table().query(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :member)",
            ExpressionAttributeValues={":pk": f"PROJECT#{project_id}", ":member": "MEMBER#"},
            ConsistentRead=True,
            Limit=MAX_MEMBERS,
        )
        return [str(i["SK"]).removeprefix("MEMBER#") for i in response.get("Items", [])]

    def is_member(self, project_id: str, principal: str) -> bool:
        """Owner or member (one or two GetItems)."""
        if self.owner(project_id) == principal:
            return True
        key = schema.project_member_key(project_id, principal)
        return "Item" in self._table().get_item(Key=key, ConsistentRead=True)

    def attributes(self, project_id: str, principal: str) -> dict[str, Any]:
        """What RBAC's project conditions read (`owner`, `members`); claims an unowned project."""
        if project_id == SHARED_PROJECT:
            return {}
        owner = self.claim(project_id, principal)
        members = [principal] if owner != principal and self.is_member(project_id, principal) else []
        return {"owner": owner, "members": members}

    # --------------------------------------------------------------------- membership management
    def _managed(self, project_id: str, by: Identity) -> str:
        if project_id == SHARED_PROJECT:
            raise ValidationError(f"the shared project {SHARED_PROJECT!r} has no members", field="project_id")
        owner = self.owner(project_id)
        if owner is None:
            raise NotFoundError(f"no project {project_id}", field="project_id")
        if owner != by.principal and not is_admin(by):
            raise AuthorizationError(f"{by.principal} may not manage the members of project {project_id}")
        return owner

    def add_member(self, project_id: str, principal: str, *, by: Identity) -> dict[str, Any]:
        owner = self._managed(project_id, by)
        if principal == owner:
            raise ValidationError(f"{principal} already owns project {project_id}", field="principal")
        if len(self.members(project_id)) >= MAX_MEMBERS:
            raise ValidationError(f"a project has at most {MAX_MEMBERS} members", field="principal")
        self._table().put_item(
            Item={
                **schema.project_member_key(project_id, principal),
                "principal": principal,
                "added_by": by.principal,
                "added_at": int(time.time()),
            }
        )
        return self.view(project_id)

    def remove_member(self, project_id: str, principal: str, *, by: Identity) -> dict[str, Any]:
        self._managed(project_id, by)
        try:
            self._table().delete_item(
                Key=schema.project_member_key(project_id, principal),
                ConditionExpression="attribute_exists(PK)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise NotFoundError(f"{principal} is not a member of {project_id}", field="principal") from None
        return self.view(project_id)

    def transfer(self, project_id: str, new_owner: str, *, by: Identity) -> dict[str, Any]:
        """Admins only: `new_owner` owns the project; the previous owner keeps access as a member."""
        if not is_admin(by):
            raise AuthorizationError(f"{by.principal} may not transfer project {project_id} (admins only)")
        previous = self._managed(project_id, by)
        self._table().update_item(
            Key=schema.project_owner_key(project_id),
            UpdateExpression="SET #owner = :new, transferred_by = :by, transferred_at = :now",
            ConditionExpression="#owner = :previous",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={
                ":new": new_owner,
                ":previous": previous,
                ":by": by.principal,
                ":now": int(time.time()),
            },
        )
        self._table().delete_item(Key=schema.project_member_key(project_id, new_owner))
        if previous != new_owner:
            self._table().put_item(
                Item={
                    **schema.project_member_key(project_id, previous),
                    "principal": previous,
                    "added_by": by.principal,
                    "added_at": int(time.time()),
                }
            )
        return self.view(project_id)

    def view(self, project_id: str) -> dict[str, Any]:
        return {
            "project_id": project_id,
            "owner": self.owner(project_id),
            "members": self.members(project_id),
        }

    # ------------------------------------------------------------------------------- visibility
    def may_see(self, identity: Identity, project_id: str, submitted_by: str | None) -> bool:
        """May `identity` read something of `project_id` submitted (or opened) by `submitted_by`?"""
        if is_admin(identity):
            return True
        if project_id == SHARED_PROJECT:
            return submitted_by == identity.principal
        # Membership, not authorship: someone removed from a project no longer sees what they submitted.
        return self.is_member(project_id, identity.principal)

    def require_visible(
        self, identity: Identity, project_id: str, submitted_by: str | None, what: str, field: str
    ) -> None:
        """404 (not 403: existence is not revealed) unless `identity` may see it."""
        if not self.may_see(identity, project_id, submitted_by):
            raise NotFoundError(f"{what} not found", field=field)
