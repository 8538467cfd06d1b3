"""Sessions: the encrypted checkpoint bucket, the scheduled sweeper, session metrics and alarms.

Checkpoints are encrypted twice over: the application seals each one (AES-256-GCM under a KMS data
key, tdev.crypto) before it reaches S3, and the bucket encrypts at rest with the same customer key.
Objects under `sessions/` expire after 7 days (the table's checkpoint items have the same TTL).
The sweeper runs every minute (an EventBridge schedule, not an in-process timer): it closes expired
and idle sessions and recovers the ones whose heartbeat lapsed.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks import acknowledge
from stacks.cache_stack import FunctionNetwork
from stacks.configuration import grant_configuration
from stacks.constructs import TdevFunction, TdevLayers
from stacks.data_stack import grant_field_encryption, grant_table_data_access
from stacks.settings import EnvironmentSettings
from tdev.environment import Var

# Bedrock cross-region inference profile ids start with their geography (us.amazon.nova-lite-v1:0).
BEDROCK_GEOGRAPHIES = frozenset({"us", "eu", "apac", "us-gov", "global", "jp", "au", "ca"})
CHECKPOINT_PREFIX = "sessions/"
CHECKPOINT_RETENTION_DAYS = 7
SWEEP_EVERY = Duration.minutes(1)
METRICS_NAMESPACE = "TDeveloper"
MAX_SESSION_AGE_ALERT_SECONDS = 7 * 3600
MAX_ERROR_RATE_PERCENT = 5
CHECKPOINT_OBJECT_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")


def checkpoint_bucket_name(settings: EnvironmentSettings) -> str:
    """The bucket name, derived (not exported): the API stack uses it without depending on this stack."""
    return f"{settings.prefix}-checkpoints-{Aws.ACCOUNT_ID}-{Aws.REGION}"


def session_environment(
    settings: EnvironmentSettings, key: kms.IKey, field_key: kms.IKey | None = None
) -> dict[str, str]:
    """What a function running sessions needs besides TABLE_NAME and REDIS_URL (its network gives that).
    Checkpoints, chat and memory texts are sealed under the field key (the bucket's own SSE uses `key`)."""
    return {
        Var.CHECKPOINT_BUCKET: checkpoint_bucket_name(settings),
        Var.KMS_KEY_ID: (field_key or key).key_arn,
        Var.TDEV_EMBEDDINGS: "bedrock",
    }


def grant_checkpoints(function: lambda_.Function, key: kms.IKey, settings: EnvironmentSettings) -> None:
    """Read, write and delete checkpoint objects (only under sessions/) and seal them with the key."""
    objects = f"arn:{Aws.PARTITION}:s3:::{checkpoint_bucket_name(settings)}/{CHECKPOINT_PREFIX}*"
    function.add_to_role_policy(
        iam.PolicyStatement(
            sid="ReadWriteCheckpoints", actions=list(CHECKPOINT_OBJECT_ACTIONS), resources=[objects]
        )
    )
    function.add_to_role_policy(
        iam.PolicyStatement(
            sid="CheckpointKey", actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[key.key_arn]
        )
    )
    assert function.role is not None
    acknowledge(
        function.role,
        # The name uses the pseudo parameters (not the stack's account/region), which cdk-nag prints so.
        f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{settings.prefix}-checkpoints-"
        "<AWS::AccountId>-<AWS::Region>/sessions/*]",
        "Checkpoint object keys are sessions/<session id>/checkpoints/<time>-<id>.tdc, created at run "
        "time: the grant is limited to that prefix and to get/put/delete.",
    )


def serve_sessions(
    function: lambda_.Function,
    key: kms.IKey,
    settings: EnvironmentSettings,
    field_key: kms.IKey | None = None,
) -> None:
    """Let another function (the API) run sessions: the environment, checkpoint access and the models."""
    for name, value in session_environment(settings, key, field_key).items():
        function.add_environment(name, value)
    grant_checkpoints(function, key, settings)
    grant_session_models(function, settings)
    if field_key is not None:
        grant_field_encryption(field_key, function)


def grant_session_models(function: lambda_.Function, settings: EnvironmentSettings) -> None:
    """Chat turns run on the deployment's default model (Converse = bedrock:InvokeModel) and the context is
    embedded with Titan (InvokeModel): exactly those models. Found missing by the permissions evidence."""
    from tdev.memory.embeddings import TITAN_MODEL_ID

    def foundation_model(model_id: str, region: str = Aws.REGION) -> str:
        return f"arn:{Aws.PARTITION}:bedrock:{region}::foundation-model/{model_id}"

    resources = [foundation_model(TITAN_MODEL_ID)]
    provider, _, model_id = settings.default_model.partition(":")
    profile = provider == "bedrock" and model_id.split(".", 1)[0] in BEDROCK_GEOGRAPHIES
    if provider == "bedrock" and not profile:
        resources.append(foundation_model(model_id))
    elif profile:
        # A cross-region inference profile: the profile here, and its model in the regions it routes to.
        resources.append(
            f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}:{Aws.ACCOUNT_ID}:inference-profile/{model_id}"
        )
        routed_model = model_id.split(".", 1)[1]
        resources.append(foundation_model(routed_model, region="*"))
        assert function.role is not None
        acknowledge(
            function.role,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:*::foundation-model/{routed_model}]",
            "The default model is a cross-region inference profile, which routes to its model in any of the "
            "profile's regions: one model, every region.",
        )
    function.add_to_role_policy(
        iam.PolicyStatement(sid="InvokeSessionModels", actions=["bedrock:InvokeModel"], resources=resources)
    )


