"""The test sandbox: run a project's pytest tests from the files in the event, isolated (tdev.sandbox).

Deployed with no role permissions beyond its logs and no network path out; the files arrive in the
payload, so it reads nothing else. The child process gets a scrubbed environment (no credentials).
"""

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from tdev.environment import SandboxEnvironment
from tdev.models import SandboxEvent
from tdev.observability import logger, metrics, tracer
from tdev.sandbox import Limits, run_tests

# The stack's variables for this function, validated at cold start (tdev.environment).
environment = SandboxEnvironment.at_cold_start()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = parse(event=event, model=SandboxEvent)
    logger.append_keys(files=len(step.files))
    limits = Limits(timeout_seconds=step.timeout_seconds, cpu_seconds=step.timeout_seconds)
    return run_tests(step.files, limits).as_dict()
