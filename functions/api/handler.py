"""The REST API: submit requests, follow executions, list agents, health. Routes only; the domain decides."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tdev import caching, container
from tdev.environment import ApiEnvironment
from tdev.errors import NotFoundError, RateLimitError, TDevError
from tdev.incidents.recorder import record_exception
from tdev.models import AgentSpec, ErrorBody, ExecutionView, RequestAccepted, RequestIn
from tdev.observability import logger, metrics, tracer
from tdev.orchestration import workflow
from tdev.security import inputs
from tdev.security.headers import cors_origins, with_security_headers
from tdev.security.services import policy_store, projects

# The stack's variables for this function, validated at cold start (tdev.environment).
environment = ApiEnvironment.at_cold_start()

try:  # the package (tests, local runtime) ...
    from functions.api import (
        agent_routes,
        alert_routes,
        artifacts,
        budget_routes,
        config_routes,
        description,
        error_routes,
        model_routes,
        project_routes,
        security,
        sessions,
    )
except ImportError:  # ... or deployed, where this folder is the code root
    import agent_routes  # type: ignore[no-redef]
    import alert_routes  # type: ignore[no-redef]
    import artifacts  # type: ignore[no-redef]
    import budget_routes  # type: ignore[no-redef]
    import config_routes  # type: ignore[no-redef]
    import description  # type: ignore[no-redef]
    import error_routes  # type: ignore[no-redef]
    import model_routes  # type: ignore[no-redef]
    import project_routes  # type: ignore[no-redef]
    import security  # type: ignore[no-redef]
    import sessions  # type: ignore[no-redef]

_origins = cors_origins()
app = APIGatewayRestResolver(
    enable_validation=True,
    cors=CORSConfig(allow_origin=_origins[0], extra_origins=_origins[1:], max_age=600) if _origins else None,
    json_body_deserializer=inputs.loads,  # depth and number size bounded before the parse
)
app.use(middlewares=[security.body_limit])
security.checks_in_order(app)  # every guard before the body is read
app.include_router(security.router)
app.include_router(sessions.router)
app.include_router(model_routes.router)
app.include_router(project_routes.router)
app.include_router(artifacts.router)
app.include_router(config_routes.router)
app.include_router(agent_routes.router)
app.include_router(error_routes.router)
app.include_router(alert_routes.router)
app.include_router(budget_routes.router)

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$"),
]
ExecutionId = Annotated[str, Path(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9-]+$")]


def _principal() -> str:
    """Who is asking: the authorizer's principal when there is one (the security layer sets it)."""
    authorizer = app.current_event.request_context.authorizer
    return str(authorizer.principal_id or authorizer.claims.get("sub") or "anonymous")


def _correlation_id() -> str:
    # Bounded at the edge (tdev.security.inputs); an invalid one never reaches the workflow or a message.
    given = app.current_event.headers.get("x-correlation-id")
    if given and inputs.CORRELATION_ID.fullmatch(given):
        return str(given)
    return str(app.current_event.request_context.request_id)


@app.post(
    "/v1/requests",
    middlewares=[security.guard("request/new", "create")],
    responses={
        int(HTTPStatus.ACCEPTED): {
            "description": "Accepted: a new execution, started",
            "content": {"application/json": {"model": RequestAccepted}},
        },
        int(HTTPStatus.OK): {
            "description": "The execution an earlier request with this Idempotency-Key and body started",
            "content": {"application/json": {"model": RequestAccepted}},
        },
        int(HTTPStatus.UNPROCESSABLE_ENTITY): {
            "description": "This Idempotency-Key was already used with a different body",
            "content": {"application/json": {"model": ErrorBody}},
        },
    },
)
def create_request(
    body: Annotated[RequestIn, Body()], idempotency_key: IdempotencyKey = None
) -> Response[RequestAccepted]:
    # Developers submit into the shared project, projects they own (the first submitter owns a project)
    # and projects they are members of; a session joined must be the caller's own.
    identity = security.identity_of(app)
    attributes = projects().attributes(body.project_id, identity.principal)
    security.authorize(app, identity, f"project/{body.project_id}", "execute", attributes)
    if body.session_id:
        sessions.require_attachable(body.session_id, identity)
    if body.base_execution_id:  # a base's files are as private as its execution (the artifacts routes' rule)
        _require_visible(body.base_execution_id, "base_execution_id")
    accepted, created = workflow.submit_request(
        body, principal=_principal(), idempotency_key=idempotency_key, correlation_id=_correlation_id()
    )
    if body.session_id and created:
        sessions.attach_request(body.session_id, accepted.execution_id)
    return Response(
        status_code=int(HTTPStatus.ACCEPTED if created else HTTPStatus.OK),
        content_type=content_types.APPLICATION_JSON,
        body=accepted,
        headers={"Location": accepted.status_url},
    )


