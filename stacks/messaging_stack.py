"""Reliable messaging: the outbox publisher on the table's stream, the queues with their DLQs and
consumers, the bus rules that route to them, the FIFO queue the publisher sends to itself (one message
group per execution), and an alarm per dead-letter queue.

Built from `tdev.messaging.queues`, the same definitions the local runtime uses.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks import acknowledge
from stacks.constructs import TdevFunction, TdevLayers
from stacks.data_stack import grant_table_data_access
from stacks.permissions import IDEMPOTENCY_TABLE_ACTIONS
from stacks.settings import EnvironmentSettings
from tdev.environment import Var
from tdev.messaging import queues as q

DLQ_RETENTION = Duration.days(14)
STREAM_MAX_RETRIES = 10
CONSUMERS = {
    q.NOTIFICATIONS.name: "notifications_consumer",
    q.AGENT_EXECUTION.name: "task_activity_consumer",
    q.PROGRESS.name: "progress_consumer",
}


class MessagingStack(Stack):
    """Exposes `.queues` and `.dead_letter_queues` (by logical name), `.functions`, `.rules`, `.key`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        table: dynamodb.ITable,
        table_key: kms.IKey,
        event_bus: events.IEventBus,
        alarm_topic: sns.ITopic,
        core_layer_path: str,
        dependencies_layer_path: str,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        self.alarm_topic = alarm_topic

        # 1. A key for the queues that EventBridge may use to deliver into them.
        self.key = kms.Key(
            self,
            "QueueKey",
            description=f"T-Developer {settings.name}: queues and dead-letter queues",
            enable_key_rotation=True,
            removal_policy=settings.removal_policy,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowEventBridgeToDeliverToEncryptedQueues",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": self.account}},
            )
        )

        # 2. The queues, each with its DLQ (KMS-encrypted, TLS-only).
        self.queues: dict[str, sqs.Queue] = {}
        self.dead_letter_queues: dict[str, sqs.Queue] = {}
        for spec in q.QUEUES:
            dlq = self._queue(f"{spec.dlq_name}", spec, dead_letter=None)
            self.dead_letter_queues[spec.name] = dlq
            self.queues[spec.name] = self._queue(
                spec.name,
                spec,
                dead_letter=sqs.DeadLetterQueue(queue=dlq, max_receive_count=spec.max_receive_count),
            )
        self.outbox_failures = self._plain_queue(q.OUTBOX_FAILURES, "stream batches the publisher gave up on")
        self.target_failures = self._plain_queue("event-targets-dlq", "events a rule could not deliver")

        # 3. Idempotency records of the consumers (Powertools), on their own table.
        self.idempotency_table = dynamodb.Table(
            self,
            "IdempotencyTable",
            partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=table_key,
            time_to_live_attribute="expiration",
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=settings.point_in_time_recovery
            ),
            removal_policy=settings.removal_policy,
        )
        if not settings.point_in_time_recovery:
            acknowledge(
                self.idempotency_table,
                "AwsSolutions-DDB3",
                "Idempotency records expire within a day; point-in-time recovery is off where the "
                "environment disables it (dev).",
            )

        # 4. The functions: the outbox publisher and one consumer per consumed queue.
        layers = TdevLayers(
            self, "Layers", core_path=core_layer_path, dependencies_path=dependencies_layer_path
        )
        environment = {
            Var.TABLE_NAME: table.table_name,
            Var.EVENT_BUS_NAME: event_bus.event_bus_name,
            Var.IDEMPOTENCY_TABLE_NAME: self.idempotency_table.table_name,
        }
        # The FIFO queues the publisher sends to directly (an EventBridge target has one fixed message group).
        routed_queues = {
            route.queue_url_variable: self.queues[route.queue].queue_url for route in q.QUEUE_ROUTES
        }
        self.functions: dict[str, TdevFunction] = {}
        # A consumer never outlives its messages' visibility (SQS would hand them to another consumer).
        timeouts = {"outbox_publisher": 60} | {
            function: min(60, q.queue(queue).visibility_seconds) for queue, function in CONSUMERS.items()
        }
        for name in ("outbox_publisher", *CONSUMERS.values()):
            self.functions[name] = TdevFunction(
                self,
                "".join(part.title() for part in name.split("_")),
                name=name,
                settings=settings,
                layers=layers,
                log_key=table_key,
                environment=environment | (routed_queues if name == "outbox_publisher" else {}),
                timeout=Duration.seconds(timeouts[name]),
            )

        publisher = self.functions["outbox_publisher"].function
        event_bus.grant_put_events_to(publisher)
        # Queue routes: the publisher sends these events to their FIFO queue itself, grouped per execution.
        for route in q.QUEUE_ROUTES:
            self.queues[route.queue].grant_send_messages(publisher)
        # The mapping is written out (not DynamoEventSource) so the role reads exactly this table's stream:
        # DynamoEventSource also grants dynamodb:ListStreams on "*", which the mapping does not need.
        publisher.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadTheTableStream",
                actions=["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
                resources=[table.table_stream_arn or f"{table.table_arn}/stream/*"],
            )
        )
        table_key.grant_decrypt(publisher)
        lambda_.EventSourceMapping(
            self,
            "OutboxStream",
            target=self.functions["outbox_publisher"].alias,  # the `live` alias, as every caller
            event_source_arn=table.table_stream_arn,
            starting_position=lambda_.StartingPosition.TRIM_HORIZON,
            batch_size=100,
            bisect_batch_on_error=True,
            retry_attempts=STREAM_MAX_RETRIES,
            report_batch_item_failures=True,
            on_failure=sources.SqsDlq(self.outbox_failures),
            # Only new outbox items reach the publisher.
            filters=[
                lambda_.FilterCriteria.filter(
                    {
                        "eventName": lambda_.FilterRule.is_equal("INSERT"),
                        "dynamodb": {"NewImage": {"entity": {"S": lambda_.FilterRule.is_equal("OUTBOX")}}},
                    }
                )
            ],
        )
        for queue_name, function_name in CONSUMERS.items():
            consumer = self.functions[function_name].function
            grant_table_data_access(table, table_key, consumer, function_name)
            consumer.add_to_role_policy(
                iam.PolicyStatement(
                    sid="IdempotencyRecords",
                    actions=list(IDEMPOTENCY_TABLE_ACTIONS),
                    resources=[self.idempotency_table.table_arn],
                )
            )
            queue = self.queues[queue_name]
            self.functions[function_name].alias.add_event_source(
                sources.SqsEventSource(queue, batch_size=10, report_batch_item_failures=True)
            )
            queue.grant(consumer, "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl")
            self.key.grant_decrypt(consumer)
        acknowledge(
            self,
            "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
            "CDK's grants for the queue key and the table key: scoped to those keys' ARNs.",
        )
        acknowledge(
            self,
            "AwsSolutions-IAM5[Action::kms:ReEncrypt*]",
            "CDK's grants for the table key used by the idempotency table: scoped to that key's ARN.",
        )

        # 5. Rules: route by source, detail-type and detail content; every target has a DLQ and retries.
        self.rules: dict[str, events.Rule] = {}
        for spec in q.RULES:
            rule = events.Rule(
                self,
                "".join(part.title() for part in spec.name.split("-")),
                event_bus=event_bus,
                description=f"{spec.name}: {spec.pattern['detail-type']} to {spec.queue}",
                event_pattern=events.EventPattern(
                    source=list(spec.pattern["source"]),  # type: ignore[call-overload]
                    detail_type=list(spec.pattern["detail-type"]),  # type: ignore[call-overload]
                    detail=dict(spec.pattern["detail"]) if "detail" in spec.pattern else None,  # type: ignore[call-overload]
                ),
            )
            rule.add_target(
                targets.SqsQueue(
                    self.queues[spec.queue],
                    message=events.RuleTargetInput.from_object(
                        {
                            name: events.EventField.from_path(path) if path.startswith("$") else path
                            for name, path in _fields(spec).items()
                        }
                    )
                    if spec.input_template is not None
                    else None,  # the whole event
                    dead_letter_queue=self.target_failures,
                    retry_attempts=8,
                    max_event_age=Duration.hours(24),
                )
            )
            self.rules[spec.name] = rule

        # 6. Anything dead-lettered raises an alarm.
        for name, dlq in [
            *self.dead_letter_queues.items(),
            (q.OUTBOX_FAILURES, self.outbox_failures),
            ("event-targets", self.target_failures),
        ]:
            alarm = cloudwatch.Alarm(
                self,
                f"DeadLetters{''.join(p.title() for p in name.replace('.', '-').split('-'))}",
                alarm_description=f"Messages are waiting in the dead-letter queue of {name} (tdev dlq list)",
                metric=dlq.metric_approximate_number_of_messages_visible(period=Duration.minutes(5)),
                threshold=0,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(alarm_topic))

    def _queue(self, name: str, spec: q.QueueSpec, *, dead_letter: sqs.DeadLetterQueue | None) -> sqs.Queue:
        logical = "".join(p.title() for p in name.replace(".fifo", "").split("-"))
        queue = sqs.Queue(
            self,
            logical,
            queue_name=f"{self.settings.prefix}-{name}",
            fifo=spec.fifo or None,
            content_based_deduplication=(spec.content_based_deduplication or None) if spec.fifo else None,
            visibility_timeout=Duration.seconds(spec.visibility_seconds),
            retention_period=DLQ_RETENTION
            if dead_letter is None
            else Duration.seconds(spec.retention_seconds),
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
            dead_letter_queue=dead_letter,
            removal_policy=RemovalPolicy.DESTROY
            if self.settings.removal_policy == RemovalPolicy.DESTROY
            else RemovalPolicy.RETAIN,
        )
        if dead_letter is None:
            acknowledge(queue, "AwsSolutions-SQS3", "This is a dead-letter queue; it has no DLQ of its own.")
        return queue

    def _plain_queue(self, name: str, purpose: str) -> sqs.Queue:
        queue = sqs.Queue(
            self,
            "".join(p.title() for p in name.split("-")),
            queue_name=f"{self.settings.prefix}-{name}",
            retention_period=DLQ_RETENTION,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
        )
        acknowledge(queue, "AwsSolutions-SQS3", f"A dead-letter queue ({purpose}); it has no DLQ of its own.")
        return queue


def _fields(spec: q.RuleSpec) -> dict[str, str]:
    """The target message's fields -> event paths (the local runtime uses the same template)."""
    import json
    import re

    template = spec.input_template or "{}"
    fields: dict[str, str] = {}
    for name, value in json.loads(re.sub(r'"<(\w+)>"', r'"\1"', template)).items():
        fields[name] = (spec.input_paths or {}).get(value, value)
    return fields
