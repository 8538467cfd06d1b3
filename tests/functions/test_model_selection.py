"""Which model a task runs on: the request's (with its fallbacks), else the agent spec's, else the default."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tdev import container
from tdev.llm.fallback import model_chain
from tdev.models import Execution, ExecutionStatus, utc_now
from tdev.orchestration.workflow import plan_execution, run_task

REQUEST = "Design the data model of a todo API"


def stored_execution(model: str | None, fallbacks: list[str]) -> str:
    now = utc_now()
    execution = Execution(
        execution_id=f"exec-{model or 'none'}-{len(fallbacks)}".replace(":", "-"),
        request=REQUEST,
        project_id="p",
        principal="u",
        model=model,
        fallback_models=fallbacks,
        status=ExecutionStatus.PENDING,
        created_at=now,
        updated_at=now,
        correlation_id="corr-1",
    )
    container.executions().create(execution, idempotency_key=None, request_hash="h")
    plan_execution(execution.execution_id)
    return execution.execution_id


def with_spec_model(model: str, fallbacks: list[str] | None = None) -> None:
    agents = container.agents()
    # Versions are immutable: an operator's change is a new version (the registry's 409 otherwise).
    spec = agents.get("DesignAgent").model_copy(
        update={"model": model, "fallback_models": fallbacks or [], "version": "1.0.1"}
    )
    agents.put(spec)


def test_an_agent_specs_own_model_applies_when_the_request_names_none(runtime: Any) -> None:
    with_spec_model("offline:design-templates-2")
    execution_id = stored_execution(None, [])
    task_id = container.executions().get_plan(execution_id).tasks[0].task_id

    result = run_task(execution_id, task_id)

    assert result.model == "offline:design-templates-2"
    view = container.executions().view(execution_id)
    assert view.model is None and view.tasks[task_id].model == "offline:design-templates-2"


def test_the_requests_model_wins_over_the_specs(runtime: Any) -> None:
    with_spec_model("offline:design-templates-2")
    execution_id = stored_execution("offline:requested-1", ["offline:requested-fallback"])
    execution = container.executions().get(execution_id)

    assert model_chain(execution, container.agents().get("DesignAgent")) == [
        "offline:requested-1",
        "offline:requested-fallback",
    ]


def test_the_specs_fallbacks_follow_the_specs_model(runtime: Any) -> None:
    with_spec_model("bedrock:amazon.nova-pro-v1:0", ["anthropic:claude-sonnet-4-20250514"])
    execution = container.executions().get(stored_execution(None, []))

    assert model_chain(execution, container.agents().get("DesignAgent")) == [
        "bedrock:amazon.nova-pro-v1:0",
        "anthropic:claude-sonnet-4-20250514",
    ]
    assert model_chain(execution, container.agents().get("TestAgent")) == ["offline:tdev-offline-1"]


def test_the_api_stores_the_requested_fallback_chain(runtime: Any) -> None:
    status, body = runtime.api(
        "POST",
        "/v1/requests",
        {
            "request": REQUEST,
            "model": "bedrock:amazon.nova-pro-v1:0",
            "fallback_models": ["openai:gpt-4.1-mini"],
        },
    )
    assert status == 202
    execution = container.executions().get(body["execution_id"])
    assert execution.model == "bedrock:amazon.nova-pro-v1:0"
    assert execution.fallback_models == ["openai:gpt-4.1-mini"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"fallback_models": ["nosuch:model-1"]}, "fallback_models"),
        ({"fallback_models": ["no colon"]}, "fallback_models"),
        ({"fallback_models": ["offline:a"] * 6}, "fallback_models"),
        ({"model": "nosuch:model-1"}, "model"),
    ],
)
def test_a_bad_fallback_is_a_400_naming_the_field(runtime: Any, fields: dict[str, Any], field: str) -> None:
    status, body = runtime.api("POST", "/v1/requests", {"request": REQUEST, **fields})
    assert status == 400, body
    assert field in json.dumps(body)