@app.get(
    "/v1/executions/<execution_id>",
    middlewares=[security.guard(lambda a: f"execution/{a.current_event.path.rsplit('/', 1)[-1]}", "read")],
)
def get_execution(execution_id: ExecutionId) -> ExecutionView:
    _require_visible(execution_id, "execution_id")
    return container.executions().view(execution_id)


@app.post(
    "/v1/executions/<execution_id>/cancel",
    middlewares=[security.guard(lambda a: f"execution/{a.current_event.path.rsplit('/', 2)[-2]}", "cancel")],
    responses={
        int(HTTPStatus.OK): {
            "description": "CANCELLED, with what it spent (again: the same answer)",
            "content": {"application/json": {"model": ExecutionView}},
        },
        int(HTTPStatus.CONFLICT): {
            "description": "The execution already ended with another status",
            "content": {"application/json": {"model": ErrorBody}},
        },
    },
)
def cancel_execution(execution_id: ExecutionId) -> ExecutionView:
    """The kill switch: stop the workflow and the agents in flight; the execution ends CANCELLED with what
    it spent. Idempotent; 409 when it already ended otherwise. Who may submit into its project may cancel."""
    identity = security.identity_of(app)
    project_id = _require_visible(execution_id, "execution_id")
    attributes = projects().attributes(project_id, identity.principal)
    security.authorize(app, identity, f"project/{project_id}", "execute", attributes)
    workflow.cancel_execution(execution_id, by=identity.principal)
    return container.executions().view(execution_id)


@app.get(
    "/v1/executions/<execution_id>/history",
    middlewares=[security.guard(lambda a: f"execution/{a.current_event.path.split('/')[3]}", "read")],
)
def get_execution_history(execution_id: ExecutionId) -> dict[str, Any]:
    """The execution's events in order (accepted, each task's result, the outcome) and the state they replay
    to (tdev.data.history)."""
    _require_visible(execution_id, "execution_id")
    return container.executions().history(execution_id)


ProgressAfter = Annotated[int, Query(ge=0, le=9_999_999_999)]
ProgressLimit = Annotated[int, Query(ge=1, le=100)]


@app.get(
    "/v1/executions/<execution_id>/events",
    middlewares=[security.guard(lambda a: f"execution/{a.current_event.path.split('/')[3]}", "read")],
)
def get_execution_events(
    execution_id: ExecutionId, after: ProgressAfter = 0, limit: ProgressLimit = 100
) -> dict[str, Any]:
    """The execution's live progress, numbered 1, 2, 3 ... in the order the bus delivered it: the events
    after `after` (a stream's last event id), and `terminal` once the outcome is among them
    (tdev.data.progress). `tdev serve` also streams this route as server-sent events."""
    _require_visible(execution_id, "execution_id")
    return container.executions().progress(execution_id, after, limit)


def _require_visible(execution_id: str, field: str) -> str:
    """Project members (and admins) only; in the shared project, only the submitter. Others get 404, as for
    an execution that does not exist, with `field` named. Returns the execution's project."""
    try:
        project_id, submitted_by = container.executions().submitted(execution_id)
    except NotFoundError:
        raise NotFoundError(f"execution {execution_id} not found", field=field) from None
    projects().require_visible(
        security.identity_of(app), project_id, submitted_by, f"execution {execution_id}", field
    )
    return project_id


