"""A request's (or a chat session's) budget and kill switch, kept on its own item: the durable, shared ledger.

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

Users and projects have budgets too, per calendar month (UTC; a request's spend counts in the month it was
submitted, so its reservations and settlements always meet the same books):
    PK=BUDGET#USER#<id> | BUDGET#PROJECT#<id>   SK=PERIOD#<yyyy-mm>
        committed_micro_usd / committed_tokens   spent + reserved (what the condition compares)
        reserved_*, spent_*                      the two parts, for the views
    SK=CAP   an admin's override of the configured default (TDEV_USER_BUDGET_USD, ...), with who and why
When the execution has scopes, a reservation is ONE TransactWriteItems: the execution's conditional update
and, per scope, `ADD committed +amount` only if `committed <= cap - amount` (in USD, and in tokens when
capped). All or nothing: concurrent requests of one user can never together commit more than the user's cap,
and a refusal by any scope reserves nothing anywhere. Settling is one transaction of unconditional ADDs.
The caps are read when a task's ledger is made: an admin's change applies from the next task on.

A chat session is one more holder of the same books (`Holder`): its item (PK=SESSION#<id> SK=META) keeps
`budget_left`, `reserved` and `spent` in the same attributes, and the reservation's condition is that the
session is not closed (a killed session's turn makes no further model call). A chat turn's calls reserve
from the session, its user's and its project's month (the month of the turn) in one transaction, as a task
does from its execution and the same two months (`session_ledger`).

A suspended user (PK=PRINCIPAL#<id> SK=SUSPENSION) submits nothing new: admission (`check_admission`)
refuses it (403) before an execution is stored, and refuses a user or project whose month is used up (402).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from botocore.exceptions import ClientError

from tdev import aws
from tdev.data import schema
from tdev.data.codec import deserialize, from_item, raise_if_transient, serialize
from tdev.data.executions import execution_key
from tdev.data.store import cancellation_codes, transact_write
from tdev.errors import BudgetExceeded, ExecutionCancelled, NotFoundError, TransientError, UserSuspended
from tdev.models import Execution, ExecutionStatus, SessionStatus, to_micro_usd, utc_now
from tdev.observability import logger
from tdev.settings import get_settings

LEFT = "budget_left_micro_usd"
RESERVED = "reserved_micro_usd"
SPENT = "spent_micro_usd"
CANCEL = "cancel_requested_at"
RESERVE_ATTEMPTS = 3  # a refusal that a concurrent settlement made stale is tried again
COMMITTED = "committed_micro_usd"
TOKENS_RESERVED = "reserved_tokens"
TOKENS_SPENT = "spent_tokens"
TOKENS_COMMITTED = "committed_tokens"

ScopeKind = Literal["user", "project"]
SCOPES: tuple[ScopeKind, ...] = ("user", "project")


def micro_to_usd(micro: int) -> float:
    return round(micro / 1_000_000, 6)


@dataclass(frozen=True)
class BudgetState:
    budget_usd: float | None
    left_micro_usd: int | None
    reserved_micro_usd: int
    spent_micro_usd: int
    cancel_requested_at: str | None
    status: ExecutionStatus | None  # None: a chat session's books (see session_status)
    session_status: str | None = None  # a chat session's status (tdev.sessions.lifecycle)


@dataclass(frozen=True)
class ScopeCap:
    """A user's or a project's cap for one month: the configured default or an admin's override."""

    scope: ScopeKind
    scope_id: str
    period: str  # yyyy-mm, UTC
    budget_usd: float
    budget_tokens: int | None  # None: tokens are counted, not capped
    source: Literal["default", "override"]

    @property
    def cap_micro_usd(self) -> int:
        return to_micro_usd(self.budget_usd)

    @property
    def key(self) -> dict[str, str]:
        return schema.budget_period_key(self.scope, self.scope_id, self.period)

    def describe(self) -> str:
        return f"{self.scope} {self.scope_id}"


@dataclass(frozen=True)
class ScopeBooks:
    """What a scope's month holds: settled spend and reservations of calls in flight."""

    spent_micro_usd: int = 0
    reserved_micro_usd: int = 0
    spent_tokens: int = 0
    reserved_tokens: int = 0

    @property
    def committed_micro_usd(self) -> int:
        return self.spent_micro_usd + self.reserved_micro_usd

    @property
    def committed_tokens(self) -> int:
        return self.spent_tokens + self.reserved_tokens

    @classmethod
    def of(cls, item: dict[str, Any] | None) -> ScopeBooks:
        item = item or {}
        return cls(
            spent_micro_usd=int(item.get(SPENT) or 0),
            reserved_micro_usd=int(item.get(RESERVED) or 0),
            spent_tokens=int(item.get(TOKENS_SPENT) or 0),
            reserved_tokens=int(item.get(TOKENS_RESERVED) or 0),
        )


