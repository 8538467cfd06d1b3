"""Artifact routes: the files an execution's agents wrote (list, one file, a zip of the project)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from tdev import container
from tdev.orchestration import artifacts
from tdev.security.services import projects
from tdev.settings import get_settings

try:  # the package (tests, local runtime) ...
    from functions.api import security
except ImportError:  # ... or deployed, where this folder is the code root
    import security  # type: ignore[no-redef]

router = APIGatewayRouter()
ExecutionId = Annotated[str, Path(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9-]+$")]
_PREFIX = "/v1/executions/"


def _execution_of(app: Any) -> str:
    """`execution/<id>`: the RBAC resource of every artifact route (the id is the path's 4th segment)."""
    return f"execution/{app.current_event.path.split('/')[3]}"


def _require_visible(execution_id: str) -> None:
    """An execution's files are as private as the execution: its project's members (and admins) only; in the
    shared project, only the submitter. Anyone else gets 404, as for GET /v1/executions/{id}."""
    project_id, submitted_by = container.executions().submitted(execution_id)
    projects().require_visible(
        security.identity_of(router), project_id, submitted_by, f"execution {execution_id}", "execution_id"
    )


@router.get("/v1/executions/<execution_id>/artifacts", middlewares=[security.guard(_execution_of, "read")])
def list_artifacts(execution_id: ExecutionId) -> dict[str, Any]:
    _require_visible(execution_id)
    return artifacts.list_artifacts(execution_id)


@router.get(
    "/v1/executions/<execution_id>/artifacts.zip", middlewares=[security.guard(_execution_of, "read")]
)
# No return annotation on purpose: Powertools' response validation would serialize the zip's bytes as JSON.
def download_artifacts(execution_id: ExecutionId):
    _require_visible(execution_id)
    return Response(
        status_code=200,
        content_type="application/zip",
        body=artifacts.zip_artifacts(execution_id),
        headers={"Content-Disposition": f'attachment; filename="{execution_id}.zip"'},
    )


# The file path may contain slashes: the route ends in a regular expression (API Gateway: {path+}).
@router.get("/v1/executions/<execution_id>/artifacts/.+", middlewares=[security.guard(_execution_of, "read")])
def read_artifact(execution_id: ExecutionId) -> dict[str, Any]:
    _require_visible(execution_id)
    path = router.current_event.path.split("/artifacts/", 1)[1]
    return artifacts.read_artifact(execution_id, path, presign=get_settings().environment != "local")
