"""Run one agent task on its model; the result is stored, only a reference goes back to the workflow."""

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from tdev.agents import runtime
from tdev.environment import AgentEnvironment
from tdev.models import RunAgentEvent
from tdev.observability import logger, metrics, tracer
from tdev.orchestration import workflow

# The stack's variables for this function, validated at cold start (tdev.environment).
environment = AgentEnvironment.at_cold_start()

# Agno and the agent runtime load at init (cold start), not during the first task; with
# TDEV_AGENT_POOL_PRE_WARM the built-in agents are built then too (tdev.agents.pool).
_ = runtime.run_agent
runtime.pre_warm_at_cold_start()


@logger.inject_lambda_context(correlation_id_path="correlation_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = parse(event=event, model=RunAgentEvent)
    logger.append_keys(execution_id=step.execution_id, task_id=step.task.task_id, agent=step.task.agent)
    result = workflow.run_task(step.execution_id, step.task.task_id, step.attempt)
    return {"task_id": result.task_id, "status": result.status.value}
