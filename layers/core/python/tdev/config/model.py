"""The typed configuration: every key an operator tunes at run time, its default and its validation.

Each key is also a `tdev.settings.Settings` field (the environment layer: the stacks' variables), so the
defaults here are the settings' defaults, and a deployment's environment overrides them before Parameter
Store does. Validation reports every invalid key at once (`ConfigValidationError.details`).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from tdev.errors import ValidationError

LIMIT = r"^[1-9]\d{0,6}/[1-9]\d{0,6}$"  # "<requests>/<seconds>"
MODEL = r"^[a-z0-9_.-]{1,40}:[A-Za-z0-9_.:/@-]{1,200}$"  # provider:model-id


class Configuration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default_model: str = Field(default="offline:tdev-offline-1", pattern=MODEL)
    # Tried in order after the default model when neither the request nor the agent names fallbacks.
    fallback_models: tuple[str, ...] = Field(default=(), max_length=4)
    rate_limit_default: str = Field(default="100/900", pattern=LIMIT)
    rate_limit_strict: str = Field(default="10/900", pattern=LIMIT)
    rate_limit_api_key: str = Field(default="60/60", pattern=LIMIT)
    max_sessions_per_user: int = Field(default=5, ge=1, le=1_000)
    max_sessions_global: int = Field(default=100, ge=1, le=100_000)


KEYS: tuple[str, ...] = tuple(Configuration.model_fields)
# Keys whose change needs an approver other than its author: they protect the platform and its bill.
PROTECTED_KEYS: frozenset[str] = frozenset(
    {
        "rate_limit_default",
        "rate_limit_strict",
        "rate_limit_api_key",
        "max_sessions_global",
    }
)
_LIST_KEYS = frozenset(k for k, f in Configuration.model_fields.items() if "tuple" in str(f.annotation))


class ConfigValidationError(ValidationError):
    """Invalid configuration: `details` names every invalid key with its reason."""

    def __init__(self, details: list[dict[str, object]]) -> None:
        message = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        super().__init__(f"invalid configuration: {message}", field=str(details[0]["field"]))
        self.details = details


def decode(key: str, raw: str) -> Any:
    """A stored (Parameter Store) value as the model reads it: lists are JSON, the rest plain text."""
    if key in _LIST_KEYS:
        try:
            return json.loads(raw)
        except ValueError:
            return raw  # the model names it invalid
    return raw


def encode(key: str, value: Any) -> str:
    """A value as stored: lists as JSON, the rest as text."""
    if key in _LIST_KEYS or isinstance(value, list | tuple):
        return json.dumps(list(value) if isinstance(value, list | tuple) else value)
    return str(value)


def validate(values: dict[str, Any]) -> Configuration:
    """The configuration from merged values; ConfigValidationError lists every bad or unknown key."""
    try:
        return Configuration.model_validate(values)
    except PydanticValidationError as exc:
        details: list[dict[str, object]] = [
            {
                "field": ".".join(str(p) for p in err["loc"]) or "configuration",
                "message": "unknown configuration key" if err["type"] == "extra_forbidden" else err["msg"],
            }
            for err in exc.errors()
        ]
        raise ConfigValidationError(details) from None
