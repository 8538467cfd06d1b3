"""The API describes itself: its OpenAPI document and a docs page, public like /health, generated from
the same route table API Gateway is built from (tests/infrastructure/test_api_routes.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from functions.api import description as docs
from stacks.api_stack import ROUTES, gateway_path
from tdev.security.headers import SECURITY_HEADERS


def _get(runtime: Any, path: str) -> dict[str, Any]:
    return runtime.http("GET", path, headers={}, body=None)


def test_the_document_is_public_and_describes_every_gateway_route(runtime: Any) -> None:
    answer = _get(runtime, "/openapi.json")  # no Authorization header: no identity needed
    assert answer["statusCode"] == 200
    assert answer["headers"]["Content-Type"] == "application/json"
    assert answer["headers"]["Content-Security-Policy"] == SECURITY_HEADERS["Content-Security-Policy"]
    document = json.loads(answer["body"])
    assert document["openapi"].startswith("3.") and document["info"]["title"] == docs.TITLE
    described = {
        (verb.upper(), gateway_path(path))
        for path, item in document["paths"].items()
        for verb in item
        if verb in ("get", "post", "put", "delete", "patch")
    }
    assert described == set(ROUTES)
    assert document["servers"] == [{"url": "/"}]  # tdev serve: no stage in its URLs
    request = document["paths"]["/v1/requests"]["post"]
    assert request["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/RequestIn")
    assert "RequestAccepted" in json.dumps(request["responses"])


def test_deployed_the_document_names_the_stage_as_its_server() -> None:
    event = {"path": "/openapi.json", "requestContext": {"path": "/prod/openapi.json"}}
    assert docs.stage_prefix(event) == "/prod"
    assert docs.stage_prefix({"path": "/openapi.json", "requestContext": {"path": "/openapi.json"}}) == ""
    assert docs.stage_prefix({"path": "/x", "requestContext": {"path": "/elsewhere"}}) == ""


def test_the_docs_page_allows_exactly_what_it_loads(runtime: Any) -> None:
    answer = _get(runtime, "/docs")
    assert answer["statusCode"] == 200 and answer["headers"]["Content-Type"] == "text/html"
    html, policy = answer["body"], answer["headers"]["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'" and directives["connect-src"] == "'self'"
    # every external resource is pinned by version and integrity, and allowed by its exact URL
    externals = re.findall(r'(?:src|href)="(https://[^"]+)" integrity="(sha384-[^"]+)"', html)
    assert {url for url, _ in externals} == {
        f"{docs.SWAGGER_UI}/swagger-ui-bundle.js",
        f"{docs.SWAGGER_UI}/swagger-ui.css",
    }
    assert "@5.35.0" in docs.SWAGGER_UI
    assert f"{docs.SWAGGER_UI}/swagger-ui-bundle.js" in directives["script-src"]
    # the one inline script is allowed by its hash, nothing else inline runs
    (inline,) = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert directives["script-src"].split()[0] == f"'sha256-{digest}'"
    assert "'unsafe-inline'" not in directives["script-src"] and "'unsafe-eval'" not in policy
    assert 'url: "openapi.json"' in inline  # relative: the same page works under a stage
    # the other security headers stay
    for name in ("Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options"):
        assert answer["headers"][name] == SECURITY_HEADERS[name]


def test_every_other_answer_keeps_the_closed_policy(runtime: Any) -> None:
    answer = _get(runtime, "/health")
    assert answer["headers"]["Content-Security-Policy"] == SECURITY_HEADERS["Content-Security-Policy"]
    refused = runtime.http("GET", "/v1/agents", headers={}, body=None)
    assert refused["statusCode"] == 401  # the description is public, the API is not


def test_every_operation_describes_its_answers_and_its_errors(runtime: Any) -> None:
    """Success codes as the handlers answer them, and each error answer with the ErrorBody it carries."""
    document = json.loads(_get(runtime, "/openapi.json")["body"])
    error_body = {"$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in json.dumps(document)  # invalid input is a 400 ErrorBody here
    for path, item in document["paths"].items():
        for verb, operation in item.items():
            answers = operation["responses"]
            public = path in {"/health", "/openapi.json", "/docs"}
            expected = {"500"} | (set() if public else {"401", "403", "429"})
            expected |= {"404"} if "{" in path else set()
            expected |= {"413", "415", "400"} if "requestBody" in operation else set()
            assert expected <= set(answers), (verb, path, sorted(answers))
            for code in expected:
                assert answers[code]["content"]["application/json"]["schema"] == error_body, (
                    verb,
                    path,
                    code,
                )
    submit = document["paths"]["/v1/requests"]["post"]["responses"]
    assert {"200", "202", "422"} <= set(submit)
    assert submit["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/RequestAccepted")
    assert "201" in document["paths"]["/v1/sessions"]["post"]["responses"]
    assert "201" in document["paths"]["/v1/api-keys"]["post"]["responses"]
    assert set(document["components"]["schemas"]["ErrorBody"]["required"]) == {"error", "message"}
