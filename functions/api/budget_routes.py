"""Budget and suspension routes: a user's and a project's monthly budget (read; set by admins), and
suspending a user (admins). Routes only; `tdev.orchestration.controls` decides."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path

from tdev.errors import AuthorizationError
from tdev.models import ScopeBudgetIn, ScopeBudgetView, SuspendIn
from tdev.orchestration import controls
from tdev.security.services import projects

try:  # the package (tests, local runtime) ...
    from functions.api import security
except ImportError:  # ... or deployed, where this folder is the code root
    import security  # type: ignore[no-redef]

router = Router()

UserId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9@._:-]{1,128}$")]
ProjectId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


def _segment(app: Any, index: int) -> str:
    parts = app.current_event.path.strip("/").split("/")
    return parts[index] if len(parts) > index else "unknown"


def _user_budget(app: Any) -> str:
    return f"budget/user/{_segment(app, 2)}"


def _project_budget(app: Any) -> str:
    return f"budget/project/{_segment(app, 2)}"


def _user_security(app: Any) -> str:
    # `security/*` is the admins' alone (viewers and developers hold an explicit deny on it).
    return f"security/principal/{_segment(app, 2)}"


@router.get("/v1/users/<user_id>/budget", middlewares=[security.guard(_user_budget, "read")])
def get_user_budget(user_id: UserId) -> ScopeBudgetView:
    """The user's own budget this month (admins: anyone's)."""
    identity = security.identity_of(router)
    if identity.principal != user_id and "admin" not in identity.roles:
        raise AuthorizationError(f"{identity.principal} may read only its own budget", field="user_id")
    return controls.budget_view("user", user_id)


@router.put("/v1/users/<user_id>/budget", middlewares=[security.guard(_user_budget, "update", strict=True)])
def put_user_budget(user_id: UserId, body: Annotated[ScopeBudgetIn, Body()]) -> ScopeBudgetView:
    """Admins: the user's monthly cap (null fields: the configured default); audited, with the reason."""
    return controls.set_budget("user", user_id, body, by=security.identity_of(router).principal)


@router.get("/v1/projects/<project_id>/budget", middlewares=[security.guard(_project_budget, "read")])
def get_project_budget(project_id: ProjectId) -> ScopeBudgetView:
    """Visible to the project's owner and members, and admins (404 for anyone else, as the project)."""
    projects().require_visible(
        security.identity_of(router), project_id, None, f"project {project_id}", "project_id"
    )
    return controls.budget_view("project", project_id)


@router.put(
    "/v1/projects/<project_id>/budget", middlewares=[security.guard(_project_budget, "update", strict=True)]
)
def put_project_budget(project_id: ProjectId, body: Annotated[ScopeBudgetIn, Body()]) -> ScopeBudgetView:
    """Admins: the project's monthly cap; audited, with the reason."""
    return controls.set_budget("project", project_id, body, by=security.identity_of(router).principal)


@router.post(
    "/v1/users/<user_id>/suspend", middlewares=[security.guard(_user_security, "suspend", strict=True)]
)
def suspend_user(user_id: UserId, body: Annotated[SuspendIn, Body()]) -> dict[str, Any]:
    """Admins: refuse the user's new requests and sessions (403) and stop its executions in flight."""
    return controls.suspend_user(user_id, reason=body.reason, by=security.identity_of(router).principal)


@router.post(
    "/v1/users/<user_id>/unsuspend", middlewares=[security.guard(_user_security, "suspend", strict=True)]
)
def unsuspend_user(user_id: UserId, body: Annotated[SuspendIn, Body()]) -> dict[str, Any]:
    """Admins: lift a suspension."""
    return controls.unsuspend_user(user_id, reason=body.reason, by=security.identity_of(router).principal)
