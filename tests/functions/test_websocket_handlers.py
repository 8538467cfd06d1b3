"""The WebSocket API's functions with their sample events: $connect/$disconnect/subscribe (websocket) and
the pusher (push_progress), through the local emulation. moto's ApiGatewayManagementApi keeps what
post_to_connection sent per connection; it never answers 410, so the stale-connection test puts a botocore
Stubber on the pusher's client for that one answer."""

from __future__ import annotations

import copy
import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.stub import Stubber

from tdev import aws, container
from tests.functions.test_progress_handlers import EXECUTION_ID, SAMPLE_SUBMITTER, store_sample_execution

EVENTS = Path(__file__).resolve().parents[2] / "events"
CONNECTION_ID = "Qv3x1cGLIAMCJGw="  # the sample events' connection
ENDPOINT = "https://abcdef1234.execute-api.us-east-1.amazonaws.com/dev"
SUBMITTER = SAMPLE_SUBMITTER


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / f"{name}.json").read_text()))


@pytest.fixture
def stored(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The sample execution submitted by `sample-user`, its progress log holding ExecutionAccepted (1) and
    the sample TaskCompleted (2); the pusher's endpoint set as the stack sets it."""
    monkeypatch.setenv("TDEV_WEBSOCKET_ENDPOINT", ENDPOINT)
    container.reset()
    store_sample_execution()
    runtime.drain_messaging()
    assert runtime.invoke("progress_consumer", load_event("progress_consumer")) == {"batchItemFailures": []}
    return runtime


def connect(runtime: Any, user: str = SUBMITTER, connection_id: str = CONNECTION_ID) -> dict[str, Any]:
    event = load_event("websocket_connect")
    event["queryStringParameters"] = {"token": runtime.token(user, ("developer",))}
    event["requestContext"]["connectionId"] = connection_id
    return dict(runtime.invoke("websocket", event))


def subscribe(runtime: Any, frame: dict[str, Any] | str | None = None) -> tuple[int, dict[str, Any]]:
    event = load_event("websocket_subscribe")
    if frame is not None:
        event["body"] = frame if isinstance(frame, str) else json.dumps(frame)
    answer = runtime.invoke("websocket", event)
    return int(answer["statusCode"]), json.loads(answer["body"])


def received(connection_id: str = CONNECTION_ID) -> list[dict[str, Any]]:
    """The frames moto's management API got for one connection, in order (it concatenates the bytes)."""
    from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends

    backend = apigatewaymanagementapi_backends["123456789012"]["us-east-1"]
    quoted = urllib.parse.quote(connection_id, safe="")  # moto keys connections by the id in the URL path
    data = backend.connections[quoted].data.decode() if quoted in backend.connections else ""
    decoder, frames, at = json.JSONDecoder(), [], 0
    while at < len(data):
        frame, at = decoder.raw_decode(data, at)
        frames.append(frame)
    return frames


def item(key: dict[str, str]) -> dict[str, Any] | None:
    return aws.table(container.get_settings().table_name).get_item(Key=key, ConsistentRead=True).get("Item")


def test_connect_authenticates_from_the_query_string_and_records_the_caller(stored: Any) -> None:
    from tdev.data import schema

    assert connect(stored)["statusCode"] == 200
    recorded = item(schema.connection_key(CONNECTION_ID))
    assert recorded is not None and recorded["principal"] == SUBMITTER and recorded["expires_at"] > 0


@pytest.mark.parametrize(
    "query",
    [None, {}, {"token": "REPLACED-BY-THE-TEST-WITH-A-TOKEN-OF-THE-LOCAL-ISSUER"}, {"token": "x" * 9000}],
    ids=["no-query", "no-credential", "sample-placeholder", "oversized"],
)
def test_an_unauthenticated_connect_is_refused_and_nothing_is_recorded(
    stored: Any, query: dict[str, str] | None
) -> None:
    from tdev.data import schema

    event = load_event("websocket_connect")
    event["queryStringParameters"] = query
    answer = stored.invoke("websocket", event)
    assert answer["statusCode"] == 401
    assert item(schema.connection_key(CONNECTION_ID)) is None


def test_a_token_and_an_api_key_together_are_refused(stored: Any) -> None:
    event = load_event("websocket_connect")
    event["queryStringParameters"] = {"token": stored.token(SUBMITTER), "api_key": "tdev_something"}
    assert stored.invoke("websocket", event)["statusCode"] == 401


def test_subscribe_then_push_sends_the_missed_events_then_the_live_ones_once_in_order(stored: Any) -> None:
    from tdev.messaging import consumers

    connect(stored)
    # Given a subscriber that saw event 1 (the sample frame resumes after last_event_id 1)
    status, answer = subscribe(stored)
    assert status == 200
    assert answer == {"type": "subscribed", "execution_id": EXECUTION_ID, "last_event_id": 1}
    # When the stream hands the pusher the new subscription: the missed event 2 is sent
    pushed = stored.invoke("push_progress", load_event("push_progress_subscription"))
    assert pushed == {"batchItemFailures": []}
    assert [(f["type"], f["event"]["id"]) for f in received()] == [("progress", 2)]
    # And when the outcome is appended (3) and the stream hands over the new progress items (the sample
    # record of event 2, then 3's), only 3 follows: each event once, in id order
    outcome = {
        "eventId": "44444444-4444-4444-8444-444444444444",
        "executionId": EXECUTION_ID,
        "type": "RequestCompleted",
        "timestamp": "2026-01-01T00:00:01+00:00",
        "data": {"executionId": EXECUTION_ID, "status": "SUCCEEDED"},
    }
    assert consumers.record_progress(outcome)["id"] == 3
    for _ in range(2):
        assert stored.invoke("push_progress", load_event("push_progress")) == {"batchItemFailures": []}
    frames = received()
    assert [f["event"]["id"] for f in frames] == [2, 3]
    assert frames[1]["event"]["type"] == "RequestCompleted" and frames[0]["execution_id"] == EXECUTION_ID
    assert frames[0]["event"]["data"]["taskId"] == "design"


def test_a_subscriber_from_the_start_gets_the_whole_log(stored: Any) -> None:
    from tdev.realtime import push_after_write

    connect(stored)
    assert subscribe(stored, {"action": "subscribe", "execution_id": EXECUTION_ID})[0] == 200
    pushed = push_after_write({"entity": "PROGRESS", "execution_id": EXECUTION_ID})
    assert pushed == {"execution_id": EXECUTION_ID, "connections": 1, "sent": 2, "gone": []}
    assert [f["event"]["type"] for f in received()] == ["ExecutionAccepted", "TaskCompleted"]


def test_a_sender_holding_the_lease_leaves_the_other_nothing_to_send(stored: Any) -> None:
    from tdev import realtime

    connect(stored)
    subscribe(stored, {"action": "subscribe", "execution_id": EXECUTION_ID})
    lease = realtime.connections().acquire(CONNECTION_ID, EXECUTION_ID)
    assert lease is not None and lease.sent == 0
    # While one sender holds the subscription, another sends nothing (no interleaved frames)
    assert realtime.deliver(CONNECTION_ID, EXECUTION_ID) == (0, False)
    assert received() == []
    realtime.connections().release(lease)
    assert realtime.deliver(CONNECTION_ID, EXECUTION_ID) == (2, False)


def test_a_gone_connection_is_deleted_with_its_subscriptions(stored: Any) -> None:
    from tdev.data import schema

    connect(stored)
    subscribe(stored)
    client = aws.endpoint_client("apigatewaymanagementapi", ENDPOINT)
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "post_to_connection", service_error_code="GoneException", http_status_code=410
        )
        answer = stored.invoke("push_progress", load_event("push_progress_subscription"))
        stubber.assert_no_pending_responses()
    assert answer == {"batchItemFailures": []}  # not retried: there is no one to send to
    assert item(schema.connection_key(CONNECTION_ID)) is None
    assert item(schema.subscription_key(CONNECTION_ID, EXECUTION_ID)) is None


