"""Scheduled (EventBridge, every minute): start or fail open executions that have no running workflow."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from tdev.environment import ReconcilerEnvironment
from tdev.observability import logger, metrics, tracer
from tdev.orchestration import reconciler

# The stack's variables for this function, validated at cold start (tdev.environment).
environment = ReconcilerEnvironment.at_cold_start()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(scheduled_at=event.get("time"))
    return reconciler.reconcile(now=reconciler.scheduled_time(event)).as_dict()