def period_of(moment: datetime) -> str:
    """The budget period a moment falls in: its calendar month, UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m")


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """The first instant of the month and the first instant of the next one (UTC)."""
    start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


HolderKind = Literal["execution", "session"]
# A chat session whose model calls stop: killed or ended.
SESSION_CLOSED: tuple[str, ...] = tuple(
    str(s) for s in (SessionStatus.TERMINATING, SessionStatus.COMPLETED, SessionStatus.FAILED)
)


@dataclass(frozen=True)
class Holder:
    """The item a call reserves from first: its own budget (LEFT, RESERVED, SPENT, in the same attributes on
    both) and its stop flag. An execution (a request) stops when cancelled or terminal; a chat session when
    killed or closed."""

    kind: HolderKind
    holder_id: str
    capped: bool

    @property
    def key(self) -> dict[str, str]:
        if self.kind == "execution":
            return execution_key(self.holder_id)
        return schema.session_meta_key(self.holder_id)

    def open_condition(self) -> tuple[str, dict[str, Any]]:
        """The condition (and its values) under which the holder still makes model calls."""
        if self.kind == "execution":
            terminal = {f":t{i}": s.value for i, s in enumerate(s for s in ExecutionStatus if s.terminal)}
            return (
                f"attribute_not_exists({CANCEL}) AND NOT #status IN (" + ", ".join(terminal) + ")",
                terminal,
            )
        closed = {f":c{i}": status for i, status in enumerate(SESSION_CLOSED)}
        return "NOT #status IN (" + ", ".join(closed) + ")", closed


class BudgetLedger:
    """The books of one execution or chat session and of the user and project it spends for (implements
    tdev.llm.metering.Ledger)."""

    def __init__(self, table_name: str, holder: Holder, *, scopes: Sequence[ScopeCap] = ()) -> None:
        self._table_name = table_name
        self.holder = holder
        self._capped = holder.capped
        self.scopes = tuple(scopes)

    @property
    def execution_id(self) -> str:
        return self.holder.holder_id

    def _holder_update(self, micro_usd: int) -> dict[str, Any]:
        """The holder's own reservation (an execution's or a session's item)."""
        opened, open_values = self.holder.open_condition()
        condition = f"attribute_exists(PK) AND {opened}"
        values: dict[str, Any] = {":amount": micro_usd, **open_values}
        if self._capped:
            update = f"ADD {LEFT} :minus, {RESERVED} :amount"
            condition += f" AND {LEFT} >= :amount"
            values[":minus"] = -micro_usd
        else:
            update = f"ADD {RESERVED} :amount"
        return {
            "TableName": self._table_name,
            "Key": serialize(self.holder.key),
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": serialize(values),
        }

    def _scope_reservation(self, cap: ScopeCap, micro_usd: int, tokens: int) -> dict[str, Any]:
        """`committed += amount` only if it stays within the cap (the condition compares before the add)."""
        room = cap.cap_micro_usd - micro_usd
        condition = f"(attribute_not_exists({COMMITTED}) OR {COMMITTED} <= :room)"
        values: dict[str, Any] = {
            ":usd": micro_usd,
            ":tokens": tokens,
            ":room": room,
            ":scope": cap.scope,
            ":id": cap.scope_id,
            ":period": cap.period,
        }
        if cap.budget_tokens is not None:
            condition += (
                f" AND (attribute_not_exists({TOKENS_COMMITTED}) OR {TOKENS_COMMITTED} <= :token_room)"
            )
            values[":token_room"] = cap.budget_tokens - tokens
        return {
            "TableName": self._table_name,
            "Key": serialize(cap.key),
            "UpdateExpression": (
                f"ADD {COMMITTED} :usd, {RESERVED} :usd, "
                f"{TOKENS_COMMITTED} :tokens, {TOKENS_RESERVED} :tokens "
                "SET #scope = :scope, #scope_id = :id, #period = :period"
            ),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#scope": "scope", "#scope_id": "scope_id", "#period": "period"},
            "ExpressionAttributeValues": serialize(values),
        }

    def reserve(self, micro_usd: int, *, model: str, tokens: int = 0) -> None:
        for cap in self.scopes:  # a call that could never fit is refused without a write
            if micro_usd > cap.cap_micro_usd or (
                cap.budget_tokens is not None and tokens > cap.budget_tokens
            ):
                raise _scope_exceeded(cap, ScopeBooks(), micro_usd, tokens, model)
        update = self._holder_update(micro_usd)
        for _ in range(RESERVE_ATTEMPTS):
            try:
                if self.scopes:
                    _transact(
                        [{"Update": update}]
                        + [{"Update": self._scope_reservation(c, micro_usd, tokens)} for c in self.scopes]
                    )
                else:
                    aws.client("dynamodb").update_item(**update)
                return
            except ClientError as exc:
                raise_if_transient(exc)
                code = exc.response["Error"]["Code"]
                if code not in ("ConditionalCheckFailedException", "TransactionCanceledException"):
                    raise
                failed = [i for i, c in enumerate(cancellation_codes(exc)) if c == "ConditionalCheckFailed"]
            if failed and failed[0] > 0:  # a user's or a project's month: refused unless it was stale
                cap = self.scopes[failed[0] - 1]
                books = read_scope(self._table_name, cap)
                if not _fits(cap, books, micro_usd, tokens):
                    raise _scope_exceeded(cap, books, micro_usd, tokens, model)
                continue
            state = self._holder_state()
            _raise_if_stopped(state)
            if state.left_micro_usd is not None and state.left_micro_usd < micro_usd:
                raise BudgetExceeded(
                    f"{self.holder.kind} {self.holder.holder_id}: a call to {model} may cost up to "
                    f"{micro_to_usd(micro_usd)} USD, more than the {micro_to_usd(state.left_micro_usd)} USD "
                    f"left of its {state.budget_usd} USD budget "
                    f"(spent {micro_to_usd(state.spent_micro_usd)}, "
                    f"reserved {micro_to_usd(state.reserved_micro_usd)})",
                    field="budget_usd",
                    details=[
                        {
                            "budget": self.holder.kind,
                            "id": self.holder.holder_id,
                            "budget_usd": state.budget_usd,
                            "spent_usd": micro_to_usd(state.spent_micro_usd),
                            "reserved_usd": micro_to_usd(state.reserved_micro_usd),
                            "left_usd": micro_to_usd(max(0, state.left_micro_usd)),
                            "call_worst_case_usd": micro_to_usd(micro_usd),
                        }
                    ],
                )
        raise BudgetExceeded(
            f"{self.holder.kind} {self.holder.holder_id}: the budget could not be reserved",
            field="budget_usd",
        )

    def _holder_state(self) -> BudgetState:
        if self.holder.kind == "execution":
            return read_state(self._table_name, self.holder.holder_id)
        return read_session_state(self._table_name, self.holder.holder_id)

    def settle(
        self,
        reserved_micro_usd: int,
        spent_micro_usd: int,
        *,
        reserved_tokens: int = 0,
        spent_tokens: int = 0,
    ) -> None:
        values: dict[str, Any] = {":release": -reserved_micro_usd, ":spent": spent_micro_usd}
        update = f"ADD {RESERVED} :release, {SPENT} :spent"
        if self._capped:
            update += f", {LEFT} :left"
            values[":left"] = reserved_micro_usd - spent_micro_usd
        execution = {
            "TableName": self._table_name,
            "Key": serialize(self.holder.key),
            "UpdateExpression": update,
            "ConditionExpression": "attribute_exists(PK)",
            "ExpressionAttributeValues": serialize(values),
        }
        try:
            if not self.scopes:
                aws.client("dynamodb").update_item(**execution)
                return
            scope_values = serialize(
                {
                    ":release": -reserved_micro_usd,
                    ":spent": spent_micro_usd,
                    ":net": spent_micro_usd - reserved_micro_usd,
                    ":release_tokens": -reserved_tokens,
                    ":spent_tokens": spent_tokens,
                    ":net_tokens": spent_tokens - reserved_tokens,
                }
            )
            _transact(
                [{"Update": execution}]
                + [
                    {
                        "Update": {
                            "TableName": self._table_name,
                            "Key": serialize(cap.key),
                            "UpdateExpression": (
                                f"ADD {RESERVED} :release, {SPENT} :spent, {COMMITTED} :net, "
                                f"{TOKENS_RESERVED} :release_tokens, {TOKENS_SPENT} :spent_tokens, "
                                f"{TOKENS_COMMITTED} :net_tokens"
                            ),
                            "ExpressionAttributeValues": scope_values,
                        }
                    }
                    for cap in self.scopes
                ]
            )
        except ClientError as exc:
            raise_if_transient(exc)
            raise

    def check(self) -> None:
        _raise_if_stopped(self._holder_state())


