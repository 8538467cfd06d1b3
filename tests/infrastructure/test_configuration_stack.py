"""Parameter Store in the stacks (tdev.config): the product flags' documents, and least-privilege access to
`/t-developer/<env>/...`: readers read the path only, the API alone writes under it, no one else may."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.permissions import PARAMETER_ACTIONS
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


def test_every_product_flag_has_its_parameter_with_its_default_document(dev: Synthesized) -> None:
    parameters = _resources(dev.template_json(dev.stacks.data), "AWS::SSM::Parameter")
    by_name = {p["Properties"]["Name"]: p["Properties"] for p in parameters.values()}
    assert set(by_name) == {f"/t-developer/dev/flags/{flag}" for flag in PRODUCT_FLAGS}
    for flag, spec in PRODUCT_FLAGS.items():
        stored = by_name[f"/t-developer/dev/flags/{flag}"]
        assert FlagSpec.model_validate_json(stored["Value"]) == spec
        assert (stored["Type"], stored["Tier"]) == ("String", "Standard")


def _ssm_statements(synth: Synthesized) -> dict[str, list[dict[str, Any]]]:
    """function (POWERTOOLS_SERVICE_NAME) -> its role's statements that name an ssm action."""
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
                    if name and any(a.startswith("ssm:") for a in actions):
                        found.setdefault(name, []).append({**statement, "Action": actions})
    return found


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
