"""Aggregate the task results: usage and cost totals, the terminal status, the completion event."""

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from tdev.environment import WorkflowEnvironment
from tdev.models import StepEvent
from tdev.observability import logger, metrics, tracer
from tdev.orchestration import workflow

# The stack's variables for this function, validated at cold start (tdev.environment).
environment = WorkflowEnvironment.at_cold_start()


@logger.inject_lambda_context(correlation_id_path="correlation_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = parse(event=event, model=StepEvent)
    logger.append_keys(execution_id=step.execution_id)
    return workflow.aggregate(step.execution_id)