CONFLICT_ATTEMPTS = 10


def _transact(actions: list[dict[str, Any]]) -> None:
    """One transaction; tried again (jittered) while DynamoDB cancels it only for a conflict with another
    transaction on the same user's or project's item (parallel tasks reserving at once), then
    TransientError, which the workflow retries. A refused condition is the caller's to read."""
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            transact_write(actions)
            return
        except ClientError as exc:
            codes = cancellation_codes(exc)
            if "TransactionConflict" not in codes or "ConditionalCheckFailed" in codes:
                raise
            time.sleep(random.uniform(0.005, 0.02) * attempt)
    raise TransientError("the budget's books were contended; try again")


def ledger_for(execution: Execution) -> BudgetLedger:
    """The books every model call of `execution` reserves from: its own, its submitter's and its project's
    (the month it was submitted in)."""
    table_name = get_settings().table_name
    period = period_of(execution.created_at)
    return BudgetLedger(
        table_name,
        Holder("execution", execution.execution_id, capped=execution.budget_usd is not None),
        scopes=(
            cap_of(table_name, "user", execution.principal, period),
            cap_of(table_name, "project", execution.project_id, period),
        ),
    )


def session_ledger(
    table_name: str, session_id: str, *, user_id: str, project_id: str, capped: bool, now: datetime
) -> BudgetLedger:
    """The books every model call of one chat turn reserves from: the session's own budget, its user's and
    its project's month (the month of the turn). One more holder of the same ledger, so a turn is held to
    the same promise as a request's task: never more than one call's worst case over any of them."""
    period = period_of(now)
    return BudgetLedger(
        table_name,
        Holder("session", session_id, capped=capped),
        scopes=(
            cap_of(table_name, "user", user_id, period),
            cap_of(table_name, "project", project_id, period),
        ),
    )


