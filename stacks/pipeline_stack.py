"""The delivery pipeline (CDK Pipelines, self-mutating): source, test and synth, dev, staging, approval, prod.

Instantiated only when asked (`python app.py -c pipeline=true -c connectionArn=... -c repository=owner/name
[-c branch=main]`; `make deploy CDK_CONTEXT="-c pipeline=true ..."` deploys it, see the README's "Shipping"),
so `make synth` and the tests keep their shape. The source is a CodeStar (CodeConnections) connection the
account owner creates once; its ARN, repository and branch come from context, never from the repository.

- Build: one CodeBuild step runs `make test` (lint, types, every test) and then `make synth` with this
  pipeline's own context (the layers, every stage's stacks with cdk-nag, cfn-lint); its cloud assembly is
  what the pipeline deploys and what it updates itself from (self-mutation) before any stage.
- Stages: dev, staging, prod, each the same stacks as `make deploy ENV=...` (app.add_environment) with that
  environment's settings; within a stage, CodeDeploy shifts each function's traffic as its settings say
  (stacks/constructs/deployment.py) and a rollback fails the stage. A person approves before prod.
- Metrics and alarms: CodePipeline (V2) publishes PipelineDuration and FailedPipelineExecutions per
  pipeline; an alarm on each goes to the pipeline's encrypted topic.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import Duration, Stack, pipelines
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks import acknowledge, as_nag_prints
from stacks.settings import EnvironmentSettings

# The environments in the order a change goes through them; a person approves before the last.
STAGES = ("dev", "staging", "prod")
APPROVAL_BEFORE = "prod"
# A pipeline execution includes the wait for the approval (up to CodePipeline's 7 days) and two linear
# traffic shifts of 45 minutes: alarm when one takes longer than a working day.
DURATION_ALARM = Duration.hours(12)
PIPELINE_METRICS_NAMESPACE = "AWS/CodePipeline"


@dataclass(frozen=True)
class PipelineSource:
    """Where the pipeline takes its code from (context: connectionArn, repository, branch)."""

    connection_arn: str
    repository: str  # owner/name
    branch: str = "main"

    def __post_init__(self) -> None:
        if not self.connection_arn.startswith("arn:"):
            raise ValueError(
                "the pipeline needs -c connectionArn=arn:aws:codeconnections:... (a connection ARN)"
            )
        if self.repository.count("/") != 1 or not all(self.repository.split("/")):
            raise ValueError(f"-c repository=owner/name expected, got {self.repository!r}")
        if not self.branch:
            raise ValueError("-c branch=... may not be empty")

    def context_arguments(self) -> list[str]:
        """The `-c key=value` arguments that make a synth build this same pipeline again."""
        return [
            "-c",
            "pipeline=true",
            "-c",
            f"connectionArn={self.connection_arn}",
            "-c",
            f"repository={self.repository}",
            "-c",
            f"branch={self.branch}",
        ]


class PipelineStack(Stack):
    """The pipeline; `add_environment(stage, settings)` fills each stage with that environment's stacks.

    Exposes `.pipeline` (CDK Pipelines), `.stages` (by environment name), `.alarms` (by metric),
    `.alarm_topic` and `.providers` (the model providers every stage enables)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        source: PipelineSource,
        settings: dict[str, EnvironmentSettings],
        add_environment: Callable[[cdk.Stage, EnvironmentSettings], object],
        providers: tuple[str, ...] = ("bedrock",),
        stage_env: cdk.Environment | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.providers = providers
        context = [*source.context_arguments(), "-c", f"providers={','.join(providers)}"]
        synth = pipelines.ShellStep(
            "TestAndSynth",
            input=pipelines.CodePipelineSource.connection(
                source.repository, source.branch, connection_arn=source.connection_arn
            ),
            commands=[
                "make test",
                # The same synth as everyone's (layers, sizes, cdk-nag, cfn-lint), of this pipeline.
                f"make synth PROVIDERS={','.join(providers)} CDK_CONTEXT={shlex.quote(shlex.join(context))}",
                ".venv/bin/cfn-lint cdk.out/assembly-*/*.template.json",
            ],
            primary_output_directory="cdk.out",
        )
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            pipeline_name="t-developer",
            pipeline_type=codepipeline.PipelineType.V2,
            synth=synth,
            self_mutation=True,
            # One account: artifacts still encrypted with a customer-managed, rotated key.
            cross_account_keys=True,
            enable_key_rotation=True,
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(
                    # Amazon Linux 2023 standard 5: Python 3.11+ and Node 20 (synth runs jsii on node).
                    build_image=codebuild.LinuxBuildImage.AMAZON_LINUX_2023_5,
                    compute_type=codebuild.ComputeType.MEDIUM,
                ),
                timeout=Duration.minutes(90),
            ),
        )
        self.stages: dict[str, cdk.Stage] = {}
        for name, environment in settings.items():
            stage = cdk.Stage(self, name.title(), env=stage_env)
            add_environment(stage, environment)
            pre = [pipelines.ManualApprovalStep(f"Promote to {name}")] if name == APPROVAL_BEFORE else []
            self.pipeline.add_stage(stage, pre=pre)
            self.stages[name] = stage
        self.pipeline.build_pipeline()

        self.alarm_topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name="T-Developer pipeline alarms",
            master_key=kms.Key(
                self, "AlarmTopicKey", description="T-Developer pipeline alarms", enable_key_rotation=True
            ),
            enforce_ssl=True,
        )
        self.alarms = self._alarms()
        self._acknowledge()

    def _metric(self, name: str, statistic: str, period: Duration) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=PIPELINE_METRICS_NAMESPACE,
            metric_name=name,
            dimensions_map={"PipelineName": self.pipeline.pipeline.pipeline_name},
            statistic=statistic,
            period=period,
        )

    def _alarms(self) -> dict[str, cloudwatch.Alarm]:
        alarms = {
            "FailedPipelineExecutions": self._metric(
                "FailedPipelineExecutions", "Sum", Duration.minutes(5)
            ).create_alarm(
                self,
                "FailedAlarm",
                threshold=0,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description="A pipeline execution failed (tests, synth, a stage or a rollback)",
            ),
            "PipelineDuration": self._metric("PipelineDuration", "Maximum", Duration.hours(1)).create_alarm(
                self,
                "DurationAlarm",
                threshold=DURATION_ALARM.to_seconds(),
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=f"A pipeline execution took over {DURATION_ALARM.to_hours()} hours",
            ),
        }
        for alarm in alarms.values():
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.alarm_topic))
        return alarms

    def _acknowledge(self) -> None:
        """The wildcards of CDK Pipelines' generated roles, each with its reason (nothing else is flagged)."""
        logical = {
            name: self.resolve(self.get_logical_id(construct.node.default_child))  # type: ignore[arg-type]
            for name, construct in (
                ("bucket", self.pipeline.pipeline.artifact_bucket),
                ("synth", self.pipeline.synth_project),
                ("mutation", self.pipeline.self_mutation_project),
            )
        }
        artifacts = (
            "the pipeline's artifact bucket (its objects, bucket/*) and the pipeline key: CDK's grants for "
            "reading and writing build artifacts, scoped to that bucket and that key."
        )
        codebuild_logs = (
            "CodeBuild's own log groups and report groups of the pipeline's projects (named after each "
            "project, known only after creation)."
        )
        findings = {
            **{
                f"Action::{action}": artifacts
                for action in (
                    "kms:GenerateDataKey*",
                    "kms:ReEncrypt*",
                    "s3:Abort*",
                    "s3:DeleteObject*",
                    "s3:GetBucket*",
                    "s3:GetObject*",
                    "s3:List*",
                )
            },
            f"Resource::<{logical['bucket']}.Arn>/*": artifacts,
            **{
                f"Resource::arn:{{partition}}:logs:{{region}}:{{account}}:log-group:/aws/codebuild/{group}": (
                    codebuild_logs
                )
                for group in (f"<{logical['synth']}>:*", f"<{logical['mutation']}>:*", "*")
            },
            **{
                f"Resource::arn:{{partition}}:codebuild:{{region}}:{{account}}:report-group/{group}": (
                    codebuild_logs
                )
                for group in (f"<{logical['synth']}>-*", f"<{logical['mutation']}>-*", "*")
            },
            "Resource::arn:*:iam::{account}:role/*": "Self-mutation assumes the CDK bootstrap roles "
            "(cdk-*-deploy-role, cdk-*-file-publishing-role, ...) to update the pipeline's own stack; CDK "
            "conditions the statement on the bootstrap roles' tag.",
            "Resource::*": "As CDK Pipelines writes them: self-mutation's cloudformation:DescribeStacks and "
            "s3:ListBucket (it looks up the stacks and the bootstrap bucket it deploys with), and the asset "
            "publishing role's codebuild:StartBuild/StopBuild/BatchGetBuilds for its asset projects.",
        }
        for finding, reason in findings.items():
            acknowledge(self, as_nag_prints(self, f"AwsSolutions-IAM5[{finding}]"), reason)
        acknowledge(
            self.pipeline.pipeline.artifact_bucket,
            "AwsSolutions-S1",
            "The artifact bucket holds the pipeline's own build outputs, written and read only by its roles "
            "(encrypted with the pipeline key, TLS only, no public access); CloudTrail and the pipeline's "
            "execution history record who started what.",
        )
