"""Run one agent task on its model; the result is stored, only a reference goes back to the workflow."""

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from tdev import caching, container, write_behind
from tdev.agents import runtime
from tdev.environment import RunAgentEnvironment
from tdev.incidents.recorder import recorded
from tdev.models import RunAgentEvent
from tdev.observability import logger, metrics, tracer
from tdev.orchestration import workflow

# The stack's variables for this function, validated at cold start (tdev.environment).
environment = RunAgentEnvironment.at_cold_start()

# Agno and the agent runtime load at init (cold start), not during the first task; with
# TDEV_AGENT_POOL_PRE_WARM the built-in agents are built then too (tdev.agents.pool).
_ = runtime.run_agent
runtime.pre_warm_at_cold_start()


@logger.inject_lambda_context(correlation_id_path="correlation_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
@recorded("run_agent")  # every failing attempt into the error analytics (tdev.incidents), then re-raised
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    caching.warm_at_cold_start("registry", lambda: container.agents().warm())  # every step reads its agent
    step = parse(event=event, model=RunAgentEvent)
    logger.append_keys(execution_id=step.execution_id, task_id=step.task.task_id, agent=step.task.agent)
    try:
        result = workflow.run_task(step.execution_id, step.task.task_id, step.attempt)
    finally:
        write_behind.flush_all()  # the run's statistics, buffered in Redis, reach the table before we end
        caching.publish_invocation_metrics()  # the registry cache's counts of this invocation
    return {"task_id": result.task_id, "status": result.status.value}