def _fits(cap: ScopeCap, books: ScopeBooks, micro_usd: int, tokens: int) -> bool:
    if books.committed_micro_usd + micro_usd > cap.cap_micro_usd:
        return False
    return cap.budget_tokens is None or books.committed_tokens + tokens <= cap.budget_tokens


def _scope_exceeded(
    cap: ScopeCap, books: ScopeBooks, micro_usd: int, tokens: int, model: str
) -> BudgetExceeded:
    left = max(0, cap.cap_micro_usd - books.committed_micro_usd)
    if micro_usd > left or cap.budget_tokens is None:
        what = (
            f"may cost up to {micro_to_usd(micro_usd)} USD, more than the {micro_to_usd(left)} USD left "
            f"of the {cap.scope}'s {cap.budget_usd} USD budget for {cap.period}"
        )
    else:
        left_tokens = max(0, cap.budget_tokens - books.committed_tokens)
        what = (
            f"may use up to {tokens} tokens, more than the {left_tokens} left of the {cap.scope}'s "
            f"{cap.budget_tokens}-token budget for {cap.period}"
        )
    figures: dict[str, object] = {
        "budget": cap.scope,
        "id": cap.scope_id,
        "period": cap.period,
        "budget_usd": cap.budget_usd,
        "spent_usd": micro_to_usd(books.spent_micro_usd),
        "reserved_usd": micro_to_usd(books.reserved_micro_usd),
        "left_usd": micro_to_usd(left),
        "call_worst_case_usd": micro_to_usd(micro_usd),
    }
    if cap.budget_tokens is not None:
        figures.update(
            budget_tokens=cap.budget_tokens,
            spent_tokens=books.spent_tokens,
            reserved_tokens=books.reserved_tokens,
            call_worst_case_tokens=tokens,
        )
    return BudgetExceeded(
        f"{cap.describe()}: a call to {model} {what} (spent {micro_to_usd(books.spent_micro_usd)}, "
        f"reserved {micro_to_usd(books.reserved_micro_usd)})",
        field=f"{cap.scope}_id",
        details=[figures],
    )


