"""Secrets Manager's rotation function for the secrets the platform generates (tdev.config.rotation):
invoked four times per rotation, once per step (createSecret, setSecret, testSecret, finishSecret)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from tdev.config.rotation import STEPS, rotate
from tdev.environment import SecretRotationEnvironment
from tdev.observability import logger, metrics, tracer

# The stack's variables for this function, validated at cold start (tdev.environment).
environment = SecretRotationEnvironment.at_cold_start()


class RotationEvent(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    secret_id: str = Field(alias="SecretId", min_length=1, max_length=2048)
    token: str = Field(alias="ClientRequestToken", min_length=32, max_length=64)
    step: str = Field(alias="Step", pattern="^(" + "|".join(STEPS) + ")$")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    request = RotationEvent.model_validate(event)
    logger.append_keys(secret=request.secret_id, step=request.step)
    return rotate(request.secret_id, request.token, request.step)
