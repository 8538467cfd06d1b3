"""Budgets and the kill switch through the real workflow (moto's interpreter of the ASL file): a request whose
agent loops is stopped by its budget and ends BUDGET_EXCEEDED; a running execution cancelled through the API
stops within seconds and ends CANCELLED. Both are recorded with what they spent, and announced."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from tdev.data.executions import outcome_event_id
from tdev.llm import offline_tools
from tdev.llm.metering import worst_case_micro_usd
from tdev.llm.offline import OfflineModel, estimate_tokens
from tdev.models import ExecutionStatus, to_micro_usd
from tdev_cli.runtime import LocalRuntime

pytestmark = pytest.mark.slow

REQUEST = "Design and implement a REST API for todo items, with unit tests and a security review"
MODEL = "offline:tdev-offline-1"


class Looping:
    """An offline model that never finishes: whenever it may call a tool, it lists the files once more."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls: list[float] = []  # when each call started (monotonic)
        self.lock = threading.Lock()

    def complete(
        self, model: OfflineModel, messages: Sequence[Any], tools: Sequence[str] = ()
    ) -> dict[str, Any]:
        with self.lock:
            self.calls.append(time.monotonic())
        time.sleep(self.delay)  # a model takes its time
        chars = sum(len(m.get_content_string()) for m in messages)
        calls = [offline_tools.call("list_files")] if tools else []
        return {
            "text": "" if calls else "done",
            "tool_calls": calls,
            "usage": {"input_tokens": estimate_tokens(chars), "output_tokens": 40},
        }


@pytest.fixture
def looping(monkeypatch: pytest.MonkeyPatch) -> Iterator[Looping]:
    model = Looping(delay=0.05)

    def complete(self: OfflineModel, messages: Sequence[Any], tools: Sequence[str] = ()) -> dict[str, Any]:
        return model.complete(self, messages, tools)

    monkeypatch.setattr(OfflineModel, "complete", complete)
    monkeypatch.setattr("tdev.agents.runtime.MAX_TOOL_CALLS", 100_000)  # Agno's own limit out of the way
    yield model


def outcomes(rt: LocalRuntime) -> list[dict[str, Any]]:
    rt.drain_messaging()  # the outcome is announced from the outbox, by the publisher on the stream
    return [e for e in rt.published_events() if e["source"] == "t-developer.orchestrator"]


