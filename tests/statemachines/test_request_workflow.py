"""The request workflow, executed from the real ASL file by moto's Step Functions interpreter.

Lambda tasks are dispatched to our real handlers in process; faults are injected in front of them
the way a real failure would surface (the handler raising, reported as an unhandled function error).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from statemachines.request_workflow import WORKFLOW_FUNCTIONS
from tdev.data.executions import outcome_event_id
from tdev.errors import AgentError, TransientError
from tdev.models import ExecutionStatus
from tdev_cli.runtime import LocalRuntime

pytestmark = pytest.mark.slow

REQUEST = "Design and implement a REST API for todo items, with unit tests and a security review"


class Faults:
    """Raise `error` for a task's first `times` invocations of run_agent (times=None: always)."""

    def __init__(
        self, task_id: str, error: type[Exception], times: int | None = None, function: str = "run_agent"
    ):
        self.task_id, self.error, self.times, self.function = task_id, error, times, function
        self.raised = 0

    def __call__(self, function: str, event: dict[str, Any]) -> None:
        if function != self.function:
            return
        if self.function == "run_agent" and event["task"]["task_id"] != self.task_id:
            return
        if self.times is None or self.raised < self.times:
            self.raised += 1
            raise self.error(f"injected {self.error.__name__} #{self.raised} in {function}")


@dataclass
class Outcome:
    view: dict[str, Any]
    events: list[dict[str, Any]]
    workflow_status: str
    invocations: list[tuple[str, str]]


def run(request: str = REQUEST, faults: Faults | None = None) -> Outcome:
    with LocalRuntime(fault_hook=faults) as rt:
        view = rt.run(request, timeout=120)
        rt.drain_messaging()  # the outcome is announced from the outbox, by the publisher on the stream
        outcomes = [e for e in rt.published_events() if e["source"] == "t-developer.orchestrator"]
        return Outcome(view, outcomes, rt.workflow_status(view["execution_id"]), rt.invocations)


def test_happy_path_runs_every_level_and_announces_completion() -> None:
    # Given the standard multi-intent request, When it runs through the workflow
    out = run()

    # Then every task succeeded, in the planned levels, and the request finished SUCCEEDED
    assert out.workflow_status == "SUCCEEDED"
    assert out.view["status"] == "SUCCEEDED"
    assert [sorted(level) for level in out.view["levels"]] == [
        ["design"],
        ["implement"],
        ["security-review", "test"],
        ["review"],
    ]
    assert {t: s["status"] for t, s in out.view["tasks"].items()} == dict.fromkeys(
        ["design", "implement", "test", "security-review", "review"], "SUCCEEDED"
    )
    assert out.view["results"][0]["task_id"] == "design"
    assert all(r["output"].startswith("[offline model") for r in out.view["results"])
    assert out.view["usage"]["input_tokens"] > 0 and out.view["usage"]["output_tokens"] > 0
    assert out.view["progress"] == 1.0
    # And one RequestCompleted event went to the bus in the spec's envelope
    assert [e["detail-type"] for e in out.events] == ["RequestCompleted"]
    detail = out.events[0]["detail"]
    assert out.events[0]["source"] == "t-developer.orchestrator"
    assert detail["data"] == {
        **detail["data"],
        "executionId": out.view["execution_id"],
        "status": "SUCCEEDED",
    }
    assert {"version", "timestamp", "correlationId", "causationId", "metadata"} <= detail.keys()
    # with the id consumers deduplicate on: fixed by the execution and its outcome
    assert detail["eventId"] == outcome_event_id(out.view["execution_id"], ExecutionStatus.SUCCEEDED)
    calls = Counter(name for name, outcome in out.invocations if outcome == "ok")
    # (the verify loop tests once, green; the sandbox ran the tests for the test agent, the review and it)
    workflow_calls = {k: v for k, v in calls.items() if k in (*WORKFLOW_FUNCTIONS, "sandbox")}
    assert workflow_calls == {
        "plan_request": 1,
        "run_agent": 5,
        "run_project_tests": 1,
        "sandbox": 3,
        "aggregate_results": 1,
    }


def test_transient_errors_are_retried_with_backoff_then_succeed() -> None:
    # Given the implement task fails twice with a transient error
    faults = Faults("implement", TransientError, times=2)

    out = run(faults=faults)

    # Then the ASL Retry ran it a third time and the request succeeded
    assert faults.raised == 2
    assert out.view["status"] == "SUCCEEDED"
    assert out.view["tasks"]["implement"]["attempts"] == 3
    assert [o for n, o in out.invocations if n == "run_agent"].count("TransientError") == 2
    assert [e["detail-type"] for e in out.events] == ["RequestCompleted"]


def test_soft_dependency_failure_degrades_but_completes() -> None:
    # Given the security review fails for good (the final review only soft-depends on it)
    out = run(faults=Faults("security-review", AgentError))

    # Then the workflow went on: review ran, the request is DEGRADED, nothing was compensated
    assert out.workflow_status == "SUCCEEDED"
    assert out.view["status"] == "DEGRADED"
    assert out.view["tasks"]["security-review"]["status"] == "FAILED"
    assert "AgentError" in out.view["tasks"]["security-review"]["error"]
    assert out.view["tasks"]["review"]["status"] == "SUCCEEDED"
    assert out.view["compensations"] == []
    assert out.events[0]["detail-type"] == "RequestCompleted"
    assert out.events[0]["detail"]["data"]["failedTasks"] == ["security-review"]


def test_hard_dependency_failure_fails_the_request_and_compensates() -> None:
    # Given the implementation fails for good (tests, review and security hard-depend on it)
    out = run(faults=Faults("implement", AgentError))

    # Then the request FAILED, the completed design was compensated, later tasks never ran
    assert out.workflow_status == "FAILED"
    assert out.view["status"] == "FAILED"
    assert "HardDependencyFailed" in out.view["error"]
    assert out.view["tasks"]["implement"]["status"] == "FAILED"
    assert out.view["tasks"]["design"]["status"] == "COMPENSATED"
    assert out.view["compensations"] == ["design"]
    assert {out.view["tasks"][t]["status"] for t in ("test", "security-review", "review")} == {"SKIPPED"}
    assert [n for n, o in out.invocations if n == "run_agent" and o == "ok"] == ["run_agent"]
    # And the failure was announced on the bus
    assert [e["detail-type"] for e in out.events] == ["RequestFailed"]
    assert out.events[0]["detail"]["data"]["compensated"] == ["design"]


def test_transient_errors_that_never_clear_exhaust_retries_and_fail() -> None:
    out = run(faults=Faults("design", TransientError))

    assert out.view["status"] == "FAILED"
    assert [o for n, o in out.invocations if n == "run_agent"].count(
        "TransientError"
    ) == 4  # 1 try + 3 retries
    assert out.view["tasks"]["design"]["status"] == "FAILED"
    assert out.view["compensations"] == []


def test_a_planning_failure_takes_the_failure_path() -> None:
    out = run(faults=Faults("", AgentError, function="plan_request"))

    assert out.workflow_status == "FAILED"
    assert out.view["status"] == "FAILED"
    assert out.view["tasks"] == {} and out.view["results"] == []
    assert "AgentError" in out.view["error"]
    assert [e["detail-type"] for e in out.events] == ["RequestFailed"]
