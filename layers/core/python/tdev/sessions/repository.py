"""Session items on the single table.

    PK = SESSION#<id>   SK = META                        the session (status, owner, limits, counters)
    PK = SESSION#<id>   SK = REQUEST#<time>#<execution>  a request attached to the session
    GSI1PK = SESSION_STATUS#<status>  GSI1SK = <created_at>#<id>   what the sweeper scans

Status changes are conditional on the status read (optimistic concurrency), so two instances racing
to change one session cannot both win; the loser gets a ConflictError.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from tdev import aws
from tdev.data import schema
from tdev.data.budgets import micro_to_usd
from tdev.errors import ConflictError, NotFoundError
from tdev.models import BudgetView, to_micro_usd
from tdev.sessions.lifecycle import (
    DEFAULT_IDLE_TIMEOUT_SECONDS,
    MAX_DURATION_SECONDS,
    OPEN_STATUSES,
    SessionStatus,
    check_transition,
)

RETENTION_SECONDS = 7 * 86_400  # a closed session's items stay a week after its deadline


@dataclass
class Session:
    session_id: str
    user_id: str
    project_id: str
    agents: list[str]
    status: SessionStatus
    created_at: float
    updated_at: float
    last_activity: float
    max_duration_seconds: int = MAX_DURATION_SECONDS
    idle_timeout_seconds: int = DEFAULT_IDLE_TIMEOUT_SECONDS
    requests: int = 0
    messages: int = 0
    checkpoints: int = 0
    errors: int = 0
    recovery_attempts: int = 0
    next_recovery_at: float = 0.0
    reason: str | None = None
    last_checkpoint_at: float = 0.0
    request_ids: list[str] = field(default_factory=list)
    # The session's budget for its chat turns' model calls (USD; None: no cap) and its books in micro-USD,
    # kept on this item by the ledger of tdev.data.budgets (the same attributes as an execution's).
    budget_usd: float | None = None
    budget_left_micro_usd: int | None = None
    reserved_micro_usd: int = 0
    spent_micro_usd: int = 0

    @property
    def deadline(self) -> float:
        return self.created_at + self.max_duration_seconds

    def view(self) -> dict[str, Any]:
        data = asdict(self)
        for books in ("budget_usd", "budget_left_micro_usd", "reserved_micro_usd", "spent_micro_usd"):
            data.pop(books)
        data["status"] = str(self.status)
        data["deadline"] = self.deadline
        data["error_rate"] = round(self.errors / max(1, self.requests + self.messages), 4)
        # As a request's view shows its budget (tdev.models.BudgetView).
        data["budget"] = BudgetView(
            budget_usd=self.budget_usd,
            spent_usd=micro_to_usd(self.spent_micro_usd),
            reserved_usd=micro_to_usd(self.reserved_micro_usd),
        ).model_dump()
        return data


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _dec(value: float) -> Decimal:
    return Decimal(str(round(value, 3)))


class SessionRepository:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @property
    def table(self) -> Any:
        return aws.table(self.table_name)

    @staticmethod
    def _key(session_id: str) -> dict[str, str]:
        return schema.session_meta_key(session_id)

    def create(
        self,
        user_id: str,
        project_id: str,
        agents: list[str],
        *,
        max_duration_seconds: int = MAX_DURATION_SECONDS,
        idle_timeout_seconds: int = DEFAULT_IDLE_TIMEOUT_SECONDS,
        session_id: str | None = None,
        budget_usd: float | None = None,
    ) -> Session:
        now = time.time()
        session = Session(
            session_id=session_id or f"ses-{uuid.uuid4().hex[:20]}",
            user_id=user_id,
            project_id=project_id,
            agents=list(agents),
            status=SessionStatus.ACTIVE,
            created_at=now,
            updated_at=now,
            last_activity=now,
            max_duration_seconds=max_duration_seconds,
            idle_timeout_seconds=idle_timeout_seconds,
            budget_usd=budget_usd,
            # the books start with the whole cap (tdev.data.budgets reserves from what is left)
            budget_left_micro_usd=to_micro_usd(budget_usd) if budget_usd is not None else None,
        )
        self.table.put_item(Item=self._item(session), ConditionExpression="attribute_not_exists(PK)")
        return session

    def _item(self, session: Session) -> dict[str, Any]:
        data = asdict(session)
        data.pop("request_ids")
        item: dict[str, Any] = {**self._key(session.session_id), "entity": "Session"}
        for name, value in data.items():
            if value is None:
                continue
            if name == "budget_usd":  # exact: a budget below a thousandth of a dollar is a budget too
                item[name] = Decimal(str(value))
                continue
            item[name] = _dec(value) if isinstance(value, float) else value
        item["status"] = str(session.status)
        item["GSI1PK"] = f"SESSION_STATUS#{session.status}"
        item["GSI1SK"] = f"{session.created_at:017.3f}#{session.session_id}"
        item["GSI2PK"] = f"PROJECT#{session.project_id}"
        item["GSI2SK"] = f"SESSION#{session.created_at:017.3f}#{session.session_id}"
        item["expires_at"] = int(session.deadline) + RETENTION_SECONDS
        return item

    def get(self, session_id: str, *, with_requests: bool = False) -> Session:
        item = self.table.get_item(Key=self._key(session_id), ConsistentRead=True).get("Item")
        if item is None:
            raise NotFoundError(f"no session {session_id}", field="session_id")
        names = Session.__dataclass_fields__
        data = {k: _plain(v) for k, v in item.items() if k in names}
        data["status"] = SessionStatus(item["status"])
        for name in ("created_at", "updated_at", "last_activity", "next_recovery_at", "last_checkpoint_at"):
            data[name] = float(data.get(name, 0.0))
        session = Session(**data)
        if with_requests:
            response = self.table.query(
                KeyConditionExpression=Key("PK").eq(f"SESSION#{session_id}")
                & Key("SK").begins_with("REQUEST#")
            )
            session.request_ids = [str(i["execution_id"]) for i in response.get("Items", [])]
        return session

    def transition(
        self, session_id: str, target: SessionStatus, *, reason: str | None = None, **changes: Any
    ) -> Session:
        """Move to `target` if that is legal from the current status and nobody changed it meanwhile.

        An update of the changed attributes only (counters touched concurrently are not overwritten),
        conditional on the status that was read.
        """
        session = self.get(session_id)
        check_transition(session.status, target)
        previous = session.status
        now = time.time()
        values: dict[str, Any] = {
            "status": str(target),
            "updated_at": now,
            "GSI1PK": f"SESSION_STATUS#{target}",
            **changes,
        }
        if reason is not None:
            values["reason"] = reason
        names = {f"#f{i}": name for i, name in enumerate(values)}
        attribute_values = {
            f":f{i}": (_dec(v) if isinstance(v, float) else v) for i, v in enumerate(values.values())
        }
        attribute_values[":previous"] = str(previous)
        names["#status"] = "status"
        try:
            self.table.update_item(
                Key=self._key(session_id),
                UpdateExpression="SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(values))),
                ConditionExpression="#status = :previous",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=attribute_values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise ConflictError(
                f"session {session_id} changed while moving it to {target}; retry", field="status"
            ) from exc
        session.status, session.updated_at = target, now
        if reason is not None:
            session.reason = reason
        for name, value in changes.items():
            setattr(session, name, value)
        return session

    def touch(self, session_id: str, **increments: int) -> None:
        """Record activity (and add to counters) without reading: an atomic update."""
        names = {"#a": "last_activity", "#u": "updated_at"}
        values: dict[str, Any] = {":now": _dec(time.time())}
        adds = []
        for index, (name, amount) in enumerate(increments.items()):
            names[f"#c{index}"] = name
            values[f":c{index}"] = amount
            adds.append(f"#c{index} :c{index}")
        expression = "SET #a = :now, #u = :now" + (" ADD " + ", ".join(adds) if adds else "")
        try:
            self.table.update_item(
                Key=self._key(session_id),
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(PK)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise NotFoundError(f"no session {session_id}", field="session_id") from exc
            raise

    def set_fields(self, session_id: str, **values: Any) -> None:
        names = {f"#f{i}": name for i, name in enumerate(values)}
        vals = {f":f{i}": (_dec(v) if isinstance(v, float) else v) for i, v in enumerate(values.values())}
        self.table.update_item(
            Key=self._key(session_id),
            UpdateExpression="SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(values))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=vals,
        )

    def attach_request(self, session_id: str, execution_id: str) -> None:
        now = time.time()
        self.table.put_item(
            Item={
                "PK": f"SESSION#{session_id}",
                "SK": f"REQUEST#{now:017.3f}#{execution_id}",
                "entity": "SessionRequest",
                "execution_id": execution_id,
                "expires_at": int(now) + MAX_DURATION_SECONDS + RETENTION_SECONDS,
            },
            ConditionExpression="attribute_not_exists(PK)",
        )
        self.touch(session_id, requests=1)

    def open_sessions(self) -> list[str]:
        """Ids of every session in an open status (the sweeper's work list), via GSI1."""
        ids: list[str] = []
        for status in OPEN_STATUSES:
            kwargs: dict[str, Any] = {
                "IndexName": "GSI1",
                "KeyConditionExpression": Key("GSI1PK").eq(f"SESSION_STATUS#{status}"),
            }
            while True:
                response = self.table.query(**kwargs)
                ids += [str(i["session_id"]) for i in response.get("Items", [])]
                if "LastEvaluatedKey" not in response:
                    break
                kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return ids
