"""Isolation between users: a project's executions, results and sessions are its owner's and members' (and
admins'); in the shared project each user sees only their own; a second user gets 403 or 404 on every route
that holds someone else's data. Membership is managed by the owner or an admin, transfer by admins."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REQUEST = "Design and implement a REST API for todo items"
# Routes that hold no user's data (the shared catalogs, health, the API's description): every caller of the
# right role reads them.
SHARED_ROUTES = {
    ("GET", "/health"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/v1/agents"),
    ("GET", "/v1/agents/{agent_name}/health"),  # the platform's load on a catalogued agent, no one's data
    ("GET", "/v1/models"),
    ("POST", "/v1/models/route"),
}


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def world(secured: Any) -> dict[str, Any]:
    """Alice owns project P with an execution and a session; Bob is another developer; an admin."""
    suffix = uuid.uuid4().hex[:8]
    alice, bob = f"alice-{suffix}", f"bob-{suffix}"
    project = f"p-{suffix}"
    a = _auth(secured.token(alice))
    status, accepted = secured.api(
        "POST", "/v1/requests", {"request": REQUEST, "project_id": project}, headers=a
    )
    assert status == 202, accepted
    status, shared = secured.api(
        "POST", "/v1/requests", {"request": REQUEST, "project_id": "default"}, headers=a
    )
    assert status == 202, shared
    status, session = secured.api("POST", "/v1/sessions", {"project_id": project}, headers=a)
    assert status == 201, session
    return {
        "alice": alice,
        "bob": bob,
        "project": project,
        "a": a,
        "b": _auth(secured.token(bob)),
        "viewer": _auth(secured.token(f"viewer-{suffix}", ("viewer",))),
        "admin": _auth(secured.token(f"admin-{suffix}", ("admin",))),
        "execution": accepted["execution_id"],
        "shared_execution": shared["execution_id"],
        "session": session["session_id"],
    }


def test_executions_are_visible_to_the_project_only(secured: Any, world: dict[str, Any]) -> None:
    path = f"/v1/executions/{world['execution']}"
    assert secured.api("GET", path, headers=world["a"])[0] == 200
    for outsider in ("b", "viewer"):
        status, body = secured.api("GET", path, headers=world[outsider])
        assert status == 404 and REQUEST not in str(body), body
    assert secured.api("GET", path, headers=world["admin"])[0] == 200
    # Alice adds Bob: he reads and submits; removed, he no longer reads.
    member = f"/v1/projects/{world['project']}/members/{world['bob']}"
    status, view = secured.api("PUT", member, headers=world["a"])
    assert status == 200 and view["members"] == [world["bob"]] and view["owner"] == world["alice"]
    assert secured.api("GET", path, headers=world["b"])[0] == 200
    body = {"request": REQUEST, "project_id": world["project"]}
    assert secured.api("POST", "/v1/requests", body, headers=world["b"])[0] == 202
    assert secured.api("DELETE", member, headers=world["a"])[0] == 200
    assert secured.api("GET", path, headers=world["b"])[0] == 404
    assert secured.api("POST", "/v1/requests", body, headers=world["b"])[0] == 403


def test_in_the_shared_project_each_user_sees_only_their_own(secured: Any, world: dict[str, Any]) -> None:
    path = f"/v1/executions/{world['shared_execution']}"
    assert secured.api("GET", path, headers=world["a"])[0] == 200
    assert secured.api("GET", path, headers=world["b"])[0] == 404
    assert secured.api("GET", path, headers=world["admin"])[0] == 200


def test_a_request_cannot_join_another_users_session(secured: Any, world: dict[str, Any]) -> None:
    body = {"request": REQUEST, "project_id": "default", "session_id": world["session"]}
    status, answer = secured.api("POST", "/v1/requests", body, headers=world["b"])
    assert status == 404 and answer["field"] == "session_id", answer
    body["project_id"] = world["project"]
    assert secured.api("POST", "/v1/requests", body, headers=world["a"])[0] == 202


def test_only_the_owner_or_an_admin_manages_members_and_only_admins_transfer(
    secured: Any, world: dict[str, Any]
) -> None:
    project, bob = world["project"], world["bob"]
    member = f"/v1/projects/{project}/members/{bob}"
    assert secured.api("PUT", member, headers=world["b"])[0] == 403  # Bob may not add himself
    assert secured.api("PUT", member, headers=world["viewer"])[0] == 403
    assert secured.api("PUT", member, headers=world["admin"])[0] == 200
    # A member does not manage members; a developer-owner does not transfer.
    assert secured.api("PUT", f"/v1/projects/{project}/members/carol", headers=world["b"])[0] == 403
    transfer = f"/v1/projects/{project}/transfer"
    assert secured.api("POST", transfer, {"owner": bob}, headers=world["a"])[0] == 403
    status, view = secured.api("POST", transfer, {"owner": bob}, headers=world["admin"])
    assert status == 200 and view["owner"] == bob and view["members"] == [world["alice"]], view
    # Bob now manages; the shared project has no members; unknown projects are 404.
    assert (
        secured.api("DELETE", f"/v1/projects/{project}/members/{world['alice']}", headers=world["b"])[0]
        == 200
    )
    assert secured.api("GET", f"/v1/executions/{world['execution']}", headers=world["a"])[0] == 404
    assert secured.api("PUT", f"/v1/projects/default/members/{bob}", headers=world["admin"])[0] == 400
    assert secured.api("PUT", f"/v1/projects/nope-{bob}/members/x", headers=world["admin"])[0] == 404


def _sweep_path(template: str, world: dict[str, Any]) -> str:
    return (
        template.replace("{execution_id}", world["execution"])
        .replace("{session_id}", world["session"])
        .replace("{project_id}", world["project"])
        .replace("{principal}", world["alice"])
        .replace("{key_id}", "0123456789abcdef")
        .replace("{name}", "probe")
        .replace("{agent_name}", "DocsAgent")
        .replace("{user_id}", world["alice"])
        .replace("{signature}", "0123456789abcdef")
        .replace("{alert_id}", "0123456789abcdef0123")
    )


SWEEP_BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/requests"): {"request": REQUEST, "project_id": "{project_id}"},
    ("POST", "/v1/sessions"): {"project_id": "{project_id}"},
    ("POST", "/v1/api-keys"): {"name": "x", "roles": ["admin"]},
    ("POST", "/v1/tokens/revoke"): {"jti": "abcdefgh12345678"},
    ("PUT", "/v1/roles/{name}"): {"permissions": []},
    ("POST", "/v1/projects/{project_id}/transfer"): {"owner": "{principal}"},
    ("POST", "/v1/sessions/{session_id}/messages"): {"text": "hello"},
    ("POST", "/v1/sessions/{session_id}/memory"): {"content": "remember me"},
    ("POST", "/v1/sessions/{session_id}/checkpoints"): {"kind": "manual"},
}


def test_a_second_user_gets_403_or_404_on_every_route_with_someone_elses_data(
    secured: Any, world: dict[str, Any]
) -> None:
    from stacks.api_stack import ROUTES

    checked = []
    for method, template in ROUTES:
        if (method, template) in SHARED_ROUTES:
            continue
        body = SWEEP_BODIES.get((method, template))
        if isinstance(body, dict):
            body = {k: _sweep_path(v, world) if isinstance(v, str) else v for k, v in body.items()}
        # A developer outside the project, a new one per route: the sweep makes more strictly limited
        # calls (10 per 15 min per principal) than one principal may, and it tests authorization, not limits.
        outsider = _auth(secured.token(f"{world['bob']}-{len(checked)}"))
        status, answer = secured.api(method, _sweep_path(template, world), body, headers=outsider)
        assert status in (403, 404), (method, template, status, answer)
        checked.append((method, template))
    assert len(checked) >= 20, checked
