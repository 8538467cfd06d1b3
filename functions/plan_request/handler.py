"""Plan the request: the supervisor turns it into a DAG of agent tasks grouped in levels."""

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from tdev.environment import WorkflowEnvironment
from tdev.models import StepEvent
from tdev.observability import logger, metrics, tracer
from tdev.orchestration import planner, workflow

# The stack's variables for this function, validated at cold start (tdev.environment).
environment = WorkflowEnvironment.at_cold_start()

# The supervisor and Agent Squad load at init (cold start), not during the first request.
_ = planner.Supervisor


@logger.inject_lambda_context(correlation_id_path="correlation_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = parse(event=event, model=StepEvent)
    logger.append_keys(execution_id=step.execution_id)
    return workflow.plan_execution(step.execution_id)
