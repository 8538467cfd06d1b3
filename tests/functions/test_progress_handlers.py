"""The live progress log: the progress consumer and GET /v1/executions/{id}/events, with sample events."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tdev import container
from tdev.models import Execution, ExecutionStatus, RequestIn, utc_now

EVENTS = Path(__file__).resolve().parents[2] / "events"
EXECUTION_ID = "0b9e4c1e-5f7a-4d43-9a55-3f1d8c2a7e10"


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / f"{name}.json").read_text()))


SAMPLE_SUBMITTER = "sample-user"  # who submitted the sample events' execution


def store_sample_execution() -> None:
    """The sample events' execution as POST /v1/requests leaves it (its ExecutionAccepted in the outbox)."""
    from tdev.orchestration.workflow import request_hash
    from tdev.security.services import projects

    body = RequestIn(request="Design and implement a REST API for todo items")
    now = utc_now()
    execution = Execution(
        execution_id=EXECUTION_ID,
        request=body.request,
        project_id="todo-api",
        principal=SAMPLE_SUBMITTER,
        model="offline:tdev-offline-1",
        status=ExecutionStatus.PENDING,
        created_at=now,
        updated_at=now,
        correlation_id="c0ffee00-0000-4000-8000-000000000001",
    )
    container.executions().create(execution, idempotency_key=None, request_hash=request_hash(body))
    projects().claim(execution.project_id, execution.principal)


@pytest.fixture
def stored(runtime: Any) -> Any:
    """The sample execution as POST /v1/requests leaves it."""
    store_sample_execution()
    return runtime


def events_of(runtime: Any, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = runtime.invoke("api", event)
    return int(response["statusCode"]), json.loads(response["body"])


def test_the_bus_delivers_each_event_once_into_the_log_numbered_in_order(stored: Any) -> None:
    # Given the execution's ExecutionAccepted, published by the outbox and routed by the progress rule
    stored.drain_messaging()
    # When the sample TaskCompleted is delivered twice (a redelivery)
    for _ in range(2):
        assert stored.invoke("progress_consumer", load_event("progress_consumer")) == {
            "batchItemFailures": []
        }
    # Then the log holds each event once, numbered 1, 2 in arrival order, and is not terminal
    status, body = events_of(stored, load_event("api_get_execution_events"))
    assert status == 200
    assert [(e["id"], e["type"]) for e in body["events"]] == [(1, "ExecutionAccepted"), (2, "TaskCompleted")]
    assert body["events"][1]["data"]["taskId"] == "design"
    assert body["last_id"] == 2 and body["terminal"] is False


def test_a_reader_resumes_after_its_last_id_and_sees_terminal_at_the_outcome(stored: Any) -> None:
    from tdev.messaging import consumers

    stored.drain_messaging()
    outcome = {
        "eventId": "44444444-4444-4444-8444-444444444444",
        "executionId": EXECUTION_ID,
        "type": "RequestCompleted",
        "timestamp": "2026-01-01T00:00:01+00:00",
        "data": {"executionId": EXECUTION_ID, "status": "SUCCEEDED"},
    }
    assert consumers.record_progress(outcome)["id"] == 2
    event = load_event("api_get_execution_events")
    event["queryStringParameters"] = {"after": "1"}
    event["multiValueQueryStringParameters"] = {"after": ["1"]}
    status, body = events_of(stored, event)
    assert status == 200
    assert [e["id"] for e in body["events"]] == [2] and body["terminal"] is True
    # A page that stops before the end of the log is not terminal, even when the outcome is in the log
    event["queryStringParameters"] = {"after": "0", "limit": "1"}
    event["multiValueQueryStringParameters"] = {"after": ["0"], "limit": ["1"]}
    assert events_of(stored, event)[1]["terminal"] is False


def test_a_concurrent_append_that_took_the_number_makes_the_loser_retry(
    stored: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tdev.data import progress
    from tdev.messaging import consumers

    stored.drain_messaging()  # number 1 is taken
    real_head = progress.head
    stale = iter([progress.Head(0, False)])  # the first read is from before the other append
    monkeypatch.setattr(progress, "head", lambda t, e: next(stale, None) or real_head(t, e))
    message = consumers.progress_message(json.loads(load_event("progress_consumer")["Records"][0]["body"]))
    assert consumers.record_progress(message) == {"eventId": message["eventId"], "applied": True, "id": 2}


def test_an_outsider_gets_404_naming_the_execution(stored: Any) -> None:
    event = copy.deepcopy(load_event("api_get_execution_events"))
    event["requestContext"]["authorizer"].update(principalId="mallory", principal="mallory")
    status, body = events_of(stored, event)
    assert status == 404 and body["field"] == "execution_id"


def test_a_negative_after_is_refused_naming_the_field(stored: Any) -> None:
    event = load_event("api_get_execution_events")
    event["queryStringParameters"] = {"after": "-1"}
    event["multiValueQueryStringParameters"] = {"after": ["-1"]}
    status, body = events_of(stored, event)
    assert status == 400 and body["field"] == "after", body


def test_a_message_that_is_not_a_progress_event_fails_alone(stored: Any) -> None:
    event = load_event("progress_consumer")
    bad = copy.deepcopy(event["Records"][0])
    body = json.loads(bad["body"])
    body["detail-type"], body["detail"]["eventId"] = "SomethingElse", "55555555-5555-4555-8555-555555555555"
    bad.update(messageId="p2", body=json.dumps(body))
    event["Records"].append(bad)
    assert stored.invoke("progress_consumer", event) == {"batchItemFailures": [{"itemIdentifier": "p2"}]}
    assert [e["type"] for e in events_of(stored, load_event("api_get_execution_events"))[1]["events"]] == [
        "TaskCompleted"
    ]


def test_a_whole_request_fills_the_log_although_other_consumers_saw_the_same_events_first(
    runtime: Any,
) -> None:
    # The task-activity and notification consumers apply the same eventIds (their Powertools records once
    # answered the progress consumer's messages, so only ExecutionAccepted was ever appended).
    view = runtime.run("Design and implement a REST API for todo items")
    runtime.drain_messaging()
    page = container.executions().progress(view["execution_id"])
    types = [e["type"] for e in page["events"]]
    assert [e["id"] for e in page["events"]] == list(range(1, len(types) + 1))
    assert types[0] == "ExecutionAccepted" and types[-1] == "RequestCompleted"
    assert types.count("TaskCompleted") == len(view["tasks"]) > 0 and page["terminal"] is True
