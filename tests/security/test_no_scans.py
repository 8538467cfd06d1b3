"""No request path scans the table: roles, API keys, revocations and the audit trail are Queries of keys
or GSI1 listings. Every DynamoDB Scan raises in these tests (a patched botocore client), so a scan added
anywhere on these paths fails them; only admin migrations (tdev_cli.migrations) may scan."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.client import BaseClient

pytestmark = pytest.mark.slow


class ScanForbidden(AssertionError):
    pass


@pytest.fixture
def no_scans(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every boto3 call this test makes; a Scan raises."""
    calls: list[str] = []
    original = BaseClient._make_api_call

    def guarded(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        calls.append(operation_name)
        if operation_name == "Scan":
            raise ScanForbidden(f"Scan on a request path: {api_params.get('TableName')}")
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", guarded)
    yield calls


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_request_path_is_scan_free(secured: Any, no_scans: list[str]) -> None:
    from tdev.security import services

    suffix = uuid.uuid4().hex[:8]
    admin = _auth(secured.token(f"admin-{suffix}", ("admin",)))
    dev = _auth(secured.token(f"dev-{suffix}"))
    role = {"inherits": ["viewer"], "permissions": [{"id": "r", "resource": "report/*", "action": "read"}]}
    assert secured.api("PUT", f"/v1/roles/reader-{suffix}", role, headers=admin)[0] == 200
    status, created = secured.api("POST", "/v1/api-keys", {"name": "k", "roles": ["viewer"]}, headers=admin)
    assert status == 201
    status, keys = secured.api("GET", "/v1/api-keys", headers=admin)
    assert status == 200 and created["key_id"] in {k["key_id"] for k in keys}
    assert secured.api("GET", "/v1/agents", headers={"X-Api-Key": created["api_key"]})[0] == 200
    assert (
        secured.api("GET", "/v1/agents", headers=_auth(secured.token(f"u-{suffix}", (f"reader-{suffix}",))))[
            0
        ]
        == 200
    )
    assert secured.api("DELETE", f"/v1/api-keys/{created['key_id']}", headers=admin)[0] == 200
    assert secured.api("POST", "/v1/tokens/revoke", {"jti": f"jti-{suffix}"}, headers=admin)[0] == 200
    assert secured.api("POST", f"/v1/principals/gone-{suffix}/disable", headers=admin)[0] == 200
    status, accepted = secured.api(
        "POST", "/v1/requests", {"request": "Build a todo API", "project_id": f"p-{suffix}"}, headers=dev
    )
    assert status == 202
    assert secured.api("GET", f"/v1/executions/{accepted['execution_id']}", headers=dev)[0] == 200
    assert secured.api("PUT", f"/v1/projects/p-{suffix}/members/m-{suffix}", headers=dev)[0] == 200
    status, page = secured.api("GET", f"/v1/audit/dev-{suffix}", headers=admin)
    assert status == 200 and page["entries"]
    assert services.revocations().restore() >= 2
    services.policy_store().invalidate()
    assert f"reader-{suffix}" in services.policy_store().roles()
    assert "Scan" not in no_scans and "Query" in no_scans


def test_audit_pages_run_newest_first() -> None:
    from moto import mock_aws

    from tdev import aws
    from tdev.data import schema
    from tdev.security.rbac import AccessRequest, AuditLog, Decision

    with mock_aws():
        aws.reset_clients()
        import boto3

        boto3.client("dynamodb", region_name="us-east-1").create_table(**schema.create_table_kwargs("audit"))
        log = AuditLog("audit")
        for n in range(7):
            log.record(AccessRequest("pat", ("viewer",), f"r/{n}", "read"), Decision(True, "allowed"))
            time.sleep(0.002)
        first, cursor = log.page("pat", limit=3)
        assert [e["resource"] for e in first] == ["r/6", "r/5", "r/4"] and cursor
        second, cursor = log.page("pat", limit=3, before=cursor)
        assert [e["resource"] for e in second] == ["r/3", "r/2", "r/1"] and cursor
        last, cursor = log.page("pat", limit=3, before=cursor)
        assert [e["resource"] for e in last] == ["r/0"] and cursor is None
    aws.reset_clients()


def test_the_migration_lists_security_items_stored_before_their_listings() -> None:
    from moto import mock_aws

    from tdev.data import schema
    from tdev_cli.migrations import backfill_security_listings

    with mock_aws():
        import boto3

        boto3.client("dynamodb", region_name="us-east-1").create_table(**schema.create_table_kwargs("old"))
        table = boto3.resource("dynamodb", region_name="us-east-1").Table("old")
        table.put_item(Item={"PK": "ROLE#legacy", "SK": "ROLE", "name": "legacy", "permissions": "[]"})
        table.put_item(
            Item={
                "PK": "APIKEY#0123456789abcdef",
                "SK": "APIKEY",
                "key_id": "0123456789abcdef",
                "created_at": 5,
            }
        )
        table.put_item(Item={"PK": "REVOKED#j1", "SK": "REVOKED", "jti": "j1", "expires_at": 4102444800})
        table.put_item(Item={"PK": "PRINCIPAL#bob", "SK": "STATUS", "status": "disabled"})
        table.put_item(Item={"PK": "EXECUTION#e", "SK": "EXECUTION"})
        assert backfill_security_listings(table) == {"ROLE": 1, "APIKEY": 1, "REVOKED": 1, "DISABLED": 1}
        listed = table.query(
            IndexName="GSI1",
            KeyConditionExpression="GSI1PK = :k",
            ExpressionAttributeValues={":k": "REVOKED"},
        )["Items"]
        assert listed[0]["GSI1SK"] == "004102444800#j1"
        assert backfill_security_listings(table) == {"ROLE": 0, "APIKEY": 0, "REVOKED": 0, "DISABLED": 0}
