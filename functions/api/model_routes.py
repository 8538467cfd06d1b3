"""Model routes: the provider and model catalogue, and the model router's decision with its reasoning."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import BaseModel, ConfigDict, Field

from tdev.llm.listing import catalog
from tdev.llm.router import Criteria, live_health, route

try:  # the package (tests, local runtime) ...
    from functions.api import security
except ImportError:  # ... or deployed, where this folder is the code root
    import security  # type: ignore[no-redef]

router = APIGatewayRouter()


class RouteIn(BaseModel):
    """Body of `POST /v1/models/route`: what the task needs."""

    model_config = ConfigDict(extra="forbid")

    task_type: str = Field(
        default="general", max_length=40, description="code, reasoning, analysis, chat, summarization..."
    )
    context_tokens: int = Field(default=4_000, ge=0, le=10_000_000)
    expected_output_tokens: int = Field(default=1_000, ge=0, le=1_000_000)
    language: str = Field(default="en", min_length=2, max_length=8)
    max_cost_usd: float | None = Field(default=None, gt=0)
    latency_tier: str | None = Field(
        default=None, max_length=20, description="the slowest acceptable: fast, standard, slow"
    )
    capabilities: list[Annotated[str, Field(max_length=40)]] = Field(
        default_factory=list, max_length=20, description="tools, vision, json, streaming"
    )
    providers: list[Annotated[str, Field(max_length=40)]] | None = Field(
        default=None, max_length=50, description="only these providers"
    )


@router.get("/v1/models", middlewares=[security.guard("model/catalog", "list")])
def list_models(provider: Annotated[str | None, Query(max_length=40)] = None) -> dict[str, Any]:
    return catalog(provider)


@router.post("/v1/models/route", middlewares=[security.guard("model/router", "read")])
def route_model(body: Annotated[RouteIn, Body()]) -> dict[str, Any]:
    from tdev.llm.fallback import shared_guards

    criteria = Criteria(
        task_type=body.task_type,
        context_tokens=body.context_tokens,
        expected_output_tokens=body.expected_output_tokens,
        language=body.language,
        max_cost_usd=body.max_cost_usd,
        latency_tier=body.latency_tier,
        capabilities=frozenset(body.capabilities),
        providers=frozenset(body.providers) if body.providers is not None else None,
    )
    return route(criteria, health=live_health(shared_guards())).as_dict()
