"""Session routes: open, read, pause/resume/terminate, chat, checkpoint, heartbeat, remember."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path

from tdev.sessions.checkpoints import CheckpointKind
from tdev.sessions.models import CheckpointIn, MemoryIn, MessageIn, SessionIn
from tdev.sessions.service import service

router = Router()

SessionId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^ses-[a-f0-9]{1,40}$")]


def _principal() -> str:
    event: Any = router.current_event  # an APIGatewayProxyEvent (the app is a REST resolver)
    authorizer = event.request_context.authorizer
    return str(authorizer.principal_id or authorizer.claims.get("sub") or "anonymous")


@router.post("/v1/sessions")
def open_session(body: Annotated[SessionIn, Body()]) -> Response[dict[str, Any]]:
    session = service().open(
        body.user_id or _principal(),
        body.project_id,
        body.agents,
        max_duration_seconds=body.max_duration_seconds,
        idle_timeout_seconds=body.idle_timeout_seconds,
    )
    return Response(
        status_code=int(HTTPStatus.CREATED),
        content_type=content_types.APPLICATION_JSON,
        body=session.view(),
        headers={"Location": f"/v1/sessions/{session.session_id}"},
    )


@router.get("/v1/sessions/<session_id>")
def get_session(session_id: SessionId) -> dict[str, Any]:
    return service().get(session_id)


@router.post("/v1/sessions/<session_id>/pause")
def pause_session(session_id: SessionId) -> dict[str, Any]:
    return service().pause(session_id).view()


@router.post("/v1/sessions/<session_id>/resume")
def resume_session(session_id: SessionId) -> dict[str, Any]:
    return service().resume(session_id).view()


@router.post("/v1/sessions/<session_id>/terminate")
def terminate_session(session_id: SessionId) -> dict[str, Any]:
    return service().terminate(session_id).view()


@router.post("/v1/sessions/<session_id>/heartbeat")
def heartbeat(session_id: SessionId) -> dict[str, Any]:
    service().heartbeat(session_id)
    return {"session_id": session_id, "alive": True}


@router.post("/v1/sessions/<session_id>/messages")
def post_message(session_id: SessionId, body: Annotated[MessageIn, Body()]) -> dict[str, Any]:
    return service().chat(session_id, body.text)


@router.post("/v1/sessions/<session_id>/memory")
def remember(session_id: SessionId, body: Annotated[MemoryIn, Body()]) -> dict[str, Any]:
    item_id = service().remember(session_id, body.content, body.importance, body.critical)
    return {"session_id": session_id, "item_id": item_id}


@router.post("/v1/sessions/<session_id>/checkpoints")
def checkpoint(session_id: SessionId, body: Annotated[CheckpointIn, Body()]) -> Response[dict[str, Any]]:
    meta = service().checkpoint(session_id, CheckpointKind(body.kind))
    return Response(
        status_code=int(HTTPStatus.CREATED), content_type=content_types.APPLICATION_JSON, body=meta.view()
    )


def require_active(session_id: str) -> None:
    """A request may join a session only while it is active (409 otherwise, 404 when unknown)."""
    service().require_active(session_id)


def attach_request(session_id: str, execution_id: str) -> None:
    service().attach_request(session_id, execution_id)