def test_a_failed_post_is_retried_by_the_stream_and_loses_nothing(stored: Any) -> None:
    connect(stored)
    subscribe(stored)
    client = aws.endpoint_client("apigatewaymanagementapi", ENDPOINT)
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "post_to_connection", service_error_code="LimitExceededException", http_status_code=429
        )
        # Every record of the batch failed: the invocation fails and the stream hands the batch again
        with pytest.raises(BatchProcessingError, match="LimitExceededException"):
            stored.invoke("push_progress", load_event("push_progress_subscription"))
    # The retry (the lease was released) sends what the failed attempt did not
    pushed = stored.invoke("push_progress", load_event("push_progress_subscription"))
    assert pushed == {"batchItemFailures": []}
    assert [f["event"]["id"] for f in received()] == [2]


def test_an_outsider_cannot_subscribe_and_is_told_which_field(stored: Any) -> None:
    connect(stored, user="mallory")
    status, answer = subscribe(stored)
    assert status == 404 and answer["type"] == "error" and answer["field"] == "execution_id"


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ("not json", "body"),
        ("[]", "body"),
        ("x" * 5000, "body"),
        ({"action": "subscribe"}, "execution_id"),
        ({"action": "subscribe", "execution_id": "a/../b"}, "execution_id"),
        ({"action": "subscribe", "execution_id": "a" * 81}, "execution_id"),
        ({"action": "subscribe", "execution_id": EXECUTION_ID, "last_event_id": -1}, "last_event_id"),
        ({"action": "subscribe", "execution_id": EXECUTION_ID, "last_event_id": "1"}, "last_event_id"),
        ({"action": "subscribe", "execution_id": EXECUTION_ID, "session": "s"}, "session"),
    ],
)
def test_an_invalid_subscribe_frame_is_refused_naming_the_field(
    stored: Any, frame: dict[str, Any] | str, field: str
) -> None:
    connect(stored)
    status, answer = subscribe(stored, frame)
    assert status == 400 and answer["field"] == field, answer


def test_subscribe_on_an_unknown_connection_is_refused(stored: Any) -> None:
    status, answer = subscribe(stored)
    assert status == 401 and answer["type"] == "error"


def test_disconnect_forgets_the_connection_and_its_subscriptions(stored: Any) -> None:
    from tdev.data import schema

    connect(stored)
    subscribe(stored)
    answer = stored.invoke("websocket", load_event("websocket_disconnect"))
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["removed"] == 2
    assert item(schema.subscription_key(CONNECTION_ID, EXECUTION_ID)) is None
    assert stored.invoke("push_progress", load_event("push_progress")) == {"batchItemFailures": []}
    assert received() == []


def test_an_unknown_route_gets_an_error_frame_naming_the_action(stored: Any) -> None:
    event = copy.deepcopy(load_event("websocket_subscribe"))
    event["requestContext"]["routeKey"] = "$default"
    answer = stored.invoke("websocket", event)
    assert answer["statusCode"] == 400 and json.loads(answer["body"])["field"] == "action"