def test_a_looping_agent_is_stopped_by_the_budget_and_the_request_ends_budget_exceeded(
    looping: Looping, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TDEV_MODEL_PRICES", '{"offline:tdev-offline-1": [0.003, 0.015]}')
    monkeypatch.setenv("TDEV_MAX_OUTPUT_TOKENS", "256")
    budget = 0.03
    with LocalRuntime() as rt:
        # When a request with a 0.03 USD budget runs an agent that never stops calling tools
        view = rt.run(REQUEST, timeout=120, budget_usd=budget)
        events = outcomes(rt)
        workflow = rt.workflow_status(view["execution_id"])
        invocations = list(rt.invocations)

    # Then the request ended BUDGET_EXCEEDED, with its spend within the budget plus one call's worst case
    assert view["status"] == "BUDGET_EXCEEDED" and workflow == "FAILED"
    assert (
        view["error"].startswith("BudgetExceeded: execution ")
        and "left of its 0.03 USD budget" in view["error"]
    )
    spent = view["budget"]["spent_usd"]
    assert view["budget"]["budget_usd"] == budget and view["budget"]["reserved_usd"] == 0
    assert 0 < to_micro_usd(spent) <= to_micro_usd(budget) + worst_case_micro_usd(MODEL, 20_000, 256)
    assert view["usage"]["cost_usd"] == pytest.approx(spent)
    assert len(looping.calls) > 3  # it looped until the budget stopped it
    # not as a task failure: the task was stopped and skipped, the saga recorded the status
    assert view["tasks"]["design"]["status"] == "SKIPPED"
    assert ("record_task_failure", "ok") not in invocations and ("compensate", "ok") in invocations
    assert ("run_agent", "BudgetExceeded") in invocations
    # And the outcome was announced once, with the budget status
    assert [e["detail"]["data"]["status"] for e in events] == ["BUDGET_EXCEEDED"]
    assert events[0]["detail"]["eventId"] == outcome_event_id(
        view["execution_id"], ExecutionStatus.BUDGET_EXCEEDED
    )
    print(f"budget {budget} USD: spent {spent} USD in {len(looping.calls)} model calls")


def test_a_running_execution_is_cancelled_and_its_agent_stops_within_seconds(looping: Looping) -> None:
    with LocalRuntime() as rt:
        # Given an execution whose first agent loops for ever (no price: no budget stops it)
        execution_id = rt.submit(REQUEST)
        deadline = time.monotonic() + 60
        while len(looping.calls) < 5:
            assert time.monotonic() < deadline, "the looping agent never started"
            time.sleep(0.05)

        # When its owner cancels it through the API
        asked = time.monotonic()
        status, body = rt.api("POST", f"/v1/executions/{execution_id}/cancel")
        answered_at = time.monotonic()
        answered = answered_at - asked

        # Then the answer says CANCELLED at once, with what it spent so far
        assert status == 200, body
        assert body["status"] == "CANCELLED" and body["cancel_requested_at"]
        assert body["budget"]["spent_usd"] == 0.0  # the offline model is free
        # and the agent made no model call after the next one (it checks before each call)
        while rt.workflow_status(execution_id) == "RUNNING" and time.monotonic() - asked < 30:
            time.sleep(0.1)
        stopped_after = time.monotonic() - asked
        time.sleep(1.0)
        late = [t for t in looping.calls if t > answered_at + 0.5]  # the call in flight then may finish
        assert late == [], f"{len(late)} model calls started after the cancel was answered"
        assert rt.workflow_status(execution_id) == "ABORTED"
        assert stopped_after < 5
        # Cancelling again is idempotent; the view and the announced outcome say CANCELLED
        again_status, again = rt.api("POST", f"/v1/executions/{execution_id}/cancel")
        assert (again_status, again["status"]) == (200, "CANCELLED")
        _, view = rt.api("GET", f"/v1/executions/{execution_id}")
        events = outcomes(rt)

    assert view["status"] == "CANCELLED" and view["error"].startswith("cancelled by ")
    assert view["tasks"]["design"]["status"] == "SKIPPED"
    assert [e["detail"]["data"]["status"] for e in events] == ["CANCELLED"]
    print(f"cancel answered in {answered:.2f} s; workflow stopped {stopped_after:.2f} s after the cancel")


def test_a_killed_session_stops_its_running_execution_within_seconds(looping: Looping) -> None:
    with LocalRuntime() as rt:
        status, session = rt.api("POST", "/v1/sessions", {"project_id": "default"})
        assert status == 201, session
        execution_id = rt.submit(REQUEST, session_id=session["session_id"])
        deadline = time.monotonic() + 60
        while len(looping.calls) < 5:
            assert time.monotonic() < deadline, "the looping agent never started"
            time.sleep(0.05)

        asked = time.monotonic()
        status, body = rt.api("POST", f"/v1/sessions/{session['session_id']}/kill")
        answered = time.monotonic()
        assert status == 200, body
        assert body["cancelled_executions"] == [execution_id] and body["status"] == "completed"
        while rt.workflow_status(execution_id) == "RUNNING" and time.monotonic() - asked < 30:
            time.sleep(0.1)
        stopped_after = time.monotonic() - asked
        assert rt.workflow_status(execution_id) == "ABORTED" and stopped_after < 5
        # no model call started after the kill was answered (the one in flight then may finish)
        assert [t for t in looping.calls if t > answered + 0.5] == []
    print(f"session killed; its workflow stopped {stopped_after:.2f} s after the kill")
