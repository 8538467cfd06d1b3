"""ExecutionRepository: executions, their plans and task results on the single table.

Item layout (one partition per execution, so one Query returns the whole execution):
    PK=EXECUTION#<id>  SK=EXECUTION           the execution: status, per-task progress, usage
    PK=EXECUTION#<id>  SK=PLAN                the plan the supervisor made
    PK=EXECUTION#<id>  SK=TASK#<task_id>      one agent's result (outputs can be large: kept off the
                                              execution item and out of Step Functions payloads)
    PK=EXECUTION#<id>  SK=COMPENSATION#<id>   what the failure path undid
    PK=IDEMPOTENCY#<principal>#<key>  SK=IDEMPOTENCY   request hash -> execution id
GSI1 lists executions by status (newest first), GSI2 by project (time-ordered).

`GET /v1/executions/{id}` (what the CLI polls while a request runs) reads the partition through the read
cache (`tdev.caching`, namespace `executions`) when there is one: the items are cached as stored (request
texts and outputs stay sealed in Redis, opened per read), 5 min while the execution runs and 24 h once it
is terminal. Every write to the partition, here and elsewhere (`tdev.data.execution_cache`), invalidates
the cached view in its own code path, whether the write succeeded or not (an ambiguous timeout may have
written), so no reader sees an older view after a write is acknowledged.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from tdev import aws
from tdev.caching import Freshness, TieredCache
from tdev.crypto import EnvelopeCipher
from tdev.data.codec import from_item, raise_if_transient, serialize, to_item
from tdev.data.execution_cache import view_key
from tdev.data.fields import FieldSealer
from tdev.data.history import history_view
from tdev.data.outbox import outbox_put
from tdev.data.progress import events_after
from tdev.data.schema import execution_key, task_key
from tdev.data.store import transact_write
from tdev.data.verify import iterations_from_items
from tdev.errors import ConflictError, IdempotencyConflictError, NotFoundError, TransientError
from tdev.models import (
    AgentResult,
    BudgetView,
    Execution,
    ExecutionStatus,
    ExecutionView,
    Plan,
    TaskState,
    TaskStatus,
    Usage,
    to_micro_usd,
    utc_now,
)

# The request's outcome (RequestCompleted / RequestFailed) is announced as the orchestrator's event.
OUTCOME_SOURCE = "t-developer.orchestrator"


@dataclass(frozen=True)
class Outcome:
    """The event that announces a terminal status; written to the outbox with that status."""

    detail_type: str
    data: dict[str, Any]
    correlation_id: str


@dataclass(frozen=True)
class OpenExecution:
    """An execution not yet finished, as the reconciler sees it."""

    execution_id: str
    status: ExecutionStatus
    created_at: str
    correlation_id: str


def fact_event_id(execution_id: str, *fact: str) -> str:
    """The same fact about an execution always gets the same event id (consumers deduplicate on it)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "t-developer:" + ":".join((execution_id, *fact))))


def _view_freshness(items: list[dict[str, Any]]) -> Freshness:
    """A finished execution's view no longer changes (24 h); a running one changes often (5 min)."""
    head = next((i for i in items if i.get("SK") == "EXECUTION"), None)
    terminal = head is not None and ExecutionStatus(str(head["status"])).terminal
    return Freshness.STABLE if terminal else Freshness.VOLATILE


def outcome_event_id(execution_id: str, status: ExecutionStatus) -> str:
    """The id of the event announcing that `execution_id` ended with `status` (one terminal status each)."""
    return fact_event_id(execution_id, "outcome", status.value)


