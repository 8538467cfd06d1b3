"""Session routes: open, read, pause/resume/terminate, chat, checkpoint, heartbeat, remember."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path

from tdev.errors import AuthorizationError, NotFoundError, ValidationError
from tdev.security.services import projects
from tdev.security.tokens import Identity
from tdev.sessions.checkpoints import CheckpointKind
from tdev.sessions.models import CheckpointIn, MemoryIn, MessageIn, SessionIn
from tdev.sessions.service import service

try:  # the package (tests, local runtime) ...
    from functions.api import security
except ImportError:  # ... or deployed, where this folder is the code root
    import security  # type: ignore[no-redef]

router = Router()

SESSION_ID = re.compile(r"ses-[a-f0-9]{1,40}")
SessionId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^ses-[a-f0-9]{1,40}$")]


def _session_resource(app: Any) -> str:
    parts = app.current_event.path.strip("/").split("/")
    return f"session/{parts[2]}" if len(parts) > 2 else "session/new"


def _guard(action: str) -> Any:
    """Authenticated, rate-limited, RBAC-allowed (`session/<id>` resources), and owned by the caller."""

    def owned(app: Any, next_middleware: Any) -> Any:
        identity = security.identity_of(app)
        resource = _session_resource(app)
        if resource != "session/new" and "admin" not in identity.roles:
            session_id = resource.split("/", 1)[1]
            if not SESSION_ID.fullmatch(session_id):  # a malformed id is looked up nowhere
                raise ValidationError("session_id: not a session id (ses-<hex>)", field="session_id")
            owner = service().get(session_id).get("user_id")
            if owner != identity.principal:
                raise AuthorizationError(f"{identity.principal} may not {action} {resource}: not its owner")
        return next_middleware(app)

    return [security.guard(_session_resource, action), owned]


def _principal() -> str:
    return security.identity_of(router).principal


@router.post("/v1/sessions", middlewares=_guard("create"), status_code=int(HTTPStatus.CREATED))
def open_session(body: Annotated[SessionIn, Body()]) -> Response[dict[str, Any]]:
    identity = security.identity_of(router)
    principal = identity.principal
    if body.user_id and body.user_id != principal and "admin" not in identity.roles:
        raise AuthorizationError(f"{principal} may not open a session for {body.user_id}")
    # A session works inside a project: the same project check as submitting a request into it.
    attributes = projects().attributes(body.project_id, principal)
    security.authorize(router, identity, f"project/{body.project_id}", "execute", attributes)
    session = service().open(
        body.user_id or principal,
        body.project_id,
        body.agents,
        max_duration_seconds=body.max_duration_seconds,
        idle_timeout_seconds=body.idle_timeout_seconds,
        budget_usd=body.budget_usd,
    )
    return Response(
        status_code=int(HTTPStatus.CREATED),
        content_type=content_types.APPLICATION_JSON,
        body=session.view(),
        headers={"Location": f"/v1/sessions/{session.session_id}"},
    )


@router.get("/v1/sessions/<session_id>", middlewares=_guard("read"))
def get_session(session_id: SessionId) -> dict[str, Any]:
    return service().get(session_id)


@router.post("/v1/sessions/<session_id>/pause", middlewares=_guard("update"))
def pause_session(session_id: SessionId) -> dict[str, Any]:
    return service().pause(session_id).view()


@router.post("/v1/sessions/<session_id>/resume", middlewares=_guard("update"))
def resume_session(session_id: SessionId) -> dict[str, Any]:
    return service().resume(session_id).view()


@router.post("/v1/sessions/<session_id>/terminate", middlewares=_guard("update"))
def terminate_session(session_id: SessionId) -> dict[str, Any]:
    return service().terminate(session_id).view()


@router.post("/v1/sessions/<session_id>/kill", middlewares=_guard("kill"))
def kill_session(session_id: SessionId) -> dict[str, Any]:
    """The kill switch of a session: its running executions are cancelled, then it is terminated."""
    return service().kill(session_id, by=_principal())


@router.post("/v1/sessions/<session_id>/heartbeat", middlewares=_guard("update"))
def heartbeat(session_id: SessionId) -> dict[str, Any]:
    service().heartbeat(session_id)
    return {"session_id": session_id, "alive": True}


@router.post("/v1/sessions/<session_id>/messages", middlewares=_guard("update"))
def post_message(session_id: SessionId, body: Annotated[MessageIn, Body()]) -> dict[str, Any]:
    return service().chat(session_id, body.text)


@router.post("/v1/sessions/<session_id>/memory", middlewares=_guard("update"))
def remember(session_id: SessionId, body: Annotated[MemoryIn, Body()]) -> dict[str, Any]:
    item_id = service().remember(session_id, body.content, body.importance, body.critical)
    return {"session_id": session_id, "item_id": item_id}


@router.post(
    "/v1/sessions/<session_id>/checkpoints", middlewares=_guard("update"), status_code=int(HTTPStatus.CREATED)
)
def checkpoint(session_id: SessionId, body: Annotated[CheckpointIn, Body()]) -> Response[dict[str, Any]]:
    meta = service().checkpoint(session_id, CheckpointKind(body.kind))
    return Response(
        status_code=int(HTTPStatus.CREATED), content_type=content_types.APPLICATION_JSON, body=meta.view()
    )


def require_active(session_id: str) -> None:
    """A request may join a session only while it is active (409 otherwise, 404 when unknown)."""
    service().require_active(session_id)


def require_attachable(session_id: str, identity: Identity) -> None:
    """A request may join only the caller's own session (404 for anyone else's), and only while it is
    active (409 otherwise)."""
    if "admin" not in identity.roles and service().repo.get(session_id).user_id != identity.principal:
        raise NotFoundError(f"no session {session_id}", field="session_id")
    service().require_active(session_id)


def attach_request(session_id: str, execution_id: str) -> None:
    service().attach_request(session_id, execution_id)
