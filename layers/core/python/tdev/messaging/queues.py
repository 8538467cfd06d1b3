"""The queues, rules and bus, defined once: the messaging stack and the local runtime build from these."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from tdev.environment import Var

EVENT_BUS = "t-developer"


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
# Each execution's events for its live progress log (tdev.data.progress), whole EventBridge events.
PROGRESS = QueueSpec("progress", 30, 3600, 5)
QUEUES: tuple[QueueSpec, ...] = (AGENT_EXECUTION, PROJECT_BUILD, NOTIFICATIONS, PROGRESS)
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
    # An input transformer (both or neither): without one the target receives the whole event.
    input_paths: dict[str, str] | None = None
    input_template: str | None = None


# The orchestrator's outcome events (from the outbox, written with the terminal status) become a small
# notification message (input transformer). The consumer deduplicates on the envelope's eventId, fixed
# per execution and outcome, not on EventBridge's id, which is new at every publish.
REQUEST_OUTCOMES = RuleSpec(
    name="request-outcomes-to-notifications",
    pattern={
        "source": ["t-developer.orchestrator"],
        "detail-type": ["RequestCompleted", "RequestFailed"],
        "detail": {"data": {"status": ["SUCCEEDED", "DEGRADED", "FAILED", "BUDGET_EXCEEDED", "CANCELLED"]}},
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


@dataclass(frozen=True)
class QueueRoute:
    """Outbox events the publisher sends straight to a FIFO queue, grouped by a field of the message.

    An EventBridge rule gives an SQS target one fixed MessageGroupId (its `SqsParameters` take no path), so
    a rule into a FIFO queue puts every message in one group, and one message that keeps failing holds back
    all the others. The publisher sends these itself (and puts them on the bus as every event): the message
    group comes from the message (the execution id), the deduplication id is the event id, the body is the
    same flat message a rule's input transformer would make.
    """

    name: str
    source: str
    detail_types: tuple[str, ...]
    statuses: tuple[str, ...]
    queue: str
    # message field -> what it copies: "detail-type", or a dotted path in the envelope ("data.executionId")
    fields: dict[str, str]
    group_by: str  # the message field whose value is the message group
    queue_url_variable: str  # the publisher's environment variable with the queue's URL

    def matches(self, source: str, detail_type: str, detail: dict[str, Any]) -> bool:
        status = (detail.get("data") or {}).get("status")
        return source == self.source and detail_type in self.detail_types and status in self.statuses

    def message(self, detail_type: str, detail: dict[str, Any]) -> dict[str, str]:
        """The message body: every field a string, as the rules' input templates make them."""
        body: dict[str, str] = {}
        for name, path in self.fields.items():
            value: Any = detail_type if path == "detail-type" else detail
            if path != "detail-type":
                for part in path.split("."):
                    value = value.get(part) if isinstance(value, dict) else None
            body[name] = "" if value is None else str(value)
        return body

    def message_group(self, detail_type: str, detail: dict[str, Any]) -> str:
        """The FIFO message group: the message's `group_by` field (events of one group stay in order)."""
        group = self.message(detail_type, detail)[self.group_by]
        if not group:
            raise ValueError(f"event {detail.get('eventId')} has no {self.group_by} to group it by")
        return group


# Task completions from the outbox, in order per execution: message group = the execution id, so a
# message that keeps failing holds back only its own execution's activity.
TASK_ACTIVITY = QueueRoute(
    name="task-activity-to-agent-execution",
    source="t-developer.executions",
    detail_types=("TaskCompleted",),
    statuses=("SUCCEEDED", "FAILED"),
    queue=AGENT_EXECUTION.name,
    fields={
        "eventId": "eventId",
        "type": "detail-type",
        "executionId": "data.executionId",
        "taskId": "data.taskId",
        "status": "data.status",
        "correlationId": "correlationId",
    },
    group_by="executionId",
    queue_url_variable=Var.AGENT_EXECUTION_QUEUE_URL,
)
QUEUE_ROUTES: tuple[QueueRoute, ...] = (TASK_ACTIVITY,)


def route_for(source: str, detail_type: str, detail: dict[str, Any]) -> QueueRoute | None:
    """The queue route an outbox event takes; None for events that go to the bus."""
    return next((r for r in QUEUE_ROUTES if r.matches(source, detail_type, detail)), None)


# Every event about an execution, whole (its eventId is the consumer's deduplication key), to the progress
# log that live streams and WebSocket subscribers read from.
PROGRESS_EVENTS = RuleSpec(
    name="execution-events-to-progress",
    pattern={
        "source": ["t-developer.executions", "t-developer.orchestrator"],
        "detail-type": ["ExecutionAccepted", "TaskCompleted", "RequestCompleted", "RequestFailed"],
    },
    queue=PROGRESS.name,
)
RULES: tuple[RuleSpec, ...] = (REQUEST_OUTCOMES, PROGRESS_EVENTS)


def event_bus_name() -> str:
    return os.environ.get("EVENT_BUS_NAME", EVENT_BUS)


def idempotency_table_name() -> str:
    """Powertools idempotency records live in their own table (key `id`), not on the single table."""
    return os.environ.get("IDEMPOTENCY_TABLE_NAME", "")
