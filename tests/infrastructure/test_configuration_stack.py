"""Configuration in the stacks (tdev.config): the feature flags' AppConfig store (application, environment,
validated hosted profile with the product flags' defaults deployed, deployment strategy) with least-privilege
grants on it, and access to `/t-developer/<env>/...` in Parameter Store: readers read the path only, the API
alone writes under it, no one else may."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.permissions import FLAG_ACTIONS, PARAMETER_ACTIONS
from tdev.config import flag_store
from tdev.config.flags import PRODUCT_FLAGS, FlagSpec
from tests.infrastructure.conftest import Synthesized

pytestmark = pytest.mark.slow


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _joined(value: Any) -> str:
    if isinstance(value, dict) and "Fn::Join" in value:
        return "".join(_joined(p) for p in value["Fn::Join"][1])
    if isinstance(value, dict) and "Ref" in value:
        return "{" + value["Ref"] + "}"
    return str(value)


def test_the_flags_live_in_one_validated_appconfig_profile_with_the_defaults_deployed(
    dev: Synthesized,
) -> None:
    template = dev.template_json(dev.stacks.data)
    assert _resources(template, "AWS::SSM::Parameter") == {}  # no flag left in Parameter Store
    (application,) = _resources(template, "AWS::AppConfig::Application").values()
    assert application["Properties"]["Name"] == flag_store.application_name("tdev-dev")
    (environment,) = _resources(template, "AWS::AppConfig::Environment").values()
    assert environment["Properties"]["Name"] == "dev"
    (profile,) = _resources(template, "AWS::AppConfig::ConfigurationProfile").values()
    properties = profile["Properties"]
    assert (properties["Name"], properties["LocationUri"], properties["Type"]) == (
        flag_store.PROFILE_NAME,
        "hosted",
        "AWS.Freeform",
    )
    (validator,) = properties["Validators"]
    assert validator["Type"] == "JSON_SCHEMA"
    assert json.loads(validator["Content"]) == flag_store.validator_schema()
    (version,) = _resources(template, "AWS::AppConfig::HostedConfigurationVersion").values()
    assert version["Properties"]["ContentType"] == "application/json"
    document = json.loads(version["Properties"]["Content"])
    assert {name: FlagSpec.model_validate(spec) for name, spec in document.items()} == PRODUCT_FLAGS
    (strategy,) = _resources(template, "AWS::AppConfig::DeploymentStrategy").values()
    expected = flag_store.DEPLOYMENT_STRATEGY
    for key in ("DeploymentDurationInMinutes", "FinalBakeTimeInMinutes", "GrowthFactor", "GrowthType"):
        assert strategy["Properties"][key] == expected[key], key
    (deployment,) = _resources(template, "AWS::AppConfig::Deployment").values()
    refs = {k: v.get("Ref") for k, v in deployment["Properties"].items() if isinstance(v, dict)}
    ids = {
        kind: next(iter(_resources(template, kind)))
        for kind in (
            "AWS::AppConfig::Application",
            "AWS::AppConfig::Environment",
            "AWS::AppConfig::ConfigurationProfile",
            "AWS::AppConfig::DeploymentStrategy",
        )
    }
    assert refs["ApplicationId"] == ids["AWS::AppConfig::Application"]
    assert refs["EnvironmentId"] == ids["AWS::AppConfig::Environment"]
    assert refs["ConfigurationProfileId"] == ids["AWS::AppConfig::ConfigurationProfile"]
    assert refs["DeploymentStrategyId"] == ids["AWS::AppConfig::DeploymentStrategy"]


def test_the_default_flags_document_passes_the_profiles_validator() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft4Validator(flag_store.validator_schema())
    validator.validate(json.loads(flag_store.initial_document()))
    bad = {"verify_loop": {"enabled": "yes", "rollout_percent": 150}, "Bad-Name": {}}
    assert len(list(validator.iter_errors(bad))) >= 3


def _statements(synth: Synthesized, service: str) -> dict[str, list[dict[str, Any]]]:
    """function (POWERTOOLS_SERVICE_NAME) -> its role's statements that name a `service` action."""
    found: dict[str, list[dict[str, Any]]] = {}
    for stack in synth.stacks.all:
        template = synth.template_json(stack)
        roles = {}
        for function in _resources(template, "AWS::Lambda::Function").values():
            variables = function["Properties"].get("Environment", {}).get("Variables", {})
            name = variables.get("POWERTOOLS_SERVICE_NAME")
            if isinstance(name, str):
                roles[function["Properties"]["Role"]["Fn::GetAtt"][0]] = name
        for policy in _resources(template, "AWS::IAM::Policy").values():
            for role in policy["Properties"].get("Roles", []):
                name = roles.get(role.get("Ref", ""))
                for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                    actions = (
                        statement["Action"]
                        if isinstance(statement["Action"], list)
                        else [statement["Action"]]
                    )
                    if name and any(a.startswith(f"{service}:") for a in actions):
                        found.setdefault(name, []).append({**statement, "Action": actions})
    return found


