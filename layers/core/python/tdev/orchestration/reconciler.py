"""The reconciler: no execution is left without a workflow, or behind a workflow that has ended.

Run every minute (an EventBridge schedule, `functions/reconcile_executions`). Submitting writes the
execution and then starts its workflow in a separate call; when that call is lost (it failed, the API
function died in between) and the client did not retry with its Idempotency-Key, the execution would
stay PENDING for ever. The reconciler finds open executions older than a minute through the status
index (GSI1: STATUS#<status>, oldest first; never a scan) and asks Step Functions about each one's
workflow, named after the execution id:

- no workflow, PENDING: start it (the name makes a concurrent second start harmless); when it cannot be
  started (a refusal that is not transient, or still failing after `give_up_after`), record FAILED with
  the reason;
- a workflow that has ended while the execution is still open (its last recording step failed for good,
  or it was stopped by hand): record FAILED with the reason;
- a workflow still running: nothing to do.
Each FAILED recorded here announces RequestFailed through the outbox, like every other outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from pydantic import TypeAdapter

from tdev import aws, container
from tdev.errors import TDevError, TransientError
from tdev.models import ExecutionStatus, utc_now
from tdev.observability import logger
from tdev.orchestration import workflow
from tdev.settings import get_settings

OLDER_THAN = timedelta(minutes=1)
GIVE_UP_AFTER = timedelta(minutes=15)
PER_STATUS_LIMIT = 100
# Open statuses: PENDING until the plan step runs, RUNNING after it.
OPEN_STATUSES = (ExecutionStatus.PENDING, ExecutionStatus.PLANNING, ExecutionStatus.RUNNING)
_TIMESTAMP = TypeAdapter(datetime)


@dataclass
class Reconciled:
    checked: int = 0
    started: int = 0
    failed: int = 0
    running: int = 0
    retry_later: int = 0
    outcomes: dict[str, str] = field(default_factory=dict)  # execution id -> what was done

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "started": self.started,
            "failed": self.failed,
            "running": self.running,
            "retry_later": self.retry_later,
            "outcomes": self.outcomes,
        }


def execution_arn(state_machine_arn: str, execution_id: str) -> str:
    """The ARN of the workflow named after `execution_id` (Step Functions' own naming)."""
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:', 1)}:{execution_id}"


def _stamp(moment: datetime) -> str:
    """A time in the form the status index's sort key stores (`<created_at>#<id>`), for comparing."""
    return str(_TIMESTAMP.dump_python(moment, mode="json"))


def scheduled_time(event: dict[str, Any]) -> datetime | None:
    """The schedule's tick (the event's `time`), which a pass reconciles as of; None when absent or not a
    time (then: now). Bounded: a tick more than an hour off the clock is not believed."""
    try:
        moment = _TIMESTAMP.validate_python(event.get("time"))
    except ValueError:
        return None
    if moment.tzinfo is None or abs(moment - utc_now()) > timedelta(hours=1):
        return None
    return moment


def reconcile(
    *,
    now: datetime | None = None,
    older_than: timedelta = OLDER_THAN,
    give_up_after: timedelta = GIVE_UP_AFTER,
    limit: int = PER_STATUS_LIMIT,
) -> Reconciled:
    """One pass over open executions created more than `older_than` ago (at most `limit` per status)."""
    settings = get_settings()
    if not settings.state_machine_arn:
        raise TDevError("STATE_MACHINE_ARN is not configured for this function")
    now = now or utc_now()
    cutoff = _stamp(now - older_than)
    give_up_before = _stamp(now - give_up_after)
    executions = container.executions()
    report = Reconciled()
    for status in OPEN_STATUSES:
        for execution in executions.list_open_since_before(status, cutoff, limit=limit):
            report.checked += 1
            workflow_status = _workflow_status(settings.state_machine_arn, execution.execution_id)
            if workflow_status == "RUNNING":
                report.running += 1
                continue
            if workflow_status is None and status == ExecutionStatus.PENDING:
                _start_or_fail(
                    execution.execution_id,
                    execution.correlation_id,
                    execution.created_at,
                    give_up_before,
                    report,
                )
                continue
            reason = (
                f"the workflow ended {workflow_status} without recording an outcome"
                if workflow_status
                else f"the execution is {status.value} but has no workflow"
            )
            _fail(execution.execution_id, reason, report)
    logger.info("executions reconciled", extra=report.as_dict())
    return report


def _workflow_status(state_machine_arn: str, execution_id: str) -> str | None:
    """RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED...; None when no workflow was ever started."""
    try:
        described = aws.client("stepfunctions").describe_execution(
            executionArn=execution_arn(state_machine_arn, execution_id)
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ExecutionDoesNotExist":
            return None
        raise
    return str(described["status"])


def _start_or_fail(
    execution_id: str, correlation_id: str, created_at: str, give_up_before: str, report: Reconciled
) -> None:
    try:
        workflow.start_workflow(execution_id, correlation_id)
    except TransientError as exc:
        if created_at < give_up_before:
            _fail(execution_id, f"the workflow could not be started: {exc}", report)
        else:  # the next run tries again
            report.retry_later += 1
            report.outcomes[execution_id] = "retry later"
        return
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        _fail(execution_id, f"the workflow could not be started ({code}): {exc}", report)
        return
    report.started += 1
    report.outcomes[execution_id] = "started"
    logger.warning("orphaned execution started", extra={"execution_id": execution_id})


def _fail(execution_id: str, reason: str, report: Reconciled) -> None:
    workflow.fail_unrecorded(execution_id, reason)
    report.failed += 1
    report.outcomes[execution_id] = f"failed: {reason}"
