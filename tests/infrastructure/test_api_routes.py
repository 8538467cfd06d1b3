"""One source of truth for routes: API Gateway's resources and methods are the API handler's route table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stacks.api_stack import ROUTES, gateway_path, handler_routes
from tdev.security.routes import PUBLIC_ROUTES

VERBS = ("get", "post", "put", "delete", "patch")


def resolver_routes() -> set[tuple[str, str]]:
    """The routes the Powertools resolver itself registered (every router included), from its OpenAPI."""
    from functions.api.handler import app

    schema = app.get_openapi_schema()
    return {
        (verb.upper(), gateway_path(path))
        for path, item in (schema.paths or {}).items()
        for verb in VERBS
        if getattr(item, verb, None) is not None
    }


def test_the_stack_routes_are_the_resolvers_routes() -> None:
    assert resolver_routes() == set(ROUTES)
    assert len(ROUTES) == len(set(ROUTES))
    assert PUBLIC_ROUTES.issubset(ROUTES)


def test_a_new_route_in_the_handler_becomes_a_gateway_route(tmp_path: Path) -> None:
    (tmp_path / "extra.py").write_text(
        "router = object()\n\n"
        '@router.put("/v1/things/<thing_id>/labels", middlewares=[])\n'
        "def label(thing_id: str) -> None:\n    return None\n\n"
        '@helper.get("/not/a/route")\n'
        "def other() -> None:\n    return None\n"
    )
    assert handler_routes(tmp_path) == (("PUT", "/v1/things/{thing_id}/labels"),)


def test_the_templates_methods_are_exactly_the_handler_routes(dev: Any) -> None:
    template = dev.template_json(dev.stacks.api)
    resources = template["Resources"]
    api_resources = {k: v for k, v in resources.items() if v["Type"] == "AWS::ApiGateway::Resource"}

    def path_of(reference: Any) -> str:
        if isinstance(reference, dict) and "Ref" in reference and reference["Ref"] in api_resources:
            node = api_resources[reference["Ref"]]["Properties"]
            return f"{path_of(node['ParentId'])}/{node['PathPart']}"
        return ""  # the API's root resource

    served = {
        (m["Properties"]["HttpMethod"], path_of(m["Properties"]["ResourceId"]) or "/")
        for m in resources.values()
        if m["Type"] == "AWS::ApiGateway::Method" and m["Properties"]["HttpMethod"] != "OPTIONS"
    }
    assert served == resolver_routes()
