"""The delivery pipeline, synthesized as `python app.py -c pipeline=true ...` builds it: source from the
connection in context, `make test` and `make synth`, self-mutation, dev → staging → approval → prod, each
stage the environment's real stacks (cdk-nag clean), and alarms on the pipeline's duration and failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import app as tdev_app
from stacks.pipeline_stack import DURATION_ALARM, STAGES

pytestmark = pytest.mark.slow

CONTEXT = {
    "pipeline": "true",
    # An example connection: no real account id is in the repository.
    "connectionArn": "arn:aws:codeconnections:eu-west-1:111111111111:connection/0000-example",
    "repository": "example-org/t-developer",
    "branch": "release",
}
# data, cache, orchestration, security, api, sessions, messaging, operations, alerting, realtime
STACKS_PER_ENVIRONMENT = 10


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, dependencies_layer: Path) -> dict[str, Any]:
    outdir = tmp_path_factory.mktemp("cdk-pipeline")
    app, stack = tdev_app.build_pipeline_app(
        dependencies_layer_path=dependencies_layer, outdir=str(outdir), context=CONTEXT
    )
    assembly = app.synth()  # raises with the report if cdk-nag finds unacknowledged errors
    template = assembly.get_stack_by_name(stack.stack_name).template
    stages = {
        name: [
            json.loads(path.read_text())
            for path in (outdir / f"assembly-{stack.stack_name}-{name.title()}").glob("*.template.json")
        ]
        for name in STAGES
    }
    report = json.loads((outdir / "validation-report.json").read_text())
    return {"template": template, "stages": stages, "report": report}


def _resources(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in template["Resources"].values() if r["Type"] == kind]


def _pipeline(template: dict[str, Any]) -> dict[str, Any]:
    (found,) = _resources(template, "AWS::CodePipeline::Pipeline")
    return found["Properties"]


def test_the_pipeline_needs_a_connection_and_a_repository_from_context(dependencies_layer: Path) -> None:
    for missing in ("connectionArn", "repository"):
        context = {key: value for key, value in CONTEXT.items() if key != missing}
        with pytest.raises(ValueError, match=missing):
            tdev_app.build_pipeline_app(dependencies_layer_path=dependencies_layer, context=context)


def test_source_build_self_mutation_then_dev_staging_and_prod_after_an_approval(
    pipeline: dict[str, Any],
) -> None:
    props = _pipeline(pipeline["template"])
    assert props["PipelineType"] == "V2"
    stages = {stage["Name"]: stage["Actions"] for stage in props["Stages"]}
    assert list(stages) == ["Source", "Build", "UpdatePipeline", "Assets", "Dev", "Staging", "Prod"]

    # The source: the connection, repository and branch given in context
    (source,) = stages["Source"]
    assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert source["Configuration"] == {
        "ConnectionArn": CONTEXT["connectionArn"],
        "FullRepositoryId": CONTEXT["repository"],
        "BranchName": CONTEXT["branch"],
    }

    # The build runs every test, then the synth of this same pipeline (cdk-nag, cfn-lint)
    (build,) = stages["Build"]
    project = next(
        p
        for p in _resources(pipeline["template"], "AWS::CodeBuild::Project")
        if {"Ref": _logical_id(pipeline["template"], p)} == build["Configuration"]["ProjectName"]
    )
    commands = json.loads(project["Properties"]["Source"]["BuildSpec"])["phases"]["build"]["commands"]
    assert commands[0] == "make test"
    assert commands[1].startswith("make synth ") and "-c pipeline=true" in commands[1]
    assert (
        f"-c repository={CONTEXT['repository']}" in commands[1]
        and f"-c branch={CONTEXT['branch']}" in commands[1]
    )
    assert any("cfn-lint" in command for command in commands[1:])

    # Self-mutating: the pipeline updates itself from the synthesized assembly before any stage
    assert [a["Name"] for a in stages["UpdatePipeline"]] == ["SelfMutate"]

    # Each stage deploys its environment's stacks; a person approves before prod, and only there
    for name in ("Dev", "Staging", "Prod"):
        deploys = [a for a in stages[name] if a["ActionTypeId"]["Provider"] == "CloudFormation"]
        executed = [a for a in deploys if a["Configuration"]["ActionMode"] == "CHANGE_SET_EXECUTE"]
        assert len(executed) == STACKS_PER_ENVIRONMENT, name
        assert all(f"tdev-{name.lower()}-" in a["Name"] for a in executed), name
        approvals = [a for a in stages[name] if a["ActionTypeId"]["Category"] == "Approval"]
        if name != "Prod":
            assert approvals == [], name
            continue
        (approval,) = approvals
        assert approval["RunOrder"] < min(a["RunOrder"] for a in deploys)


def _logical_id(template: dict[str, Any], resource: dict[str, Any]) -> str:
    return next(k for k, v in template["Resources"].items() if v is resource)


def test_alarms_on_the_pipelines_failures_and_duration_notify_its_topic(pipeline: dict[str, Any]) -> None:
    template = pipeline["template"]
    pipeline_id = _logical_id(template, _resources(template, "AWS::CodePipeline::Pipeline")[0])
    (topic,) = _resources(template, "AWS::SNS::Topic")
    assert "KmsMasterKeyId" in topic["Properties"]
    alarms = {
        a["Properties"]["MetricName"]: a["Properties"] for a in _resources(template, "AWS::CloudWatch::Alarm")
    }
    assert set(alarms) == {"FailedPipelineExecutions", "PipelineDuration"}
    for alarm in alarms.values():
        assert alarm["Namespace"] == "AWS/CodePipeline"
        assert alarm["Dimensions"] == [{"Name": "PipelineName", "Value": {"Ref": pipeline_id}}]
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert len(alarm["AlarmActions"]) == 1
    assert alarms["FailedPipelineExecutions"]["Threshold"] == 0
    assert alarms["PipelineDuration"]["Threshold"] == DURATION_ALARM.to_seconds()


def test_each_stage_shifts_traffic_as_its_environment_says(pipeline: dict[str, Any]) -> None:
    for name, templates in pipeline["stages"].items():
        assert len(templates) == STACKS_PER_ENVIRONMENT, name
        groups = [g for t in templates for g in _resources(t, "AWS::CodeDeploy::DeploymentGroup")]
        configs = [c for t in templates for c in _resources(t, "AWS::CodeDeploy::DeploymentConfig")]
        assert len(groups) >= 16, name  # one per function
        if name == "dev":
            assert configs == []
            assert {g["Properties"]["DeploymentConfigName"] for g in groups} == {
                "CodeDeployDefault.LambdaAllAtOnce"
            }
        else:
            linear = {
                "Type": "TimeBasedLinear",
                "TimeBasedLinear": {"LinearInterval": 5, "LinearPercentage": 10},
            }
            assert configs and all(c["Properties"]["TrafficRoutingConfig"] == linear for c in configs), name


def test_cdk_nag_finds_nothing_unacknowledged_in_the_pipeline_or_its_stages(pipeline: dict[str, Any]) -> None:
    reports = {r["pluginName"]: r for r in pipeline["report"]["pluginReports"]}
    assert [(v["ruleName"], v["severity"]) for v in reports["AwsSolutions"]["violations"]] == []
    checked = {
        construct["constructPath"].split("/")[1]
        for finding in reports["AwsSolutions"]["suppressedViolations"]
        for construct in finding["violatingConstructs"]
    }
    assert {"Pipeline", "Dev", "Staging", "Prod"} <= checked  # the pipeline's and every stage's findings
    for finding in reports["AwsSolutions"]["suppressedViolations"]:
        assert len(finding["reason"]) > 40, finding["ruleName"]
