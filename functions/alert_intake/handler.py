"""Alert intake: error analytics' events (`tdev.errors`) and CloudWatch alarm state changes, from their
EventBridge rules, become alerts (suppressed, grouped, routed or escalated: tdev.alerts.service)."""

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from tdev.alerts import service
from tdev.environment import AlertEnvironment
from tdev.errors import ValidationError
from tdev.observability import logger, metrics, tracer

# The stack's variables for this function, validated at cold start (tdev.environment).
environment = AlertEnvironment.at_cold_start()


@logger.inject_lambda_context(correlation_id_path="id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    parsed = parse(event=event, model=EventBridgeModel)
    logger.append_keys(event_source=parsed.source, detail_type=parsed.detail_type)
    try:
        return service.intake(event)
    except ValidationError as exc:  # an event no alert can come from: dropped (a retry would fail the same)
        logger.warning("event raises no alert", extra={"field": exc.field, "reason": exc.message})
        return {"outcome": "rejected", "field": exc.field, "reason": exc.message}
