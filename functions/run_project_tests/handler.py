"""Verify loop: run the project's tests in the sandbox and record the iteration."""

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from tdev.environment import WorkspaceEnvironment
from tdev.models import VerifyEvent
from tdev.observability import logger, metrics, tracer
from tdev.orchestration import verify

# The stack's variables for this function, validated at cold start (tdev.environment).
environment = WorkspaceEnvironment.at_cold_start()


@logger.inject_lambda_context(correlation_id_path="correlation_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = parse(event=event, model=VerifyEvent)
    logger.append_keys(execution_id=step.execution_id, iteration=step.iteration + 1)
    return verify.run_project_tests(step.execution_id, step.iteration)
