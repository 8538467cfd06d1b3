"""The security layer's infrastructure: the authorizer on every route but the public ones (health, the API's
description), JSON gateway answers, the Cognito user pool (or an OIDC issuer), WAF, keys with rotation, and
no wildcard actions on data."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from stacks.security_stack import SecurityStack
from stacks.settings import settings_for
from tdev.security.headers import SECURITY_HEADERS

pytestmark = pytest.mark.slow


def resources(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        s
        for policy in resources(template, "AWS::IAM::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_every_route_but_the_public_ones_goes_through_the_lambda_authorizer(dev: Any) -> None:
    template = dev.template_json(dev.stacks.api)
    (authorizer_id, authorizer), *others = resources(template, "AWS::ApiGateway::Authorizer").items()
    assert others == []
    assert authorizer["Properties"]["Type"] == "REQUEST"
    assert authorizer["Properties"]["AuthorizerResultTtlInSeconds"] == 0  # revocation takes effect at once
    paths = {
        k: v["Properties"]["PathPart"] for k, v in resources(template, "AWS::ApiGateway::Resource").items()
    }
    methods = resources(template, "AWS::ApiGateway::Method").values()
    public, guarded = [], []
    for method in methods:
        props = method["Properties"]
        leaf = paths.get(props["ResourceId"].get("Ref", ""), "")
        if props["AuthorizationType"] == "NONE":
            public.append((props["HttpMethod"], leaf))
        else:
            assert props["AuthorizationType"] == "CUSTOM"
            assert props["AuthorizerId"] == {"Ref": authorizer_id}
            guarded.append(props["HttpMethod"])
    assert sorted(public) == [("GET", "docs"), ("GET", "health"), ("GET", "openapi.json")]
    assert len(guarded) == len(methods) - 3 >= 10


def test_usage_plans_meter_the_key_the_authorizer_names(dev: Any) -> None:
    template = dev.template_json(dev.stacks.api)
    (api,) = resources(template, "AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["ApiKeySourceType"] == "AUTHORIZER"  # never a client-sent header
    for method in resources(template, "AWS::ApiGateway::Method").values():
        props = method["Properties"]
        assert props.get("ApiKeyRequired", False) is (props["AuthorizationType"] == "CUSTOM")
    plans = {
        p["Properties"]["UsagePlanName"]: p
        for p in resources(template, "AWS::ApiGateway::UsagePlan").values()
    }
    machine, interactive = plans["t-developer-dev-machine-clients"], plans["t-developer-dev-interactive"]
    assert machine["Properties"]["Throttle"] == {"RateLimit": 1, "BurstLimit": 10}  # 60 per minute per key
    assert machine["Properties"]["Quota"] == {"Limit": 10_000, "Period": "DAY"}
    for plan in (machine, interactive):
        (stage,) = plan["Properties"]["ApiStages"]
        assert stage["Stage"] == {"Ref": next(iter(resources(template, "AWS::ApiGateway::Stage")))}
    ((key_id, _),) = resources(template, "AWS::ApiGateway::ApiKey").items()
    (plan_key,) = resources(template, "AWS::ApiGateway::UsagePlanKey").values()
    assert plan_key["Properties"]["KeyId"] == {"Ref": key_id}

    def function_named(name: str) -> dict[str, Any]:
        return next(
            f
            for f in resources(template, "AWS::Lambda::Function").values()
            if f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == name
        )

    authorizer_env = function_named("authorizer")["Properties"]["Environment"]["Variables"]
    assert authorizer_env["TDEV_INTERACTIVE_API_KEY_ID"] == {"Ref": key_id}
    api_env = function_named("api")["Properties"]["Environment"]["Variables"]
    assert api_env["TDEV_USAGE_PLAN_NAME"] == "t-developer-dev-machine-clients"
    by_sid = {s.get("Sid"): s for s in statements(template)}
    assert by_sid["ReadInteractiveKey"]["Action"] == "apigateway:GET"
    assert json.dumps({"Ref": key_id}) in json.dumps(by_sid["ReadInteractiveKey"]["Resource"])
    # the API function creates only keys tagged with its environment and changes only those
    assert by_sid["CreateTaggedApiKeys"]["Condition"] == {
        "StringEquals": {"aws:RequestTag/t-developer-env": "dev"}
    }
    assert by_sid["ChangeOwnApiKeys"]["Condition"] == {
        "StringEquals": {"aws:ResourceTag/t-developer-env": "dev"}
    }


def test_the_authorizer_validates_the_user_pools_tokens_and_only_reads(dev: Any) -> None:
    template = dev.template_json(dev.stacks.api)
    function = next(
        f
        for f in resources(template, "AWS::Lambda::Function").values()
        if f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "authorizer"
    )
    variables = function["Properties"]["Environment"]["Variables"]
    assert "cognito-idp" in json.dumps(variables["TDEV_JWT_ISSUER"])
    assert variables["TDEV_JWT_ROLES_CLAIM"] == "cognito:groups"
    assert {"TABLE_NAME", "KMS_KEY_ID", "TDEV_JWT_AUDIENCE"} <= set(variables)
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    policies = [
        p
        for p in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
    ]
    actions = {
        a
        for p in policies
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        for a in as_list(s["Action"])
    }
    data_actions = {a for a in actions if a.startswith(("dynamodb:", "kms:"))}
    assert data_actions == {"dynamodb:GetItem", "kms:Decrypt", "kms:DescribeKey"}


def test_the_api_function_can_encrypt_fields_under_the_cmk(dev: Any) -> None:
    template = dev.template_json(dev.stacks.api)
    api = next(
        f
        for f in resources(template, "AWS::Lambda::Function").values()
        if f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "api"
    )
    assert "KMS_KEY_ID" in api["Properties"]["Environment"]["Variables"]
    key_actions = {
        a for s in statements(template) if s.get("Sid") == "UseTableKey" for a in as_list(s["Action"])
    }
    assert {"kms:GenerateDataKey", "kms:Decrypt"} <= key_actions


def test_refusals_by_api_gateway_are_json_with_the_security_headers(dev: Any) -> None:
    template = Template.from_json(dev.template_json(dev.stacks.api))
    for kind, status in (("UNAUTHORIZED", "401"), ("ACCESS_DENIED", "403")):
        template.has_resource_properties(
            "AWS::ApiGateway::GatewayResponse",
            {
                "ResponseType": kind,
                "StatusCode": status,
                "ResponseTemplates": {"application/json": Match.string_like_regexp('"error"')},
                "ResponseParameters": Match.object_like(
                    {f"gatewayresponse.header.{k}": f"'{v}'" for k, v in SECURITY_HEADERS.items()}
                ),
            },
        )


def test_the_user_pool_has_role_groups_a_strong_password_policy_and_short_tokens(dev: Any, prod: Any) -> None:
    template = Template.from_json(dev.template_json(dev.stacks.security))
    template.has_resource_properties(
        "AWS::Cognito::UserPool",
        {
            "Policies": {"PasswordPolicy": Match.object_like({"MinimumLength": 12, "RequireSymbols": True})},
            "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": True},
            "MfaConfiguration": "OPTIONAL",
        },
    )
    groups = {
        g["Properties"]["GroupName"]
        for g in resources(dev.template_json(dev.stacks.security), "AWS::Cognito::UserPoolGroup").values()
    }
    assert groups == {"admin", "developer", "viewer", "operator"}
    template.has_resource_properties(
        "AWS::Cognito::UserPoolClient",
        {"GenerateSecret": False, "AccessTokenValidity": 60, "EnableTokenRevocation": True},
    )
    Template.from_json(prod.template_json(prod.stacks.security)).has_resource_properties(
        "AWS::Cognito::UserPool", {"MfaConfiguration": "ON"}
    )


def test_any_oidc_issuer_can_replace_cognito() -> None:
    settings = replace(
        settings_for("dev"), oidc_issuer="https://login.example.com/realms/tdev", oidc_audience="tdev-api"
    )
    stack = SecurityStack(cdk.App(), "oidc", settings=settings)
    Template.from_stack(stack).resource_count_is("AWS::Cognito::UserPool", 0)
    assert (stack.token_issuer, stack.token_audience, stack.roles_claim) == (
        "https://login.example.com/realms/tdev",
        "tdev-api",
        "roles",
    )


def test_waf_has_a_rate_based_rule_and_is_associated_with_the_stage(prod: Any) -> None:
    template = prod.template_json(prod.stacks.api)
    ((acl_id, acl),) = resources(template, "AWS::WAFv2::WebACL").items()
    rate_rules = [r for r in acl["Properties"]["Rules"] if "RateBasedStatement" in r["Statement"]]
    assert rate_rules and rate_rules[0]["Action"] == {"Block": {}}
    (association,) = resources(template, "AWS::WAFv2::WebACLAssociation").values()
    assert association["Properties"]["WebACLArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    assert "stages" in json.dumps(association["Properties"]["ResourceArn"])


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_every_kms_key_rotates_and_the_table_uses_one(
    environment: str, request: pytest.FixtureRequest
) -> None:
    synth = request.getfixturevalue(environment)
    keys = [
        k
        for stack in synth.stacks.all
        for k in resources(synth.template_json(stack), "AWS::KMS::Key").values()
    ]
    assert keys and all(k["Properties"]["EnableKeyRotation"] is True for k in keys)
    (table,) = resources(synth.template_json(synth.stacks.data), "AWS::DynamoDB::Table").values()
    assert table["Properties"]["SSESpecification"]["SSEEnabled"] is True
    assert "KMSMasterKeyId" in table["Properties"]["SSESpecification"]


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_no_iam_statement_has_wildcard_actions_on_data_services(
    environment: str, request: pytest.FixtureRequest
) -> None:
    synth = request.getfixturevalue(environment)
    data_services = ("dynamodb:", "kms:", "sqs:", "events:", "s3:", "states:", "cognito-idp:")
    for stack in synth.stacks.all:
        for statement in statements(synth.template_json(stack)):
            for action in as_list(statement["Action"]):
                assert action != "*", (stack.stack_name, statement)
                if action.startswith(data_services):
                    assert not action.endswith(":*"), (stack.stack_name, statement)
