"""The request workflow's domain operations: one function per state machine step, plus submission.

Each step is safe to run twice (Step Functions retries, Lambda redeliveries): plans are rewritten
only while the execution is open, a task's first stored success is kept, terminal states are set once,
and each compensation is recorded once.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from botocore.exceptions import ClientError

from tdev import aws, container
from tdev.data.budgets import check_admission, ledger_for, read_state, request_cancel
from tdev.data.executions import Outcome, outcome_event_id
from tdev.errors import (
    AgentError,
    BudgetExceeded,
    CapacityExhausted,
    ConflictError,
    ExecutionCancelled,
    TDevError,
    TransientError,
    UnknownModelProviderError,
)
from tdev.incidents import recorder as incidents
from tdev.models import (
    AgentResult,
    Execution,
    ExecutionStatus,
    ModelHop,
    Plan,
    RequestAccepted,
    RequestIn,
    TaskStatus,
    Usage,
    utc_now,
)
from tdev.observability import NAMESPACE, logger, metrics, tracer
from tdev.orchestration import capacity
from tdev.orchestration.admission import check_deadline
from tdev.settings import get_settings

if TYPE_CHECKING:
    from tdev.llm.guards import Guards


def request_hash(body: RequestIn) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------------------------ submission
@tracer.capture_method
def submit_request(
    body: RequestIn, *, principal: str, idempotency_key: str | None, correlation_id: str
) -> tuple[RequestAccepted, bool]:
    """Store the request and start its workflow; returns (accepted, created_now).

    The state machine execution is named after the execution id, so a retried submission (same
    Idempotency-Key, same body) can safely call StartExecution again after a crash in between.

    A request with a base (an earlier execution's project, an uploaded zip) has it checked first and its
    workspace seeded before the execution is stored: no workflow, not even the reconciler's, ever starts
    on a workspace still waiting for its files. (A replayed submission seeds a workspace under an id that
    is then not used; the bucket's lifecycle expires it like any workspace.)
    """
    from tdev.llm.catalog import check_model_name
    from tdev.orchestration.project_base import prepare_base, seed
    from tdev.workspace import open_workspace

    requested = [body.model] if body.model else []
    for field, names in (("model", requested), ("fallback_models", body.fallback_models)):
        for name in names:
            try:
                check_model_name(name)
            except UnknownModelProviderError as exc:
                raise UnknownModelProviderError(str(exc), field=field) from None
    deadline = check_deadline(body.deadline, utc_now())  # checked before any workspace is seeded
    # A suspended user (403), or a user or project whose month is spent (402): refused before anything is
    # stored or seeded, a replayed submission too.
    check_admission(get_settings().table_name, principal, body.project_id, utc_now())
    base = prepare_base(body)
    execution_id = str(uuid.uuid4())
    if base is not None:
        seed(open_workspace(execution_id), base)
    now = utc_now()
    execution = Execution(
        execution_id=execution_id,
        request=body.request,
        project_id=body.project_id,
        principal=principal,
        model=body.model,  # None: each agent's own model, else the deployment default, chosen at run time
        fallback_models=list(body.fallback_models),
        status=ExecutionStatus.PENDING,
        created_at=now,
        updated_at=now,
        correlation_id=correlation_id,
        base=base.source if base else None,
        budget_usd=body.budget_usd if body.budget_usd is not None else get_settings().default_budget_usd,
        priority=body.priority,
        deadline=deadline,
    )
    stored, created = container.executions().create(
        execution, idempotency_key=idempotency_key, request_hash=request_hash(body)
    )
    if created or stored.status == ExecutionStatus.PENDING:
        # If this start is lost (the call fails, the function dies), the execution stays PENDING and the
        # reconciler (tdev.orchestration.reconciler) starts it, under the same name, a minute later.
        start_workflow(stored.execution_id, stored.correlation_id)
    if created:
        metrics.add_metric(name="RequestsAccepted", unit=MetricUnit.Count, value=1)
    logger.info("request accepted", extra={"execution_id": stored.execution_id, "new_execution": created})
    return (
        RequestAccepted(
            execution_id=stored.execution_id,
            status=stored.status,
            status_url=f"/v1/executions/{stored.execution_id}",
        ),
        created,
    )


STARTS_RETRYABLE = frozenset({"ThrottlingException", "ServiceUnavailable", "InternalServerError"})


def start_workflow(execution_id: str, correlation_id: str) -> bool:
    """Start the execution's workflow; False when it was already started.

    The Step Functions execution is named after the execution id, so starting twice (a retried
    submission, the reconciler after a lost answer) never runs the workflow twice: the second start is
    refused with ExecutionAlreadyExists (same name and input).
    """
    settings = get_settings()
    if not settings.state_machine_arn:
        raise TDevError("STATE_MACHINE_ARN is not configured for this function")
    try:
        aws.client("stepfunctions").start_execution(
            stateMachineArn=settings.state_machine_arn,
            name=execution_id,
            input=json.dumps({"execution_id": execution_id, "correlation_id": correlation_id}),
        )
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code == "ExecutionAlreadyExists":  # started by an earlier attempt of the same request
            return False
        if code in STARTS_RETRYABLE:
            raise TransientError(
                f"could not start the workflow ({code}); retry with the same Idempotency-Key"
            ) from exc
        raise
    return True


# ---------------------------------------------------------------------------------------- plan
@tracer.capture_method
def plan_execution(execution_id: str) -> dict[str, Any]:
    """Plan the request into a DAG of agent tasks; returns the levels the state machine maps over."""
    # Imported here, not with this module: the planner loads Agent Squad (and, through its agents package,
    # the Anthropic and OpenAI SDKs), which the API function, which also imports this module, never needs.
    # The plan function imports it at its own init instead (functions/plan_request/handler.py).
    from tdev.orchestration.planner import Supervisor

    executions = container.executions()
    registry = container.agents()
    execution = executions.get(execution_id)
    specs = registry.list()
    history = registry.history(s.name for s in specs)
    supervisor = Supervisor(specs, history=history, balancer=capacity.load_balancer(specs, history))
    plan = supervisor.plan(execution.request)
    executions.save_plan(execution_id, plan)
    metrics.add_metric(name="PlannedTasks", unit=MetricUnit.Count, value=len(plan.tasks))
    # The request text is sealed at rest: the log says which agents were chosen and how sure the planner
    # was, and how long the request is, never what it says (a decision's reasoning quotes the request).
    logger.info(
        "request planned",
        extra={
            "request_chars": len(execution.request),
            "tasks": len(plan.tasks),
            "levels": plan.levels,
            "decisions": [
                {"intent": d.intent, "agent": d.agent, "confidence": d.confidence} for d in plan.decisions
            ],
        },
    )
    return {"levels": step_levels(plan), "task_count": len(plan.tasks)}


def step_levels(plan: Plan) -> list[dict[str, Any]]:
    """The Step Functions view of a plan: small references, never agent outputs (256 KB payload limit)."""
    return [
        {
            "level": i,
            "tasks": [
                {"task_id": t, "agent": plan.task(t).agent, "on_failure": plan.task(t).on_failure.value}
                for t in level
            ],
        }
        for i, level in enumerate(plan.levels)
    ]


# ------------------------------------------------------------------------------------- run agent
def _count_run(
    agent: str, run_id: str, *, succeeded: bool, duration_ms: int, cpu_ms: int = 0, memory_permille: int = 0
) -> None:
    """The agent's run counters (with the run's CPU time and peak memory, the resource-based routing's
    inputs), written behind (tdev.write_behind): acknowledged once buffered in Redis, applied by the flush at
    the end of this invocation (run_agent's handler), once per run id."""
    container.run_statistics().submit(
        {
            "agent": agent,
            "run_id": run_id,
            "succeeded": succeeded,
            "duration_ms": duration_ms,
            "cpu_ms": cpu_ms,
            "memory_permille": memory_permille,
        }
    )


@tracer.capture_method
def run_task(execution_id: str, task_id: str, attempt: int = 0) -> AgentResult:
    """Run one agent task on its model chain and store the result (exactly once per task)."""
    from tdev.llm.fallback import model_guards

    # The model calls' outcomes go to Redis without waiting for their replies; those are read when the
    # task ends, after the result's write, so the task does not wait for them.
    with model_guards() as guards:
        return _run_task(execution_id, task_id, attempt, guards)


def _run_task(execution_id: str, task_id: str, attempt: int, guards: Guards | None) -> AgentResult:
    from tdev.agents.chain import run_chain
    from tdev.agents.runtime import compose_prompt
    from tdev.llm.fallback import model_chain
    from tdev.llm.metering import metered
    from tdev.orchestration.verify import agent_tools

    executions = container.executions()
    already = executions.stored_success(execution_id, task_id)
    if already is not None:  # a redelivered invocation: the work is done, do not pay for it twice
        # ... but count it, once: the first invocation may have stopped between the result and the count.
        run_id = f"{execution_id}#{task_id}#SUCCEEDED"
        _count_run(already.agent, run_id, succeeded=True, duration_ms=already.duration_ms)
        return already
    execution = executions.get(execution_id)
    plan = executions.get_plan(execution_id)
    task = plan.task(task_id)
    spec = container.agents().get(task.agent)
    chain = model_chain(execution, spec)
    model_name = chain[0]
    # A slot of the agent's and of the model's capacity for the whole run, or CapacityExhausted: the
    # workflow waits on it and retries (a durable wait, not a failure). The holder is the task, so a
    # retried step renews its own slot instead of taking a second one.
    with capacity.running(
        spec,
        model_name,
        holder=f"{execution_id}#{task_id}",
        priority=execution.priority,
        deadline=execution.deadline,
    ):
        executions.mark_task_running(execution_id, task_id, attempt + 1)
        upstream = executions.get_results(execution_id, [d.task_id for d in task.depends_on])
        tracer.put_annotation("agent", task.agent)
        tracer.put_annotation("model", model_name)
        tools = agent_tools(spec, execution_id)  # the execution's workspace, when the role works on files
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            with metered(ledger_for(execution)):  # every model call reserves from the request's budget
                chained = run_chain(
                    spec,
                    chain,
                    compose_prompt(
                        execution.request,
                        task,
                        upstream,
                        existing_files=execution.base.files if execution.base else (),
                    ),
                    guards=guards,
                    tools=[tools] if tools else [],
                )
        except CapacityExhausted:  # the pool's agents are all leased: the task waits (ASL Retry), not failed
            raise
        except (BudgetExceeded, ExecutionCancelled) as exc:  # the request stops; not the agent's failure
            logger.warning(
                "task stopped", extra={"task_id": task_id, "agent": task.agent, "reason": str(exc)}
            )
            raise
        except TDevError as exc:
            duration_ms = int((time.perf_counter() - started) * 1000)
            _record_agent_metrics(
                task.agent,
                model_name,
                "transient" if isinstance(exc, TransientError) else "failed",
                duration_ms,
                Usage(),
            )
            if not isinstance(exc, TransientError):
                _count_run(
                    task.agent,
                    f"{execution_id}#{task_id}#FAILED",
                    succeeded=False,
                    duration_ms=duration_ms,
                    **_resource_use(cpu_started),
                )
            raise
        run = chained.run
        result = AgentResult(
            task_id=task_id,
            agent=task.agent,
            model=run.model,
            status=TaskStatus.SUCCEEDED,
            output=run.output,
            usage=run.usage,
            duration_ms=run.duration_ms,
            attempts=attempt + 1,
            hops=[ModelHop(**hop.as_dict()) for hop in chained.hops],
            files_changed=tools.changed if tools else [],
        )
        stored = executions.save_result(execution_id, result, correlation_id=execution.correlation_id)
        _count_run(
            task.agent,
            f"{execution_id}#{task_id}#SUCCEEDED",
            succeeded=True,
            duration_ms=run.duration_ms,
            **_resource_use(cpu_started),
        )
        _record_agent_metrics(task.agent, run.model, "succeeded", run.duration_ms, run.usage)
        logger.info(
            "agent finished",
            extra={
                "task_id": task_id,
                "agent": task.agent,
                "model": run.model,
                "input_tokens": run.usage.input_tokens,
                "output_tokens": run.usage.output_tokens,
                "cost_usd": run.usage.cost_usd,
                "duration_ms": run.duration_ms,
                "hops": [hop.describe() for hop in chained.hops],
            },
        )
        return stored


def _resource_use(cpu_started: float) -> dict[str, int]:
    """The run's CPU time and the process's peak memory in thousandths of the function's memory: the
    resource-based routing strategy's cpu and memory inputs (tdev.orchestration.routing). In Lambda a
    container runs one task at a time, so the process's figures are the run's."""
    import resource

    limit_mb = float(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or 0) or (
        os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "cpu_ms": int((time.process_time() - cpu_started) * 1000),
        "memory_permille": min(1000, int(1000 * peak_mb / limit_mb)),
    }


def _record_agent_metrics(agent: str, model: str, status: str, duration_ms: int, usage: Usage) -> None:
    with single_metric(name="AgentRuns", unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="agent", value=agent)
        metric.add_dimension(name="status", value=status)
    with single_metric(
        name="AgentDuration", unit=MetricUnit.Milliseconds, value=duration_ms, namespace=NAMESPACE
    ) as metric:
        metric.add_dimension(name="agent", value=agent)
    if usage.total_tokens:
        with single_metric(
            name="LLMTokens", unit=MetricUnit.Count, value=usage.total_tokens, namespace=NAMESPACE
        ) as m:
            m.add_dimension(name="model", value=model)
        with single_metric(
            name="LLMCostMicroUSD",
            unit=MetricUnit.Count,
            value=round(usage.cost_usd * 1e6),
            namespace=NAMESPACE,
        ) as m:
            m.add_dimension(name="model", value=model)


# ----------------------------------------------------------------------------------- task failure
def error_message(error: dict[str, Any] | None) -> str:
    """A readable message from a Step Functions Catch result ({Error, Cause})."""
    if not error:
        return "unknown error"
    name = str(error.get("Error", "Error"))
    cause = error.get("Cause")
    if isinstance(cause, str):
        try:
            parsed = json.loads(cause)
            if isinstance(parsed, dict) and parsed.get("errorMessage"):
                cause = parsed["errorMessage"]
        except json.JSONDecodeError:
            pass
    return f"{name}: {cause}" if cause else name


@tracer.capture_method
def record_task_failure(execution_id: str, task_id: str, error: dict[str, Any] | None) -> dict[str, Any]:
    """Mark the task FAILED and say whether the request can go on (its failure policy)."""
    from tdev.llm.fallback import model_chain

    executions = container.executions()
    plan = executions.get_plan(execution_id)
    task = plan.task(task_id)
    message = error_message(error)
    execution = executions.get(execution_id)
    result = AgentResult(
        task_id=task_id,
        agent=task.agent,
        model=" → ".join(model_chain(execution, container.agents().get(task.agent))),
        status=TaskStatus.FAILED,
        error=message,
        attempts=0,
    )
    stored = executions.save_result(execution_id, result, correlation_id=execution.correlation_id)
    incidents.record_task_failure(error)  # error analytics: what run_agent could not record; never raises
    logger.warning(
        "task failed",
        extra={
            "task_id": task_id,
            "agent": task.agent,
            "error": message,
            "on_failure": task.on_failure.value,
        },
    )
    return {"task_id": task_id, "status": stored.status.value, "on_failure": task.on_failure.value}


# ------------------------------------------------------------------------------------- aggregate
@tracer.capture_method
def aggregate(execution_id: str) -> dict[str, Any]:
    """Sum usage, settle the terminal status (DEGRADED when a soft-dependency task failed).

    The status and its RequestCompleted event are written in one transaction (the outbox): the state
    machine does not publish, so the outcome is announced once, and only if it was recorded.
    """
    executions = container.executions()
    execution = executions.get(execution_id)
    tasks = execution.tasks  # per-task usage is on the execution item: no outputs read
    failed = [t for t, s in tasks.items() if s.status == TaskStatus.FAILED]
    status = ExecutionStatus.DEGRADED if failed else ExecutionStatus.SUCCEEDED
    usage = _request_usage(execution)
    executions.finish(
        execution_id,
        status,
        usage,
        outcome=_outcome("RequestCompleted", execution, status, usage, failed_tasks=failed),
    )
    metrics.add_metric(name=f"Requests{status.value.title()}", unit=MetricUnit.Count, value=1)
    return _finished(execution_id, status)


# ------------------------------------------------------------------------------------ compensate
@tracer.capture_method
def compensate(execution_id: str, error: dict[str, Any] | None) -> dict[str, Any]:
    """The saga's failure path: undo completed tasks in reverse order, then record FAILED.

    An agent task's effect is the artifact it published on the execution; compensating it withdraws
    the artifact (status COMPENSATED) so nothing downstream consumes half-done work. FAILED and its
    RequestFailed event are written in one transaction (the outbox).
    """
    executions = container.executions()
    message = error_message(error)
    try:
        execution = executions.get(execution_id)
    except TDevError:
        raise AgentError(f"cannot compensate: execution {execution_id} not found ({message})") from None
    if execution.status.terminal:  # cancelled through the API (which recorded it), or a retried step
        return _finished(execution_id, execution.status)
    undone = _undo(execution)
    status = _record_failed(execution, message, compensated=undone, status=stopped_status(error))
    metrics.add_metric(name=STATUS_METRICS[status], unit=MetricUnit.Count, value=1)
    logger.error("request failed", extra={"error": message, "compensated": undone, "status": status.value})
    return _finished(execution_id, status)


def _undo(execution: Execution) -> list[str]:
    """Withdraw completed tasks' results in reverse order, skip the tasks that had not finished."""
    executions = container.executions()
    undone: list[str] = []
    for level in reversed(execution.levels):
        for task_id in reversed(level):
            state = execution.tasks[task_id]
            if state.status in {TaskStatus.SUCCEEDED, TaskStatus.COMPENSATED}:
                executions.record_compensation(
                    execution.execution_id, task_id, "withdrew the task's published result"
                )
                executions.set_task_status(execution.execution_id, task_id, TaskStatus.COMPENSATED)
                undone.append(task_id)
            elif state.status in {TaskStatus.PENDING, TaskStatus.RUNNING}:
                executions.set_task_status(execution.execution_id, task_id, TaskStatus.SKIPPED)
    return undone


# A request stopped by its budget or by a cancel ends in its own status, with the same saga and event.
STOPPED_BY = {
    BudgetExceeded.__name__: ExecutionStatus.BUDGET_EXCEEDED,
    ExecutionCancelled.__name__: ExecutionStatus.CANCELLED,
}
STATUS_METRICS = {
    ExecutionStatus.FAILED: "RequestsFailed",
    ExecutionStatus.BUDGET_EXCEEDED: "RequestsBudgetExceeded",
    ExecutionStatus.CANCELLED: "RequestsCancelled",
}


def stopped_status(error: dict[str, Any] | None) -> ExecutionStatus:
    """The terminal status a failure path records for a Step Functions error ({Error, Cause})."""
    return STOPPED_BY.get(str((error or {}).get("Error", "")), ExecutionStatus.FAILED)


@tracer.capture_method
def record_compensation_failure(
    execution_id: str, error: dict[str, Any] | None, compensation_error: dict[str, Any] | None
) -> dict[str, Any]:
    """The failure path's last step, when compensating failed for good: record FAILED with both errors.

    What was compensated before the failure (its COMPENSATION records) is listed; the rest stays as it
    was, and `compensation_error` on the execution says so. Never silent: the RequestFailed event goes
    out with it. An execution that is already terminal (compensation recorded it, then crashed) is kept.
    """
    # The compensation's own failure, into the error analytics (never raises), whatever is recorded next.
    incidents.record_failure(compensation_error, source="record_compensation_failure")
    executions = container.executions()
    execution = executions.get(execution_id)
    if execution.status.terminal:
        logger.warning(
            "compensation failed after the outcome was recorded", extra={"status": execution.status.value}
        )
        return _finished(execution_id, execution.status)
    message = error_message(error)
    why = error_message(compensation_error)
    undone = executions.recorded_compensations(execution_id)
    status = _record_failed(
        execution, message, compensated=undone, compensation_error=why, status=stopped_status(error)
    )
    metrics.add_metric(name="CompensationsFailed", unit=MetricUnit.Count, value=1)
    logger.error(
        "request failed and its compensation failed",
        extra={"error": message, "compensation_error": why, "compensated": undone},
    )
    return _finished(execution_id, status)


def fail_unrecorded(execution_id: str, reason: str) -> dict[str, Any]:
    """Record FAILED (with its RequestFailed event) for an execution whose workflow cannot record it.

    Used by the reconciler: a workflow that never started, or ended without recording an outcome.
    A concurrent finish wins (ConflictError is answered with the status it recorded).
    """
    executions = container.executions()
    execution = executions.get(execution_id)
    if execution.status.terminal:
        return _finished(execution_id, execution.status)
    try:  # a workflow stopped by a cancel whose recording was lost is still a cancel
        cancelled = execution.cancel_requested_at is not None
        status = _record_failed(
            execution,
            f"cancelled at {execution.cancel_requested_at}" if cancelled else reason,
            status=ExecutionStatus.CANCELLED if cancelled else ExecutionStatus.FAILED,
        )
    except ConflictError:
        return _finished(execution_id, executions.get(execution_id).status)
    metrics.add_metric(name="RequestsFailed", unit=MetricUnit.Count, value=1)
    logger.error("request failed: reconciled", extra={"execution_id": execution_id, "error": reason})
    return _finished(execution_id, status)


@tracer.capture_method
def cancel_execution(execution_id: str, *, by: str) -> ExecutionStatus:
    """The kill switch: flag the execution (agents stop before their next model call or tool step), stop
    its workflow, and record CANCELLED with what it spent, through the same saga as a failure.

    Idempotent: an execution already CANCELLED answers CANCELLED again; any other terminal status is a
    ConflictError (409). A flag set by an earlier attempt that failed before recording is finished here.
    """
    executions = container.executions()
    execution = executions.get(execution_id)
    if execution.status == ExecutionStatus.CANCELLED:
        return execution.status
    if execution.status.terminal or not request_cancel(get_settings().table_name, execution_id):
        current = executions.get(execution_id).status
        if current == ExecutionStatus.CANCELLED:
            return current
        raise ConflictError(
            f"execution {execution_id} already finished as {current.value}", field="execution_id"
        )
    stop_workflow(execution_id, f"cancelled by {by}")
    execution = executions.get(execution_id)  # with the flag, and the tasks as they are now
    try:
        status = _record_failed(
            execution, f"cancelled by {by}", compensated=_undo(execution), status=ExecutionStatus.CANCELLED
        )
    except ConflictError:  # the workflow recorded an outcome first (a task saw the flag: CANCELLED too)
        current = executions.get(execution_id).status
        if current != ExecutionStatus.CANCELLED:
            raise
        return current
    metrics.add_metric(name=STATUS_METRICS[status], unit=MetricUnit.Count, value=1)
    logger.warning("request cancelled", extra={"execution_id": execution_id, "by": by})
    return status


def stop_workflow(execution_id: str, cause: str) -> bool:
    """StopExecution on the execution's workflow (named after the execution id); False when there is none
    (never started, or already ended)."""
    settings = get_settings()
    if not settings.state_machine_arn:
        raise TDevError("STATE_MACHINE_ARN is not configured for this function")
    arn = settings.state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{execution_id}"
    try:
        aws.client("stepfunctions").stop_execution(executionArn=arn, error="ExecutionCancelled", cause=cause)
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code == "ExecutionDoesNotExist":
            return False
        if code in STARTS_RETRYABLE:
            raise TransientError(f"could not stop the workflow ({code}); retry the cancel") from exc
        raise
    return True


def _record_failed(
    execution: Execution,
    message: str,
    *,
    compensated: list[str] | None = None,
    compensation_error: str | None = None,
    status: ExecutionStatus = ExecutionStatus.FAILED,
) -> ExecutionStatus:
    """Record FAILED (or BUDGET_EXCEEDED, CANCELLED) and its RequestFailed event in one write (compensate,
    a failed compensation, the reconciler, a cancel): what the request used, its failed tasks, the error and
    what was compensated."""
    usage = _request_usage(execution)
    # What the model calls spent by the ledger's books, calls still in flight included once they settle:
    # a stopped request's running tasks never stored a usage of their own.
    spent = read_state(get_settings().table_name, execution.execution_id).spent_micro_usd / 1_000_000
    if spent > usage.cost_usd:
        usage = usage.model_copy(update={"cost_usd": round(spent, 8)})
    failed = [t for t, s in execution.tasks.items() if s.status == TaskStatus.FAILED]
    container.executions().finish(
        execution.execution_id,
        status,
        usage,
        error=message,
        compensations=compensated,
        compensation_error=compensation_error,
        outcome=_outcome(
            "RequestFailed",
            execution,
            status,
            usage,
            failed_tasks=failed,
            error=message,
            compensated=compensated,
            compensation_error=compensation_error,
        ),
    )
    return status


def _request_usage(execution: Execution) -> Usage:
    """What the request used: every task's usage (on the execution item) plus the verify loop's fixes."""
    from tdev.orchestration.verify import fixes_usage  # not at import: the API function imports this module

    tasks = Usage.total(state.usage for state in execution.tasks.values())
    return tasks + fixes_usage(execution.execution_id)


def _finished(execution_id: str, status: ExecutionStatus) -> dict[str, Any]:
    """What a terminal step returns to the state machine: small, the event itself is in the outbox."""
    return {
        "execution_id": execution_id,
        "status": status.value,
        "event_id": outcome_event_id(execution_id, status),
    }


def _outcome(
    detail_type: str,
    execution: Execution,
    status: ExecutionStatus,
    usage: Usage,
    *,
    failed_tasks: list[str],
    error: str | None = None,
    compensated: list[str] | None = None,
    compensation_error: str | None = None,
) -> Outcome:
    """The RequestCompleted / RequestFailed event's data (the outbox wraps it in the spec's envelope)."""
    return Outcome(
        detail_type=detail_type,
        correlation_id=execution.correlation_id,
        data={
            "executionId": execution.execution_id,
            "projectId": execution.project_id,
            "status": status.value,
            "failedTasks": failed_tasks,
            "compensated": compensated or [],
            "compensationError": compensation_error,
            "error": error,
            "usage": usage.model_dump(mode="json"),
        },
    )
