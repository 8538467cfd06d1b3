"""The agent registry's routes: `PUT /v1/agents/{agent_name}` (admins only: `agent/registry` `update`,
which no built-in role but admin holds), validated and audited (tdev.agents.registry); and
`GET /v1/agents/{agent_name}/health` (anyone who may read); and `GET /v1/platform/health` (operators:
`platform/health` `monitor`, which admins hold and a custom role may grant)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import BaseModel, ConfigDict, Field

from tdev import container
from tdev.agents.registry import register_agent
from tdev.models import AGENT_NAME, AgentSpec, ErrorBody
from tdev.orchestration import capacity

try:  # the package (tests, local runtime) ...
    from functions.api import security
except ImportError:  # ... or deployed, where this folder is the code root
    import security  # type: ignore[no-redef]

router = APIGatewayRouter()

AgentName = Annotated[str, Path(pattern=AGENT_NAME)]


class AgentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: AgentSpec
    reason: str = Field(min_length=3, max_length=500, description="why (kept with the version, audited)")


@router.put(
    "/v1/agents/<agent_name>",
    middlewares=[security.guard("agent/registry", "update", strict=True)],
    responses={
        int(HTTPStatus.CREATED): {"description": "A new version, now the agent's current spec"},
        int(HTTPStatus.OK): {"description": "This version was already registered with this spec"},
        int(HTTPStatus.CONFLICT): {
            "description": "This version was already registered with another spec (versions are immutable)",
            "content": {"application/json": {"model": ErrorBody}},
        },
    },
)
def put_agent(agent_name: AgentName, body: Annotated[AgentIn, Body()]) -> Response[Any]:
    answer, created = register_agent(
        container.agents(),
        agent_name,
        body.spec,
        author=security.identity_of(router).principal,
        reason=body.reason,
    )
    status = HTTPStatus.CREATED if created else HTTPStatus.OK
    return Response(status_code=int(status), content_type=content_types.APPLICATION_JSON, body=answer)


@router.get("/v1/agents/<agent_name>/health", middlewares=[security.guard("agent/health", "read")])
def agent_health(agent_name: AgentName) -> dict[str, Any]:
    """In flight and waiting against the agent's capacity, whether it is available (below 0.8 x capacity),
    and its run history. 404 naming `agent_name` for an agent not in the registry."""
    return capacity.agent_health(container.agents(), agent_name)


@router.get("/v1/platform/health", middlewares=[security.guard("platform/health", "monitor")])
def platform_health() -> dict[str, Any]:
    """Registered and active agents, tasks running, queued for capacity, completed and failed, and the
    average response time of an agent run (tdev.orchestration.capacity.platform_health)."""
    return capacity.platform_health(container.agents())
