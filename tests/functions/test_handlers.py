"""Every handler invoked with its sample event from events/ (the same files `sam local invoke` uses)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tdev import container
from tdev.data.executions import outcome_event_id
from tdev.models import ExecutionStatus, RequestIn

# (not imported from conftest: with several test directories, `conftest` may name another one's)
EVENTS = Path(__file__).resolve().parents[2] / "events"


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / f"{name}.json").read_text()))


EXECUTION_ID = "0b9e4c1e-5f7a-4d43-9a55-3f1d8c2a7e10"


def test_every_function_has_at_least_one_sample_event() -> None:
    from tdev_cli.runtime import FUNCTIONS, REALTIME_FUNCTIONS

    names = {p.stem for p in EVENTS.glob("*.json")}
    for function in (*FUNCTIONS, *REALTIME_FUNCTIONS):
        assert any(n == function or n.startswith(f"{function}_") for n in names), function


@pytest.fixture
def stored(runtime: Any) -> Any:
    """The sample execution id, stored as the API leaves it (PENDING, not yet planned)."""
    from tdev.models import Execution, ExecutionStatus, utc_now
    from tdev.orchestration.workflow import request_hash

    body = RequestIn(
        request="Design and implement a REST API for todo items, with unit tests and a security review"
    )
    now = utc_now()
    execution = Execution(
        execution_id=EXECUTION_ID,
        request=body.request,
        project_id="todo-api",
        principal="sample-user",
        model="offline:tdev-offline-1",
        status=ExecutionStatus.PENDING,
        created_at=now,
        updated_at=now,
        correlation_id="c0ffee00-0000-4000-8000-000000000001",
    )
    container.executions().create(execution, idempotency_key=None, request_hash=request_hash(body))
    # As POST /v1/requests leaves it: the submitter owns the project, so it may read the execution.
    from tdev.security.services import projects

    projects().claim(execution.project_id, execution.principal)
    return runtime


@pytest.fixture
def planned(stored: Any) -> Any:
    """The sample execution, planned (as the plan step leaves it)."""
    from tdev.orchestration.workflow import plan_execution

    plan_execution(EXECUTION_ID)
    return stored


def test_api_post_request_accepts_and_starts_the_workflow(runtime: Any) -> None:
    response = runtime.invoke("api", load_event("api_post_request"))

    assert response["statusCode"] == 202
    body = json.loads(response["body"])
    assert body["status"] == "PENDING" and body["status_url"] == f"/v1/executions/{body['execution_id']}"
    assert response["multiValueHeaders"]["Location"] == [body["status_url"]]
    # And the same Idempotency-Key with the same body returns the same execution, not a new one
    again = runtime.invoke("api", load_event("api_post_request"))
    assert again["statusCode"] == 200 and json.loads(again["body"])["execution_id"] == body["execution_id"]


def test_api_post_request_from_an_archive_seeds_the_workspace_before_starting(runtime: Any) -> None:
    from tdev.workspace import open_workspace

    response = runtime.invoke("api", load_event("api_post_request_from_archive"))

    assert response["statusCode"] == 202, response["body"]
    execution_id = json.loads(response["body"])["execution_id"]
    files = [f.path for f in open_workspace(execution_id).files()]
    assert {"greeting/__init__.py", "tests/test_greeting.py", "pyproject.toml"} <= set(files)
    from tdev import container

    base = container.executions().get(execution_id).base
    assert base is not None and (base.source, base.execution_id) == ("archive", None)
    assert sorted(base.sha256) == sorted(files) == base.files


def test_api_reused_idempotency_key_with_another_body_is_rejected(runtime: Any) -> None:
    runtime.invoke("api", load_event("api_post_request"))
    other = load_event("api_post_request")
    other["body"] = json.dumps({"request": "Write unit tests for the parser"})

    response = runtime.invoke("api", other)

    assert response["statusCode"] == 422
    assert json.loads(response["body"])["field"] == "Idempotency-Key"


def test_api_invalid_body_names_the_field(runtime: Any) -> None:
    response = runtime.invoke("api", load_event("api_post_request_invalid"))

    assert response["statusCode"] == 400
    body = json.loads(response["body"])
    assert body["error"] == "ValidationError"
    assert {d["field"] for d in body["details"]} >= {"request", "priority"}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("not json", None),
        (json.dumps({"request": "ok request", "model": "no-colon"}), "model"),
        (json.dumps({"request": "x" * 20_001}), "request"),
        (json.dumps({"request": "fine request", "project_id": "../etc"}), "project_id"),
    ],
)
def test_api_rejects_bad_input_with_a_json_error(runtime: Any, raw: str, field: str | None) -> None:
    status, body = runtime.api("POST", "/v1/requests", raw_body=raw)

    assert status == 400
    assert body["error"] == "ValidationError"
    if field:
        assert body["field"] == field


def test_api_get_execution_returns_plan_and_progress(planned: Any) -> None:
    response = planned.invoke("api", load_event("api_get_execution"))

    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert body["execution_id"] == EXECUTION_ID and body["status"] == "RUNNING"
    assert body["plan"]["tasks"] and body["progress"] == 0.0


def test_api_get_execution_is_served_from_the_read_cache_until_a_step_writes(
    planned: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's polling path: one partition Query while nothing changes, the step's write seen at once."""
    from tdev.data.executions import ExecutionRepository

    queries: list[str] = []
    original = ExecutionRepository._query_partition

    def counted(repository: ExecutionRepository, execution_id: str) -> list[dict[str, Any]]:
        queries.append(execution_id)
        return original(repository, execution_id)

    monkeypatch.setattr(ExecutionRepository, "_query_partition", counted)
    polls = [json.loads(planned.invoke("api", load_event("api_get_execution"))["body"]) for _ in range(3)]
    assert queries == [EXECUTION_ID] and polls[0] == polls[2]
    assert polls[0]["tasks"]["design"]["status"] == "PENDING"

    planned.invoke("run_agent", load_event("run_agent"))  # a workflow step writes the execution

    after = json.loads(planned.invoke("api", load_event("api_get_execution"))["body"])
    assert after["tasks"]["design"]["status"] == "SUCCEEDED" and len(after["results"]) == 1


