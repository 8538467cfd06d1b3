"""Project routes: who owns a project and who else may work in it (members), and transfers by admins."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from pydantic import BaseModel, ConfigDict, Field

from tdev.security.services import projects

try:  # the package (tests, local runtime) ...
    from functions.api import security
except ImportError:  # ... or deployed, where this folder is the code root
    import security  # type: ignore[no-redef]

router = Router()

PRINCIPAL_PATTERN = r"^[A-Za-z0-9@._:-]{1,128}$"
ProjectId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Principal = Annotated[str, Path(pattern=PRINCIPAL_PATTERN)]


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: str = Field(pattern=PRINCIPAL_PATTERN, description="The new owner.")


def _project(app: Any) -> str:
    parts = app.current_event.path.strip("/").split("/")
    return f"project/{parts[2]}" if len(parts) > 2 else "project/unknown"


def _manage(project_id: str) -> Any:
    """The owner (RBAC: `developer-own-projects`) or an admin; audited like every decision."""
    identity = security.identity_of(router)
    owner = projects().owner(project_id)
    security.authorize(router, identity, f"project/{project_id}", "manage", {"owner": owner} if owner else {})
    return identity


@router.get("/v1/projects/<project_id>", middlewares=[security.guard(_project, "read")])
def get_project(project_id: ProjectId) -> dict[str, Any]:
    """Owner and members: visible to them and to admins (404 for anyone else)."""
    projects().require_visible(
        security.identity_of(router), project_id, None, f"project {project_id}", "project_id"
    )
    return projects().view(project_id)


@router.put("/v1/projects/<project_id>/members/<principal>", middlewares=[security.guard(_project, "read")])
def add_member(project_id: ProjectId, principal: Principal) -> dict[str, Any]:
    return projects().add_member(project_id, principal, by=_manage(project_id))


@router.delete(
    "/v1/projects/<project_id>/members/<principal>", middlewares=[security.guard(_project, "read")]
)
def remove_member(project_id: ProjectId, principal: Principal) -> dict[str, Any]:
    return projects().remove_member(project_id, principal, by=_manage(project_id))


@router.post(
    "/v1/projects/<project_id>/transfer",
    middlewares=[security.guard(lambda app: f"security/{_project(app)}", "transfer", strict=True)],
)
def transfer_project(project_id: ProjectId, body: Annotated[TransferIn, Body()]) -> dict[str, Any]:
    """Admins only (RBAC: `security/*` is theirs)."""
    return projects().transfer(project_id, body.owner, by=security.identity_of(router))
