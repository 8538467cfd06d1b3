"""The platform's own secrets in the stacks: the API signing secret (KMS-encrypted with the data key, a
30-day rotation schedule on the rotation function), least-privilege grants for the rotation function and
for the secret's reader (the API)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.secrets import ROTATE_EVERY_DAYS
from tests.infrastructure.conftest import Synthesized

pytestmark = pytest.mark.slow


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _statements_of(template: dict[str, Any], service: str) -> list[dict[str, Any]]:
    """The statements of the role of the function whose POWERTOOLS_SERVICE_NAME is `service`."""
    roles = [
        f["Properties"]["Role"]["Fn::GetAtt"][0]
        for f in _resources(template, "AWS::Lambda::Function").values()
        if f["Properties"].get("Environment", {}).get("Variables", {}).get("POWERTOOLS_SERVICE_NAME")
        == service
    ]
    assert len(roles) == 1, service
    found = []
    for policy in _resources(template, "AWS::IAM::Policy").values():
        if any(r.get("Ref") == roles[0] for r in policy["Properties"].get("Roles", [])):
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return sorted(action if isinstance(action, list) else [action])


def test_the_api_signing_secret_is_encrypted_with_the_data_key_and_generated(dev: Synthesized) -> None:
    data = dev.template_json(dev.stacks.data)
    secrets = {
        p["Properties"]["Name"]: p["Properties"]
        for p in _resources(data, "AWS::SecretsManager::Secret").values()
    }
    signing = secrets["tdev-dev/platform/api-signing"]
    (key_id,) = _resources(data, "AWS::KMS::Key").keys() & {signing["KmsKeyId"]["Fn::GetAtt"][0]}
    assert "FieldKey" not in key_id  # the data key, not the field key
    generated = signing["GenerateSecretString"]
    assert generated["PasswordLength"] == 64 and generated["ExcludePunctuation"] is True


def test_the_secret_rotates_every_30_days_on_the_rotation_function(dev: Synthesized) -> None:
    api = dev.template_json(dev.stacks.api)
    (schedule,) = _resources(api, "AWS::SecretsManager::RotationSchedule").values()
    rules = schedule["Properties"]["RotationRules"]
    assert rules["ScheduleExpression"] == f"rate({ROTATE_EVERY_DAYS} days)"
    functions = _resources(api, "AWS::Lambda::Function")
    (rotator,) = [
        k
        for k, f in functions.items()
        if f["Properties"]["Environment"]["Variables"].get("POWERTOOLS_SERVICE_NAME") == "rotate_secret"
    ]
    aliases = _resources(api, "AWS::Lambda::Alias")
    alias = schedule["Properties"]["RotationLambdaARN"]["Ref"]
    assert aliases[alias]["Properties"]["FunctionName"]["Ref"] == rotator
    # Secrets Manager (only) may invoke it, through its live alias
    permissions = [
        p["Properties"]
        for p in _resources(api, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Ref": alias}
    ]
    assert [p["Principal"] for p in permissions] == ["secretsmanager.amazonaws.com"]


def test_the_rotation_function_may_only_rotate_this_secret(dev: Synthesized) -> None:
    api = dev.template_json(dev.stacks.api)
    statements = _statements_of(api, "rotate_secret")
    on_secrets = [s for s in statements if any(a.startswith("secretsmanager:") for a in _actions(s))]
    actions = sorted({a for s in on_secrets for a in _actions(s)})
    assert actions == [
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
    ]
    for statement in on_secrets:
        assert "*" not in json.dumps(statement["Resource"]).replace("Fn::", "")
    on_keys = [s for s in statements if any(a.startswith("kms:") for a in _actions(s))]
    assert on_keys and all("secretsmanager" in json.dumps(s.get("Condition", {})) for s in on_keys)
    everything = [a for s in statements for a in _actions(s)]
    assert not any(a.endswith(":*") or a == "*" for a in everything)


def test_the_api_reads_the_secret_and_nothing_else_in_secrets_manager(dev: Synthesized) -> None:
    api = dev.template_json(dev.stacks.api)
    (function,) = [
        f["Properties"]
        for f in _resources(api, "AWS::Lambda::Function").values()
        if f["Properties"]["Environment"]["Variables"].get("POWERTOOLS_SERVICE_NAME") == "api"
    ]
    assert "TDEV_API_SIGNING_SECRET" in function["Environment"]["Variables"]
    statements = {s.get("Sid"): s for s in _statements_of(api, "api")}
    read = statements["ReadPlatformSecret"]
    assert _actions(read) == ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]
    decrypt = statements["DecryptPlatformSecret"]
    assert _actions(decrypt) == ["kms:Decrypt"] and "kms:ViaService" in decrypt["Condition"]["StringEquals"]
    writes = [
        a
        for s in statements.values()
        for a in _actions(s)
        if a.startswith("secretsmanager:")
        and a not in ("secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret")
    ]
    assert writes == []