def test_api_get_execution_history_replays_what_the_outbox_recorded(stored: Any) -> None:
    response = stored.invoke("api", load_event("api_get_execution_history"))

    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert [e["type"] for e in body["events"]] == ["ExecutionAccepted"]
    assert body["events"][0]["data"]["executionId"] == EXECUTION_ID
    assert body["replayed"] == {"status": "PENDING", "tasks": {}} and body["complete"] is True


def test_api_unknown_execution_is_404(runtime: Any) -> None:
    response = runtime.invoke("api", load_event("api_get_execution"))

    assert response["statusCode"] == 404
    assert json.loads(response["body"])["error"] == "NotFound"


def test_api_lists_the_seeded_agents(runtime: Any) -> None:
    response = runtime.invoke("api", load_event("api_list_agents"))

    assert response["statusCode"] == 200
    names = {a["name"] for a in json.loads(response["body"])}
    assert {"DesignAgent", "CodeAgent", "TestAgent", "SecurityAgent", "ReviewAgent"} <= names


def test_api_health(runtime: Any) -> None:
    response = runtime.invoke("api", load_event("api_health"))

    assert response["statusCode"] == 200 and json.loads(response["body"])["status"] == "ok"


def test_api_unknown_route_is_a_json_404(runtime: Any) -> None:
    status, body = runtime.api("GET", "/v1/nothing-here")

    assert status == 404 and body["error"] == "NotFound"


def test_plan_request_handler_returns_levels(stored: Any) -> None:
    result = stored.invoke("plan_request", load_event("plan_request"))

    assert result["task_count"] == 5
    assert result["levels"][0] == {
        "level": 0,
        "tasks": [{"task_id": "design", "agent": "DesignAgent", "on_failure": "fail"}],
    }


def test_run_agent_handler_stores_the_result_once(planned: Any) -> None:
    first = planned.invoke("run_agent", load_event("run_agent"))
    again = planned.invoke("run_agent", load_event("run_agent"))  # a redelivery must not run it twice

    assert first == again == {"task_id": "design", "status": "SUCCEEDED"}
    view = container.executions().view(EXECUTION_ID)
    assert view.tasks["design"].status == "SUCCEEDED" and view.tasks["design"].attempts == 1
    assert len(view.results) == 1 and "[offline model" in view.results[0].output


def test_run_agent_handler_flushes_the_run_statistics_it_wrote_behind(planned: Any) -> None:
    from tdev import cache

    planned.invoke("run_agent", load_event("run_agent"))
    planned.invoke("run_agent", load_event("run_agent"))  # a redelivery: its run is counted once

    # Buffered in Redis during the run, applied to the table by the handler's end-of-invocation flush.
    assert cache.redis_client().llen(container.run_statistics().pending_key) == 0
    assert container.agents().stats("DesignAgent")["runs"] == 1


def test_run_agent_warms_the_registry_at_cold_start(planned: Any) -> None:
    from tdev import caching
    from tdev.agents.catalog import DEFAULT_AGENTS

    caching.reset()  # this process's next invocation is a cold start (its caches and registry anew)
    container.agents.cache_clear()
    planned.invoke("run_agent", load_event("run_agent"))

    registry = caching.named("registry")
    assert registry.counts["warmed"] == len(DEFAULT_AGENTS)
    # At most the warming's one BatchGetItem; the step's own read of its agent was an L1 hit, not a miss.
    counts = registry.counts
    assert counts["loads"] <= 1 and counts["misses"] == 0 and counts["hits_l1"] >= 1


def test_record_task_failure_handler_reports_the_policy(planned: Any) -> None:
    result = planned.invoke("record_task_failure", load_event("record_task_failure"))

    assert result == {"task_id": "security-review", "status": "FAILED", "on_failure": "continue"}
    state = container.executions().get(EXECUTION_ID).tasks["security-review"]
    assert state.status == "FAILED" and "content filter" in (state.error or "")


