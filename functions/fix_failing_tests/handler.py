"""Verify loop: the code agent fixes what the last test run found, in the execution's workspace."""

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from tdev.agents import runtime
from tdev.environment import AgentEnvironment
from tdev.models import VerifyEvent
from tdev.observability import logger, metrics, tracer
from tdev.orchestration import verify

# The stack's variables for this function, validated at cold start (tdev.environment).
environment = AgentEnvironment.at_cold_start()

# Agno and the agent runtime load at init (cold start), as in run_agent.
_ = runtime.run_agent


@logger.inject_lambda_context(correlation_id_path="correlation_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = parse(event=event, model=VerifyEvent)
    logger.append_keys(execution_id=step.execution_id, iteration=step.iteration)
    return verify.fix_failing_tests(step.execution_id, step.iteration)
