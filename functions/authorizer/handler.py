"""The Lambda authorizer (REQUEST type): a Bearer token or an X-Api-Key → an API Gateway policy + context.

Invalid credentials raise `Unauthorized`, which API Gateway answers with 401 (its UNAUTHORIZED gateway
response, JSON in the API stack). What the caller may do per route is RBAC in the API function.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tdev import caching
from tdev.environment import AuthorizerEnvironment
from tdev.errors import AuthenticationError
from tdev.observability import logger
from tdev.security import authorizer
from tdev.security.authfailures import AuthenticationThrottled
from tdev.security.inputs import bounded

# The stack's variables for this function, validated at cold start (tdev.environment).
environment = AuthorizerEnvironment.at_cold_start()


class Unauthorized(Exception):
    def __init__(self) -> None:
        super().__init__("Unauthorized")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        return _authorize(event)
    finally:
        caching.publish_invocation_metrics()  # the API-key and role caches' counts of this invocation


def _authorize(event: dict[str, Any]) -> dict[str, Any]:
    source_ip = ((event.get("requestContext") or {}).get("identity") or {}).get("sourceIp")
    try:
        identity = authorizer.authenticate(event.get("headers"), source_ip)
    except AuthenticationThrottled as exc:
        logger.info(
            "authentication throttled",
            extra={"security_event": "authentication_throttled", "source_ip": source_ip},
        )
        return authorizer.throttled_policy(exc.retry_after, event["methodArn"])
    except AuthenticationError as exc:
        # The reason quotes what the caller sent (a kid, an alg): bounded and escaped, never verbatim.
        logger.info(
            "authentication failed",
            extra={
                "security_event": "authentication_failed",
                "reason": bounded(exc.message, 200),
                "source_ip": bounded(source_ip, 64) if source_ip else None,
            },
        )
        raise Unauthorized() from None
    logger.debug(
        "authenticated",
        extra={"security_event": "authenticated", "principal": identity.principal, "source": identity.source},
    )
    return authorizer.policy(identity, event["methodArn"])
