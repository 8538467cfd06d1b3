"""Alerting: where alerts come from, how they go out, and how they escalate (tdev.alerts).

Reads top to bottom like the pipeline: the channels (SNS topics for email and SMS, the secret with the
webhook, Slack and PagerDuty settings), the escalation's step function and state machine (from
`statemachines/alert_escalation.asl.json`), the intake function, then the rules that feed it: error
analytics' events on the platform bus and every CloudWatch alarm of this deployment on the default bus.
"""

from __future__ import annotations

import json

from aws_cdk import ArnFormat, CfnOutput, Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks import acknowledge
from stacks.constructs import TdevFunction, TdevLayers
from stacks.data_stack import grant_table_data_access
from stacks.settings import EnvironmentSettings
from statemachines.alert_escalation import DEFINITION_FILE, escalation_substitutions
from tdev.alerts.model import alarms_rule_pattern, errors_rule_pattern
from tdev.environment import Var


class AlertingStack(Stack):
    """Exposes `.email_topic`, `.sms_topic`, `.channel_secret`, `.escalation`, `.functions`, `.rules`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        table: dynamodb.ITable,
        key: kms.IKey,
        event_bus: events.IEventBus,
        core_layer_path: str,
        dependencies_layer_path: str,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.table = table
        self.alarm_prefix = settings.prefix  # every alarm of this deployment is named after its stacks

        # 1. The channels: encrypted topics that only accept TLS, and one secret for the HTTP channels, under
        # this stack's own key (granting a role of this stack on the data stack's key would make a cycle).
        self.key = kms.Key(
            self,
            "ChannelKey",
            description=f"T-Developer {settings.name}: alert topics and the channels' secret",
            enable_key_rotation=True,
            removal_policy=settings.removal_policy,
        )
        self.email_topic = sns.Topic(
            self,
            "EmailTopic",
            display_name=f"T-Developer alerts ({settings.name})",
            master_key=self.key,
            enforce_ssl=True,
        )
        self.sms_topic = sns.Topic(
            self,
            "SmsTopic",
            display_name=f"T-Developer pages ({settings.name})",
            master_key=self.key,
            enforce_ssl=True,
        )
        self.channel_secret = secretsmanager.Secret(
            self,
            "ChannelSecret",
            secret_name=f"{settings.prefix}/alerts",  # the local runtime's is tdev-local/alerts
            description=(
                "T-Developer alert channels: webhook_url, webhook_signing_key, slack_webhook_url, "
                "pagerduty_routing_key (operators fill in the URLs and keys they use)"
            ),
            encryption_key=self.key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({}),
                generate_string_key="webhook_signing_key",
                exclude_punctuation=True,
                password_length=48,
            ),
            removal_policy=settings.removal_policy,
        )
        acknowledge(
            self.channel_secret,
            "AwsSolutions-SMG4",
            "Third-party webhook URLs and PagerDuty routing keys are issued by those services and rotated "
            "there; Secrets Manager cannot rotate them. The signing key is rotated by operators with them.",
        )

        layers = TdevLayers(
            self, "Layers", core_path=core_layer_path, dependencies_path=dependencies_layer_path
        )
        environment = {
            Var.TABLE_NAME: table.table_name,
            Var.KMS_KEY_ID: key.key_arn,
            Var.TDEV_ALERT_SECRET_NAME: self.channel_secret.secret_arn,  # GetSecretValue takes the ARN
            Var.TDEV_ALERT_EMAIL_TOPIC_ARN: self.email_topic.topic_arn,
            Var.TDEV_ALERT_SMS_TOPIC_ARN: self.sms_topic.topic_arn,
        }
        self.functions: dict[str, TdevFunction] = {}

        # 2. The escalation: its steps' function and the state machine that waits between levels.
        escalation_step = self._function(
            "alert_escalation", "AlertEscalationStep", settings, layers, key, environment
        )
        escalation_logs = logs.LogGroup(
            self,
            "EscalationLogs",
            log_group_name=f"/aws/vendedlogs/states/{settings.prefix}-alert-escalation",
            retention=settings.log_retention,
            encryption_key=key,
            removal_policy=settings.removal_policy,
        )
        self.escalation = sfn.StateMachine(
            self,
            "EscalationStateMachine",
            comment="T-Developer alert escalation: notify a level, wait, check for an acknowledgement",
            definition_body=sfn.DefinitionBody.from_file(str(DEFINITION_FILE)),
            definition_substitutions=escalation_substitutions(
                function_arn=escalation_step.alias.function_arn
            ),
            state_machine_type=sfn.StateMachineType.STANDARD,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=escalation_logs, level=sfn.LogLevel.ALL),
        )
        self.escalation.add_to_role_policy(
            iam.PolicyStatement(
                sid="InvokeEscalationSteps",
                actions=["lambda:InvokeFunction"],
                resources=[escalation_step.alias.function_arn],
            )
        )
        acknowledge(
            self.escalation.role,
            "AwsSolutions-IAM5[Resource::*]",
            "Only the statements Step Functions needs for logging and tracing (vended-log delivery, X-Ray), "
            "which support no resource-level permissions.",
        )

        # 3. The intake: events in, alerts out (it starts one escalation per high or critical alert).
        intake = self._function(
            "alert_intake",
            "AlertIntake",
            settings,
            layers,
            key,
            {**environment, Var.TDEV_ALERT_ESCALATION_ARN: self.escalation.state_machine_arn},
        )
        self.escalation.grant_start_execution(intake.function)

        # 4. What feeds it: error analytics on the platform bus, this deployment's alarms on the default bus.
        self.rules = {
            "errors": events.Rule(
                self,
                "ErrorAlerts",
                description="Error analytics' new signatures and spikes -> alert intake",
                event_bus=event_bus,
                event_pattern=_pattern(errors_rule_pattern()),
                targets=[targets.LambdaFunction(intake.alias, retry_attempts=4)],
            ),
            "alarms": events.Rule(
                self,
                "AlarmAlerts",
                description=f"Every CloudWatch alarm of {settings.prefix} changing state -> alert intake",
                event_pattern=_pattern(alarms_rule_pattern(self.alarm_prefix)),
                targets=[targets.LambdaFunction(intake.alias, retry_attempts=4)],
            ),
        }

        CfnOutput(self, "AlertEscalationArn", value=self.escalation.state_machine_arn)
        CfnOutput(
            self,
            "AlertEmailTopicArn",
            value=self.email_topic.topic_arn,
            description="Subscribe email addresses to receive alerts",
        )
        CfnOutput(
            self,
            "AlertSmsTopicArn",
            value=self.sms_topic.topic_arn,
            description="Subscribe phone numbers to be paged",
        )
        CfnOutput(self, "AlertChannelSecretName", value=self.channel_secret.secret_name)

    def _function(
        self,
        name: str,
        construct_id: str,
        settings: EnvironmentSettings,
        layers: TdevLayers,
        key: kms.IKey,
        environment: dict[str, str],
    ) -> TdevFunction:
        """One alert function with exactly what it calls: its table items, the secret, the two topics."""
        fn = TdevFunction(
            self,
            construct_id,
            name=name,
            settings=settings,
            layers=layers,
            log_key=key,
            environment=environment,
            timeout=Duration.seconds(60),
            description=f"T-Developer {name.replace('_', ' ')}",
        )
        self.functions[name] = fn
        grant_table_data_access(self.table, key, fn.function, name)
        # Written out (not grant_read / grant_publish, which add wildcard KMS actions): one secret read, a
        # publish on each topic, and the channel key's data keys for the encrypted topics and the secret.
        fn.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadChannelSecret",
                actions=["secretsmanager:GetSecretValue"],
                # The named secret's ARN: its name and Secrets Manager's six random characters.
                resources=[
                    Stack.of(self).format_arn(
                        service="secretsmanager",
                        resource="secret",
                        resource_name=f"{settings.prefix}/alerts-??????",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        fn.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="PublishAlerts",
                actions=["sns:Publish"],
                resources=[self.email_topic.topic_arn, self.sms_topic.topic_arn],
            )
        )
        fn.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="UseChannelKey",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[self.key.key_arn],
            )
        )
        return fn


def _pattern(pattern: dict[str, object]) -> events.EventPattern:
    return events.EventPattern(
        source=list(pattern["source"]),  # type: ignore[call-overload]
        detail_type=list(pattern["detail-type"]),  # type: ignore[call-overload]
        detail=pattern.get("detail"),  # type: ignore[arg-type]
    )
