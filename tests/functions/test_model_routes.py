"""`GET /v1/models` and `POST /v1/models/route` through the API handler."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tdev.cache import connect
from tdev.llm.fallback import Guards

REPO = Path(__file__).resolve().parents[2]


def test_get_models_lists_the_providers(runtime: Any) -> None:
    status, body = runtime.api("GET", "/v1/models")
    assert status == 200
    assert len(body["providers"]) >= 25 and "from memory" in body["prices_as_of"]

    from tdev_cli.runtime import api_event

    event = api_event("GET", "/v1/models")
    event["queryStringParameters"] = {"provider": "groq"}
    event["multiValueQueryStringParameters"] = {"provider": ["groq"]}
    response = runtime.invoke("api", event)
    assert response["statusCode"] == 200
    assert [p["name"] for p in json.loads(response["body"])["providers"]] == ["groq"]


def test_route_returns_the_choice_with_reasoning_and_live_health(runtime: Any, redis_url: str) -> None:
    guards = Guards.from_redis(connect(redis_url, decode_responses=True))
    for _ in range(5):
        guards.breakers.record_failure("mistral:codestral-latest")

    status, body = runtime.api(
        "POST",
        "/v1/models/route",
        {"task_type": "code", "context_tokens": 50_000, "capabilities": ["tools"], "latency_tier": "fast"},
    )

    assert status == 200, body
    assert body["model"] != "mistral:codestral-latest"
    assert "breaker open" in body["rejected"]["mistral:codestral-latest"]
    assert "0.3*specialty" in body["reasoning"] and body["ranking"][0]["model"] == body["model"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"task_type": "dance"}, "task_type"),
        ({"latency_tier": "instant"}, "latency_tier"),
        ({"context_tokens": -1}, "context_tokens"),
        ({"colour": "blue"}, "colour"),
        ({"context_tokens": 5_000_000}, "criteria"),  # no model has that context window
    ],
)
def test_bad_route_criteria_are_a_400_naming_the_field(
    runtime: Any, payload: dict[str, Any], field: str
) -> None:
    status, body = runtime.api("POST", "/v1/models/route", payload)
    assert status == 400, body
    assert body["field"] == field


def test_the_handler_imports_as_lambda_packages_it(tmp_path: Path) -> None:
    """In Lambda the function's folder is the root: the routes module must import without `functions.`."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "layers/core/python"), "TABLE_NAME": "t"}
    script = "import handler; print(handler.app.get_openapi_json_schema())"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO / "functions/api", env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "/v1/models" in done.stdout
