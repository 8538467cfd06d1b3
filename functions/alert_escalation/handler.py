"""The alert escalation's steps (statemachines/alert_escalation.asl.json): notify a level, check whether
the alert was acknowledged after the wait, record how the escalation ended."""

from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from tdev.alerts import service
from tdev.environment import AlertEnvironment
from tdev.observability import logger, metrics, tracer

# The stack's variables for this function, validated at cold start (tdev.environment).
environment = AlertEnvironment.at_cold_start()

AlertId = Annotated[str, Field(pattern=r"^[0-9a-f]{8,40}$")]


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alert_id: AlertId


class NotifyStep(_Step):
    action: Literal["notify"]
    level: int = Field(ge=1, le=20)


class CheckStep(_Step):
    action: Literal["check"]
    level: int = Field(ge=1, le=20)


class RecordStep(_Step):
    action: Literal["record"]
    status: Literal["ACKNOWLEDGED", "EXHAUSTED", "FAILED"]
    error: dict[str, Any] | None = None


class EscalationStep(BaseModel):
    step: Annotated[NotifyStep | CheckStep | RecordStep, Field(discriminator="action")]


@logger.inject_lambda_context(correlation_id_path="alert_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = parse(event={"step": event}, model=EscalationStep).step
    logger.append_keys(alert_id=step.alert_id, action=step.action)
    if isinstance(step, NotifyStep):
        return service.notify_level(step.alert_id, step.level)
    if isinstance(step, CheckStep):
        return service.check_acknowledged(step.alert_id, step.level)
    cause = (step.error or {}).get("Cause") or (step.error or {}).get("Error")
    return service.record_escalation_end(step.alert_id, step.status, str(cause) if cause else None)
