"""The failure path's last step: compensation failed for good; record FAILED with both errors, visibly."""

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from tdev.environment import WorkflowEnvironment
from tdev.models import CompensationFailureEvent
from tdev.observability import logger, metrics, tracer
from tdev.orchestration import workflow

# The stack's variables for this function, validated at cold start (tdev.environment).
environment = WorkflowEnvironment.at_cold_start()


@logger.inject_lambda_context(correlation_id_path="correlation_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = parse(event=event, model=CompensationFailureEvent)
    logger.append_keys(execution_id=step.execution_id)
    return workflow.record_compensation_failure(step.execution_id, step.error, step.compensation_error)
