"""Configuration and feature-flag routes (admins only: `security/config/*`, `security/flag/*`), audited.

Every change goes through tdev.config.service: validated (400 naming every invalid key), recorded as a
version (who, what, why, checksum), held for a second admin when a key is protected, and rolled back on
request. Running functions see a change within the polling interval (TDEV_CONFIG_POLL_SECONDS).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from tdev.config.flags import NAME, FlagSpec
from tdev.config.parameters import CONFIG, FLAGS
from tdev.config.service import service, validate_layer

try:  # the package (tests, local runtime) ...
    from functions.api import security
except ImportError:  # ... or deployed, where this folder is the code root
    import security  # type: ignore[no-redef]

router = APIGatewayRouter()

ConfigKey = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
FlagName = Annotated[str, Path(pattern=NAME)]
ChangeId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]
Scope = Annotated[str, Query(pattern=r"^(config|flags)$")]
Limit = Annotated[int, Query(ge=1, le=100)]
Reason = Annotated[str, Field(min_length=3, max_length=500)]


class ValueIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: JsonValue = Field(description="the new value (a list for list keys)")
    reason: Reason


class FlagIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: FlagSpec
    reason: Reason


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: str = Field(default=CONFIG, pattern=r"^(config|flags)$")
    version: int = Field(ge=1, le=99_999_999)
    reason: Reason


class ValidateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: str = Field(default=CONFIG, pattern=r"^(config|flags)$")
    layer: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")], str] = Field(max_length=100)


def _who() -> str:
    return security.identity_of(router).principal


def _answer(result: dict[str, Any]) -> Response[Any]:
    status = HTTPStatus.ACCEPTED if result.get("status") == "pending_approval" else HTTPStatus.OK
    return Response(status_code=int(status), content_type=content_types.APPLICATION_JSON, body=result)


@router.get("/v1/config", middlewares=[security.guard("security/config/*", "read")])
def get_config() -> dict[str, Any]:
    return service().show()


@router.get("/v1/config/history", middlewares=[security.guard("security/config/*", "read")])
def config_history(scope: Scope = CONFIG, limit: Limit = 50) -> dict[str, Any]:
    return {"scope": scope, "versions": service().history(scope, limit)}


@router.get("/v1/config/compliance", middlewares=[security.guard("security/config/*", "read")])
def config_compliance(limit: Limit = 100) -> dict[str, Any]:
    """Who changed what, unapproved changes to protected keys, and secrets past their rotation age."""
    return service().compliance(limit)


@router.put("/v1/config/<key>", middlewares=[security.guard("security/config/*", "update", strict=True)])
def put_config(key: ConfigKey, body: Annotated[ValueIn, Body()]) -> Response[Any]:
    return _answer(service().set_value(key, body.value, author=_who(), reason=body.reason))


@router.post(
    "/v1/config/changes/<change_id>/approve",
    middlewares=[security.guard("security/config/*", "approve", strict=True)],
)
def approve_change(change_id: ChangeId) -> Response[Any]:
    return _answer(service().approve(CONFIG, change_id, approver=_who()))


@router.post("/v1/config/rollback", middlewares=[security.guard("security/config/*", "update", strict=True)])
def rollback(body: Annotated[RollbackIn, Body()]) -> Response[Any]:
    return _answer(service().rollback(body.scope, body.version, author=_who(), reason=body.reason))


@router.post("/v1/config/validate", middlewares=[security.guard("security/config/*", "read")])
def validate_config(body: Annotated[ValidateIn, Body()]) -> dict[str, Any]:
    return validate_layer(body.scope, body.layer)


@router.get("/v1/flags", middlewares=[security.guard("security/flag/*", "read")])
def list_flags(
    user: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    segment: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> dict[str, Any]:
    """Every flag's document; with `user` (and `segment`), its value for that user and why."""
    return service().flags(user, (segment,) if segment else ())


@router.put("/v1/flags/<name>", middlewares=[security.guard("security/flag/*", "update", strict=True)])
def put_flag(name: FlagName, body: Annotated[FlagIn, Body()]) -> Response[Any]:
    return _answer(service().set_flag(name, body.spec, author=_who(), reason=body.reason))


__all__ = ["FLAGS", "router"]