def test_flag_readers_read_only_the_flags_configuration_and_only_the_api_deploys_it(
    dev: Synthesized,
) -> None:
    statements = _statements(dev, "appconfig")
    assert set(statements) == set(FLAG_ACTIONS)
    for function, found in statements.items():
        by_sid = {s["Sid"]: s for s in found}
        read = by_sid.pop("ReadFlags")
        assert sorted(read["Action"]) == [
            "appconfig:GetLatestConfiguration",
            "appconfig:StartConfigurationSession",
        ]
        (resource,) = read["Resource"] if isinstance(read["Resource"], list) else [read["Resource"]]
        arn = _joined(resource)
        assert arn.startswith("arn:{AWS::Partition}:appconfig:{AWS::Region}:{AWS::AccountId}:application/")
        assert "/environment/" in arn and "/configuration/" in arn and "*" not in arn, arn
        if function != "api":
            assert by_sid == {}, function
            continue
        create = by_sid.pop("CreateHostedConfigurationVersion")
        assert create["Action"] == ["appconfig:CreateHostedConfigurationVersion"]
        (profile,) = create["Resource"] if isinstance(create["Resource"], list) else [create["Resource"]]
        assert "/configurationprofile/" in _joined(profile) and "*" not in _joined(profile)
        deploy = by_sid.pop("StartDeployment")
        arns = sorted(_joined(r) for r in deploy["Resource"])
        assert len(arns) == 3 and not any("*" in a for a in arns)
        assert ["/configurationprofile/" in a for a in arns].count(True) == 1
        assert [":deploymentstrategy/" in a for a in arns].count(True) == 1
        assert by_sid == {}
    actions = [a for found in statements.values() for s in found for a in s["Action"]]
    assert not any(a in ("*", "appconfig:*") for a in actions)


def test_flag_readers_get_the_stores_ids_and_only_the_api_the_strategy(dev: Synthesized) -> None:
    for stack in dev.stacks.all:
        for function in _resources(dev.template_json(stack), "AWS::Lambda::Function").values():
            variables = function["Properties"].get("Environment", {}).get("Variables", {})
            name = variables.get("POWERTOOLS_SERVICE_NAME")
            present = {v for v in variables if v.startswith("TDEV_FLAGS_")}
            if name in FLAG_ACTIONS:
                expected = {"TDEV_FLAGS_APPLICATION_ID", "TDEV_FLAGS_ENVIRONMENT_ID", "TDEV_FLAGS_PROFILE_ID"}
                if name == "api":
                    expected.add("TDEV_FLAGS_DEPLOYMENT_STRATEGY_ID")
                assert present == expected, name
            else:
                assert present == set(), name


def _ssm_statements(synth: Synthesized) -> dict[str, list[dict[str, Any]]]:
    return _statements(synth, "ssm")


def test_readers_read_the_environments_path_and_only_the_api_writes_under_it(dev: Synthesized) -> None:
    statements = _ssm_statements(dev)
    assert set(statements) == set(PARAMETER_ACTIONS)
    root = "arn:{AWS::Partition}:ssm:{AWS::Region}:{AWS::AccountId}:parameter/t-developer/dev"
    for function, found in statements.items():
        read = [s for s in found if s["Sid"] == "ReadConfiguration"]
        assert len(read) == 1 and read[0]["Action"] == ["ssm:GetParametersByPath"], function
        assert _joined(read[0]["Resource"]) == root
        written = [s for s in found if s["Sid"] == "ChangeConfiguration"]
        if function == "api":
            (write,) = written
            assert sorted(write["Action"]) == ["ssm:DeleteParameters", "ssm:PutParameter"]
            assert _joined(write["Resource"]) == root + "/*"
        else:
            assert written == [], function
    actions = [a for found in statements.values() for s in found for a in s["Action"]]
    assert not any(a in ("*", "ssm:*") for a in actions)


def test_the_api_write_grant_is_acknowledged_with_a_reason(dev: Synthesized) -> None:
    report = json.dumps(dev.validation_report)
    assert "parameter/t-developer/dev/*" in report and "Admins add configuration keys" in report
    assert (
        "appconfig"
        not in json.dumps(
            [f for f in dev.validation_report.get("findings", []) if not f.get("acknowledged")]
        ).lower()
    )
