"""The budget on POST /v1/requests and the kill switch POST /v1/executions/{id}/cancel, through the API
function with its sample event: validation naming the field, RBAC (404 for what the caller may not see,
403 for viewers), idempotency and 409 once an execution ended otherwise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tdev import container
from tdev.models import Execution, ExecutionStatus, Usage, utc_now

EVENTS = Path(__file__).resolve().parents[2] / "events"
EXECUTION_ID = "0b9e4c1e-5f7a-4d43-9a55-3f1d8c2a7e10"  # the sample events' execution


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / f"{name}.json").read_text()))


def store(execution_id: str, *, principal: str, project_id: str, status: ExecutionStatus) -> None:
    from tdev.security.services import projects

    now = utc_now()
    container.executions().create(
        Execution(
            execution_id=execution_id,
            request="Design and implement a REST API for todo items",
            project_id=project_id,
            principal=principal,
            status=status,
            created_at=now,
            updated_at=now,
            correlation_id=execution_id,
            budget_usd=1.0,
        ),
        idempotency_key=None,
        request_hash="h",
    )
    projects().claim(project_id, principal)


@pytest.fixture
def running(runtime: Any) -> Any:
    """The sample execution, RUNNING, owned by the sample event's principal (its workflow not started)."""
    store(EXECUTION_ID, principal="sample-user", project_id="todo-api", status=ExecutionStatus.RUNNING)
    return runtime


def test_the_sample_cancel_event_cancels_and_a_second_cancel_is_idempotent(running: Any) -> None:
    response = running.invoke("api", load_event("api_cancel_execution"))

    assert response["statusCode"] == 200, response["body"]
    body = json.loads(response["body"])
    assert body["status"] == "CANCELLED" and body["cancel_requested_at"]
    assert body["error"] == "cancelled by sample-user"
    assert body["budget"] == {"budget_usd": 1.0, "spent_usd": 0.0, "reserved_usd": 0.0}
    again = running.invoke("api", load_event("api_cancel_execution"))
    assert again["statusCode"] == 200 and json.loads(again["body"])["status"] == "CANCELLED"
    # recorded once, with its outcome in the outbox (the status and the event in one transaction)
    from tdev.data.executions import outcome_event_id

    items = container.executions()._table.scan()["Items"]  # the emulated table: a handful of items
    outbox = [
        i for i in items if str(i["PK"]).startswith("OUTBOX#") and i.get("detail_type") == "RequestFailed"
    ]
    assert [i["event_id"] for i in outbox] == [outcome_event_id(EXECUTION_ID, ExecutionStatus.CANCELLED)]


def test_an_execution_that_already_ended_otherwise_is_a_409(running: Any) -> None:
    container.executions().finish(EXECUTION_ID, ExecutionStatus.SUCCEEDED, Usage())

    response = running.invoke("api", load_event("api_cancel_execution"))

    assert response["statusCode"] == 409
    body = json.loads(response["body"])
    assert body["error"] == "Conflict" and body["field"] == "execution_id" and "SUCCEEDED" in body["message"]


def test_an_unknown_execution_is_a_404(runtime: Any) -> None:
    response = runtime.invoke("api", load_event("api_cancel_execution"))

    assert response["statusCode"] == 404
    assert json.loads(response["body"])["field"] == "execution_id"


def test_only_who_may_see_and_submit_may_cancel(runtime: Any) -> None:
    other = "3c1f0a9e-1111-4a2b-9c3d-000000000001"
    store(other, principal="owner-1", project_id="private-project", status=ExecutionStatus.RUNNING)
    path = f"/v1/executions/{other}/cancel"

    # another developer does not see it: 404, as if it did not exist
    assert runtime.as_principal("stranger", ("developer",)).api("POST", path)[0] == 404
    # a viewer may not cancel anything
    assert runtime.as_principal("watcher", ("viewer",)).api("POST", path)[0] == 403
    assert container.executions().get(other).status == ExecutionStatus.RUNNING
    # an admin may
    status, body = runtime.as_principal("root", ("admin",)).api("POST", path)
    assert (status, body["status"]) == (200, "CANCELLED")


@pytest.mark.parametrize("budget", [0, -1, 1e-200, 1_000.01, 1e9, "lots", [1], None])
def test_a_budget_that_is_not_a_positive_bounded_amount_is_a_400_naming_it(runtime: Any, budget: Any) -> None:
    raw = json.dumps({"request": "Write unit tests for the parser", "budget_usd": budget})

    status, body = runtime.api("POST", "/v1/requests", raw_body=raw)

    if budget is None:  # null: the deployment's default
        assert status == 202
        execution = container.executions().get(body["execution_id"])
        from tdev.settings import get_settings

        assert execution.budget_usd == get_settings().default_budget_usd
        return
    assert status == 400, body
    assert body["error"] == "ValidationError" and body["field"] == "budget_usd"


def test_a_request_keeps_its_budget(runtime: Any) -> None:
    status, body = runtime.api(
        "POST", "/v1/requests", {"request": "Write unit tests for the parser", "budget_usd": 0.05}
    )

    assert status == 202
    _, view = runtime.api("GET", f"/v1/executions/{body['execution_id']}")
    assert view["budget"]["budget_usd"] == 0.05


def test_the_sample_kill_event_cancels_the_sessions_executions_and_terminates_it(running: Any) -> None:
    from tdev.sessions.lifecycle import SessionStatus
    from tdev.sessions.service import service

    session = service().open("sample-user", "todo-api", ["CodeAgent"])
    service().attach_request(session.session_id, EXECUTION_ID)
    event = json.loads(
        json.dumps(load_event("api_kill_session")).replace("ses-5a3e0c1d9b7f4e26", session.session_id)
    )

    response = running.invoke("api", event)

    assert response["statusCode"] == 200, response["body"]
    body = json.loads(response["body"])
    assert body["cancelled_executions"] == [EXECUTION_ID]
    assert service().repo.get(session.session_id).status is SessionStatus.COMPLETED
    assert container.executions().get(EXECUTION_ID).status == ExecutionStatus.CANCELLED
    # someone else's session: not theirs to kill
    other = service().open("owner-2", "todo-api", ["CodeAgent"])
    status, _ = running.as_principal("stranger", ("developer",)).api(
        "POST", f"/v1/sessions/{other.session_id}/kill"
    )
    assert status == 403