@app.get("/v1/agents", middlewares=[security.guard("agent/catalog", "list")])
def list_agents() -> list[AgentSpec]:
    return container.agents().list()


@app.get("/health")
def health() -> dict[str, Any]:
    return {"status": "ok", "service": "t-developer", "version": description.VERSION}


# The API's description: public like /health (tdev.security.routes), no guard, no data.
@app.get("/openapi.json")
def openapi_document() -> Response[str]:
    document = description.openapi_document(app, description.stage_prefix(app.current_event.raw_event))
    return Response(HTTPStatus.OK, content_types.APPLICATION_JSON, document)


@app.get("/docs")
def docs_page() -> Response[str]:
    html, policy = description.docs_page()
    return Response(HTTPStatus.OK, content_types.TEXT_HTML, html, headers={"Content-Security-Policy": policy})


@app.exception_handler(RequestValidationError)
def invalid_request(exc: RequestValidationError) -> Response[str]:
    errors = [dict(e) for e in exc.errors()]
    first = errors[0] if errors else {}
    location = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
    # A missing or non-object body is located at ("body",) alone: name it.
    field = ".".join(location) or ("body" if tuple(first.get("loc", ())) == ("body",) else None)
    details = [
        {
            "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body",
            "message": e.get("msg") or e.get("type"),
        }
        for e in errors
    ]
    message = (
        f"{field}: {details[0]['message']}" if field else str(details[0]["message"] if details else "invalid")
    )
    return _error(
        HTTPStatus.BAD_REQUEST,
        ErrorBody(error="ValidationError", message=message, field=field, details=details),
    )


@app.exception_handler(RequestUnsupportedContentType)
def unsupported_content_type(_: RequestUnsupportedContentType) -> Response[str]:
    return _error(
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        ErrorBody(
            error="UnsupportedMediaType",
            message="Content-Type must be application/json",
            field="Content-Type",
        ),
    )


@app.exception_handler(RateLimitError)
def rate_limited(exc: RateLimitError) -> Response[str]:
    response = _error(exc.status_code, ErrorBody(error=exc.code, message=exc.message, field=exc.field))
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


@app.exception_handler(TDevError)
def domain_error(exc: TDevError) -> Response[str]:
    if exc.status_code >= 500:
        logger.exception("request failed")
        record_exception(exc, source="api")  # error analytics: never raises
    details = list(getattr(exc, "details", None) or [])  # every invalid key of a configuration change
    return _error(
        exc.status_code, ErrorBody(error=exc.code, message=exc.message, field=exc.field, details=details)
    )


@app.exception_handler(Exception)
def unexpected_error(exc: Exception) -> Response[str]:
    """Never a stack trace to the caller: log it with the correlation id, answer a JSON 500."""
    logger.exception("unexpected error")
    record_exception(exc, source="api")  # error analytics (tdev.incidents): never raises
    return _error(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        ErrorBody(
            error="InternalError",
            message=f"internal error; quote correlation id {_correlation_id()} when reporting it",
        ),
    )


@app.not_found
def route_not_found(_: Exception) -> Response[str]:
    return _error(
        HTTPStatus.NOT_FOUND,
        ErrorBody(
            error="NotFound",
            message=f"no route {inputs.bounded(app.current_event.http_method, 10)} "
            f"{inputs.bounded(app.current_event.path, 200)}",
        ),
    )


def _error(status: int, body: ErrorBody) -> Response[str]:
    return Response(
        status_code=int(status),
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump_json(exclude_none=True),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    caching.warm_at_cold_start("roles", lambda: policy_store().warm())  # RBAC reads them on every route
    try:
        return with_security_headers(app.resolve(event, context))
    finally:
        caching.publish_invocation_metrics()
