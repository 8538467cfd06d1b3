"""A request's budget and kill switch, kept on its EXECUTION item: the durable, shared ledger.

Attributes on `PK=EXECUTION#<id> SK=EXECUTION` (whole micro-USD, so DynamoDB adds exact integers):
    budget_left_micro_usd   the cap minus what is reserved and spent (absent: the request has no cap)
    reserved_micro_usd      worst cases held by model calls in flight
    spent_micro_usd         what settled calls really cost
    cancel_requested_at     set once by POST /v1/executions/{id}/cancel

Reserving is ONE conditional UpdateItem: `ADD budget_left -amount, reserved +amount` only if
`budget_left >= amount`, the execution is not terminal and no cancel was asked for. DynamoDB applies
conditional updates to one item one at a time, so concurrent tasks of the same request (parallel Lambdas of
a level) can never reserve the same money twice, and the budget is never over-committed. Settling is an
unconditional ADD (the books stay true even after the request ended). So the spend exceeds the cap only by
what a call spent beyond its own reservation, which the output cap and the high prompt estimate keep at
zero (tdev.llm.metering).

Why the table and not Redis: the execution item is already the request's durable home (its status, its
usage, its outcome), every deployment has it while Redis is optional (REDIS_URL), a ledger lost with a cache
node would forget reservations, and a conditional write costs a few milliseconds next to a model call of
seconds. The cancel flag lives in the same item, so the check before each model call is that same write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from tdev import aws
from tdev.data.codec import from_item, raise_if_transient, serialize
from tdev.data.executions import execution_key
from tdev.errors import BudgetExceeded, ExecutionCancelled, NotFoundError
from tdev.models import Execution, ExecutionStatus, utc_now
from tdev.settings import get_settings

LEFT = "budget_left_micro_usd"
RESERVED = "reserved_micro_usd"
SPENT = "spent_micro_usd"
CANCEL = "cancel_requested_at"
RESERVE_ATTEMPTS = 3  # a refusal that a concurrent settlement made stale is tried again


def micro_to_usd(micro: int) -> float:
    return round(micro / 1_000_000, 6)


@dataclass(frozen=True)
class BudgetState:
    budget_usd: float | None
    left_micro_usd: int | None
    reserved_micro_usd: int
    spent_micro_usd: int
    cancel_requested_at: str | None
    status: ExecutionStatus


class BudgetLedger:
    """The books of one execution (implements tdev.llm.metering.Ledger)."""

    def __init__(self, table_name: str, execution_id: str, *, capped: bool) -> None:
        self._table_name = table_name
        self.execution_id = execution_id
        self._capped = capped

    def _terminal_values(self) -> dict[str, str]:
        return {f":t{i}": s.value for i, s in enumerate(s for s in ExecutionStatus if s.terminal)}

    def reserve(self, micro_usd: int, *, model: str) -> None:
        terminal = self._terminal_values()
        condition = (
            f"attribute_exists(PK) AND attribute_not_exists({CANCEL}) AND NOT #status IN ("
            + ", ".join(terminal)
            + ")"
        )
        values: dict[str, Any] = {":amount": micro_usd, **terminal}
        if self._capped:
            update = f"ADD {LEFT} :minus, {RESERVED} :amount"
            condition += f" AND {LEFT} >= :amount"
            values[":minus"] = -micro_usd
        else:
            update = f"ADD {RESERVED} :amount"
        for _ in range(RESERVE_ATTEMPTS):
            try:
                aws.client("dynamodb").update_item(
                    TableName=self._table_name,
                    Key=serialize(execution_key(self.execution_id)),
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues=serialize(values),
                )
                return
            except ClientError as exc:
                raise_if_transient(exc)
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
            state = read_state(self._table_name, self.execution_id)
            _raise_if_stopped(state)
            if state.left_micro_usd is not None and state.left_micro_usd < micro_usd:
                raise BudgetExceeded(
                    f"execution {self.execution_id}: a call to {model} may cost up to "
                    f"{micro_to_usd(micro_usd)} USD, more than the {micro_to_usd(state.left_micro_usd)} USD "
                    f"left of its {state.budget_usd} USD budget "
                    f"(spent {micro_to_usd(state.spent_micro_usd)}, "
                    f"reserved {micro_to_usd(state.reserved_micro_usd)})",
                    field="budget_usd",
                )
        raise BudgetExceeded(
            f"execution {self.execution_id}: the budget could not be reserved", field="budget_usd"
        )

    def settle(self, reserved_micro_usd: int, spent_micro_usd: int) -> None:
        values: dict[str, Any] = {":release": -reserved_micro_usd, ":spent": spent_micro_usd}
        update = f"ADD {RESERVED} :release, {SPENT} :spent"
        if self._capped:
            update += f", {LEFT} :left"
            values[":left"] = reserved_micro_usd - spent_micro_usd
        try:
            aws.client("dynamodb").update_item(
                TableName=self._table_name,
                Key=serialize(execution_key(self.execution_id)),
                UpdateExpression=update,
                ConditionExpression="attribute_exists(PK)",
                ExpressionAttributeValues=serialize(values),
            )
        except ClientError as exc:
            raise_if_transient(exc)
            raise

    def check(self) -> None:
        _raise_if_stopped(read_state(self._table_name, self.execution_id))


def ledger_for(execution: Execution) -> BudgetLedger:
    """The books every model call of `execution` reserves from."""
    return BudgetLedger(
        get_settings().table_name, execution.execution_id, capped=execution.budget_usd is not None
    )


def _raise_if_stopped(state: BudgetState) -> None:
    if state.cancel_requested_at is not None:
        raise ExecutionCancelled(f"the execution was cancelled at {state.cancel_requested_at}")
    if state.status.terminal:
        raise ExecutionCancelled(f"the execution already ended {state.status.value}")


def read_state(table_name: str, execution_id: str) -> BudgetState:
    item = (
        aws.client("dynamodb")
        .get_item(
            TableName=table_name,
            Key=serialize(execution_key(execution_id)),
            ProjectionExpression=f"budget_usd, {LEFT}, {RESERVED}, {SPENT}, {CANCEL}, #status",
            ExpressionAttributeNames={"#status": "status"},
            ConsistentRead=True,
        )
        .get("Item")
    )
    if item is None:
        raise NotFoundError(f"execution {execution_id} not found", field="execution_id")
    from boto3.dynamodb.types import TypeDeserializer

    plain = from_item({k: TypeDeserializer().deserialize(v) for k, v in item.items()})
    return BudgetState(
        budget_usd=plain.get("budget_usd"),
        left_micro_usd=plain.get(LEFT),
        reserved_micro_usd=int(plain.get(RESERVED) or 0),
        spent_micro_usd=int(plain.get(SPENT) or 0),
        cancel_requested_at=plain.get(CANCEL),
        status=ExecutionStatus(plain["status"]),
    )


def request_cancel(table_name: str, execution_id: str) -> bool:
    """Set the cancel flag on an open execution (the first time wins); False when it is already terminal."""
    terminal = {f":t{i}": s.value for i, s in enumerate(s for s in ExecutionStatus if s.terminal)}
    try:
        aws.client("dynamodb").update_item(
            TableName=table_name,
            Key=serialize(execution_key(execution_id)),
            UpdateExpression=f"SET {CANCEL} = if_not_exists({CANCEL}, :now), updated_at = :now",
            ConditionExpression="attribute_exists(PK) AND NOT #status IN (" + ", ".join(terminal) + ")",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=serialize({":now": utc_now().isoformat(), **terminal}),
        )
        return True
    except ClientError as exc:
        raise_if_transient(exc)
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