class ExecutionRepository:
    def __init__(
        self,
        table_name: str,
        *,
        retention_days: int = 90,
        idempotency_ttl_seconds: int = 86_400,
        cipher: EnvelopeCipher | None = None,
        cache: TieredCache | None = None,
    ):
        self._table_name = table_name
        self._cache = cache  # the read cache of views (None: every view reads the table)
        self._retention_seconds = retention_days * 86_400
        self._idempotency_ttl = idempotency_ttl_seconds
        # Request texts and agent outputs are envelope-encrypted when a cipher (KMS_KEY_ID) is configured.
        self._fields = FieldSealer(cipher, table_name)

    @property
    def _table(self) -> Any:
        return aws.table(self._table_name)

    def _changed(self, execution_id: str) -> None:
        """After any write to the partition (succeeded, failed or unknown): no cached view survives it."""
        if self._cache is not None:
            self._cache.invalidate(view_key(execution_id))

    # ------------------------------------------------------------------------------------ create
    def create(
        self, execution: Execution, *, idempotency_key: str | None, request_hash: str
    ) -> tuple[Execution, bool]:
        """Store a new execution; with an idempotency key, at most once per (principal, key).

        The execution and its idempotency record are written in one transaction with conditions, so
        two concurrent submissions with the same key cannot both create an execution. Returns the
        execution and whether it was created now (False: an earlier identical request's execution).
        """
        item = self._execution_item(execution)
        item["request_hash"] = request_hash
        writes: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table_name,
                    "Item": serialize(item),
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            # Transactional outbox: the event exists if and only if the execution does.
            self._outbox(
                execution.execution_id,
                "ExecutionAccepted",
                ("accepted",),
                {"executionId": execution.execution_id, "projectId": execution.project_id},
                correlation_id=execution.correlation_id,
            ),
        ]
        if idempotency_key:
            # First: the contended item is checked and written before anything else in the transaction.
            writes.insert(
                0,
                {
                    "Put": {
                        "TableName": self._table_name,
                        "Item": serialize(
                            {
                                "PK": f"IDEMPOTENCY#{execution.principal}#{idempotency_key}",
                                "SK": "IDEMPOTENCY",
                                "entity": "IDEMPOTENCY",
                                "execution_id": execution.execution_id,
                                "request_hash": request_hash,
                                "expires_at": int(time.time()) + self._idempotency_ttl,
                            }
                        ),
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                },
            )
        try:
            transact_write(writes)
            return execution, True
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException" or not idempotency_key:
                raise_if_transient(exc)
                raise
        existing = self._table.get_item(
            Key={"PK": f"IDEMPOTENCY#{execution.principal}#{idempotency_key}", "SK": "IDEMPOTENCY"},
            ConsistentRead=True,
        ).get("Item")
        if existing is None:  # cancelled for another reason (e.g. a conflicting transaction): retryable
            raise TransientError("the request could not be stored; retry with the same Idempotency-Key")
        if existing["request_hash"] != request_hash:
            raise IdempotencyConflictError(
                "this Idempotency-Key was already used with a different request body", field="Idempotency-Key"
            )
        return self.get(str(existing["execution_id"])), False

    def _execution_item(self, execution: Execution) -> dict[str, Any]:
        data = execution.model_dump(mode="json")
        data["request"] = self._fields.seal(data["request"], execution_key(execution.execution_id), "request")
        created = data["created_at"]
        ledger: dict[str, Any] = {}
        if execution.budget_usd is not None:  # the books of tdev.data.budgets start with the whole cap
            ledger["budget_left_micro_usd"] = to_micro_usd(execution.budget_usd)
        return {
            **ledger,
            **execution_key(execution.execution_id),
            "entity": "EXECUTION",
            **data,
            "GSI1PK": f"STATUS#{execution.status.value}",
            "GSI1SK": f"{created}#{execution.execution_id}",
            "GSI2PK": f"PROJECT#{execution.project_id}",
            "GSI2SK": f"EXECUTION#{created}#{execution.execution_id}",
            "expires_at": int(time.time()) + self._retention_seconds,
        }

    def _result_item(self, execution_id: str, result: AgentResult) -> dict[str, Any]:
        key = task_key(execution_id, result.task_id)
        return {
            **key,
            "entity": "TASK",
            "status": result.status.value,
            "result": {
                **result.model_dump(mode="json"),
                "output": self._fields.seal(result.output, key, "output"),
            },
            "expires_at": int(time.time()) + self._retention_seconds,
        }

    def import_history(self, records: Iterable[tuple[Execution, Sequence[AgentResult]]]) -> int:
        """Store finished executions and their task results as they would have been stored, in batches of
        25 (`tdev seed`): the same items, indexes and sealing as `create` and `save_result`, without the
        outbox events and idempotency records a live submission makes (these requests happened before).
        Returns the number of items written. A cached view of an execution written here is forgotten."""
        written, imported = 0, []
        try:
            with self._table.batch_writer() as batch:
                for execution, results in records:
                    imported.append(execution.execution_id)
                    batch.put_item(Item=to_item(self._execution_item(execution)))
                    written += 1
                    for result in results:
                        batch.put_item(Item=to_item(self._result_item(execution.execution_id, result)))
                        written += 1
        finally:
            for execution_id in imported:
                self._changed(execution_id)
        return written

    # -------------------------------------------------------------------------------------- read
    def get(self, execution_id: str) -> Execution:
        item = self._table.get_item(Key=execution_key(execution_id), ConsistentRead=True).get("Item")
        if item is None:
            raise NotFoundError(f"execution {execution_id} not found", field="execution_id")
        return self._execution(item)

    def _execution(self, item: dict[str, Any]) -> Execution:
        data = from_item(item)
        data["request"] = self._fields.open(data["request"], {"PK": item["PK"], "SK": item["SK"]}, "request")
        return Execution.model_validate(data, strict=False)

    def _result(self, item: dict[str, Any]) -> AgentResult:
        data = from_item(item)["result"]
        key = {"PK": item["PK"], "SK": item["SK"]}
        data["output"] = self._fields.open(data.get("output", ""), key, "output")
        return AgentResult.model_validate(data)

    def view(self, execution_id: str) -> ExecutionView:
        """The execution with every task result: one Query over its partition (or the read cache's copy)."""
        if self._cache is None:
            items = self._query_partition(execution_id)
        else:
            items = self._cache.get_or_load(
                view_key(execution_id),
                lambda: [from_item(i) for i in self._query_partition(execution_id)],
                freshness=_view_freshness,
            )
        head = next((i for i in items if i["SK"] == "EXECUTION"), None)
        if head is None:
            raise NotFoundError(f"execution {execution_id} not found", field="execution_id")
        execution = self._execution(head)
        results = [self._result(i) for i in items if i["SK"].startswith("TASK#")]
        order = [task_id for level in execution.levels for task_id in level]
        results.sort(key=lambda r: order.index(r.task_id) if r.task_id in order else len(order))
        plan_item = next((i for i in items if i["SK"] == "PLAN"), None)
        plan = self._plan(plan_item) if plan_item else None
        live_usage = Usage.total(t.usage for t in execution.tasks.values())
        usage = execution.usage if execution.status.terminal else live_usage
        return ExecutionView(
            execution_id=execution.execution_id,
            status=execution.status,
            request=execution.request,
            project_id=execution.project_id,
            model=execution.model,
            fallback_models=execution.fallback_models,
            created_at=execution.created_at,
            updated_at=execution.updated_at,
            progress=execution.progress,
            levels=execution.levels,
            tasks=execution.tasks,
            plan=plan,
            results=results,
            usage=usage,
            error=execution.error,
            compensations=execution.compensations,
            verify=iterations_from_items(items),
            compensation_error=execution.compensation_error,
            base=execution.base,
            budget=BudgetView(
                budget_usd=execution.budget_usd,
                spent_usd=round(execution.spent_micro_usd / 1_000_000, 6),
                reserved_usd=round(execution.reserved_micro_usd / 1_000_000, 6),
            ),
            cancel_requested_at=execution.cancel_requested_at,
            priority=execution.priority,
            deadline=execution.deadline,
        )

    def history(self, execution_id: str) -> dict[str, Any]:
        """The execution's events, in order, and the state they replay to (tdev.data.history)."""
        return history_view(self._table_name, execution_id)

    def progress(self, execution_id: str, after: int = 0, limit: int = 100) -> dict[str, Any]:
        """The execution's live progress events numbered above `after` (tdev.data.progress)."""
        return events_after(self._table_name, execution_id, after, limit=limit)

    def submitted(self, execution_id: str) -> tuple[str, str]:
        """(project id, principal) of an execution, nothing decrypted: what visibility checks read first.

        Both are written once, at creation: cached for 24 h (an unknown id is not cached)."""
        if self._cache is None:
            return self._submitted(execution_id)
        project_id, principal = self._cache.get_or_load(
            f"{execution_id}:submitted",
            lambda: list(self._submitted(execution_id)),
            freshness=Freshness.STABLE,
        )
        return str(project_id), str(principal)

    def _submitted(self, execution_id: str) -> tuple[str, str]:
        item = self._table.get_item(
            Key=execution_key(execution_id),
            ProjectionExpression="project_id, principal",
            ConsistentRead=True,
        ).get("Item")
        if item is None:
            raise NotFoundError(f"execution {execution_id} not found", field="execution_id")
        return str(item["project_id"]), str(item.get("principal", ""))

    def _query_partition(self, execution_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("PK").eq(f"EXECUTION#{execution_id}"),
            "ConsistentRead": True,
        }
        while True:
            page = self._table.query(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def list_by_status(self, status: ExecutionStatus, *, limit: int = 50) -> list[Execution]:
        page = self._table.query(
            IndexName="GSI1",
            KeyConditionExpression=Key("GSI1PK").eq(f"STATUS#{status.value}"),
            ScanIndexForward=False,
            Limit=limit,
        )
        return [self._execution(i) for i in page.get("Items", [])]

    def list_open_since_before(
        self, status: ExecutionStatus, created_before: str, *, limit: int = 100
    ) -> list[OpenExecution]:
        """Executions in `status` created before `created_before` (oldest first), from the status index.

        Only what reconciling needs is read (no request text, so nothing to decrypt).
        """
        page = self._table.query(
            IndexName="GSI1",
            KeyConditionExpression=Key("GSI1PK").eq(f"STATUS#{status.value}")
            & Key("GSI1SK").lt(created_before),
            ProjectionExpression="execution_id, #status, created_at, correlation_id",
            ExpressionAttributeNames={"#status": "status"},
            ScanIndexForward=True,
            Limit=limit,
        )
        return [
            OpenExecution(
                execution_id=str(item["execution_id"]),
                status=ExecutionStatus(str(item["status"])),
                created_at=str(item["created_at"]),
                correlation_id=str(item.get("correlation_id") or item["execution_id"]),
            )
            for item in page.get("Items", [])
        ]

    def open_ids_of(self, principal: str) -> list[str]:
        """The executions `principal` submitted that have not ended (PENDING, PLANNING, RUNNING): one Query
        of the status index per open status, filtered by principal, every page. What is open at once is
        bounded by the platform's capacity, not by the table's history, so this does not grow with it."""
        ids: list[str] = []
        for status in (s for s in ExecutionStatus if not s.terminal):
            query: dict[str, Any] = {
                "IndexName": "GSI1",
                "KeyConditionExpression": Key("GSI1PK").eq(f"STATUS#{status.value}"),
                "FilterExpression": Attr("principal").eq(principal),
                "ProjectionExpression": "execution_id",
            }
            while True:
                page = self._table.query(**query)
                ids.extend(str(item["execution_id"]) for item in page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    break
                query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return ids

    def get_plan(self, execution_id: str) -> Plan:
        item = self._table.get_item(
            Key={"PK": f"EXECUTION#{execution_id}", "SK": "PLAN"}, ConsistentRead=True
        )
        if "Item" not in item:
            raise NotFoundError(f"execution {execution_id} has no plan yet", field="execution_id")
        return self._plan(item["Item"])

    def _plan(self, item: dict[str, Any]) -> Plan:
        """The stored plan: a sealed JSON document (its task descriptions quote the request)."""
        stored = from_item(item)["plan"]
        if isinstance(stored, dict):  # stored before plans were sealed
            return Plan.model_validate(stored)
        return Plan.model_validate_json(self._fields.open(stored, {"PK": item["PK"], "SK": "PLAN"}, "plan"))

    def get_results(self, execution_id: str, task_ids: list[str]) -> list[AgentResult]:
        results = []
        for task_id in task_ids:
            item = self._table.get_item(
                Key={"PK": f"EXECUTION#{execution_id}", "SK": f"TASK#{task_id}"}, ConsistentRead=True
            ).get("Item")
            if item is not None:
                results.append(self._result(item))
        return results

    # ------------------------------------------------------------------------------------- write
    def save_plan(self, execution_id: str, plan: Plan) -> None:
        """Store the plan and move the execution to RUNNING with every task PENDING (one transaction)."""
        tasks = {
            task_id: TaskState(agent=plan.task(task_id).agent, level=level).model_dump(mode="json")
            for level, task_ids in enumerate(plan.levels)
            for task_id in task_ids
        }
        now = utc_now().isoformat()
        try:
            transact_write(
                [
                    {
                        "Put": {
                            "TableName": self._table_name,
                            "Item": serialize(
                                {
                                    "PK": f"EXECUTION#{execution_id}",
                                    "SK": "PLAN",
                                    "entity": "PLAN",
                                    # Sealed like the request it quotes (levels are on the EXECUTION item).
                                    "plan": self._fields.seal(
                                        plan.model_dump_json(),
                                        {"PK": f"EXECUTION#{execution_id}", "SK": "PLAN"},
                                        "plan",
                                    ),
                                    "expires_at": int(time.time()) + self._retention_seconds,
                                }
                            ),
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table_name,
                            "Key": serialize(execution_key(execution_id)),
                            "UpdateExpression": (
                                "SET #status = :running, GSI1PK = :gsi, levels = :levels, tasks = :tasks, "
                                "updated_at = :now ADD version :one"
                            ),
                            # A retried plan step may run again; a finished execution is never reopened.
                            "ConditionExpression": (
                                "attribute_exists(PK) AND #status IN (:pending, :planning, :running)"
                            ),
                            "ExpressionAttributeNames": {"#status": "status"},
                            "ExpressionAttributeValues": serialize(
                                {
                                    ":running": ExecutionStatus.RUNNING.value,
                                    ":gsi": f"STATUS#{ExecutionStatus.RUNNING.value}",
                                    ":levels": plan.levels,
                                    ":tasks": tasks,
                                    ":now": now,
                                    ":one": 1,
                                    ":pending": ExecutionStatus.PENDING.value,
                                    ":planning": ExecutionStatus.PLANNING.value,
                                }
                            ),
                        }
                    },
                ]
            )
        except ClientError as exc:
            raise_if_transient(exc)
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                raise ConflictError(f"execution {execution_id} is missing or already finished") from exc
            raise
        finally:
            self._changed(execution_id)

    def mark_task_running(self, execution_id: str, task_id: str, attempt: int) -> None:
        self._update_task(
            execution_id, task_id, {"status": TaskStatus.RUNNING.value, "attempts": attempt}, open_only=True
        )

    def _outbox(
        self,
        execution_id: str,
        detail_type: str,
        fact: tuple[str, ...],
        data: dict[str, Any],
        *,
        correlation_id: str | None,
        source: str = "t-developer.executions",
    ) -> dict[str, Any]:
        return outbox_put(
            self._table_name,
            source=source,
            detail_type=detail_type,
            data=data,
            partition_key=f"EXECUTION#{execution_id}",
            event_id=fact_event_id(execution_id, *fact),
            correlation_id=correlation_id or execution_id,
            causation_id=execution_id,
        )

    def save_result(
        self, execution_id: str, result: AgentResult, *, correlation_id: str | None = None
    ) -> AgentResult:
        """Store a task's result exactly once: a retried invocation keeps the first stored success.

        The TaskCompleted event goes into the outbox in the same transaction (its id is fixed per
        task and status, so rewriting a FAILED result does not make a second event).
        """
        task_state = {
            "status": result.status.value,
            "attempts": result.attempts,
            "usage": result.usage.model_dump(mode="json"),
            "error": result.error,
            "model": result.model or None,
        }
        try:
            transact_write(
                [
                    {
                        "Put": {
                            "TableName": self._table_name,
                            "Item": serialize(self._result_item(execution_id, result)),
                            "ConditionExpression": "attribute_not_exists(PK) OR #status <> :succeeded",
                            "ExpressionAttributeNames": {"#status": "status"},
                            "ExpressionAttributeValues": serialize(
                                {":succeeded": TaskStatus.SUCCEEDED.value}
                            ),
                        }
                    },
                    # A late task (a sibling failed and the saga already finished the execution) must
                    # not reopen a compensated execution: only an open execution takes task results.
                    {
                        "Update": self._task_update_request(
                            execution_id, result.task_id, task_state, open_only=True
                        )
                    },
                    self._outbox(
                        execution_id,
                        "TaskCompleted",
                        ("task", result.task_id, result.status.value),
                        {
                            "executionId": execution_id,
                            "taskId": result.task_id,
                            "agent": result.agent,
                            "status": result.status.value,
                        },
                        correlation_id=correlation_id,
                    ),
                ]
            )
        except ClientError as exc:
            raise_if_transient(exc)
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            stored = self.get_results(execution_id, [result.task_id])
            if stored and stored[0].status == TaskStatus.SUCCEEDED:
                return stored[0]
            if self.get(execution_id).status.terminal:
                raise ConflictError(
                    f"execution {execution_id} already finished; task {result.task_id} is too late"
                ) from exc
            raise TransientError(f"task {result.task_id}: result write was cancelled; retry") from exc
        finally:
            self._changed(execution_id)
        return result

    def stored_success(self, execution_id: str, task_id: str) -> AgentResult | None:
        stored = self.get_results(execution_id, [task_id])
        return stored[0] if stored and stored[0].status == TaskStatus.SUCCEEDED else None

    def set_task_status(
        self, execution_id: str, task_id: str, status: TaskStatus, error: str | None = None
    ) -> None:
        fields: dict[str, Any] = {"status": status.value}
        if error is not None:
            fields["error"] = error
        self._update_task(execution_id, task_id, fields)

    def _task_update_request(
        self, execution_id: str, task_id: str, fields: dict[str, Any], *, open_only: bool = False
    ) -> dict[str, Any]:
        names = {"#tasks": "tasks", "#tid": task_id}
        values: dict[str, Any] = {":now": utc_now().isoformat(), ":one": 1}
        condition = "attribute_exists(#tasks.#tid)"
        if open_only:
            names["#xstatus"] = "status"
            terminal = [s.value for s in ExecutionStatus if s.terminal]
            values.update({f":term{i}": v for i, v in enumerate(terminal)})
            condition += " AND NOT #xstatus IN (" + ", ".join(f":term{i}" for i in range(len(terminal))) + ")"
        sets = ["updated_at = :now"]
        for i, (name, value) in enumerate(fields.items()):
            names[f"#f{i}"] = name
            values[f":v{i}"] = value
            sets.append(f"#tasks.#tid.#f{i} = :v{i}")
        return {
            "TableName": self._table_name,
            "Key": serialize(execution_key(execution_id)),
            "UpdateExpression": "SET " + ", ".join(sets) + " ADD version :one",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": serialize(values, drop_none=False),
        }

    def _update_task(
        self, execution_id: str, task_id: str, fields: dict[str, Any], *, open_only: bool = False
    ) -> None:
        try:
            aws.client("dynamodb").update_item(
                **self._task_update_request(execution_id, task_id, fields, open_only=open_only)
            )
        except ClientError as exc:
            raise_if_transient(exc)
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise NotFoundError(f"task {task_id} is not part of execution {execution_id}") from exc
            raise
        finally:
            self._changed(execution_id)

    def finish(
        self,
        execution_id: str,
        status: ExecutionStatus,
        usage: Usage,
        *,
        error: str | None = None,
        compensations: list[str] | None = None,
        compensation_error: str | None = None,
        outcome: Outcome | None = None,
    ) -> Execution:
        """Move to a terminal status once; finishing again with the same status is a no-op.

        The outcome event goes into the outbox in the same transaction as the terminal status, under an
        id fixed by the execution and its status (`outcome_event_id`): a retried step rewrites the same
        outbox item (a MODIFY on the stream, not a second event), and an event whose publishing fails
        stays on the stream to be retried: announced exactly when the status is recorded, once.
        """
        assert status.terminal
        terminal = [s.value for s in ExecutionStatus if s.terminal]
        values: dict[str, Any] = {
            ":status": status.value,
            ":gsi": f"STATUS#{status.value}",
            ":usage": usage.model_dump(mode="json"),
            ":now": utc_now().isoformat(),
            ":one": 1,
            ":error": error,
            ":comp": compensations or [],
            ":comp_error": compensation_error,
            **{f":t{i}": v for i, v in enumerate(terminal)},
        }
        writes: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._table_name,
                    "Key": serialize(execution_key(execution_id)),
                    "UpdateExpression": (
                        "SET #status = :status, GSI1PK = :gsi, #usage = :usage, updated_at = :now, "
                        "#error = :error, compensations = :comp, compensation_error = :comp_error "
                        "ADD version :one"
                    ),
                    "ConditionExpression": (
                        "attribute_exists(PK) AND (NOT #status IN ("
                        + ", ".join(f":t{i}" for i in range(len(terminal)))
                        + ") OR #status = :status)"
                    ),
                    "ExpressionAttributeNames": {"#status": "status", "#usage": "usage", "#error": "error"},
                    "ExpressionAttributeValues": serialize(values, drop_none=False),
                }
            }
        ]
        if outcome is not None:
            writes.append(
                self._outbox(
                    execution_id,
                    outcome.detail_type,
                    ("outcome", status.value),
                    outcome.data,
                    correlation_id=outcome.correlation_id,
                    source=OUTCOME_SOURCE,
                )
            )
        try:
            transact_write(writes)
        except ClientError as exc:
            raise_if_transient(exc)
            reasons = exc.response.get("CancellationReasons") or []
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                current = self.get(execution_id)
                raise ConflictError(
                    f"execution {execution_id} already finished as {current.status.value}"
                ) from exc
            raise
        finally:
            self._changed(execution_id)
        return self.get(execution_id)

    def recorded_compensations(self, execution_id: str) -> list[str]:
        """The tasks whose compensation was recorded (COMPENSATION items), in the order they were undone."""
        items = [i for i in self._query_partition(execution_id) if i["SK"].startswith("COMPENSATION#")]
        items.sort(key=lambda i: str(i.get("at", "")))
        return [str(i["task_id"]) for i in items]

    def record_compensation(self, execution_id: str, task_id: str, action: str) -> bool:
        """Record one compensation; False when it was already recorded (the step is idempotent)."""
        try:
            self._table.put_item(
                Item=to_item(
                    {
                        "PK": f"EXECUTION#{execution_id}",
                        "SK": f"COMPENSATION#{task_id}",
                        "entity": "COMPENSATION",
                        "task_id": task_id,
                        "action": action,
                        "at": utc_now().isoformat(),
                        "expires_at": int(time.time()) + self._retention_seconds,
                    }
                ),
                ConditionExpression=Attr("PK").not_exists(),
            )
            return True
        except ClientError as exc:
            raise_if_transient(exc)
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        finally:
            self._changed(execution_id)