# ------------------------------------------------------------------------------ user and project caps
def cap_of(table_name: str, scope: ScopeKind, scope_id: str, period: str) -> ScopeCap:
    """The cap of a user or a project for `period`: an admin's override, else the configured default."""
    return _cap_from(scope, scope_id, period, _get(table_name, schema.budget_cap_key(scope, scope_id)))


def _cap_from(scope: ScopeKind, scope_id: str, period: str, item: dict[str, Any] | None) -> ScopeCap:
    settings = get_settings()
    default_usd, default_tokens = (
        (settings.user_budget_usd, settings.user_budget_tokens)
        if scope == "user"
        else (settings.project_budget_usd, settings.project_budget_tokens)
    )
    if item is None:
        return ScopeCap(scope, scope_id, period, default_usd, default_tokens, "default")
    usd, tokens = item.get("budget_usd"), item.get("budget_tokens")
    return ScopeCap(
        scope,
        scope_id,
        period,
        float(usd) if usd is not None else default_usd,
        int(tokens) if tokens is not None else default_tokens,
        "override",
    )


def read_scope(table_name: str, cap: ScopeCap) -> ScopeBooks:
    return ScopeBooks.of(_get(table_name, cap.key))


def set_cap(
    table_name: str,
    scope: ScopeKind,
    scope_id: str,
    *,
    budget_usd: float | None,
    budget_tokens: int | None,
    reason: str,
    by: str,
) -> None:
    """An admin's override (None in a field: the configured default for it), with who, when and why."""
    aws.client("dynamodb").put_item(
        TableName=table_name,
        Item=serialize(
            {
                **schema.budget_cap_key(scope, scope_id),
                "scope": scope,
                "scope_id": scope_id,
                "budget_usd": budget_usd,
                "budget_tokens": budget_tokens,
                "reason": reason,
                "set_by": by,
                "set_at": utc_now().isoformat(),
            }
        ),
    )
    logger.info(
        "budget cap set",
        extra={
            "security_event": "budget_cap_set",
            "scope": scope,
            "scope_id": scope_id,
            "budget_usd": budget_usd,
            "budget_tokens": budget_tokens,
            "by": by,
            "reason": reason,
        },
    )


def cap_record(table_name: str, scope: ScopeKind, scope_id: str) -> dict[str, Any] | None:
    """Who set the override, when and why (None: the default applies)."""
    item = _get(table_name, schema.budget_cap_key(scope, scope_id))
    return None if item is None else {k: item.get(k) for k in ("reason", "set_by", "set_at")}


# ----------------------------------------------------------------------------------- suspension
def suspend(table_name: str, principal: str, *, reason: str, by: str) -> dict[str, Any]:
    record = {
        "principal": principal,
        "reason": reason,
        "suspended_by": by,
        "suspended_at": utc_now().isoformat(),
    }
    aws.client("dynamodb").put_item(
        TableName=table_name, Item=serialize({**schema.principal_suspension_key(principal), **record})
    )
    logger.warning("user suspended", extra={"security_event": "user_suspended", **record})
    return record


def unsuspend(table_name: str, principal: str, *, reason: str, by: str) -> bool:
    """Lift a suspension; False when the user was not suspended."""
    answer = aws.client("dynamodb").delete_item(
        TableName=table_name,
        Key=serialize(schema.principal_suspension_key(principal)),
        ReturnValues="ALL_OLD",
    )
    lifted = bool(answer.get("Attributes"))
    logger.warning(
        "user unsuspended",
        extra={"security_event": "user_unsuspended", "principal": principal, "by": by, "reason": reason},
    )
    return lifted


def suspension_of(table_name: str, principal: str) -> dict[str, Any] | None:
    return _get(table_name, schema.principal_suspension_key(principal))


