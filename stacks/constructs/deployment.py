"""How a function's new code reaches its callers: a `live` alias, shifted by CodeDeploy, rolled back on alarm.

Every `TdevFunction` publishes a version per change (`current_version`) behind the alias `live`, and every
caller (state machine tasks, API Gateway integration and authorizer, event source mappings, schedules)
invokes the alias, never `$LATEST`. On a deployment CodeDeploy moves the alias from the old version to the
new one with the stack's traffic-shifting configuration (`EnvironmentSettings.traffic_shift_percent` every
`traffic_shift_minutes`, linear; all at once in dev) and moves it back when one of the function's rollback
alarms fires during the shift (errors, p99 duration, throttles, each measured on the alias).

Why linear: CodeDeploy shifts Lambda traffic in one of two shapes only, canary (one step, then the rest)
or linear (equal steps). 10 % -> 50 % -> 100 % at 5-minute steps is neither; linear 10 % every 5 minutes
passes through 10 % and 50 % and is never ahead of that schedule (10, 20, ... 100 % over 45 minutes), where
canary 10 % for 5 minutes would jump from 10 % to 100 %.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks import acknowledge
from stacks.settings import EnvironmentSettings

LIVE_ALIAS = "live"
# The rollback alarms: one-minute periods, two of them breaching in a row (one bad minute of a model
# provider's errors does not undo a release; two do), measured on the alias during the shift.
ALARM_PERIOD = Duration.minutes(1)
ALARM_EVALUATION_PERIODS = 2
# Errors as a share of invocations: the workflow functions raise on purpose for the state machine's
# Retry/Catch (transient model errors), so a count would roll back healthy releases.
ERROR_RATE_PERCENT = 5
# p99 duration as a share of the function's timeout: a version that runs close to its timeout is failing.
DURATION_SHARE_OF_TIMEOUT = 0.8
# How the rollback alarms' descriptions begin. They have no actions: CodeDeploy watches them during a shift,
# and a rollback fails the stack update (and so the pipeline); the stacks' own alarms notify the topic.
ROLLBACK = "Roll back"


class Deployments(Construct):
    """One stack's CodeDeploy application and traffic-shifting configuration, shared by its functions.

    `Deployments.of(scope, settings)` finds or creates it at the stack's top level."""

    ID = "Deployments"

    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings) -> None:
        super().__init__(scope, construct_id)
        self.application = codedeploy.LambdaApplication(self, "Application")
        self.config: codedeploy.ILambdaDeploymentConfig
        if settings.traffic_shift_percent is None:
            self.config = codedeploy.LambdaDeploymentConfig.ALL_AT_ONCE
        else:
            self.config = codedeploy.LambdaDeploymentConfig(
                self,
                "TrafficShift",
                traffic_routing=codedeploy.TimeBasedLinearTrafficRouting(
                    interval=Duration.minutes(settings.traffic_shift_minutes),
                    percentage=settings.traffic_shift_percent,
                ),
            )

    @classmethod
    def of(cls, scope: Construct, settings: EnvironmentSettings) -> Deployments:
        stack = Stack.of(scope)
        found = stack.node.try_find_child(cls.ID)
        return found if isinstance(found, Deployments) else cls(stack, cls.ID, settings=settings)


class LiveAlias(Construct):
    """`function`'s `live` alias on its current version, its CodeDeploy deployment group and rollback alarms.

    Exposes `.alias` (what callers invoke), `.deployment_group` and `.alarms` (by metric: errors,
    duration, throttles)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: lambda_.Function,
        name: str,
        timeout: Duration,
        settings: EnvironmentSettings,
    ) -> None:
        super().__init__(scope, construct_id)
        self.alias = lambda_.Alias(
            self, "Alias", alias_name=LIVE_ALIAS, version=function.current_version, description=name
        )
        alarm = {
            "evaluation_periods": ALARM_EVALUATION_PERIODS,
            "datapoints_to_alarm": ALARM_EVALUATION_PERIODS,
            "treat_missing_data": cloudwatch.TreatMissingData.NOT_BREACHING,
        }
        error_rate = cloudwatch.MathExpression(
            expression="IF(invocations > 0, 100 * errors / invocations, 0)",
            using_metrics={
                "errors": self.alias.metric_errors(period=ALARM_PERIOD, statistic="Sum"),
                "invocations": self.alias.metric_invocations(period=ALARM_PERIOD, statistic="Sum"),
            },
            period=ALARM_PERIOD,
            label=f"{name} errors (% of invocations)",
        )
        self.alarms = {
            "errors": error_rate.create_alarm(
                self,
                "ErrorsAlarm",
                threshold=ERROR_RATE_PERCENT,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                alarm_description=f"{ROLLBACK} {name}: over {ERROR_RATE_PERCENT} % of its invocations failed",
                **alarm,
            ),
            "duration": self.alias.metric_duration(period=ALARM_PERIOD, statistic="p99").create_alarm(
                self,
                "DurationAlarm",
                threshold=timeout.to_milliseconds() * DURATION_SHARE_OF_TIMEOUT,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                alarm_description=f"{ROLLBACK} {name}: its p99 duration passed "
                f"{DURATION_SHARE_OF_TIMEOUT:.0%} of its timeout",
                **alarm,
            ),
            "throttles": self.alias.metric_throttles(period=ALARM_PERIOD, statistic="Sum").create_alarm(
                self,
                "ThrottlesAlarm",
                threshold=0,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                alarm_description=f"{ROLLBACK} {name}: it was throttled",
                **alarm,
            ),
        }
        deployments = Deployments.of(self, settings)
        self.deployment_group = codedeploy.LambdaDeploymentGroup(
            self,
            "Deployment",
            application=deployments.application,
            alias=self.alias,
            deployment_config=deployments.config,
            alarms=list(self.alarms.values()),
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, stopped_deployment=True, deployment_in_alarm=True
            ),
        )
        acknowledge(
            self.deployment_group,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSCodeDeployRoleForLambdaLimited]",
            "CodeDeploy's own service role for Lambda deployments (added by CDK): it reads the alarms, moves "
            "the alias and invokes no hooks beyond the deployment's; AWS keeps it to what CodeDeploy needs.",
        )
