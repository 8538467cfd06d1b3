"""The saga's failure path through the real ASL (moto's interpreter): a crash in the middle of the
compensation is retried by Step Functions and finishes it; each compensation is recorded once and
no completed task is left standing."""

from __future__ import annotations

from typing import Any

import boto3

from tdev.errors import AgentError, TransientError

REQUEST = "Design and implement a REST API for todo items, with unit tests and a security review"


def compensation_items(execution_id: str) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb", region_name="us-east-1").Table("tdev-local")
    items = table.query(
        KeyConditionExpression="PK = :pk AND begins_with(SK, :c)",
        ExpressionAttributeValues={":pk": f"EXECUTION#{execution_id}", ":c": "COMPENSATION#"},
    )["Items"]
    return list(items)


def test_a_crash_mid_compensation_resumes_and_leaves_nothing_half_done(runtime: Any) -> None:
    def fail_aggregation(name: str, event: dict[str, Any]) -> None:
        if name == "aggregate_results":
            raise RuntimeError("the aggregation is broken")  # not retryable: the saga compensates

    crashes = {"compensate": 0}
    original_invoke = runtime.invoke

    def crash_after_partial_compensation(name: str, event: dict[str, Any]) -> Any:
        if name == "compensate" and crashes["compensate"] == 0:
            crashes["compensate"] += 1
            # Part of the saga's work: the first completed task is withdrawn, then the function dies.
            from tdev import container

            execution = container.executions().get(event["execution_id"])
            first = execution.levels[-1][-1]
            container.executions().record_compensation(
                event["execution_id"], first, "withdrew the task's published result"
            )
            raise TransientError("crashed in the middle of compensating")
        return original_invoke(name, event)

    runtime.fault_hook = fail_aggregation
    runtime.invoke = crash_after_partial_compensation
    view = runtime.run(REQUEST)

    assert view["status"] == "FAILED"
    assert runtime.workflow_status(view["execution_id"]) == "FAILED"
    assert [n for n, outcome in runtime.invocations if n == "compensate"] == ["compensate", "compensate"]
    task_ids = [t for level in view["levels"] for t in level]
    assert sorted(view["compensations"]) == sorted(task_ids)
    assert {s["status"] for s in view["tasks"].values()} == {"COMPENSATED"}
    records = compensation_items(view["execution_id"])
    assert sorted(r["task_id"] for r in records) == sorted(task_ids)  # once each, the crashed attempt's kept


def test_a_failing_task_is_compensated_with_its_completed_predecessors(runtime: Any) -> None:
    def fail_last_level(name: str, event: dict[str, Any]) -> None:
        if name == "run_agent" and event["task"]["on_failure"] == "fail":
            from tdev import container

            execution = container.executions().get(event["execution_id"])
            if event["task"]["task_id"] in execution.levels[-1]:
                raise RuntimeError("the agent cannot do this")

    runtime.fault_hook = fail_last_level
    view = runtime.run(REQUEST)
    assert view["status"] == "FAILED"
    assert any(s["status"] == "COMPENSATED" for s in view["tasks"].values())
    states = {t: s["status"] for t, s in view["tasks"].items()}
    assert (
        "SUCCEEDED" not in states.values()
        and "RUNNING" not in states.values()
        and "PENDING" not in states.values()
    )
    assert set(view["compensations"]) == {t for t, s in states.items() if s == "COMPENSATED"}


def test_a_compensation_that_fails_for_good_is_recorded_visibly_and_announced(runtime: Any) -> None:
    # Given the aggregation fails (the saga runs) and the compensation itself fails on every attempt
    def broken_saga(name: str, event: dict[str, Any]) -> None:
        if name == "aggregate_results":
            raise RuntimeError("the aggregation is broken")
        if name == "compensate":
            raise AgentError("the artifact store refuses every withdrawal")

    runtime.fault_hook = broken_saga
    view = runtime.run(REQUEST)

    # Then the request is FAILED, not left RUNNING, and says why the compensation is incomplete
    assert runtime.workflow_status(view["execution_id"]) == "FAILED"
    assert view["status"] == "FAILED"
    assert "RuntimeError" in view["error"]
    assert view["compensation_error"].startswith("AgentError: the artifact store refuses")
    assert [o for n, o in runtime.invocations if n == "compensate"] == ["AgentError"] * 4  # 1 try + 3 retries
    assert [o for n, o in runtime.invocations if n == "record_compensation_failure"] == ["ok"]
    # And RequestFailed is announced once, with the compensation error
    runtime.fault_hook = None
    runtime.drain_messaging()
    outcomes = [e for e in runtime.published_events() if e["source"] == "t-developer.orchestrator"]
    assert [e["detail-type"] for e in outcomes] == ["RequestFailed"]
    assert outcomes[0]["detail"]["data"]["compensationError"] == view["compensation_error"]
    head = execution_item(view["execution_id"])
    assert int(head["notifications_sent"]) == 1


def test_a_task_failure_that_cannot_be_recorded_fails_the_request_through_the_saga(runtime: Any) -> None:
    # Given the implementation fails for good and recording its failure fails too
    def unrecordable(name: str, event: dict[str, Any]) -> None:
        if name == "run_agent" and event["task"]["task_id"] == "implement":
            raise AgentError("the agent cannot do this")
        if name == "record_task_failure":
            raise RuntimeError("the table refused the task's failure")

    runtime.fault_hook = unrecordable
    view = runtime.run(REQUEST)

    # Then the level fails (TaskFailureNotRecorded), the saga compensates and records FAILED
    assert view["status"] == "FAILED"
    assert "TaskFailureNotRecorded" in view["error"]
    assert view["tasks"]["design"]["status"] == "COMPENSATED"
    assert view["compensation_error"] is None
    assert runtime.workflow_status(view["execution_id"]) == "FAILED"


def execution_item(execution_id: str) -> dict[str, Any]:
    table = boto3.resource("dynamodb", region_name="us-east-1").Table("tdev-local")
    return dict(table.get_item(Key={"PK": f"EXECUTION#{execution_id}", "SK": "EXECUTION"})["Item"])
