"""The alerting stack as synthesized: encrypted TLS-only topics, the channels' secret under the data key,
the intake fed by both rules (error analytics on the platform bus; this deployment's alarms on the default
bus), the escalation state machine from its ASL file invoking only its step function's alias, and each
function's role limited to what it calls."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from statemachines.alert_escalation import DEFINITION_FILE
from tdev.alerts.model import alarms_rule_pattern, errors_rule_pattern

if TYPE_CHECKING:
    from conftest import Synthesized

pytestmark = pytest.mark.slow


def resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def test_topics_are_encrypted_and_tls_only(dev: Synthesized) -> None:
    template = dev.template_json(dev.stacks.alerting)
    topics = resources(template, "AWS::SNS::Topic")
    assert len(topics) == 2 and all("KmsMasterKeyId" in t["Properties"] for t in topics.values())
    policies = resources(template, "AWS::SNS::TopicPolicy")
    denies = [
        s
        for p in policies.values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny"
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert len(denies) == 2
    (secret,) = resources(template, "AWS::SecretsManager::Secret").values()
    assert "KmsKeyId" in secret["Properties"]


def test_both_rules_feed_the_intake(dev: Synthesized) -> None:
    template = dev.template_json(dev.stacks.alerting)
    rules = {
        r["Properties"]["Description"].split(" ")[0]: r["Properties"]
        for r in resources(template, "AWS::Events::Rule").values()
    }
    errors = rules["Error"]
    assert errors["EventPattern"] == errors_rule_pattern() and "EventBusName" in errors
    alarms = rules["Every"]
    assert alarms["EventPattern"] == alarms_rule_pattern(
        dev.stacks.alerting.node.try_get_context("x") or "tdev-dev"
    )
    assert "EventBusName" not in alarms  # the default bus: where CloudWatch puts alarm state changes
    for rule in (errors, alarms):
        (target,) = rule["Targets"]
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 4
        assert "AlertIntake" in json.dumps(target["Arn"])


def test_the_escalation_runs_its_asl_and_invokes_only_its_step(dev: Synthesized) -> None:
    template = dev.template_json(dev.stacks.alerting)
    (machine,) = resources(template, "AWS::StepFunctions::StateMachine").values()
    # The ASL file itself (an asset), filled by DefinitionSubstitutions as the local runtime fills it.
    assert {"DefinitionS3Location", "DefinitionString"} & set(machine["Properties"])
    assert set(machine["Properties"]["DefinitionSubstitutions"]) == {
        "AlertEscalationFunctionArn",
        "RetryIntervalSeconds",
        "MaxNotifyRetries",
    }
    assert json.loads(
        DEFINITION_FILE.read_text()
        .replace("${RetryIntervalSeconds}", "1")
        .replace("${MaxNotifyRetries}", "1")
    )
    policies = resources(template, "AWS::IAM::Policy")
    machine_role = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    statements = [
        s
        for p in policies.values()
        if {"Ref": machine_role} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    invoke = [s for s in statements if s.get("Sid") == "InvokeEscalationSteps"]
    assert len(invoke) == 1 and invoke[0]["Action"] == "lambda:InvokeFunction"
    assert "AlertEscalation" in json.dumps(invoke[0]["Resource"])


def test_function_roles_allow_what_the_code_calls_and_no_more(dev: Synthesized) -> None:
    template = dev.template_json(dev.stacks.alerting)
    policies = resources(template, "AWS::IAM::Policy")
    by_role: dict[str, set[str]] = {}
    for policy in policies.values():
        for role in policy["Properties"]["Roles"]:
            actions = by_role.setdefault(role["Ref"], set())
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                given = statement["Action"]
                actions.update([given] if isinstance(given, str) else given)
    intake = next(v for k, v in by_role.items() if k.startswith("AlertIntake"))
    step = next(
        v
        for k, v in by_role.items()
        if k.startswith("AlertEscalation") and "Role" in k and "StateMachine" not in k
    )
    assert "states:StartExecution" in intake and "states:StartExecution" not in step
    for actions in (intake, step):
        assert {"secretsmanager:GetSecretValue", "sns:Publish"} <= actions
        assert not {a for a in actions if a.endswith(":*") or a == "*"}
        assert "dynamodb:Scan" not in actions and "dynamodb:DeleteItem" not in actions


def test_cdk_nag_finds_nothing_unacknowledged_in_the_alerting_stack(dev: Synthesized) -> None:
    stack = dev.stacks.alerting.stack_name
    for report in dev.validation_report["pluginReports"]:
        assert [v["ruleName"] for v in report["violations"] if stack in json.dumps(v)] == []
        for finding in report.get("suppressedViolations", []):
            if stack in json.dumps(finding):
                assert len(finding["reason"]) > 40, finding["ruleName"]
