"""The request workflow: plan → run the agent DAG level by level → aggregate → announce (or compensate).

Reads top to bottom like the workflow: the functions the state machine calls, the bus it announces on,
the state machine itself (from `statemachines/request_workflow.asl.json`), then the alarms.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks import acknowledge, as_nag_prints
from stacks.cache_stack import METRICS_NAMESPACE, FunctionNetwork
from stacks.configuration import FlagStore, grant_configuration
from stacks.constructs import TdevFunction, TdevLayers
from stacks.data_stack import TABLE_KEY_ACTIONS, grant_field_encryption, grant_table_data_access
from stacks.settings import EnvironmentSettings
from stacks.workspaces import TestSandbox, WorkspaceBucket, grant_workspaces
from statemachines.request_workflow import (
    DEFINITION_FILE,
    WORKFLOW_FUNCTIONS,
    pascal,
    workflow_substitutions,
)
from tdev.environment import Var
from tdev.orchestration.routing import ROUTING_SERVICE

EVENT_SOURCE_PREFIX = "t-developer"
RECONCILE_EVERY = Duration.minutes(1)
# Functions that run agents (models, tools): more memory and time, Bedrock access.
AGENT_FUNCTIONS = ("run_agent", "fix_failing_tests")
# Functions that work in the execution's workspace and call the test sandbox.
# Functions on the project workspaces -> do they write to them (the test run only reads what it tests).
WORKSPACE_FUNCTIONS = {"run_agent": True, "run_project_tests": False, "fix_failing_tests": True}
# Steps that wait on something slow: the test run waits for the sandbox (its own timeout + margin).
STEP_TIMEOUT_SECONDS = {"run_project_tests": 180}
# Agents call Converse (authorised as InvokeModel); nothing streams (permissions from evidence).
BEDROCK_INVOKE_ACTIONS = ["bedrock:InvokeModel"]


ROUTING_P99_MS = 1_000  # spec 1.3.4
ROUTING_ERROR_RATE = 0.05  # spec 1.3.4: over 5 % of routing decisions failed


class OrchestrationStack(Stack):
    """The workflow functions, the `t-developer` event bus, the state machine and their alarms.

    Exposes `.state_machine`, `.event_bus`, `.functions` (by folder name), `.alarm_topic` and
    `.workflow_substitutions` (what the ASL placeholders were filled with).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        table: dynamodb.ITable,
        key: kms.IKey,
        core_layer_path: str,
        field_key: kms.IKey | None = None,
        dependencies_layer_path: str,
        network: FunctionNetwork | None = None,
        flags: FlagStore,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings

        # 1. The functions the workflow calls.
        layers = TdevLayers(
            self, "Layers", core_path=core_layer_path, dependencies_path=dependencies_layer_path
        )
        shared_environment = {
            Var.TABLE_NAME: table.table_name,
            Var.TDEV_DEFAULT_MODEL: settings.default_model,
            # Request texts and agent outputs are envelope-encrypted under the field key.
            Var.KMS_KEY_ID: (field_key or key).key_arn,
        }
        self.functions: dict[str, TdevFunction] = {}
        for name in WORKFLOW_FUNCTIONS:
            # Agents wait on models: more time and memory, and optionally a concurrency reservation.
            agent = name in AGENT_FUNCTIONS
            self.functions[name] = TdevFunction(
                self,
                pascal(name),
                name=name,
                settings=settings,
                layers=layers,
                log_key=key,
                environment=shared_environment,
                memory_mb=settings.agent_memory_mb if agent else None,
                timeout=Duration.seconds(
                    settings.agent_timeout_seconds if agent else STEP_TIMEOUT_SECONDS.get(name, 60)
                ),
                reserved_concurrency=settings.agent_reserved_concurrency if agent else None,
                network=network,
            )
            grant_table_data_access(table, key, self.functions[name].function, name)
            grant_configuration(self.functions[name].function, settings, name)
            flags.grant(self.functions[name].function, name)  # those that evaluate feature flags
            if field_key is not None:
                grant_field_encryption(field_key, self.functions[name].function)
        for name in AGENT_FUNCTIONS:
            self._let_agents_call_bedrock(self.functions[name])

        # 1b. Where the agents' projects live, and the sandbox that runs their tests (stacks/workspaces.py).
        self.workspaces = WorkspaceBucket(self, "Workspaces", settings=settings, key=key).bucket
        sandbox = TestSandbox(self, "TestSandbox", settings=settings, key=key, layers=layers)
        self.sandbox = sandbox.function
        for name, writes in WORKSPACE_FUNCTIONS.items():
            function = self.functions[name].function
            grant_workspaces(function, key, settings, write=writes)
            # The sandbox's `live` alias (its ARN), like every caller; grant_invoke would add ":*" too.
            function.add_environment(Var.SANDBOX_FUNCTION_NAME, sandbox.alias.function_arn)
            function.add_to_role_policy(
                iam.PolicyStatement(
                    sid="RunTestsInTheSandbox",
                    actions=["lambda:InvokeFunction"],
                    resources=[sandbox.alias.function_arn],
                )
            )

        # 1c. Run statistics written behind (tdev.write_behind): a record that failed every write lands here.
        self.write_behind_dlq = self._write_behind_dead_letters(settings, key)

        # 2. Where the workflow announces progress and outcomes.
        # Events carry execution ids, statuses and errors: encrypted under their own customer-managed key
        # (CDK adds the key policy that lets EventBridge use it for this bus only).
        self.event_bus_key = kms.Key(
            self,
            "EventBusKey",
            description=f"T-Developer {settings.name}: the event bus",
            enable_key_rotation=True,
            removal_policy=settings.removal_policy,
        )
        self.event_bus = events.EventBus(
            self, "EventBus", event_bus_name=f"t-developer-{settings.name}", kms_key=self.event_bus_key
        )
        self.event_bus.archive(
            "Archive",
            description=f"Every T-Developer event ({settings.name}), for replay",
            event_pattern=events.EventPattern(source=events.Match.prefix(EVENT_SOURCE_PREFIX)),
            retention=Duration.days(settings.event_archive_retention_days),
        )

        # 3. The state machine, from the ASL file.
        # Each task invokes its function's `live` alias, so a new version takes the workflow's traffic only
        # as CodeDeploy shifts it (stacks/constructs/deployment.py).
        self.workflow_substitutions = workflow_substitutions(
            function_arns={name: fn.alias.function_arn for name, fn in self.functions.items()}
        )
        workflow_logs = logs.LogGroup(
            self,
            "WorkflowLogs",
            # The /aws/vendedlogs/ prefix keeps CloudWatch Logs resource policies small (AWS guidance).
            log_group_name=f"/aws/vendedlogs/states/{settings.prefix}-request-workflow",
            retention=settings.log_retention,
            encryption_key=key,
            removal_policy=settings.removal_policy,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "RequestWorkflow",
            comment="T-Developer request: plan, run the agent DAG, aggregate, announce",
            definition_body=sfn.DefinitionBody.from_file(str(DEFINITION_FILE)),
            definition_substitutions=self.workflow_substitutions,
            state_machine_type=sfn.StateMachineType.STANDARD,
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=workflow_logs,
                level=sfn.LogLevel.ALL,
                include_execution_data=settings.workflow_log_execution_data,
            ),
        )
        # The definition is a file, so CDK cannot infer permissions: invoke exactly our functions' `live`
        # aliases (as the ASL names them), not their other versions. No events:PutEvents: outcomes are
        # announced through the outbox.
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                sid="InvokeWorkflowFunctions",
                actions=["lambda:InvokeFunction"],
                resources=[fn.alias.function_arn for fn in self.functions.values()],
            )
        )
        acknowledge(
            self.state_machine.role,
            "AwsSolutions-IAM5[Resource::*]",
            "Only the statements Step Functions needs for logging and tracing: CloudWatch Logs vended-log "
            "delivery (logs:CreateLogDelivery, ...) and X-Ray (xray:PutTraceSegments, ...) support no "
            "resource-level permissions.",
        )

        # 4. The reconciler, every minute: starts or fails open executions with no running workflow.
        self.reconciler = self._reconciler(layers, key, table, shared_environment, network)

        # 5. Alarms, to an encrypted topic that only accepts TLS.
        self.alarm_topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"T-Developer alarms ({settings.name})",
            master_key=key,
            enforce_ssl=True,
        )
        self._alarm_on_workflow()
        self._alarm_on_model_spend(settings)
        self._alarm_on_routing()
        self._alarm(
            "WriteBehindDeadLettersAlarm",
            self.write_behind_dlq.metric_approximate_number_of_messages_visible(period=Duration.minutes(5)),
            "Run statistics failed every write and were dead-lettered (tdev.write_behind): replay them",
        )
        for name, fn in {**self.functions, "reconcile_executions": self.reconciler}.items():
            self._alarm_on_function(name, fn)

        CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn)
        CfnOutput(self, "EventBusName", value=self.event_bus.event_bus_name)
        CfnOutput(
            self,
            "AlarmTopicArn",
            value=self.alarm_topic.topic_arn,
            description="Subscribe an email address or chat integration to receive alarms",
        )

    def _reconciler(
        self,
        layers: TdevLayers,
        key: kms.IKey,
        table: dynamodb.ITable,
        environment: dict[str, str],
        network: FunctionNetwork | None,
    ) -> TdevFunction:
        reconciler = TdevFunction(
            self,
            "ReconcileExecutions",
            name="reconcile_executions",
            settings=self.settings,
            layers=layers,
            log_key=key,
            environment={**environment, Var.STATE_MACHINE_ARN: self.state_machine.state_machine_arn},
            timeout=Duration.minutes(2),
            reserved_concurrency=1,  # one pass at a time; the next schedule picks up what is left
            network=network,
            description="T-Developer reconciler: starts or fails executions left without a running workflow",
        )
        function = reconciler.function
        # Exactly what it calls: the status index and execution items (read, finish with its outbox item),
        # the table's key (the table and the sealed request are encrypted with it), start and describe.
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadOpenExecutionsAndRecordOutcomes",
                actions=[
                    "dynamodb:Query",
                    "dynamodb:GetItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:PutItem",
                ],
                resources=[table.table_arn, f"{table.table_arn}/index/GSI1"],
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(sid="UseTableKey", actions=list(TABLE_KEY_ACTIONS), resources=[key.key_arn])
        )
        self.state_machine.grant_start_execution(function)
        self.state_machine.grant_execution(function, "states:DescribeExecution")
        # cdk-nag prints the executions' ARN with the state machine's name as CDK derives it from its ARN.
        machine = self.resolve(self.get_logical_id(self.state_machine.node.default_child))  # type: ignore[arg-type]
        machine_name = '{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"' + str(machine) + '"}]}]}'
        acknowledge(
            reconciler.role,
            as_nag_prints(
                self, "AwsSolutions-IAM5[Resource::arn:{partition}:states:{region}:{account}:execution:"
            )
            + machine_name
            + ":*]",
            "DescribeExecution on this state machine's executions only: their names are the execution ids, "
            "known at run time.",
        )
        events.Rule(
            self,
            "ReconcileSchedule",
            description="Reconcile open executions every minute",
            schedule=events.Schedule.rate(RECONCILE_EVERY),
            targets=[targets.LambdaFunction(reconciler.alias, retry_attempts=0)],
        )
        return reconciler

    def _let_agents_call_bedrock(self, run_agent: TdevFunction) -> None:
        foundation_models = self.format_arn(
            service="bedrock", region="*", account="", resource="foundation-model", resource_name="*"
        )
        inference_profiles = self.format_arn(
            service="bedrock", resource="inference-profile", resource_name="*"
        )
        run_agent.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="InvokeBedrockModels",
                actions=BEDROCK_INVOKE_ACTIONS,
                resources=[foundation_models, inference_profiles],
            )
        )
        reason = (
            "The model is data (TDEV_DEFAULT_MODEL or a per-request model), not known at deploy time: agents "
            "may invoke any foundation model (in any region, as cross-region inference profiles route there) "
            "and this account's inference profiles; only the two invoke actions are allowed."
        )
        for resource in (
            "arn:{partition}:bedrock:*::foundation-model/*",
            "arn:{partition}:bedrock:{region}:{account}:inference-profile/*",
        ):
            acknowledge(
                run_agent.role, as_nag_prints(self, f"AwsSolutions-IAM5[Resource::{resource}]"), reason
            )

    def _write_behind_dead_letters(self, settings: EnvironmentSettings, key: kms.IKey) -> sqs.Queue:
        """The SQS queue run_agent's write-behind flush sends what failed every retry to: SendMessage on
        it alone (the table's key, which encrypts it, run_agent already uses)."""
        queue = sqs.Queue(
            self,
            "WriteBehindDeadLetters",
            queue_name=f"{settings.prefix}-write-behind-dlq",
            retention_period=Duration.days(14),
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
        )
        acknowledge(
            queue, "AwsSolutions-SQS3", "A dead-letter queue (run statistics that failed every write)."
        )
        run_agent = self.functions["run_agent"].function
        run_agent.add_environment(Var.TDEV_WRITE_BEHIND_DLQ_URL, queue.queue_url)
        run_agent.add_to_role_policy(
            iam.PolicyStatement(
                sid="DeadLetterRunStatistics", actions=["sqs:SendMessage"], resources=[queue.queue_arn]
            )
        )
        return queue

    def _alarm(
        self,
        construct_id: str,
        metric: cloudwatch.IMetric,
        description: str,
        *,
        threshold: float = 0,
        evaluation_periods: int = 1,
    ) -> cloudwatch.Alarm:
        """An alarm to the topic when `metric` goes over `threshold` for `evaluation_periods` periods (by
        default: any occurrence)."""
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=evaluation_periods,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.alarm_topic))
        return alarm

    def _alarm_on_workflow(self) -> None:
        period = Duration.minutes(5)
        self._alarm(
            "WorkflowFailedAlarm",
            self.state_machine.metric_failed(period=period),
            "A request workflow execution failed",
        )
        self._alarm(
            "WorkflowTimedOutAlarm",
            self.state_machine.metric_timed_out(period=period),
            "A request workflow execution timed out",
        )
        self._alarm(
            "WorkflowThrottledAlarm",
            self.state_machine.metric_throttled(period=period),
            "Step Functions throttled the request workflow",
        )

    def _alarm_on_model_spend(self, settings: EnvironmentSettings) -> None:
        """The burn rate of every request together: the default model's spend in one hour over the
        environment's threshold (LLMCostMicroUSD, emitted per agent run by tdev.orchestration.workflow).
        Fallback models are not summed: CloudWatch alarms cannot SEARCH over the `model` dimension."""
        spend = cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name="LLMCostMicroUSD",
            dimensions_map={"model": settings.default_model},
            statistic="Sum",
            period=Duration.hours(1),
        )
        self._alarm(
            "ModelSpendAlarm",
            spend,
            f"Model calls on {settings.default_model} cost more than "
            f"USD {settings.model_spend_alarm_usd_per_hour:g} in one hour",
            threshold=round(settings.model_spend_alarm_usd_per_hour * 1_000_000),
        )

    def _alarm_on_routing(self) -> None:
        """Routing (spec 1.3.4): taking an agent's and a model's capacity slot is one Redis script each;
        a p99 over 1 s for 15 minutes means Redis, not the agents, is holding the requests up."""
        self._alarm(
            "RoutingLatencyP99Alarm",
            cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name="RoutingLatency",
                dimensions_map={"service": ROUTING_SERVICE},
                statistic="p99",
                period=Duration.minutes(5),
            ),
            f"Routing decisions took over {ROUTING_P99_MS} ms at p99 for 15 minutes",
            threshold=ROUTING_P99_MS,
            evaluation_periods=3,
        )
        # RoutingErrors is 1 for a failed decision and 0 for any other (tdev.orchestration.routing), so its
        # Average is the share of decisions that failed; quiet periods have no data and do not alarm.
        self._alarm(
            "RoutingErrorRateAlarm",
            cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name="RoutingErrors",
                dimensions_map={"service": ROUTING_SERVICE},
                statistic="Average",
                period=Duration.minutes(5),
            ),
            f"Over {ROUTING_ERROR_RATE:.0%} of routing decisions failed for 15 minutes",
            threshold=ROUTING_ERROR_RATE,
            evaluation_periods=3,
        )

    def _alarm_on_function(self, name: str, fn: TdevFunction) -> None:
        period = Duration.minutes(5)
        self._alarm(
            f"{pascal(name)}ErrorsAlarm",
            fn.function.metric_errors(period=period),
            f"The {name} function raised errors",
        )
        self._alarm(
            f"{pascal(name)}ThrottlesAlarm",
            fn.function.metric_throttles(period=period),
            f"The {name} function was throttled",
        )