def test_aggregate_results_handler_settles_the_status(planned: Any) -> None:
    planned.invoke("record_task_failure", load_event("record_task_failure"))

    result = planned.invoke("aggregate_results", load_event("aggregate_results"))

    assert result == {
        "execution_id": EXECUTION_ID,
        "status": "DEGRADED",
        "event_id": outcome_event_id(EXECUTION_ID, ExecutionStatus.DEGRADED),
    }
    # The outcome event is in the outbox, written with the status (the state machine publishes nothing)
    event = outbox_event(result["event_id"])
    assert (event["source"], event["detail_type"]) == ("t-developer.orchestrator", "RequestCompleted")
    detail = json.loads(event["detail"])
    assert detail["eventId"] == result["event_id"]
    assert detail["data"]["status"] == "DEGRADED"
    assert detail["data"]["failedTasks"] == ["security-review"]


def test_compensate_handler_withdraws_completed_work(planned: Any) -> None:
    planned.invoke("run_agent", load_event("run_agent"))

    result = planned.invoke("compensate", load_event("compensate"))

    assert result["status"] == "FAILED"
    detail = json.loads(outbox_event(result["event_id"])["detail"])
    assert detail["data"]["compensated"] == ["design"]
    execution = container.executions().get(EXECUTION_ID)
    assert execution.status == "FAILED" and execution.tasks["design"].status == "COMPENSATED"
    # Compensating twice (a retried step) changes nothing
    again = planned.invoke("compensate", load_event("compensate"))
    assert again == result
    assert container.executions().get(EXECUTION_ID).compensations == ["design"]


def test_record_compensation_failure_handler_records_both_errors(planned: Any) -> None:
    planned.invoke("run_agent", load_event("run_agent"))

    result = planned.invoke("record_compensation_failure", load_event("record_compensation_failure"))

    assert result["status"] == "FAILED"
    view = container.executions().view(EXECUTION_ID)
    assert view.status == "FAILED" and view.error and view.error.startswith("HardDependencyFailed")
    assert view.compensation_error == "AgentError: the artifact store refused the withdrawal"
    assert view.compensations == []  # nothing was withdrawn before the compensation failed
    data = json.loads(outbox_event(result["event_id"])["detail"])["data"]
    assert data["compensationError"] == view.compensation_error
    # Already terminal: a second call keeps what was recorded
    assert planned.invoke("record_compensation_failure", load_event("record_compensation_failure")) == result


def test_reconcile_executions_handler_leaves_a_young_execution_alone(stored: Any) -> None:
    summary = stored.invoke("reconcile_executions", load_event("reconcile_executions"))

    assert summary == {
        "checked": 0,
        "started": 0,
        "failed": 0,
        "running": 0,
        "retry_later": 0,
        "outcomes": {},
    }
    assert container.executions().get(EXECUTION_ID).status == "PENDING"


def outbox_event(event_id: str) -> dict[str, Any]:
    from tdev.data.schema import outbox_key

    key = outbox_key(f"EXECUTION#{EXECUTION_ID}", event_id)
    item = container.executions()._table.get_item(Key=key).get("Item")
    assert item is not None, f"no outbox item {event_id}"
    return dict(item)


def test_workflow_handlers_reject_malformed_events(runtime: Any) -> None:
    from aws_lambda_powertools.utilities.parser import ValidationError

    with pytest.raises(ValidationError):
        runtime.invoke("run_agent", {"execution_id": EXECUTION_ID})


# --- messaging functions (event source mappings: the table's stream, the queues) -------------------------
def test_every_messaging_function_has_a_sample_event() -> None:
    from tdev_cli.runtime import MESSAGING_FUNCTIONS

    names = {p.stem for p in EVENTS.glob("*.json")}
    assert set(MESSAGING_FUNCTIONS) <= names


def test_outbox_publisher_publishes_the_sample_stream_record(runtime: Any) -> None:
    assert runtime.invoke("outbox_publisher", load_event("outbox_publisher")) == {"batchItemFailures": []}
    (event,) = runtime.published_events()
    assert (event["source"], event["detail-type"]) == ("t-developer.executions", "ExecutionAccepted")
    assert event["detail"]["eventId"] == "6be1048e-75c0-5adb-92c5-16025ea9c698"


@pytest.mark.parametrize(
    ("function", "counter"),
    [("notifications_consumer", "notifications_sent"), ("task_activity_consumer", "tasks_announced")],
)
def test_consumers_apply_the_sample_message_once(stored: Any, function: str, counter: str) -> None:
    event = load_event(function)
    if function == "task_activity_consumer":  # the FIFO consumer extends visibility: the queue must exist
        event["Records"][0]["eventSourceARN"] = stored.messaging.queue_arns["agent-execution.fifo"]
    for _ in range(2):  # delivered twice
        assert stored.invoke(function, event) == {"batchItemFailures": []}
    item = container.executions()._table.get_item(Key={"PK": f"EXECUTION#{EXECUTION_ID}", "SK": "EXECUTION"})
    assert int(item["Item"][counter]) == 1
