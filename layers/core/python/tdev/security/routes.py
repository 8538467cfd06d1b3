"""The routes any caller may use without an identity, in one list: API Gateway declares them without the
authorizer (stacks/api_stack.py), the local runtime and `tdev serve` skip the authorizer for them
(tdev_cli.runtime), and the API serves them without a guard (functions/api/handler.py). They carry no data:
the health check, and the API's own description (its OpenAPI document and the page that renders it)."""

from __future__ import annotations

HEALTH = "/health"
OPENAPI_DOCUMENT = "/openapi.json"
DOCS_PAGE = "/docs"

PUBLIC_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {("GET", HEALTH), ("GET", OPENAPI_DOCUMENT), ("GET", DOCS_PAGE)}
)


def is_public(method: str, path: str) -> bool:
    """Whether `method path` (a resource path, without the stage) needs no identity."""
    return (method.upper(), path.rstrip("/") or "/") in PUBLIC_ROUTES
