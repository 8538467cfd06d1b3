"""Bodies of the session API (validated by Powertools from these pydantic models)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from tdev.models import MAX_BUDGET_USD, MIN_BUDGET_USD
from tdev.sessions.lifecycle import MAX_DURATION_SECONDS

IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$"


class SessionIn(BaseModel):
    """Body of `POST /v1/sessions`."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    user_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=IDENTIFIER,
        description="Owner; defaults to the authenticated principal.",
    )
    project_id: str = Field(default="default", min_length=1, max_length=64, pattern=IDENTIFIER)
    # Stored with the session: each name bounded like an agent's name (AgentSpec.name).
    agents: list[Annotated[str, Field(max_length=64, pattern=r"^[A-Z][A-Za-z0-9]*Agent$")]] | None = Field(
        default=None, min_length=1, max_length=20, description="Agents of the session (default: all)."
    )
    max_duration_seconds: int = Field(default=MAX_DURATION_SECONDS, ge=60, le=MAX_DURATION_SECONDS)
    idle_timeout_seconds: int = Field(default=1_800, ge=60, le=MAX_DURATION_SECONDS)
    budget_usd: float | None = Field(
        default=None,
        ge=MIN_BUDGET_USD,
        le=MAX_BUDGET_USD,
        allow_inf_nan=False,
        description="The most the session's chat turns may spend on models, in USD, over its whole life "
        "(default: the deployment's TDEV_DEFAULT_BUDGET_USD). Each model call of a turn reserves its worst "
        "case from it, and from its user's and project's month, first; a turn whose call would go over any "
        "of them is not made (402 naming the budget).",
    )


class MessageIn(BaseModel):
    """Body of `POST /v1/sessions/{id}/messages`."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    text: str = Field(min_length=1, max_length=20_000)


class CheckpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(default="manual", pattern=r"^(manual|auto)$")


class MemoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    content: str = Field(min_length=1, max_length=20_000)
    importance: float = Field(default=0.5, ge=0.0, le=1.0)
    critical: bool = False
