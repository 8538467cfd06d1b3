"""Route guards and the security routes (API keys, token revocation, principals, roles).

Every route except /health is declared with `guard(resource, action)`: identity from the authorizer's
context (401 without one) → rate limit (429 + Retry-After) → request signature when the API key demands
it (401) → RBAC decision, audited (403 when denied). Bodies above TDEV_MAX_BODY_BYTES get 413 first.

Only then is the request read (`checks_in_order`): stored headers bounded (400 naming them), the body's
media type (415), its JSON shape bounded and parsed (400 `body`), and last the route's own validation.
So a viewer gets 403 whatever the body, and calls with malformed bodies count against the rate limit.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from tdev.data.store import sign_cursor, verified_cursor
from tdev.errors import (
    AuthenticationError,
    AuthorizationError,
    PayloadTooLargeError,
    RateLimitError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from tdev.observability import logger
from tdev.security import inputs, services
from tdev.security.authorizer import identity_from_context, throttle_of
from tdev.security.ratelimit import Limit
from tdev.security.rbac import AUDIT_PAGE_MAX, AccessRequest, Decision, Role, RoleSpec
from tdev.security.tokens import Identity
from tdev.settings import get_settings

router = Router()

Resource = str | Callable[[Any], str]


def request_body(app: Any) -> bytes:
    event = app.current_event
    body = event.body or ""
    if event.is_base64_encoded:
        import base64
        import binascii

        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError("body is not valid base64", field="body") from None
    return body.encode() if isinstance(body, str) else bytes(body)


def read_request(app: Any, next_middleware: Callable[[Any], Response]) -> Response:
    """After every guard, before the route's validation: headers bounded, the body JSON and bounded.

    The parse is cached on the event (`json_body`): the route's validation reads this result."""
    event = app.current_event
    inputs.check_headers(event.headers)
    raw = request_body(app)
    if raw.strip():
        content_type = (event.headers.get("content-type") or "").strip()
        if content_type and not content_type.startswith("application/json"):
            raise UnsupportedMediaTypeError(
                f"Content-Type must be application/json (got {inputs.bounded(content_type, 40)})",
                field="Content-Type",
            )
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError("body is not UTF-8 text", field="body") from None
        _ = event.json_body  # parsed once, by the resolver's deserializer: inputs.loads, bounded
    return next_middleware(app)


def checks_in_order(app: Any) -> None:
    """Authentication, authorization and rate limits before the body is read, on every route.

    Powertools runs its request validation (which parses the body) before any route middleware. Here it
    moves behind them: its place at the front of the stack is taken by a pass-through, and it runs, after
    `read_request`, where the response validation runs (the last step before the route's function)."""
    validate_request = app._request_validation_middleware
    validate_response = app._response_validation_middleware

    def pass_through(app: Any, next_middleware: NextMiddleware) -> Response:
        return next_middleware(app)

    def read_then_validate(app: Any, next_middleware: NextMiddleware) -> Response:
        def respond(a: Any) -> Response:
            return validate_response(a, next_middleware)

        def validate(a: Any) -> Response:
            return validate_request(a, respond)

        return read_request(app, validate)

    app._request_validation_middleware = pass_through
    app._response_validation_middleware = read_then_validate


def body_limit(app: Any, next_middleware: NextMiddleware) -> Response:
    """Global: refuse oversized bodies before anything parses them."""
    limit = get_settings().max_body_bytes
    if len(request_body(app)) > limit:
        raise PayloadTooLargeError(f"request body exceeds {limit} bytes", field="body")
    return next_middleware(app)


def current_identity(app: Any) -> Identity:
    context = (app.current_event.raw_event.get("requestContext") or {}).get("authorizer")
    retry_after = throttle_of(context)
    if retry_after is not None:
        raise RateLimitError(
            f"too many failed authentications; retry after {retry_after} s", retry_after=retry_after
        )
    identity = identity_from_context(context)
    if identity is None:
        raise AuthenticationError(
            "authentication required: send 'Authorization: Bearer <token>' or X-Api-Key"
        )
    return identity


def source_ip(app: Any) -> str | None:
    return ((app.current_event.raw_event.get("requestContext") or {}).get("identity") or {}).get("sourceIp")


def authorize(
    app: Any, identity: Identity, resource: str, action: str, attributes: dict[str, Any] | None = None
) -> Decision:
    decision = services.access().decide(
        AccessRequest(
            principal=identity.principal,
            roles=identity.roles,
            resource=resource,
            action=action,
            attributes=attributes or {},
            source_ip=source_ip(app),
        )
    )
    if not decision.allowed:
        raise AuthorizationError(f"{identity.principal} may not {action} {resource} ({decision.reason})")
    return decision


def _rate_limit(identity: Identity, strict: bool) -> None:
    if not get_settings().redis_url:
        # No shared Redis in this deployment yet: API Gateway's stage throttling and WAF's rate rule still
        # apply, the per-principal limit cannot. Said in every log line rather than failing every request.
        logger.warning("application rate limit skipped: REDIS_URL is not set")
        return
    limits, limiter = services.limits(), services.rate_limiter()
    if identity.api_key_id:
        buckets = [
            (
                f"apikey:{identity.api_key_id}",
                Limit.parse(services.api_keys().rate_limit(identity.api_key_id)),
            )
        ]
    else:
        buckets = [(f"principal:{identity.principal}", limits["default"])]
    if strict:
        buckets.append((f"strict:{identity.principal}", limits["strict"]))
    for bucket, limit in buckets:
        outcome = limiter.hit(bucket, limit)
        if not outcome.allowed:
            raise RateLimitError(
                f"rate limit of {limit.requests} requests per {limit.seconds} s exceeded; "
                f"retry after {outcome.retry_after} s",
                retry_after=max(1, outcome.retry_after),
            )


