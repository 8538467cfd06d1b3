"""Registering an operator's agent: validated (tdev.models.AgentSpec bounds every field), stored as an
immutable `name@version` that no deploy overwrites (tdev.data.agents), and audited.

The RBAC decision that let the caller in is already in the audit trail (tdev.security.rbac.AuditLog); the
registration adds who, which version and why to the stored spec and to the security event log.
"""

from __future__ import annotations

from typing import Any

from tdev.data.agents import CUSTOM, AgentRepository
from tdev.errors import ValidationError
from tdev.models import AgentSpec
from tdev.observability import logger


def register_agent(
    registry: AgentRepository, name: str, spec: AgentSpec, *, author: str, reason: str
) -> tuple[dict[str, Any], bool]:
    """Store `spec` as agent `name`'s newest version; (the answer, whether anything was written)."""
    if spec.name != name:
        raise ValidationError(
            f"spec.name: {spec.name!r} is not the agent named in the path ({name!r})", field="spec.name"
        )
    created = registry.register(spec, author=author, reason=reason)
    logger.info(
        "agent registered" if created else "agent already registered",
        extra={
            "security_event": "agent_registered",
            "principal": author,
            "agent": spec.ref,
            "reason": reason,
            "new_version": created,
        },
    )
    return {
        "ref": spec.ref,
        "origin": CUSTOM,
        "created": created,
        "agent": spec.model_dump(mode="json"),
    }, created
