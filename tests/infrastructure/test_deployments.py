"""Canary with rollback, as synthesized: every function behind a `live` alias that CodeDeploy shifts (linear
10 % every 5 minutes in prod, all at once in dev) and rolls back on the function's alarms, and every caller
invoking that alias; every function carries the release version (tag and TDEV_VERSION)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from stacks.constructs.deployment import ALARM_EVALUATION_PERIODS, DURATION_SHARE_OF_TIMEOUT, LIVE_ALIAS
from stacks.settings import ENVIRONMENTS
from tdev.version import __version__

if TYPE_CHECKING:
    from conftest import Synthesized

pytestmark = pytest.mark.slow

# The one function each caller kind reaches in the dev templates (by POWERTOOLS_SERVICE_NAME).
SQS_CONSUMERS = {"notifications_consumer", "task_activity_consumer", "progress_consumer"}


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def our_functions(template: dict[str, Any]) -> dict[str, str]:
    """Function name -> logical id, for the functions built by TdevFunction (CDK's own helpers excluded)."""
    return {
        props["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]: logical_id
        for logical_id, f in resources(template, "AWS::Lambda::Function").items()
        if "POWERTOOLS_SERVICE_NAME" in (props := f["Properties"]).get("Environment", {}).get("Variables", {})
    }


def aliases(template: dict[str, Any]) -> dict[str, str]:
    """Function name -> the logical id of its `live` alias."""
    by_function = {
        a["Properties"]["FunctionName"]["Ref"]: logical_id
        for logical_id, a in resources(template, "AWS::Lambda::Alias").items()
    }
    return {name: by_function[function_id] for name, function_id in our_functions(template).items()}


def templates(synth: Synthesized) -> list[dict[str, Any]]:
    return [synth.template_json(stack) for stack in synth.stacks.all]


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_every_function_has_its_live_alias_deployment_group_and_rollback_alarms(
    environment: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(environment)
    checked = 0
    for template in templates(synth):
        for name, function_id in our_functions(template).items():
            function = template["Resources"][function_id]
            # The release is on the function: tag and environment.
            assert {"Key": "Version", "Value": __version__} in function["Properties"]["Tags"], name
            assert function["Properties"]["Environment"]["Variables"]["TDEV_VERSION"] == __version__, name

            # `live` points at the function's published version ...
            alias = template["Resources"][aliases(template)[name]]
            assert alias["Properties"]["Name"] == LIVE_ALIAS, name
            version_id = alias["Properties"]["FunctionVersion"]["Fn::GetAtt"][0]
            version = template["Resources"][version_id]
            assert version["Type"] == "AWS::Lambda::Version"
            assert version["Properties"]["FunctionName"] == {"Ref": function_id}, name

            # ... and moves only through its CodeDeploy deployment group,
            update = alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
            group = template["Resources"][update["DeploymentGroupName"]["Ref"]]
            props = group["Properties"]
            assert props["DeploymentStyle"] == {
                "DeploymentOption": "WITH_TRAFFIC_CONTROL",
                "DeploymentType": "BLUE_GREEN",
            }, name
            assert set(props["AutoRollbackConfiguration"]["Events"]) >= {
                "DEPLOYMENT_FAILURE",
                "DEPLOYMENT_STOP_ON_ALARM",
            }, name
            assert props["AutoRollbackConfiguration"]["Enabled"] is True

            # which rolls back on the function's errors, p99 duration and throttles, measured on the alias.
            alarms = [
                template["Resources"][a["Name"]["Ref"]]["Properties"]
                for a in props["AlarmConfiguration"]["Alarms"]
            ]
            assert props["AlarmConfiguration"]["Enabled"] is True
            assert len(alarms) == 3, name
            _assert_rollback_alarms(alarms, function, function_id=function_id, name=name)
            checked += 1
    assert checked >= 16  # workflow (9) + sandbox + reconciler + api + authorizer + sweeper + messaging (3)


def _assert_rollback_alarms(
    alarms: list[dict[str, Any]], function: dict[str, Any], *, function_id: str, name: str
) -> None:
    # Lambda publishes an alias's metrics with Resource = "<function name>:<alias>".
    on_the_alias = [
        {"Name": "FunctionName", "Value": {"Ref": function_id}},
        {"Name": "Resource", "Value": {"Fn::Join": ["", [{"Ref": function_id}, f":{LIVE_ALIAS}"]]}},
    ]
    by_metric: dict[str, dict[str, Any]] = {}
    for alarm in alarms:
        assert alarm["EvaluationPeriods"] == ALARM_EVALUATION_PERIODS, name
        assert alarm["TreatMissingData"] == "notBreaching", name
        if "Metrics" in alarm:  # the error rate: errors / invocations of the alias, in percent
            stats = [m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m]
            assert sorted(s["Metric"]["MetricName"] for s in stats) == ["Errors", "Invocations"], name
            assert all(s["Metric"]["Dimensions"] == on_the_alias for s in stats), name
            assert "100 * errors / invocations" in alarm["Metrics"][0]["Expression"]
            by_metric["Errors"] = alarm
        else:
            assert alarm["Dimensions"] == on_the_alias, name
            by_metric[alarm["MetricName"]] = alarm
    assert set(by_metric) == {"Errors", "Duration", "Throttles"}, name
    assert by_metric["Errors"]["Threshold"] == 5
    assert by_metric["Duration"]["ExtendedStatistic"] == "p99"
    timeout_ms = function["Properties"]["Timeout"] * 1000
    assert by_metric["Duration"]["Threshold"] == timeout_ms * DURATION_SHARE_OF_TIMEOUT, name
    assert by_metric["Throttles"]["Threshold"] == 0


def test_prod_shifts_ten_percent_every_five_minutes_and_dev_all_at_once(
    dev: Synthesized, prod: Synthesized
) -> None:
    shift = ENVIRONMENTS["prod"]
    assert (shift.traffic_shift_percent, shift.traffic_shift_minutes) == (10, 5)
    assert ENVIRONMENTS["staging"].traffic_shift_percent == 10
    for template in templates(prod):
        configs = resources(template, "AWS::CodeDeploy::DeploymentConfig")
        groups = resources(template, "AWS::CodeDeploy::DeploymentGroup")
        if not groups:
            continue
        ((config_id, config),) = configs.items()  # one per stack, shared by its functions
        assert config["Properties"] == {
            "ComputePlatform": "Lambda",
            "TrafficRoutingConfig": {
                "Type": "TimeBasedLinear",
                "TimeBasedLinear": {"LinearInterval": 5, "LinearPercentage": 10},
            },
        }
        assert all(g["Properties"]["DeploymentConfigName"] == {"Ref": config_id} for g in groups.values())
    for template in templates(dev):
        assert not resources(template, "AWS::CodeDeploy::DeploymentConfig")
        for group in resources(template, "AWS::CodeDeploy::DeploymentGroup").values():
            assert group["Properties"]["DeploymentConfigName"] == "CodeDeployDefault.LambdaAllAtOnce"


def _alias_ref(synth: Synthesized, stack: Any, name: str) -> dict[str, str]:
    return {"Ref": aliases(synth.template_json(stack))[name]}


def test_every_caller_invokes_the_live_alias(dev: Synthesized) -> None:
    stacks = dev.stacks
    # The state machine's tasks (and its role may invoke those aliases only): test_stacks.py checks both.
    # API Gateway: every method's integration and the authorizer.
    api = dev.template_json(stacks.api)
    api_alias = json.dumps(_alias_ref(dev, stacks.api, "api"))
    methods = resources(api, "AWS::ApiGateway::Method").values()
    integrations = [m["Properties"]["Integration"] for m in methods if m["Properties"].get("Integration")]
    assert integrations and all(api_alias in json.dumps(i["Uri"]) for i in integrations)
    (authorizer,) = resources(api, "AWS::ApiGateway::Authorizer").values()
    assert json.dumps(_alias_ref(dev, stacks.api, "authorizer")) in json.dumps(authorizer["Properties"])
    permitted = {
        json.dumps(p["Properties"]["FunctionName"])
        for p in resources(api, "AWS::Lambda::Permission").values()
    }
    # ... and Secrets Manager, which invokes the rotation function of the API's signing secret.
    assert permitted == {
        api_alias,
        json.dumps(_alias_ref(dev, stacks.api, "authorizer")),
        json.dumps(_alias_ref(dev, stacks.api, "rotate_secret")),
    }

    # Event source mappings: the outbox stream and the SQS consumers, each on "<function name>:live" (CDK
    # spells it as the name part of the alias's ARN, qualified).
    messaging = dev.template_json(stacks.messaging)
    mapped = {
        json.dumps(m["Properties"]["FunctionName"])
        for m in resources(messaging, "AWS::Lambda::EventSourceMapping").values()
    }
    expected = {"outbox_publisher", *SQS_CONSUMERS}
    qualified = {
        "Fn::Join": [
            "",
            [{"Fn::Select": [6, {"Fn::Split": [":", {"Ref": "ALIAS"}]}]}, f":{LIVE_ALIAS}"],
        ]
    }
    assert mapped == {
        json.dumps(qualified).replace('"ALIAS"', json.dumps(aliases(messaging)[name])) for name in expected
    }

    # The test sandbox, invoked by the functions that run a project's tests: by its alias's ARN.
    orchestration = dev.template_json(stacks.orchestration)
    sandbox_alias = _alias_ref(dev, stacks.orchestration, "sandbox")
    callers = {"run_agent", "run_project_tests", "fix_failing_tests"}
    for name in callers:
        function = orchestration["Resources"][our_functions(orchestration)[name]]
        assert function["Properties"]["Environment"]["Variables"]["SANDBOX_FUNCTION_NAME"] == sandbox_alias
    sandbox_invokes = [
        s
        for policy in resources(orchestration, "AWS::IAM::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Sid") == "RunTestsInTheSandbox"
    ]
    assert len(sandbox_invokes) == len(callers)
    assert all(s["Resource"] == sandbox_alias for s in sandbox_invokes)

    # Schedules: the reconciler and the session sweeper.
    for stack, name in ((stacks.orchestration, "reconcile_executions"), (stacks.sessions, "session_sweeper")):
        template = dev.template_json(stack)
        targets = [
            target["Arn"]
            for rule in resources(template, "AWS::Events::Rule").values()
            for target in rule["Properties"].get("Targets", [])
            if "ScheduleExpression" in rule["Properties"]
        ]
        assert targets == [_alias_ref(dev, stack, name)], name
        invokers = {
            json.dumps(p["Properties"]["FunctionName"])
            for p in resources(template, "AWS::Lambda::Permission").values()
            if p["Properties"]["Principal"] == "events.amazonaws.com"
        }
        assert invokers == {json.dumps(_alias_ref(dev, stack, name))}, name
