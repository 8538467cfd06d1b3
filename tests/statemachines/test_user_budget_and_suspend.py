"""A user's monthly budget and suspending a user, through the real workflow (moto's interpreter of the ASL
file) in the local runtime: a looping agent is stopped by its user's cap (the request's own budget is far
larger) and the request ends BUDGET_EXCEEDED as with its own cap; suspending the user stops its running
execution within seconds (StopExecution plus the cancel flag agents check), recorded CANCELLED, and its next
request is refused 403."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from tdev.llm.metering import worst_case_micro_usd
from tdev.llm.offline import OfflineModel
from tdev.models import to_micro_usd
from tdev_cli.runtime import LOCAL_USER, LocalRuntime
from tests.statemachines.test_budget_and_cancel import REQUEST, Looping, outcomes

pytestmark = pytest.mark.slow

MODEL = "offline:tdev-offline-1"


@pytest.fixture
def looping(monkeypatch: pytest.MonkeyPatch) -> Iterator[Looping]:
    model = Looping(delay=0.05)

    def complete(self: OfflineModel, messages: Sequence[Any], tools: Sequence[str] = ()) -> dict[str, Any]:
        return model.complete(self, messages, tools)

    monkeypatch.setattr(OfflineModel, "complete", complete)
    monkeypatch.setattr("tdev.agents.runtime.MAX_TOOL_CALLS", 100_000)
    yield model


def as_admin(rt: LocalRuntime) -> dict[str, str]:
    return {"Authorization": f"Bearer {rt.token('ops-admin', ('admin',))}"}


def test_a_looping_agent_is_stopped_by_its_users_monthly_cap(
    looping: Looping, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TDEV_MODEL_PRICES", '{"offline:tdev-offline-1": [0.003, 0.015]}')
    monkeypatch.setenv("TDEV_MAX_OUTPUT_TOKENS", "256")
    cap = 0.03
    with LocalRuntime() as rt:
        # Given a user whose month is capped at 0.03 USD (set by an admin), and a request allowed 5 USD
        status, body = rt.api(
            "PUT",
            f"/v1/users/{LOCAL_USER}/budget",
            {"budget_usd": cap, "reason": "trial"},
            headers=as_admin(rt),
        )
        assert status == 200, body
        # When its agent never stops calling tools
        view = rt.run(REQUEST, timeout=120, budget_usd=5.0)
        events = outcomes(rt)
        status, month = rt.api("GET", f"/v1/users/{LOCAL_USER}/budget")

    # Then the request ended BUDGET_EXCEEDED by the user's cap, exactly as by its own
    assert view["status"] == "BUDGET_EXCEEDED", view.get("error")
    assert view["error"].startswith(f"BudgetExceeded: user {LOCAL_USER}: a call to {MODEL}")
    assert "left of the user's 0.03 USD budget for " in view["error"]
    spent = view["budget"]["spent_usd"]
    worst = worst_case_micro_usd(MODEL, 20_000, 256)
    assert 0 < to_micro_usd(spent) <= to_micro_usd(cap) + worst
    assert [e["detail"]["data"]["status"] for e in events] == ["BUDGET_EXCEEDED"]
    # and the user's month shows the spend, nothing left reserved
    assert status == 200 and month["spent_usd"] == pytest.approx(spent) and month["reserved_usd"] == 0
    assert month["source"] == "override" and month["spent_tokens"] > 0
    print(f"user cap {cap} USD: spent {spent} USD in {len(looping.calls)} model calls")


def test_suspending_a_user_stops_its_running_execution_within_seconds(looping: Looping) -> None:
    with LocalRuntime() as rt:
        # Given an execution of the local developer whose agent loops for ever
        execution_id = rt.submit(REQUEST)
        deadline = time.monotonic() + 60
        while len(looping.calls) < 5:
            assert time.monotonic() < deadline, "the looping agent never started"
            time.sleep(0.05)

        # When an admin suspends the user
        asked = time.monotonic()
        status, body = rt.api(
            "POST", f"/v1/users/{LOCAL_USER}/suspend", {"reason": "runaway loop"}, headers=as_admin(rt)
        )
        answered = time.monotonic()

        # Then the answer lists the execution stopped, and its workflow stops within seconds
        assert status == 200, body
        assert body["suspended"] is True and body["cancelled_executions"] == [execution_id]
        while rt.workflow_status(execution_id) == "RUNNING" and time.monotonic() - asked < 30:
            time.sleep(0.1)
        stopped_after = time.monotonic() - asked
        time.sleep(1.0)
        assert rt.workflow_status(execution_id) == "ABORTED" and stopped_after < 5
        assert [t for t in looping.calls if t > answered + 0.5] == []  # no model call after the answer
        _, view = rt.api("GET", f"/v1/executions/{execution_id}")  # a suspended user still reads
        events = outcomes(rt)
        # and the user's next request is refused
        status, refused = rt.api("POST", "/v1/requests", {"request": REQUEST})

    assert view["status"] == "CANCELLED"
    assert view["error"] == f"cancelled by ops-admin (user {LOCAL_USER} suspended: runaway loop)"
    assert [e["detail"]["data"]["status"] for e in events] == ["CANCELLED"]
    assert status == 403 and refused["error"] == "UserSuspended"
    print(f"suspend answered in {answered - asked:.2f} s; workflow stopped {stopped_after:.2f} s after it")
