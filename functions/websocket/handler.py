"""The WebSocket API's routes: $connect (authenticated from the query string), $disconnect, subscribe.

Each route is one domain call (tdev.realtime). A refused $connect answers 401 (or 429 when throttled), so
API Gateway refuses the upgrade; subscribe answers a frame (the route returns its response to the client):
`{"type": "subscribed", ...}` or `{"type": "error", "status": ..., "field": ..., "message": ...}`.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from tdev import realtime
from tdev.environment import WebSocketEnvironment
from tdev.errors import AuthenticationError, TDevError
from tdev.observability import logger, metrics, tracer
from tdev.security.authfailures import AuthenticationThrottled
from tdev.security.inputs import bounded

# The stack's variables for this function, validated at cold start (tdev.environment).
environment = WebSocketEnvironment.at_cold_start()


def _answer(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "body": json.dumps(body)}


def on_connect(connection_id: str, event: dict[str, Any], source_ip: str | None) -> dict[str, Any]:
    try:
        connection = realtime.connect(connection_id, event.get("queryStringParameters"), source_ip)
    except AuthenticationThrottled as exc:
        return _answer(429, {"message": "too many failed authentications", "retry_after": exc.retry_after})
    except AuthenticationError as exc:
        logger.info(
            "websocket authentication failed",
            extra={"security_event": "authentication_failed", "reason": bounded(exc.message, 200)},
        )
        return _answer(401, {"message": "Unauthorized"})
    logger.info("websocket connected", extra={"principal": connection.principal, "source": connection.source})
    return _answer(200, {"type": "connected"})


def on_disconnect(connection_id: str, event: dict[str, Any], source_ip: str | None) -> dict[str, Any]:
    return _answer(200, {"type": "disconnected", "removed": realtime.disconnect(connection_id)})


def on_subscribe(connection_id: str, event: dict[str, Any], source_ip: str | None) -> dict[str, Any]:
    try:
        return _answer(200, realtime.subscribe(connection_id, event.get("body"), source_ip))
    except TDevError as exc:
        return _answer(exc.status_code, realtime.error_frame(exc))


ROUTES = {"$connect": on_connect, "$disconnect": on_disconnect, "subscribe": on_subscribe}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = event.get("requestContext") or {}
    route, connection_id = str(request.get("routeKey") or ""), str(request.get("connectionId") or "")
    logger.append_keys(route=route, connection_id=connection_id)
    source_ip = (request.get("identity") or {}).get("sourceIp")
    if route not in ROUTES or not connection_id:
        # $default: any other action gets an error frame naming what it should have been.
        return _answer(400, {"type": "error", "status": 400, "field": "action", "message": "unknown action"})
    return ROUTES[route](connection_id, event, source_ip)
