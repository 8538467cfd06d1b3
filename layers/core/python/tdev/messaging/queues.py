"""The queues, rules and bus, defined once: the messaging stack and the local runtime build from these."""

from __future__ import annotations

import os
from dataclasses import dataclass

EVENT_BUS = "t-developer"
SOURCE_PREFIX = "t-developer."


@dataclass(frozen=True)
class QueueSpec:
    name: str  # logical name; FIFO names end in .fifo
    visibility_seconds: int
    retention_seconds: int
    max_receive_count: int
    fifo: bool = False
    content_based_deduplication: bool = False

    @property
    def dlq_name(self) -> str:
        return f"{self.name.removesuffix('.fifo')}-dlq" + (".fifo" if self.fifo else "")


# Receive budgets of 5 (AWS's advice for Lambda consumers): a batch fails whole when its invocation is
# throttled or times out, so a budget of 3 dead-lettered healthy messages after three unlucky batches.
AGENT_EXECUTION = QueueSpec(
    "agent-execution.fifo", 300, 24 * 3600, 5, fifo=True, content_based_deduplication=True
)
PROJECT_BUILD = QueueSpec("project-build", 600, 48 * 3600, 2)
NOTIFICATIONS = QueueSpec("notifications", 30, 3600, 5)
QUEUES: tuple[QueueSpec, ...] = (AGENT_EXECUTION, PROJECT_BUILD, NOTIFICATIONS)
# Stream batches the publisher could not publish after its retries (the event source's on-failure target).
OUTBOX_FAILURES = "outbox-publisher-dlq"


def queue(name: str) -> QueueSpec:
    for spec in QUEUES:
        if name in (spec.name, spec.name.removesuffix(".fifo")):
            return spec
    raise KeyError(name)


@dataclass(frozen=True)
class RuleSpec:
    name: str
    pattern: dict[str, object]
    queue: str
    input_paths: dict[str, str]
    input_template: str
    # FIFO targets: EventBridge gives an SQS target one fixed message group, so the whole stream of task
    # completions is ordered (a superset of the per-execution order the consumer needs).
    message_group_id: str | None = None


# The orchestrator's outcome events (from the outbox, written with the terminal status) become a small
# notification message (input transformer). The consumer deduplicates on the envelope's eventId, fixed
# per execution and outcome, not on EventBridge's id, which is new at every publish.
REQUEST_OUTCOMES = RuleSpec(
    name="request-outcomes-to-notifications",
    pattern={
        "source": ["t-developer.orchestrator"],
        "detail-type": ["RequestCompleted", "RequestFailed"],
        "detail": {"data": {"status": ["SUCCEEDED", "DEGRADED", "FAILED"]}},
    },
    queue=NOTIFICATIONS.name,
    input_paths={
        "id": "$.detail.eventId",
        "type": "$.detail-type",
        "execution": "$.detail.data.executionId",
        "status": "$.detail.data.status",
        "correlation": "$.detail.correlationId",
    },
    # Placeholders inside quotes: every value is a string, and this form is read the same way by
    # EventBridge and by the local emulation.
    input_template=(
        '{"eventId": "<id>", "type": "<type>", "executionId": "<execution>", "status": "<status>", '
        '"correlationId": "<correlation>"}'
    ),
)
# Task completions from the outbox, in order per execution (FIFO message group = the execution id).
TASK_ACTIVITY = RuleSpec(
    name="task-activity-to-agent-execution",
    pattern={
        "source": ["t-developer.executions"],
        "detail-type": ["TaskCompleted"],
        "detail": {"data": {"status": ["SUCCEEDED", "FAILED"]}},
    },
    queue=AGENT_EXECUTION.name,
    input_paths={
        "id": "$.detail.eventId",
        "execution": "$.detail.data.executionId",
        "task": "$.detail.data.taskId",
        "status": "$.detail.data.status",
        "correlation": "$.detail.correlationId",
    },
    input_template=(
        '{"eventId": "<id>", "type": "TaskCompleted", "executionId": "<execution>", "taskId": "<task>", '
        '"status": "<status>", "correlationId": "<correlation>"}'
    ),
    message_group_id="task-activity",
)
RULES: tuple[RuleSpec, ...] = (REQUEST_OUTCOMES, TASK_ACTIVITY)


def event_bus_name() -> str:
    return os.environ.get("EVENT_BUS_NAME", EVENT_BUS)


def idempotency_table_name() -> str:
    """Powertools idempotency records live in their own table (key `id`), not on the single table."""
    return os.environ.get("IDEMPOTENCY_TABLE_NAME", "")
