"""Live progress over the deployed WebSocket API: connect, subscribe to an execution, push its events.

- `connect`: the same authentication as the REST API's authorizer (`tdev.security.authorizer.authenticate`),
  from the query string (`?token=<JWT>` or `?api_key=<key>`: browsers cannot set headers on a WebSocket
  upgrade). The caller's identity is kept on the connection item (tdev.data.connections).
- `subscribe`: a closed frame `{"action": "subscribe", "execution_id": ..., "last_event_id": n}`; the caller
  must be allowed to read the execution exactly as `GET /v1/executions/{id}` decides it (RBAC `read` on
  `execution/<id>`, then project membership: others get "not found" naming `execution_id`). The
  subscription starts its cursor at `last_event_id`.
- `push_after_write`: the pusher, on the table's stream. A new progress event (tdev.data.progress) is sent
  to every subscriber of its execution; a new subscription gets the events it missed. Both go through the
  subscription's cursor under its send lease, so each connection receives its execution's events once, in
  id order, the missed ones before the live ones. A connection API Gateway reports gone (410) is deleted.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from tdev import aws, container
from tdev.data import progress
from tdev.data.connections import Connection, ConnectionRepository
from tdev.data.store import error_code
from tdev.errors import (
    AuthenticationError,
    AuthorizationError,
    ConfigurationError,
    NotFoundError,
    TransientError,
    ValidationError,
)
from tdev.security import authorizer, services
from tdev.security.rbac import AccessRequest
from tdev.security.tokens import Identity
from tdev.settings import get_settings

MAX_TOKEN_CHARS = 8_192  # a JWT with many groups stays far below; anything longer is refused unread
MAX_API_KEY_CHARS = 256
MAX_FRAME_BYTES = 4_096  # a subscribe frame is ~100 bytes


def connections() -> ConnectionRepository:
    return ConnectionRepository(get_settings().table_name)


# ------------------------------------------------------------------------------------------- connect
def connect(connection_id: str, query: dict[str, str] | None, source_ip: str | None = None) -> Connection:
    """Authenticate a $connect from its query string and record the connection; AuthenticationError (the
    connection is refused) for anything else, AuthenticationThrottled after too many failures."""
    params = query or {}
    token, api_key = params.get("token") or "", params.get("api_key") or ""
    if bool(token) == bool(api_key):
        raise AuthenticationError("give exactly one of the query parameters token or api_key")
    if len(token) > MAX_TOKEN_CHARS or len(api_key) > MAX_API_KEY_CHARS:
        raise AuthenticationError("credential too long")
    headers = {"authorization": f"Bearer {token}"} if token else {"x-api-key": api_key}
    identity = authorizer.authenticate(headers, source_ip)
    if identity.signing_required:
        # Such a key must sign every request; a WebSocket upgrade carries no signature.
        raise AuthenticationError("this API key requires signed requests, which a WebSocket cannot send")
    connection = Connection(
        connection_id, identity.principal, identity.roles, identity.source, identity.api_key_id
    )
    connections().open(connection)
    return connection


def disconnect(connection_id: str) -> int:
    """Forget the connection and its subscriptions; how many items went."""
    return connections().close(connection_id)


# ----------------------------------------------------------------------------------------- subscribe
class SubscribeFrame(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    action: Literal["subscribe"]
    execution_id: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9-]+$")
    # Resume after this event id (a stream's last one); 0: from the start of the log.
    last_event_id: int = Field(default=0, ge=0, le=9_999_999_999)


def parse_subscribe(body: str | None) -> SubscribeFrame:
    """The frame, or ValidationError naming the first offending field."""
    if not body:
        raise ValidationError("a subscribe frame is a JSON object", field="body")
    if len(body.encode()) > MAX_FRAME_BYTES:
        raise ValidationError(f"a subscribe frame is at most {MAX_FRAME_BYTES} bytes", field="body")
    try:
        data = json.loads(body)
    except ValueError:
        raise ValidationError("a subscribe frame is a JSON object", field="body") from None
    if not isinstance(data, dict):
        raise ValidationError("a subscribe frame is a JSON object", field="body")
    try:
        return SubscribeFrame.model_validate(data)
    except PydanticValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "body"
        raise ValidationError(f"{field}: {error['msg']}", field=field) from None


def require_readable(identity: Identity, execution_id: str, source_ip: str | None = None) -> None:
    """What GET /v1/executions/{id} checks: RBAC `read` on `execution/<id>`, then membership (project
    members and admins; in the shared project only the submitter). Not found and not visible look alike."""
    decision = services.access().decide(
        AccessRequest(
            principal=identity.principal,
            roles=identity.roles,
            resource=f"execution/{execution_id}",
            action="read",
            source_ip=source_ip,
        )
    )
    if not decision.allowed:
        raise AuthorizationError(
            f"{identity.principal} may not read execution/{execution_id} ({decision.reason})",
            field="execution_id",
        )
    try:
        project_id, submitted_by = container.executions().submitted(execution_id)
    except NotFoundError:
        raise NotFoundError(f"execution {execution_id} not found", field="execution_id") from None
    services.projects().require_visible(
        identity, project_id, submitted_by, f"execution {execution_id}", "execution_id"
    )


def subscribe(connection_id: str, body: str | None, source_ip: str | None = None) -> dict[str, Any]:
    """Validate the frame, check the caller may read the execution, and start the subscription after
    `last_event_id` (the pusher then sends what the caller missed, and everything after it)."""
    frame = parse_subscribe(body)
    connection = connections().get(connection_id)
    if connection is None:
        raise AuthenticationError("unknown or expired connection: connect again")
    identity = Identity(
        principal=connection.principal,
        roles=connection.roles,
        source=connection.source,
        api_key_id=connection.api_key_id,
    )
    require_readable(identity, frame.execution_id, source_ip)
    connections().subscribe(connection_id, frame.execution_id, frame.last_event_id)
    return {"type": "subscribed", "execution_id": frame.execution_id, "last_event_id": frame.last_event_id}


def error_frame(exc: Exception) -> dict[str, Any]:
    """What a client is told when a frame fails (like the REST API's error bodies)."""
    field = getattr(exc, "field", None)
    return {
        "type": "error",
        "status": int(getattr(exc, "status_code", 500)),
        "message": str(getattr(exc, "message", "internal error")),
        **({"field": field} if field else {}),
    }


# ---------------------------------------------------------------------------------------------- push
class ConnectionGone(Exception):
    """API Gateway answered 410: the client went away without a $disconnect."""


def post(connection_id: str, frame: dict[str, Any]) -> None:
    """One frame to one connection through the WebSocket API's management endpoint."""
    endpoint = get_settings().websocket_endpoint
    if not endpoint:
        raise ConfigurationError("TDEV_WEBSOCKET_ENDPOINT is not set: there is no WebSocket API to push to")
    client = aws.endpoint_client("apigatewaymanagementapi", endpoint)
    try:
        client.post_to_connection(ConnectionId=connection_id, Data=json.dumps(frame).encode())
    except ClientError as exc:
        if error_code(exc) == "GoneException":
            raise ConnectionGone(connection_id) from None
        raise TransientError(f"post to connection {connection_id} failed: {error_code(exc)}") from exc


def progress_frame(execution_id: str, event: dict[str, Any]) -> dict[str, Any]:
    return {"type": "progress", "execution_id": execution_id, "event": event}


def deliver(connection_id: str, execution_id: str) -> tuple[int, bool]:
    """Send one subscriber what follows its cursor, in id order, under its send lease. Returns (frames
    sent, whether the connection was gone and deleted). When another sender holds the lease this returns
    at once: that sender looks at the log again after releasing, so nothing appended meanwhile is left."""
    repository, table_name = connections(), get_settings().table_name
    sent = 0
    while True:
        lease = repository.acquire(connection_id, execution_id)
        if lease is None:
            return sent, False
        try:
            while True:
                page = progress.events_after(table_name, execution_id, lease.sent)
                if not page["events"]:
                    break
                for event in page["events"]:
                    post(connection_id, progress_frame(execution_id, event))
                    sent += 1
                    # Per event: a push cut short resends nothing already delivered.
                    lease = repository.advance(lease, int(event["id"]))
        except ConnectionGone:
            repository.close(connection_id)
            return sent, True
        except Exception:
            repository.release(lease)  # a retry of the record may send at once
            raise
        repository.release(lease)
        if not progress.events_after(table_name, execution_id, lease.sent, limit=1)["events"]:
            return sent, False


def push_after_write(image: dict[str, Any]) -> dict[str, Any]:
    """The pusher's operation for one new item of the table's stream (its mapping lets through only new
    PROGRESS events and new SUBSCRIPTIONs): who gets what, and which connections were gone."""
    entity, execution_id = image.get("entity"), str(image.get("execution_id") or "")
    if not execution_id:
        raise ValidationError("the item names no execution", field="execution_id")
    if entity == "PROGRESS":
        targets = connections().subscribers(execution_id)
    elif entity == "SUBSCRIPTION":
        targets = [str(image["connection_id"])]
    else:
        raise ValidationError(f"{entity} items are not pushed", field="entity")
    sent, gone = 0, []
    for connection_id in targets:
        count, was_gone = deliver(connection_id, execution_id)
        sent += count
        if was_gone:
            gone.append(connection_id)
    return {"execution_id": execution_id, "connections": len(targets), "sent": sent, "gone": gone}
