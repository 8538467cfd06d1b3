"""API Gateway usage plans: each API key gets a metered twin in the machine plan, JWT users are named by the
interactive plan's key, and the authorizer hands API Gateway the right one (`usageIdentifierKey`).

Against moto's API Gateway, DynamoDB and KMS: the same calls the deployed API and authorizer make.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tdev import aws, container
from tdev.data import schema
from tdev.errors import ConfigurationError
from tdev.security import authorizer, services
from tdev.security.tokens import Identity
from tdev.security.usageplans import ENV_TAG

TABLE = "tdev-usage-test"
PLAN = "t-developer-test-machine-clients"
METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/test/GET/v1/agents"


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A deployment's view: table, CMK, the machine plan and the interactive key, and the settings."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "TABLE_NAME": TABLE,
        "TDEV_ENV": "test",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        boto3.client("dynamodb").create_table(**schema.create_table_kwargs(TABLE))
        monkeypatch.setenv("KMS_KEY_ID", boto3.client("kms").create_key()["KeyMetadata"]["Arn"])
        apigw = boto3.client("apigateway")
        apigw.create_usage_plan(name="t-developer-test-interactive")  # another plan, not to be picked
        plan = apigw.create_usage_plan(name=PLAN, throttle={"rateLimit": 1.0, "burstLimit": 10})
        interactive = apigw.create_api_key(name="t-developer-test-interactive", enabled=True)
        monkeypatch.setenv("TDEV_USAGE_PLAN_NAME", PLAN)
        monkeypatch.setenv("TDEV_INTERACTIVE_API_KEY_ID", interactive["id"])
        container.reset()
        yield {"client": apigw, "plan_id": plan["id"], "interactive": interactive}
        container.reset()


def _plan_key_ids(apigw: Any, plan_id: str) -> set[str]:
    return {k["id"] for k in apigw.get_usage_plan_keys(usagePlanId=plan_id)["items"]}


def test_a_new_api_key_gets_a_tagged_twin_in_the_machine_plan_and_the_authorizer_names_it(
    gateway: dict[str, Any],
) -> None:
    apigw = gateway["client"]
    created = services.api_keys().create(name="ci-bot", roles=["developer"], owner="admin")
    item = aws.table(TABLE).get_item(Key={"PK": f"APIKEY#{created.key_id}", "SK": "APIKEY"})["Item"]
    twin = apigw.get_api_key(apiKey=item["gateway_key_id"], includeValue=True)
    assert twin["name"] == f"tdk-{created.key_id}" and twin["enabled"] is True
    assert twin["tags"] == {ENV_TAG: "test"}  # what the API function's IAM policy requires
    assert twin["value"] == item["usage_key"] != created.api_key  # the twin is not the caller's secret
    assert twin["id"] in _plan_key_ids(apigw, gateway["plan_id"])

    identity = services.api_keys().verify(created.api_key)
    answer = authorizer.policy(identity, METHOD_ARN)
    assert answer["usageIdentifierKey"] == twin["value"]
    assert answer["context"]["api_key_id"] == created.key_id


def test_jwt_users_are_metered_under_the_interactive_key(gateway: dict[str, Any]) -> None:
    answer = authorizer.policy(Identity(principal="ada", roles=("developer",)), METHOD_ARN)
    assert answer["usageIdentifierKey"] == gateway["interactive"]["value"]
    # keys stored before metering existed (no twin) fall back to the interactive plan instead of a 403
    legacy = Identity(principal="apikey:0123", roles=("viewer",), source="api_key", api_key_id="0123")
    assert authorizer.usage_key_of(legacy) == gateway["interactive"]["value"]


def test_revoking_a_key_disables_its_twin(gateway: dict[str, Any]) -> None:
    created = services.api_keys().create(name="old-bot", roles=["viewer"], owner="admin")
    twin_id = aws.table(TABLE).get_item(Key={"PK": f"APIKEY#{created.key_id}", "SK": "APIKEY"})["Item"][
        "gateway_key_id"
    ]
    services.api_keys().revoke(created.key_id, by="admin")
    assert gateway["client"].get_api_key(apiKey=twin_id)["enabled"] is False


def test_no_twin_is_left_behind_when_the_plan_is_missing_or_the_item_cannot_be_stored(
    gateway: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    apigw = gateway["client"]
    before = {k["id"] for k in apigw.get_api_keys()["items"]}

    monkeypatch.setenv("TDEV_USAGE_PLAN_NAME", "no-such-plan")
    container.reset()
    with pytest.raises(ConfigurationError, match="no API Gateway usage plan named no-such-plan"):
        services.api_keys().create(name="bot", roles=["viewer"], owner="admin")
    assert {k["id"] for k in apigw.get_api_keys()["items"]} == before

    monkeypatch.setenv("TDEV_USAGE_PLAN_NAME", PLAN)
    container.reset()
    keys = services.api_keys()
    monkeypatch.setattr(keys, "table_name", "no-such-table")
    with pytest.raises(Exception, match="ResourceNotFoundException"):
        keys.create(name="bot", roles=["viewer"], owner="admin")
    assert {k["id"] for k in apigw.get_api_keys()["items"]} == before
    assert _plan_key_ids(apigw, gateway["plan_id"]) == set()


def test_without_a_gateway_nothing_is_registered_and_no_usage_key_is_named(
    gateway: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TDEV_USAGE_PLAN_NAME")
    monkeypatch.delenv("TDEV_INTERACTIVE_API_KEY_ID")
    container.reset()
    assert services.usage_plans() is None
    created = services.api_keys().create(name="local", roles=["viewer"], owner="admin")
    item = aws.table(TABLE).get_item(Key={"PK": f"APIKEY#{created.key_id}", "SK": "APIKEY"})["Item"]
    assert "gateway_key_id" not in item and "usage_key" not in item
    answer = authorizer.policy(services.api_keys().verify(created.api_key), METHOD_ARN)
    assert "usageIdentifierKey" not in answer
    assert len(gateway["client"].get_api_keys()["items"]) == 1  # only the interactive key