def guard(
    resource: Resource, action: str, *, strict: bool = False
) -> Callable[[Any, NextMiddleware], Response]:
    """A route middleware: authenticated, within its rate limits, signed if required, and allowed."""

    def middleware(app: Any, next_middleware: NextMiddleware) -> Response:
        identity = current_identity(app)
        _rate_limit(identity, strict)
        if identity.signing_required and identity.api_key_id:
            event = app.current_event
            services.signatures().verify(
                services.api_keys().signing_secret(identity.api_key_id),
                event.http_method,
                event.path,
                dict(event.headers or {}),
                request_body(app),
                key_id=identity.api_key_id,
            )
        authorize(app, identity, resource(app) if callable(resource) else resource, action)
        app.append_context(identity=identity)
        return next_middleware(app)

    return middleware


def identity_of(app: Any) -> Identity:
    return app.context.get("identity") or current_identity(app)


# ------------------------------------------------------------------------------------- routes
class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=500)
    roles: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]] = Field(
        min_length=1, max_length=10
    )
    expires_in_days: int = Field(default=365, ge=1, le=365)
    rate_limit: str = Field(default="60/60", pattern=r"^[1-9]\d{0,5}/[1-9]\d{0,5}$")
    signing_required: bool = False


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jti: str = Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    # Epoch seconds; no token outlives its day, so anything past 2100-01-01 is a mistake or an attack.
    expires_at: int | None = Field(default=None, ge=0, le=4_102_444_800)


KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]
Name = Annotated[str, Path(pattern=r"^[A-Za-z0-9@._:-]{1,128}$")]


def _json(status: int, body: Any) -> Response[Any]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


@router.post(
    "/v1/api-keys",
    middlewares=[guard("security/apikey/new", "create", strict=True)],
    status_code=int(HTTPStatus.CREATED),
)
def create_api_key(body: Annotated[ApiKeyIn, Body()]) -> Response[Any]:
    """Create an API key (admins). The key and its signing secret are in this answer only."""
    created = services.api_keys().create(
        name=body.name,
        description=body.description,
        roles=body.roles,
        owner=identity_of(router).principal,
        expires_in_days=body.expires_in_days,
        rate_limit=body.rate_limit,
        signing_required=body.signing_required,
    )
    return _json(
        HTTPStatus.CREATED,
        {
            "key_id": created.key_id,
            "api_key": created.api_key,
            "signing_secret": created.signing_secret,
            "expires_at": created.expires_at,
            "note": "store the key and signing secret now: they are not shown again",
        },
    )


@router.get("/v1/api-keys", middlewares=[guard("security/apikey/*", "list")])
def list_api_keys() -> list[dict[str, Any]]:
    return services.api_keys().list()


@router.delete(
    "/v1/api-keys/<key_id>",
    middlewares=[
        guard(
            lambda app: f"security/apikey/{app.current_event.path.rsplit('/', 1)[-1]}", "delete", strict=True
        )
    ],
)
def revoke_api_key(key_id: KeyId) -> Response[Any]:
    services.api_keys().revoke(key_id, by=identity_of(router).principal)
    return _json(HTTPStatus.OK, {"key_id": key_id, "revoked": True})


@router.post("/v1/tokens/revoke", middlewares=[guard("security/token/*", "revoke", strict=True)])
def revoke_token(body: Annotated[RevokeIn, Body()]) -> Response[Any]:
    ttl = services.revocations().revoke(body.jti, body.expires_at, by=identity_of(router).principal)
    return _json(HTTPStatus.OK, {"jti": body.jti, "revoked": True, "ttl_seconds": ttl})


@router.post(
    "/v1/principals/<principal>/disable", middlewares=[guard("security/principal/*", "disable", strict=True)]
)
def disable_principal(principal: Name) -> Response[Any]:
    services.revocations().disable_principal(principal, by=identity_of(router).principal)
    return _json(HTTPStatus.OK, {"principal": principal, "disabled": True})


@router.put("/v1/roles/<name>", middlewares=[guard("security/role/*", "update", strict=True)])
def put_role(name: Name, body: Annotated[RoleSpec, Body()]) -> Response[Any]:
    role = Role.from_spec(name, body)
    services.policy_store().put_role(role)
    return _json(
        HTTPStatus.OK,
        {"name": role.name, "inherits": list(role.inherits), "permissions": len(role.permissions)},
    )


# `<time>#<id>`, and `.<signature>` where the deployment signs its cursors (tdev.data.store.sign_cursor).
AuditCursor = Annotated[str | None, Query(pattern=r"^[0-9T:.+-]{10,40}#[0-9a-f]{8}(\.[A-Za-z0-9_-]{22})?$")]
AuditLimit = Annotated[int, Query(ge=1, le=AUDIT_PAGE_MAX)]


@router.get("/v1/audit/<principal>", middlewares=[guard("security/audit/*", "read")])
def audit_of(principal: Name, limit: AuditLimit = 100, before: AuditCursor = None) -> dict[str, Any]:
    """Newest decisions first; `next` is the `before` of the following (older) page."""
    start = verified_cursor(before, field="before") if before else None
    entries, cursor = services.access().audit.page(principal, limit=limit, before=start)
    return {"principal": principal, "entries": entries, "next": sign_cursor(cursor) if cursor else None}