def check_admission(table_name: str, principal: str, project_id: str, now: datetime) -> None:
    """Before a request is stored: its user is not suspended (403), and neither the user's nor the
    project's month is used up (402, naming `user_id` or `project_id`). One BatchGetItem of five items."""
    period = period_of(now)
    keys = {
        "suspension": schema.principal_suspension_key(principal),
        "user_cap": schema.budget_cap_key("user", principal),
        "user_books": schema.budget_period_key("user", principal, period),
        "project_cap": schema.budget_cap_key("project", project_id),
        "project_books": schema.budget_period_key("project", project_id, period),
    }
    found = _batch_get(table_name, list(keys.values()))

    def item(name: str) -> dict[str, Any] | None:
        key = keys[name]
        return found.get((key["PK"], key["SK"]))

    suspension = item("suspension")
    if suspension is not None:
        raise UserSuspended(
            f"user {principal} is suspended ({suspension.get('reason')}); no new requests or sessions",
            field="principal",
        )
    scopes: tuple[tuple[ScopeKind, str], ...] = (("user", principal), ("project", project_id))
    for scope, scope_id in scopes:
        cap = _cap_from(scope, scope_id, period, item(f"{scope}_cap"))
        books = ScopeBooks.of(item(f"{scope}_books"))
        usd_gone = books.committed_micro_usd >= cap.cap_micro_usd
        tokens_gone = cap.budget_tokens is not None and books.committed_tokens >= cap.budget_tokens
        if usd_gone or tokens_gone:
            what = f"{cap.budget_usd} USD" if usd_gone else f"{cap.budget_tokens}-token"
            _, end = period_bounds(period)
            raise BudgetExceeded(
                f"{scope} {scope_id} has used its {what} budget for {period} "
                f"(spent {micro_to_usd(books.spent_micro_usd)} USD and {books.spent_tokens} tokens, reserved "
                f"{micro_to_usd(books.reserved_micro_usd)} USD); it renews {end.isoformat()} "
                "or when an admin raises it",
                field=f"{scope}_id",
                details=[
                    {
                        "budget": scope,
                        "id": scope_id,
                        "period": period,
                        "budget_usd": cap.budget_usd,
                        "budget_tokens": cap.budget_tokens,
                        "spent_usd": micro_to_usd(books.spent_micro_usd),
                        "reserved_usd": micro_to_usd(books.reserved_micro_usd),
                        "left_usd": micro_to_usd(max(0, cap.cap_micro_usd - books.committed_micro_usd)),
                        "spent_tokens": books.spent_tokens,
                        "renews_at": end.isoformat(),
                    }
                ],
            )


def require_not_suspended(table_name: str, principal: str) -> None:
    suspension = suspension_of(table_name, principal)
    if suspension is not None:
        raise UserSuspended(
            f"user {principal} is suspended ({suspension.get('reason')}); no new requests or sessions",
            field="principal",
        )


def _get(table_name: str, key: dict[str, str]) -> dict[str, Any] | None:
    try:
        item = aws.client("dynamodb").get_item(TableName=table_name, Key=serialize(key), ConsistentRead=True)
    except ClientError as exc:
        raise_if_transient(exc)
        raise
    found = item.get("Item")
    return deserialize(found) if found else None


def _batch_get(table_name: str, keys: list[dict[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    request: dict[str, Any] = {table_name: {"Keys": [serialize(k) for k in keys], "ConsistentRead": True}}
    while request:
        try:
            answer = aws.client("dynamodb").batch_get_item(RequestItems=request)
        except ClientError as exc:
            raise_if_transient(exc)
            raise
        for raw in answer.get("Responses", {}).get(table_name, []):
            item = deserialize(raw)
            found[(str(item["PK"]), str(item["SK"]))] = item
        request = answer.get("UnprocessedKeys") or {}
    return found


def _raise_if_stopped(state: BudgetState) -> None:
    if state.session_status in SESSION_CLOSED:  # a killed or closed chat session
        raise ExecutionCancelled(
            f"the session is {state.session_status}: its turn makes no further model call"
        )
    if state.cancel_requested_at is not None:
        raise ExecutionCancelled(f"the execution was cancelled at {state.cancel_requested_at}")
    if state.status is not None and state.status.terminal:
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


def read_session_state(table_name: str, session_id: str) -> BudgetState:
    """A chat session's books (on its item): cap, left, reserved, spent, and its status."""
    item = _get(table_name, schema.session_meta_key(session_id))
    if item is None:
        raise NotFoundError(f"no session {session_id}", field="session_id")
    budget = item.get("budget_usd")
    left = item.get(LEFT)
    return BudgetState(
        budget_usd=float(budget) if budget is not None else None,
        left_micro_usd=int(left) if left is not None else None,
        reserved_micro_usd=int(item.get(RESERVED) or 0),
        spent_micro_usd=int(item.get(SPENT) or 0),
        cancel_requested_at=None,
        status=None,
        session_status=str(item.get("status")),
    )
