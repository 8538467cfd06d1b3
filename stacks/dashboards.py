"""The operations dashboard as code (spec 1.15.4): one CloudWatch dashboard per environment with the six
views operators ask for, in this order: overview, agent performance, health (API, table, cache, queues,
functions), latest errors (Logs Insights), alerts (every alarm of the environment) and cost (LLM, compute,
storage, with a monthly projection).

One dashboard, not six: CloudWatch bills each dashboard past the first three (USD 3 a month each), and
the views read top to bottom on one page.

Metrics of AWS services are selected with SEARCH expressions on the environment's names (every physical
name starts with the stack names, `tdev-<env>-...`), so this stack imports no function or queue from the
others and a function added later appears on its own. Our own metrics (namespace TDeveloper) are declared
through `CustomMetric`, and `OperationsDashboard.custom_metrics` lists each one the dashboard names: the
metric-evidence test (tests/infrastructure/test_permissions_from_evidence.py) checks every one of them, and
every alarm on our namespace, against the EMF records the product paths really emit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.settings import EnvironmentSettings

NAMESPACE = "TDeveloper"  # POWERTOOLS_METRICS_NAMESPACE of every function
PERIOD = Duration.minutes(5)
WIDTH = 24  # the dashboard grid's width
SECONDS_PER_MONTH = 30 * 24 * 3600
# Prices used for the cost view (us-east-1 list prices, arm64 Lambda, on-demand DynamoDB, S3 Standard):
# the view is an estimate to watch trends, the bill is the authority.
LAMBDA_USD_PER_GB_SECOND = 0.0000133334
LAMBDA_USD_PER_REQUEST = 0.0000002
S3_USD_PER_GB_MONTH = 0.023


@dataclass(frozen=True)
class CustomMetric:
    """One metric our code emits: its name and the names of its dimensions (values vary: agent, model)."""

    name: str
    dimensions: tuple[str, ...]
    statistic: str = "Sum"

    def search(self, label: str = "", statistic: str | None = None) -> str:
        """A SEARCH over every value of the dimensions (one line per agent, model, ...)."""
        schema = ",".join((NAMESPACE, *self.dimensions))
        return f"SEARCH('{{{schema}}} MetricName=\"{self.name}\"', '{statistic or self.statistic}', 300)"


# What the code emits (tdev.orchestration.workflow, tdev.agents, tdev.llm.fallback, tdev.caching,
# tdev.sessions.service); the `service` dimension of the workflow metrics is the emitting function's name.
REQUESTS = {
    "accepted": CustomMetric("RequestsAccepted", ("service",)),
    "succeeded": CustomMetric("RequestsSucceeded", ("service",)),
    "failed": CustomMetric("RequestsFailed", ("service",)),
}
AGENT_RUNS = CustomMetric("AgentRuns", ("agent", "status"))
AGENT_DURATION = CustomMetric("AgentDuration", ("agent",), "p99")
ROUTING_DECISIONS = CustomMetric("RoutingDecisions", ("outcome", "service"))
ROUTING_LATENCY = CustomMetric("RoutingLatency", ("service",), "p99")
ROUTING_ERRORS = CustomMetric("RoutingErrors", ("service",), "Average")  # 1 per failed decision, else 0
ADMISSION_WAIT = CustomMetric("AdmissionWait", ("service",), "p99")
ADMISSION_QUEUE = CustomMetric("AdmissionQueueDepth", ("service",), "Maximum")
LLM_CALLS = CustomMetric("LLMCalls", ("model", "outcome"))
LLM_LATENCY = CustomMetric("LLMLatency", ("model",), "p99")
LLM_TOKENS = CustomMetric("LLMTokens", ("model",))
LLM_COST = CustomMetric("LLMCostMicroUSD", ("model",))
CACHE_HITS = CustomMetric("CacheHits", ("Cache", "service"))
CACHE_MISSES = CustomMetric("CacheMisses", ("Cache", "service"))
# The agent pool of run_agent's container (tdev.agents.pool, spec 1.5): builds by histogram bucket, their
# time, the agents leased at once, each build's memory and build errors by type.
POOL = {
    "built": CustomMetric("AgentInstantiations", ("bucket", "service")),
    "build_time": CustomMetric("AgentInstantiationTime", ("service",), "p99"),
    "active": CustomMetric("ActiveAgents", ("service",), "Maximum"),
    "memory": CustomMetric("AgentMemory", ("agent", "service"), "Average"),
}
MAX_ALARMS_PER_WIDGET = 100  # CloudWatch's limit for one alarm status widget
SESSIONS = {
    "opened": CustomMetric("SessionsOpened", ("service",)),
    "closed": CustomMetric("SessionsClosed", ("service",)),
}


def aws_search(namespace_schema: str, metric: str, statistic: str, *terms: str) -> str:
    """A SEARCH over an AWS namespace, narrowed to this environment by quoted name terms."""
    narrowed = " ".join(f'"{term}"' for term in terms)
    return f"SEARCH('{{{namespace_schema}}} MetricName=\"{metric}\" {narrowed}', '{statistic}', 300)"


def alarm_widgets(alarms: Sequence[cloudwatch.IAlarm]) -> list[cloudwatch.AlarmStatusWidget]:
    """Status widgets for every alarm: one widget shows at most 100, so the next hundred get their own."""
    parts = [alarms[i : i + MAX_ALARMS_PER_WIDGET] for i in range(0, len(alarms), MAX_ALARMS_PER_WIDGET)]
    return [
        cloudwatch.AlarmStatusWidget(
            title="Alarms" if len(parts) == 1 else f"Alarms ({number} of {len(parts)})",
            alarms=list(part),
            width=WIDTH,
            height=max(4, 2 + len(part) // 4),
            sort_by=cloudwatch.AlarmStatusWidgetSortBy.STATE_UPDATED_TIMESTAMP,
        )
        for number, part in enumerate(parts, start=1)
    ]


class OperationsDashboard(Construct):
    """The dashboard; `.custom_metrics` are the TDeveloper metrics its widgets name."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        stack_names: Sequence[str],
        alarms: Iterable[cloudwatch.IAlarm],
        log_groups: Iterable[logs.ILogGroup],
        api_name: str,
        state_machine: sfn.IStateMachine,
        max_memory_mb: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.custom_metrics: list[CustomMetric] = []
        self._row: list[cloudwatch.GraphWidget] = []
        prefix = settings.prefix
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{prefix}-operations",
            default_interval=Duration.hours(3),
            period_override=cloudwatch.PeriodOverride.AUTO,
        )
        self._overview(api_name, settings.name, state_machine)
        self._agents()
        self._health(api_name, settings.name, prefix, stack_names)
        self._errors(list(log_groups))
        self._alerts(list(alarms))
        self._cost(prefix, max_memory_mb)
        self._end_row()

    # ------------------------------------------------------------------------------------------ helpers
    def _custom(self, metric: CustomMetric, label: str, statistic: str | None = None) -> cloudwatch.IMetric:
        self.custom_metrics.append(metric)
        return cloudwatch.MathExpression(
            expression=metric.search(statistic=statistic), label=label, period=PERIOD, using_metrics={}
        )

    def _total(self, metric: CustomMetric, label: str) -> cloudwatch.IMetric:
        """One line: the metric summed over all its dimension values."""
        self.custom_metrics.append(metric)
        return cloudwatch.MathExpression(
            expression=f"SUM({metric.search()})", label=label, period=PERIOD, using_metrics={}
        )

    def _section(self, title: str, text: str) -> None:
        self._end_row()
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(markdown=f"## {title}\n{text}", width=WIDTH, height=2)
        )

    def _graph(self, title: str, metrics: list[cloudwatch.IMetric], width: int = 8) -> None:
        """A graph in the current row (side by side until the row is full)."""
        if sum(w.width for w in self._row) + width > WIDTH:
            self._end_row()
        self._row.append(cloudwatch.GraphWidget(title=title, left=metrics, width=width, height=6))

    def _end_row(self) -> None:
        if self._row:
            self.dashboard.add_widgets(*self._row)
            self._row = []

    # -------------------------------------------------------------------------------------------- views
    def _overview(self, api_name: str, stage: str, state_machine: sfn.IStateMachine) -> None:
        self._section(
            "Overview", "Requests in and their outcomes, the workflow, and the API as clients see it."
        )
        self._graph("Requests", [self._total(metric, label) for label, metric in REQUESTS.items()])
        self._graph("Sessions", [self._total(metric, label) for label, metric in SESSIONS.items()])
        self._graph(
            "Workflow executions",
            [
                state_machine.metric_started(label="started", period=PERIOD),
                state_machine.metric_succeeded(label="succeeded", period=PERIOD),
                state_machine.metric_failed(label="failed", period=PERIOD),
                state_machine.metric_timed_out(label="timed out", period=PERIOD),
            ],
        )
        self._graph(
            "API requests and errors", self._api(api_name, stage, ("Count", "4XXError", "5XXError"), "Sum")
        )

    def _api(
        self, api_name: str, stage: str, names: Sequence[str], statistic: str
    ) -> list[cloudwatch.IMetric]:
        return [
            cloudwatch.Metric(
                namespace="AWS/ApiGateway",
                metric_name=name,
                dimensions_map={"ApiName": api_name, "Stage": stage},
                statistic=statistic,
                period=PERIOD,
                label=name,
            )
            for name in names
        ]

    def _agents(self) -> None:
        self._section(
            "Agent performance", "Runs by agent and outcome, their p99 duration, model calls, routing."
        )
        self._graph("Agent runs (by agent, status)", [self._custom(AGENT_RUNS, "")])
        self._graph("Agent duration p99 (ms)", [self._custom(AGENT_DURATION, "")])
        self._graph("Model calls (by model, outcome)", [self._custom(LLM_CALLS, "")])
        self._graph("Model latency p99 (ms)", [self._custom(LLM_LATENCY, "")])
        self._graph("Model tokens (by model)", [self._custom(LLM_TOKENS, "")])
        self._graph("Routing decisions (admitted, waiting, error)", [self._custom(ROUTING_DECISIONS, "")])
        self._graph("Routing latency p99 (ms)", [self._custom(ROUTING_LATENCY, "")])
        self._graph("Routing error rate (share of decisions)", [self._custom(ROUTING_ERRORS, "")])
        self._graph(
            "Admission: tasks waiting (max), wait p99 (s)",
            [self._custom(ADMISSION_QUEUE, "waiting (max)"), self._custom(ADMISSION_WAIT, "wait p99 (s)")],
        )
        self._graph("Agent builds (by time bucket)", [self._custom(POOL["built"], "")])
        self._graph("Agent build time p99 (us)", [self._custom(POOL["build_time"], "")])
        self._graph(
            "Agents leased at once, memory per build",
            [self._custom(POOL["active"], "active (max)"), self._custom(POOL["memory"], "")],
        )

    def _health(self, api_name: str, stage: str, prefix: str, stack_names: Sequence[str]) -> None:
        self._section(
            "Health",
            "API latency, every function's errors and throttles, the table, the read cache, the queues.",
        )
        self._graph(
            "API latency p99 (ms)", self._api(api_name, stage, ("Latency", "IntegrationLatency"), "p99")
        )
        for label, metric in (("Function errors", "Errors"), ("Function throttles", "Throttles")):
            self._graph(
                label,
                [
                    cloudwatch.MathExpression(
                        expression=aws_search("AWS/Lambda,FunctionName", metric, "Sum", stack),
                        label="",
                        period=PERIOD,
                        using_metrics={},
                    )
                    for stack in stack_names
                ],
            )
        self._graph(
            "Table: throttled requests and errors",
            [
                cloudwatch.MathExpression(
                    expression=f"SUM({aws_search('AWS/DynamoDB,TableName,Operation', name, 'Sum', prefix)})",
                    label=name,
                    period=PERIOD,
                    using_metrics={},
                )
                for name in ("ThrottledRequests", "SystemErrors")
            ],
        )
        hits = self._total(CACHE_HITS, "hits")
        misses = self._total(CACHE_MISSES, "misses")
        self._graph("Read cache: hits and misses", [hits, misses])
        self._graph(
            "Queues: oldest message age (s)",
            [
                cloudwatch.MathExpression(
                    expression=aws_search(
                        "AWS/SQS,QueueName", "ApproximateAgeOfOldestMessage", "Maximum", prefix
                    ),
                    label="",
                    period=PERIOD,
                    using_metrics={},
                )
            ],
        )
        self._graph(
            "Dead letters waiting",
            [
                cloudwatch.MathExpression(
                    expression=aws_search(
                        "AWS/SQS,QueueName", "ApproximateNumberOfMessagesVisible", "Maximum", prefix, "dlq"
                    ),
                    label="",
                    period=PERIOD,
                    using_metrics={},
                )
            ],
        )

    def _errors(self, log_groups: list[logs.ILogGroup]) -> None:
        self._section(
            "Latest errors", "The last 50 ERROR lines of every function (structured Powertools logs)."
        )
        self.dashboard.add_widgets(
            cloudwatch.LogQueryWidget(
                title="Latest errors",
                log_group_names=[group.log_group_name for group in log_groups],
                query_lines=[
                    "fields @timestamp, service, message, error, execution_id",
                    'filter level = "ERROR"',
                    "sort @timestamp desc",
                    "limit 50",
                ],
                width=WIDTH,
                height=8,
            )
        )

    def _alerts(self, alarms: list[cloudwatch.IAlarm]) -> None:
        self._section("Alerts", "Every alarm of this environment; each notifies the alarm topic.")
        self.dashboard.add_widgets(*alarm_widgets(alarms))

    def _cost(self, prefix: str, max_memory_mb: int) -> None:
        self._section(
            "Cost",
            "Estimates from usage at list prices (stacks/dashboards.py): model calls at the deployment's "
            "prices, Lambda compute, S3 storage; each line's projection is the period's rate over 30 days.",
        )
        self.custom_metrics.append(LLM_COST)
        llm = f"SUM({LLM_COST.search()}) / 1000000"
        invocations = f"SUM({aws_search('AWS/Lambda,FunctionName', 'Invocations', 'Sum', prefix)})"
        # GB-seconds need each function's memory: the view prices every second at the largest function's
        # size, an upper bound.
        duration_s = f"SUM({aws_search('AWS/Lambda,FunctionName', 'Duration', 'Sum', prefix)}) / 1000"
        gb_second = LAMBDA_USD_PER_GB_SECOND * max_memory_mb / 1024
        compute = f"{duration_s} * {gb_second:.10f} + {invocations} * {LAMBDA_USD_PER_REQUEST}"
        storage_gb = (
            f"SUM({aws_search('AWS/S3,BucketName,StorageType', 'BucketSizeBytes', 'Average', prefix)})"
            " / 1073741824"
        )
        per_period = {
            "LLM (USD)": llm,
            "Lambda compute (USD)": compute,
        }
        lines: list[cloudwatch.IMetric] = []
        for label, expression in per_period.items():
            lines.append(
                cloudwatch.MathExpression(expression=expression, label=label, period=PERIOD, using_metrics={})
            )
            # The SEARCHes return 300-second points whatever the graph's period: 30 days of them.
            lines.append(
                cloudwatch.MathExpression(
                    expression=f"({expression}) * {SECONDS_PER_MONTH // 300}",
                    label=f"{label}, monthly projection",
                    period=PERIOD,
                    using_metrics={},
                )
            )
        self._graph("Cost per period and monthly projection", lines, width=16)
        self._graph(
            "S3 storage (USD per month)",
            [
                cloudwatch.MathExpression(
                    expression=f"{storage_gb} * {S3_USD_PER_GB_MONTH}",
                    label="S3 storage",
                    period=Duration.days(1),
                    using_metrics={},
                )
            ],
        )


class OperationsStack(Stack):
    """The environment's operations dashboard, built last (it shows every other stack's alarms and logs)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        stacks: Sequence[Stack],
        api_name: str,
        state_machine: sfn.IStateMachine,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        alarms = [c for stack in stacks for c in stack.node.find_all() if isinstance(c, cloudwatch.Alarm)]
        log_groups = [
            c
            for stack in stacks
            for c in stack.node.find_all()
            if isinstance(c, logs.LogGroup) and c.node.id == "Logs"  # each function's own group
        ]
        self.dashboard = OperationsDashboard(
            self,
            "Operations",
            settings=settings,
            stack_names=[stack.stack_name for stack in stacks],
            alarms=alarms,
            log_groups=log_groups,
            api_name=api_name,
            state_machine=state_machine,
            max_memory_mb=max(
                int(c.memory_size or 128)
                for stack in stacks
                for c in stack.node.find_all()
                if isinstance(c, lambda_.CfnFunction)
            ),
        )
