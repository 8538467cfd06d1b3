"""Scheduled (EventBridge) sweep of open sessions: expire, close idle, recover lapsed heartbeats."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from tdev.environment import SessionSweeperEnvironment
from tdev.observability import logger, metrics, tracer
from tdev.sessions.service import service

# The stack's variables for this function, validated at cold start (tdev.environment).
environment = SessionSweeperEnvironment.at_cold_start()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    summary = service().sweep()
    logger.info("sessions swept", extra={"summary": summary, "scheduled_at": event.get("time")})
    return summary
