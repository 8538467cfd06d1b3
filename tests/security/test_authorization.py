"""The authorizer's output for API Gateway, RBAC on the API's routes (roles, ownership, audit), API keys,
and the JWKS cache's key rotation."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest

from tdev.security.tokens import JwksCache
from tdev.version import __version__

EVENTS = Path(__file__).resolve().parents[2] / "events"


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / f"{name}.json").read_text()))


pytestmark = pytest.mark.slow

REQUEST = {"request": "Design and implement a REST API for todo items"}


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_authorizer_returns_an_allow_policy_for_the_stage_with_the_identity(
    secured: Any, user: str
) -> None:
    event = load_event("authorizer")
    event["headers"]["Authorization"] = f"Bearer {secured.token(user, ('developer', 'viewer'))}"
    result = secured.invoke("authorizer", event)
    assert result["principalId"] == user
    assert result["policyDocument"] == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Action": "execute-api:Invoke",
                "Effect": "Allow",
                "Resource": "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/dev/*/*",
            }
        ],
    }
    context = result["context"]
    assert (
        context["principal"] == user
        and json.loads(context["roles"]) == ["developer", "viewer"]
        and context["source"] == "jwt"
    )
    assert all(isinstance(v, str) for v in context.values())  # API Gateway accepts only primitives
    assert len(context["jti"]) == 32


def test_the_authorizer_answers_unauthorized_for_the_sample_placeholder_token(secured: Any) -> None:
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        secured.invoke("authorizer", load_event("authorizer"))


def test_the_authorizer_accepts_an_api_key(secured: Any) -> None:
    admin = secured.token("admin-k", ("admin",))
    created = secured.api("POST", "/v1/api-keys", {"name": "bot", "roles": ["viewer"]}, headers=_auth(admin))[
        1
    ]
    event = load_event("authorizer")
    event["headers"] = {"X-Api-Key": created["api_key"]}
    context = secured.invoke("authorizer", event)["context"]
    assert context["principal"] == f"apikey:{created['key_id']}" and context["source"] == "api_key"
    assert json.loads(context["roles"]) == ["viewer"] and context["api_key_id"] == created["key_id"]


def test_health_needs_no_identity(secured: Any) -> None:
    assert secured.api("GET", "/health", authenticate=False) == (
        200,
        {"status": "ok", "service": "t-developer", "version": __version__},
    )


def test_the_api_refuses_a_request_that_bypassed_the_authorizer(secured: Any) -> None:
    event = load_event("api_list_agents")
    del event["requestContext"]["authorizer"]
    response = secured.invoke("api", event)
    assert response["statusCode"] == 401


def test_viewer_may_read_but_not_submit(secured: Any, user: str) -> None:
    viewer = _auth(secured.token(user, ("viewer",)))
    assert secured.api("GET", "/v1/agents", headers=viewer)[0] == 200
    status, body = secured.api("POST", "/v1/requests", REQUEST, headers=viewer)
    assert (status, body["error"]) == (403, "Forbidden")
    assert "may not create request/new" in body["message"]


def test_developers_may_only_submit_into_projects_they_own(secured: Any, user: str) -> None:
    project = f"proj-{uuid.uuid4().hex[:6]}"
    owner, other = _auth(secured.token(user)), _auth(secured.token(f"{user}-b"))
    assert secured.api("POST", "/v1/requests", {**REQUEST, "project_id": project}, headers=owner)[0] == 202
    status, body = secured.api("POST", "/v1/requests", {**REQUEST, "project_id": project}, headers=other)
    assert status == 403 and f"project/{project}" in body["message"]
    # the shared project is open to every developer; admins may submit anywhere
    assert secured.api("POST", "/v1/requests", {**REQUEST, "project_id": "default"}, headers=other)[0] == 202
    admin = _auth(secured.token("admin-p", ("admin",)))
    assert secured.api("POST", "/v1/requests", {**REQUEST, "project_id": project}, headers=admin)[0] == 202


def test_every_decision_is_audited_with_who_what_decision_and_policies(secured: Any, user: str) -> None:
    viewer = _auth(secured.token(user, ("viewer",)))
    secured.api("GET", "/v1/agents", headers=viewer)
    secured.api("POST", "/v1/requests", REQUEST, headers=viewer)
    admin = _auth(secured.token("auditor", ("admin",)))
    status, page = secured.api("GET", f"/v1/audit/{user}", headers=admin)
    assert status == 200 and page["principal"] == user and page["next"] is None
    entries = page["entries"]
    decisions = sorted((e["resource"], e["action"], e["decision"]) for e in entries)
    assert decisions == [("agent/catalog", "list", "allow"), ("request/new", "create", "deny")]
    allowed = next(e for e in entries if e["decision"] == "allow")
    assert allowed["policy_ids"] == ["viewer-list"] and allowed["principal"] == user and allowed["at"]
    # viewers may not read the audit trail (explicit deny on security resources)
    assert secured.api("GET", f"/v1/audit/{user}", headers=viewer)[0] == 403


def test_custom_roles_stored_in_the_table_take_effect(secured: Any, user: str) -> None:
    admin = _auth(secured.token("admin-r", ("admin",)))
    role = {
        "inherits": ["viewer"],
        "permissions": [
            {"id": "submitter", "resource": "request/*", "action": "create"},
            {"id": "shared", "resource": "project/default", "action": "execute"},
        ],
    }
    assert secured.api("PUT", "/v1/roles/submitter", role, headers=admin)[0] == 200
    token = _auth(secured.token(user, ("submitter",)))
    assert secured.api("POST", "/v1/requests", {**REQUEST, "project_id": "default"}, headers=token)[0] == 202
    assert secured.api("POST", "/v1/api-keys", {"name": "x", "roles": ["viewer"]}, headers=token)[0] == 403


def test_api_keys_are_shown_once_stored_hashed_expire_and_can_be_revoked(secured: Any) -> None:
    from tdev import aws

    admin = _auth(secured.token("admin-keys", ("admin",)))
    status, created = secured.api(
        "POST", "/v1/api-keys", {"name": "ci-bot", "roles": ["developer"]}, headers=admin
    )
    assert status == 201
    assert 364 * 86_400 < created["expires_at"] - time.time() <= 365 * 86_400
    item = aws.table("tdev-local").get_item(Key={"PK": f"APIKEY#{created['key_id']}", "SK": "APIKEY"})["Item"]
    flat = repr(item)
    assert created["api_key"] not in flat and created["signing_secret"] not in flat and "ci-bot" not in flat
    listed = secured.api("GET", "/v1/api-keys", headers=admin)[1]
    mine = next(k for k in listed if k["key_id"] == created["key_id"])
    assert mine["name"] == "ci-bot" and "api_key" not in mine and "hash" not in mine
    key = {"X-Api-Key": created["api_key"]}
    assert secured.api("GET", "/v1/agents", headers=key)[0] == 200
    wrong = created["api_key"][:-1] + ("B" if created["api_key"].endswith("A") else "A")
    assert secured.api("GET", "/v1/agents", headers={"X-Api-Key": wrong})[0] == 401
    assert secured.api("DELETE", f"/v1/api-keys/{created['key_id']}", headers=admin)[0] == 200
    assert secured.api("GET", "/v1/agents", headers=key)[0] == 401
    # expired keys are refused even before DynamoDB's TTL removes them
    status, second = secured.api("POST", "/v1/api-keys", {"name": "old", "roles": ["viewer"]}, headers=admin)
    aws.table("tdev-local").update_item(
        Key={"PK": f"APIKEY#{second['key_id']}", "SK": "APIKEY"},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": int(time.time()) - 1},
    )
    assert secured.api("GET", "/v1/agents", headers={"X-Api-Key": second["api_key"]})[0] == 401


def test_only_admins_create_api_keys_and_bad_input_names_the_field(secured: Any, user: str) -> None:
    developer = _auth(secured.token(user))
    assert (
        secured.api("POST", "/v1/api-keys", {"name": "x", "roles": ["viewer"]}, headers=developer)[0] == 403
    )
    admin = _auth(secured.token("admin-v", ("admin",)))
    status, body = secured.api("POST", "/v1/api-keys", {"name": "x", "roles": []}, headers=admin)
    assert status == 400 and body["field"] == "roles"


def test_the_jwks_cache_picks_up_a_rotated_key_once_and_rate_limits_refetches(tmp_path: Any) -> None:
    from tdev.security.issuer import LocalIssuer
    from tdev.security.tokens import TokenValidator, fetch_jwks

    issuer = LocalIssuer(tmp_path)
    now = [1000.0]
    cache = JwksCache(
        lambda: fetch_jwks(issuer.jwks_url), min_refresh_interval_seconds=30, clock=lambda: now[0]
    )
    validator = TokenValidator(
        jwks=cache, issuer=issuer.issuer, audiences=[issuer.audience], roles_claim="roles"
    )
    first, _ = issuer.issue("alice", ["viewer"])
    assert validator.validate(first).principal == "alice" and cache.fetches == 1
    issuer.rotate()
    second, _ = issuer.issue("alice", ["viewer"])
    now[0] += 31
    assert validator.validate(second).roles == ("viewer",) and cache.fetches == 2  # unknown kid → one refetch
    assert validator.validate(first).principal == "alice"  # the previous key is still published
    forged = jwt.encode({"sub": "x"}, "k", algorithm="HS256", headers={"kid": "nope"})
    for _ in range(5):
        with pytest.raises(Exception, match="not accepted"):
            validator.validate(forged)
    unknown_kid = jwt.encode(
        jwt.decode(second, options={"verify_signature": False}),
        __import__("cryptography.hazmat.primitives.asymmetric.ec", fromlist=["ec"]).generate_private_key(
            __import__("cryptography.hazmat.primitives.asymmetric.ec", fromlist=["ec"]).SECP256R1()
        ),
        algorithm="ES256",
        headers={"kid": "unknown"},
    )
    for _ in range(5):
        with pytest.raises(Exception, match="unknown signing key id"):
            validator.validate(unknown_kid)
    assert cache.fetches == 2  # unknown kids do not hammer the issuer within the refresh interval
