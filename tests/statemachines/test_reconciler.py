"""The reconciler, end to end in the local runtime: no execution is left without a workflow behind it.

A lost StartExecution (faulted in botocore, in front of the emulated Step Functions) leaves the request
PENDING with no workflow; one run of the scheduled function (`reconcile_executions`, through the local
runtime as EventBridge would invoke it) starts it under its own name, or fails it with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tdev.models import ExecutionStatus, utc_now

pytestmark = pytest.mark.slow

REQUEST = "Design and implement a REST API for todo items"
TABLE = "tdev-local"


@contextmanager
def start_execution_fails(code: str = "ServiceUnavailable") -> Iterator[list[str]]:
    """Every StartExecution of the domain's client fails with `code` (after the SDK's own retries)."""
    from tdev import aws

    client = aws.client("stepfunctions")
    refused: list[str] = []

    def fail(params: dict[str, Any], **_: Any) -> None:
        refused.append(str(params.get("name")))
        raise ClientError({"Error": {"Code": code, "Message": "injected fault"}}, "StartExecution")

    client.meta.events.register("before-parameter-build.sfn.StartExecution", fail, unique_id="lose-start")
    try:
        yield refused
    finally:
        client.meta.events.unregister("before-parameter-build.sfn.StartExecution", unique_id="lose-start")


def backdate(execution_id: str, age: timedelta) -> None:
    """Make the execution `age` old (the reconciler leaves executions younger than a minute alone)."""
    created = (utc_now() - age).isoformat().replace("+00:00", "Z")
    boto3.resource("dynamodb", region_name="us-east-1").Table(TABLE).update_item(
        Key={"PK": f"EXECUTION#{execution_id}", "SK": "EXECUTION"},
        UpdateExpression="SET created_at = :c, GSI1SK = :s",
        ExpressionAttributeValues={":c": created, ":s": f"{created}#{execution_id}"},
    )


def workflow_exists(runtime: Any, execution_id: str) -> bool:
    try:
        runtime.workflow_status(execution_id)
        return True
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "ExecutionDoesNotExist"
        return False


def execution_item(execution_id: str) -> dict[str, Any]:
    table = boto3.resource("dynamodb", region_name="us-east-1").Table(TABLE)
    return dict(table.get_item(Key={"PK": f"EXECUTION#{execution_id}", "SK": "EXECUTION"})["Item"])


def orphan(runtime: Any) -> str:
    """Submit without an Idempotency-Key while StartExecution fails: the client sees 503, the
    execution stays PENDING with no workflow (nothing else would ever start it)."""
    from tdev import container

    with start_execution_fails() as refused:
        status, body = runtime.api("POST", "/v1/requests", {"request": REQUEST})
    assert status == 503 and body["error"] == "TransientError"
    (execution_id,) = set(refused)
    assert container.executions().get(execution_id).status == ExecutionStatus.PENDING
    assert not workflow_exists(runtime, execution_id)
    return execution_id


def test_a_lost_start_is_started_by_the_reconciler_once_a_minute_has_passed(runtime: Any) -> None:
    execution_id = orphan(runtime)

    # A young PENDING execution is left alone: its start may still be on its way
    assert runtime.reconcile()["checked"] == 0

    backdate(execution_id, timedelta(minutes=2))
    summary = runtime.reconcile()
    assert summary["started"] == 1 and summary["outcomes"] == {execution_id: "started"}
    view = runtime.wait(execution_id, timeout=180)
    assert view["status"] == "SUCCEEDED"
    assert runtime.workflow_status(execution_id) == "SUCCEEDED"

    # Reconciling again changes nothing (the execution is terminal), and a second start of the same
    # name is refused by Step Functions: the workflow never runs twice
    assert runtime.reconcile()["checked"] == 0
    from tdev.orchestration.workflow import start_workflow

    assert start_workflow(execution_id, "again") is False
    runtime.drain_messaging()
    assert int(execution_item(execution_id)["notifications_sent"]) == 1


def test_a_start_that_keeps_failing_is_failed_with_its_reason_and_announced(runtime: Any) -> None:
    execution_id = orphan(runtime)

    backdate(execution_id, timedelta(minutes=5))
    with start_execution_fails():
        assert runtime.reconcile()["retry_later"] == 1  # still within the quarter of an hour: try again
    backdate(execution_id, timedelta(minutes=20))
    with start_execution_fails():
        summary = runtime.reconcile()

    assert summary["failed"] == 1
    status, view = runtime.api("GET", f"/v1/executions/{execution_id}")
    assert status == 200 and view["status"] == "FAILED"
    assert view["error"].startswith("the workflow could not be started")
    runtime.drain_messaging()
    outcomes = [e for e in runtime.published_events() if e["source"] == "t-developer.orchestrator"]
    assert [(e["detail-type"], e["detail"]["data"]["executionId"]) for e in outcomes] == [
        ("RequestFailed", execution_id)
    ]
    assert int(execution_item(execution_id)["notifications_sent"]) == 1


def test_a_start_refused_for_good_is_failed_at_once(runtime: Any) -> None:
    execution_id = orphan(runtime)
    backdate(execution_id, timedelta(minutes=2))

    with start_execution_fails("AccessDeniedException"):
        summary = runtime.reconcile()

    assert summary["failed"] == 1
    assert "AccessDeniedException" in summary["outcomes"][execution_id]


def test_a_workflow_that_ended_without_recording_an_outcome_is_failed_by_the_reconciler(runtime: Any) -> None:
    # Given the aggregation, the compensation and the record of the failed compensation all fail for good
    def everything_fails(name: str, event: dict[str, Any]) -> None:
        if name in {"aggregate_results", "compensate", "record_compensation_failure"}:
            raise RuntimeError(f"{name} is broken")

    runtime.fault_hook = everything_fails
    execution_id = runtime.submit(REQUEST)
    view = runtime.wait(execution_id, timeout=180)

    # Then the workflow failed (its last resort: OutcomeNotRecorded) with the execution still open ...
    assert runtime.workflow_status(execution_id) == "FAILED"
    assert view["status"] == "RUNNING"
    # ... until the reconciler's next run records FAILED, with the reason, and announces it
    backdate(execution_id, timedelta(minutes=2))
    summary = runtime.reconcile()
    assert summary["outcomes"] == {
        execution_id: "failed: the workflow ended FAILED without recording an outcome"
    }
    status, view = runtime.api("GET", f"/v1/executions/{execution_id}")
    assert status == 200 and view["status"] == "FAILED" and "without recording an outcome" in view["error"]
    runtime.fault_hook = None
    runtime.drain_messaging()
    assert int(execution_item(execution_id)["notifications_sent"]) == 1


def test_a_pass_reconciles_as_of_its_schedule_tick_when_the_tick_is_believable() -> None:
    from datetime import UTC, datetime

    from tdev.orchestration.reconciler import scheduled_time

    tick = utc_now().replace(microsecond=0) + timedelta(minutes=2)
    assert scheduled_time({"time": tick.strftime("%Y-%m-%dT%H:%M:%SZ")}) == tick
    assert scheduled_time({}) is None
    assert scheduled_time({"time": "not a time"}) is None
    assert scheduled_time({"time": "2026-11-29T14:00:00"}) is None  # no zone: not an EventBridge time
    far = datetime(2001, 1, 1, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert scheduled_time({"time": far}) is None  # an hour or more off the clock is not believed
