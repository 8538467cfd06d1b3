"""Record a task that failed for good and tell the workflow whether the request can go on."""

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from tdev.environment import TaskFailureEnvironment
from tdev.models import TaskFailureEvent
from tdev.observability import logger, metrics, tracer
from tdev.orchestration import workflow

# The stack's variables for this function, validated at cold start (tdev.environment).
environment = TaskFailureEnvironment.at_cold_start()


@logger.inject_lambda_context(correlation_id_path="correlation_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = parse(event=event, model=TaskFailureEvent)
    logger.append_keys(execution_id=step.execution_id, task_id=step.task.task_id, agent=step.task.agent)
    return workflow.record_task_failure(step.execution_id, step.task.task_id, step.error)
