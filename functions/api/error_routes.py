"""Error analytics routes (admins, or a role granted `security/errors/*`): groups by signature, their counts
over time, spikes and MTTR (tdev.incidents). Resolving is audited (the RBAC decision and a resolution
record with who, when and why)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import BaseModel, ConfigDict, Field

from tdev.incidents import analytics

try:  # the package (tests, local runtime) ...
    from functions.api import security
except ImportError:  # ... or deployed, where this folder is the code root
    import security  # type: ignore[no-redef]

router = APIGatewayRouter()

Signature = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]
Status = Annotated[str | None, Query(pattern=r"^(open|resolved)$")]
Since = Annotated[
    str | None,
    Query(pattern=r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2})?Z?)?$", description="ISO time: last_seen ≥ this"),
]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(min_length=1, max_length=1024, pattern=r"^[A-Za-z0-9_-]+$")]


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="resolved", min_length=3, max_length=500)


@router.get("/v1/errors", middlewares=[security.guard("security/errors/*", "list")])
def list_errors(
    status: Status = None, since: Since = None, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    return analytics.list_errors(status=status, since=since, limit=limit, cursor=cursor)


@router.get(
    "/v1/errors/<signature>",
    middlewares=[
        security.guard(lambda app: f"security/errors/{app.current_event.path.rsplit('/', 1)[-1]}", "read")
    ],
)
def show_error(signature: Signature) -> dict[str, Any]:
    return analytics.show_error(signature)


@router.post(
    "/v1/errors/<signature>/resolve",
    middlewares=[
        security.guard(lambda app: f"security/errors/{app.current_event.path.split('/')[3]}", "resolve")
    ],
)
def resolve_error(signature: Signature, body: Annotated[ResolveIn, Body()]) -> dict[str, Any]:
    return analytics.resolve_error(signature, by=security.identity_of(router).principal, reason=body.reason)