class SessionsStack(Stack):
    """Exposes `.bucket`, `.sweeper` (TdevFunction) and `.alarms` (by name)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        table: dynamodb.ITable,
        key: kms.IKey,
        alarm_topic: sns.ITopic,
        field_key: kms.IKey | None = None,
        core_layer_path: str,
        dependencies_layer_path: str,
        network: FunctionNetwork | None = None,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings, self.key = settings, key

        # 1. Where checkpoints go: private, TLS only, KMS-encrypted, expiring, access-logged.
        access_logs = s3.Bucket(
            self,
            "CheckpointAccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # S3 server access logging cannot write SSE-KMS
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
            removal_policy=settings.removal_policy,
        )
        acknowledge(
            access_logs,
            "AwsSolutions-S1",
            "This is the access-log bucket of the checkpoint bucket; logging it into itself would loop.",
        )
        self.bucket = s3.Bucket(
            self,
            "CheckpointBucket",
            bucket_name=checkpoint_bucket_name(settings),
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=False,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="checkpoints/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="checkpoints-expire-after-7-days",
                    prefix=CHECKPOINT_PREFIX,
                    expiration=Duration.days(CHECKPOINT_RETENTION_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=settings.removal_policy,
        )

        # 2. The sweeper, on a schedule.
        layers = TdevLayers(
            self, "Layers", core_path=core_layer_path, dependencies_path=dependencies_layer_path
        )
        self.sweeper = TdevFunction(
            self,
            "SessionSweeper",
            name="session_sweeper",
            settings=settings,
            layers=layers,
            log_key=key,
            environment={
                Var.TABLE_NAME: table.table_name,
                Var.TDEV_DEFAULT_MODEL: settings.default_model,
                **session_environment(settings, key, field_key),
            },
            network=network,
            timeout=Duration.minutes(5),
            reserved_concurrency=1,  # one sweep at a time; the next schedule picks up what is left
            description="T-Developer session sweeper: expiry, idle timeout, heartbeat recovery",
        )
        grant_table_data_access(table, key, self.sweeper.function, "session_sweeper")
        grant_configuration(self.sweeper.function, settings, "session_sweeper")
        grant_checkpoints(self.sweeper.function, key, settings)
        if field_key is not None:
            grant_field_encryption(field_key, self.sweeper.function)
        events.Rule(
            self,
            "SweepSchedule",
            description="Sweep open sessions every minute",
            schedule=events.Schedule.rate(SWEEP_EVERY),
            targets=[targets.LambdaFunction(self.sweeper.alias, retry_attempts=0)],
        )

        # 3. Alarms on the session metrics (emitted by the API and the sweeper) and on the sweeper itself.
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self._alarms(alarm_topic)
        CfnOutput(self, "CheckpointBucketName", value=self.bucket.bucket_name)

    def _alarm(self, construct_id: str, alarm: cloudwatch.Alarm, topic: sns.ITopic) -> None:
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))
        self.alarms[construct_id] = alarm

    def _metric(self, name: str, statistic: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=name,
            dimensions_map={"service": "sessions"},
            statistic=statistic,
            period=Duration.minutes(5),
        )

    def _alarms(self, topic: sns.ITopic) -> None:
        self._alarm(
            "SessionDurationAlarm",
            cloudwatch.Alarm(
                self,
                "SessionDurationAlarm",
                metric=self._metric("OldestSessionAge", "Maximum"),
                threshold=MAX_SESSION_AGE_ALERT_SECONDS,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description="A session has been open for more than 7 hours (the limit is 8)",
            ),
            topic,
        )
        error_rate = cloudwatch.MathExpression(
            expression="IF(turns > 0, 100 * errors / turns, 0)",
            using_metrics={
                "errors": self._metric("SessionErrors", "Sum"),
                "turns": self._metric("SessionTurns", "Sum"),
            },
            label="Session error rate (%)",
            period=Duration.minutes(5),
        )
        self._alarm(
            "SessionErrorRateAlarm",
            cloudwatch.Alarm(
                self,
                "SessionErrorRateAlarm",
                metric=error_rate,
                threshold=MAX_ERROR_RATE_PERCENT,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description="More than 5 % of session turns failed in 5 minutes",
            ),
            topic,
        )
        self._alarm(
            "SessionRecoveryFailedAlarm",
            cloudwatch.Alarm(
                self,
                "SessionRecoveryFailedAlarm",
                metric=self._metric("SessionRecoveryFailures", "Sum"),
                threshold=0,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description="A session could not be recovered after 3 attempts and was marked failed",
            ),
            topic,
        )
        self._alarm(
            "SweeperErrorsAlarm",
            cloudwatch.Alarm(
                self,
                "SweeperErrorsAlarm",
                metric=self.sweeper.function.metric_errors(period=Duration.minutes(5)),
                threshold=0,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description="The session sweeper raised errors",
            ),
            topic,
        )
