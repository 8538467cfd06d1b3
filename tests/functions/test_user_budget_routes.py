"""User and project budgets and suspending a user, through the API function: the sample events, RBAC
(admins set caps and suspend; a developer gets 403), validation naming the field, admission refusing a
spent month (402) and a suspended user (403) before anything is stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tdev import container
from tdev.data.budgets import ledger_for
from tdev.models import Execution, ExecutionStatus, utc_now

EVENTS = Path(__file__).resolve().parents[2] / "events"


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / f"{name}.json").read_text()))


def body_of(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def spend(principal: str, project_id: str, micro_usd: int) -> None:
    """A settled model call of `micro_usd` by `principal` in `project_id` (through the real ledger)."""
    execution_id = f"spent-{principal}-{project_id}"[:60]
    now = utc_now()
    container.executions().create(
        Execution(
            execution_id=execution_id,
            request="Write unit tests for the parser",
            project_id=project_id,
            principal=principal,
            status=ExecutionStatus.RUNNING,
            created_at=now,
            updated_at=now,
            correlation_id=execution_id,
            budget_usd=None,
        ),
        idempotency_key=None,
        request_hash="h",
    )
    ledger = ledger_for(container.executions().get(execution_id))
    ledger.reserve(micro_usd, model="offline:tdev-offline-1", tokens=100)
    ledger.settle(micro_usd, micro_usd, reserved_tokens=100, spent_tokens=100)


def test_the_sample_events_set_and_read_budgets_and_suspend_and_unsuspend(runtime: Any) -> None:
    from tdev.security.services import projects

    projects().claim("todo-api", "sample-user")

    # an admin sets the user's and the project's monthly caps, with a reason
    put_user = runtime.invoke("api", load_event("api_put_user_budget"))
    assert put_user["statusCode"] == 200, put_user["body"]
    view = body_of(put_user)
    assert (view["scope"], view["id"], view["budget_usd"], view["budget_tokens"]) == (
        "user",
        "sample-user",
        25.0,
        2_000_000,
    )
    assert view["source"] == "override" and view["override"]["set_by"] == "sample-admin"
    assert view["override"]["reason"] == "pilot team: a smaller monthly cap"
    put_project = runtime.invoke("api", load_event("api_put_project_budget"))
    assert put_project["statusCode"] == 200, put_project["body"]
    assert body_of(put_project)["budget_usd"] == 200.0
    assert body_of(put_project)["budget_tokens"] is None  # null: the configured default (no token cap)

    # the user reads its own budget and its project's: what was spent and reserved this month
    spend("sample-user", "todo-api", 1_500)
    got = body_of(runtime.invoke("api", load_event("api_get_user_budget")))
    assert got["period"] == utc_now().strftime("%Y-%m") and got["budget_usd"] == 25.0
    assert (got["spent_usd"], got["reserved_usd"], got["spent_tokens"]) == (0.0015, 0.0, 100)
    assert got["left_usd"] == pytest.approx(25.0 - 0.0015)
    project = runtime.invoke("api", load_event("api_get_project_budget"))
    assert project["statusCode"] == 200, project["body"]
    assert body_of(project)["spent_usd"] == 0.0015

    # an admin suspends the user: its new requests and sessions are refused with 403
    suspended = runtime.invoke("api", load_event("api_suspend_user"))
    assert suspended["statusCode"] == 200, suspended["body"]
    answer = body_of(suspended)
    assert answer["suspended"] is True and answer["suspended_by"] == "sample-admin"
    assert answer["cancelled_executions"] == ["spent-sample-user-todo-api"]  # its open execution stopped
    assert container.executions().get("spent-sample-user-todo-api").status == ExecutionStatus.CANCELLED
    user = runtime.as_principal("sample-user", ("developer",))
    status, refused = user.api(
        "POST", "/v1/requests", {"request": "Write unit tests", "project_id": "todo-api"}
    )
    assert status == 403 and refused["error"] == "UserSuspended", refused
    assert "suspended (a runaway agent loop is burning the team budget)" in refused["message"]
    status, refused = user.api("POST", "/v1/sessions", {"project_id": "todo-api"})
    assert status == 403 and refused["error"] == "UserSuspended", refused
    # (refused on the very next call: the authorizer caches nothing, results_cache_ttl 0)
    status, _ = user.api("GET", "/v1/users/sample-user/budget")  # reading stays allowed
    assert status == 200

    # unsuspended, the user may submit again
    lifted = runtime.invoke("api", load_event("api_unsuspend_user"))
    assert lifted["statusCode"] == 200 and body_of(lifted)["was_suspended"] is True
    status, accepted = user.api(
        "POST", "/v1/requests", {"request": "Write unit tests", "project_id": "todo-api"}
    )
    assert status == 202, accepted


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/v1/users/someone/budget", {"budget_usd": 1000.0, "reason": "more for me"}),
        ("PUT", "/v1/projects/default/budget", {"budget_usd": 1000.0, "reason": "more for us"}),
        ("POST", "/v1/users/someone/suspend", {"reason": "I do not like them"}),
        ("POST", "/v1/users/someone/unsuspend", {"reason": "I like them again"}),
    ],
)
@pytest.mark.parametrize("role", ["developer", "viewer"])
def test_only_admins_set_caps_and_suspend(runtime: Any, method: str, path: str, body: Any, role: str) -> None:
    status, answer = runtime.as_principal("not-an-admin", (role,)).api(method, path, body)

    assert status == 403 and answer["error"] == "Forbidden", answer
    # the refusal is in the audit trail, like every decision
    _, audit = runtime.as_principal("root", ("admin",)).api("GET", "/v1/audit/not-an-admin")
    assert any(
        (e["decision"], e["resource"].rsplit("/", 1)[-1]) in {("deny", "someone"), ("deny", "default")}
        for e in audit["entries"]
    )


def test_a_developer_reads_only_its_own_budget_and_visible_projects(runtime: Any) -> None:
    developer = runtime.as_principal("dev-1", ("developer",))
    assert developer.api("GET", "/v1/users/dev-1/budget")[0] == 200
    status, answer = developer.api("GET", "/v1/users/dev-2/budget")
    assert (status, answer["field"]) == (403, "user_id")
    status, answer = developer.api("GET", "/v1/projects/someone-elses/budget")
    assert (status, answer["field"]) == (404, "project_id")
    assert runtime.as_principal("root", ("admin",)).api("GET", "/v1/users/dev-2/budget")[0] == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"budget_usd": -1, "reason": "negative"}, "budget_usd"),
        ({"budget_usd": 0, "reason": "zero"}, "budget_usd"),
        ({"budget_usd": 1e-200, "reason": "below what DynamoDB stores"}, "budget_usd"),
        ({"budget_usd": 2_000_000, "reason": "too much"}, "budget_usd"),
        ({"budget_usd": "lots", "reason": "text"}, "budget_usd"),
        ({"budget_tokens": 0, "reason": "zero"}, "budget_tokens"),
        ({"budget_tokens": 1.5, "reason": "half"}, "budget_tokens"),
        ({"budget_usd": 5}, "reason"),
        ({"budget_usd": 5, "reason": ""}, "reason"),
        ({"budget_usd": 5, "reason": "okay", "extra": 1}, "extra"),
    ],
)
def test_an_invalid_cap_is_a_400_naming_the_field(runtime: Any, body: Any, field: str) -> None:
    status, answer = runtime.as_principal("root", ("admin",)).api("PUT", "/v1/users/someone/budget", body)

    assert status == 400 and answer["error"] == "ValidationError", answer
    assert answer["field"] == field


def test_a_suspension_without_a_reason_or_for_a_malformed_user_is_a_400(runtime: Any) -> None:
    admin = runtime.as_principal("root", ("admin",))
    status, answer = admin.api("POST", "/v1/users/someone/suspend", {})
    assert (status, answer["field"]) == (400, "reason")
    status, answer = admin.api("POST", "/v1/users/some%20one/suspend", {"reason": "spaces"})
    assert (status, answer["field"]) == (400, "user_id")


def test_a_request_is_refused_402_once_its_users_or_projects_month_is_spent(runtime: Any) -> None:
    def admin() -> Any:  # as_principal sets who later calls are made as
        return runtime.as_principal("root", ("admin",))

    assert admin().api("PUT", "/v1/users/spender/budget", {"budget_usd": 0.001, "reason": "tiny"})[0] == 200
    spend("spender", "default", 1_000)  # the whole month

    status, refused = runtime.as_principal("spender", ("developer",)).api(
        "POST", "/v1/requests", {"request": "Write unit tests for the parser"}
    )

    assert status == 402 and refused["error"] == "BudgetExceeded", refused
    assert (
        refused["field"] == "user_id" and "user spender has used its 0.001 USD budget" in refused["message"]
    )
    # the project's month: every user of the project is refused, naming project_id
    from tdev.security.services import projects

    projects().claim("small-project", "builder")
    put = admin().api("PUT", "/v1/projects/small-project/budget", {"budget_usd": 0.002, "reason": "small"})
    assert put[0] == 200, put
    spend("builder", "small-project", 2_000)
    status, refused = runtime.as_principal("builder", ("developer",)).api(
        "POST", "/v1/requests", {"request": "Write unit tests", "project_id": "small-project"}
    )
    assert (status, refused["field"]) == (402, "project_id"), refused
