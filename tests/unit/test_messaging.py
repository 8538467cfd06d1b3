"""The transactional outbox, its publisher, idempotent consumers and the DLQ tool, in the local runtime."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import boto3
import pytest

from tdev.messaging import queues as q
from tdev.messaging.publisher import HeldForOrdering, OutboxPublisher

REQUEST = "Design and implement a REST API for todo items"


def execution_item(execution_id: str) -> dict[str, Any]:
    table = boto3.resource("dynamodb", region_name="us-east-1").Table("tdev-local")
    return dict(table.get_item(Key={"PK": f"EXECUTION#{execution_id}", "SK": "EXECUTION"})["Item"])


def stream_records(runtime: Any) -> list[dict[str, Any]]:
    from tdev_cli.local_messaging import _client, _plain

    streams = _client("dynamodbstreams")
    arn = runtime.messaging.stream_arn
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records = streams.get_records(ShardIterator=iterator["ShardIterator"], Limit=1000)["Records"]
    return [_plain({**r, "eventSourceARN": arn}) for r in records]


def test_state_changes_reach_the_bus_in_the_envelope_and_each_consumer_applies_them_once(
    runtime: Any,
) -> None:
    view = runtime.run(REQUEST)
    assert (
        runtime.published_events() == []
    )  # the workflow publishes nothing itself: everything is in the outbox
    runtime.drain_messaging()
    item = execution_item(view["execution_id"])
    assert int(item["notifications_sent"]) == 1
    assert int(item["tasks_announced"]) == len(view["results"]) > 0
    published = runtime.published_events()
    outcomes = [e for e in published if e["source"] == "t-developer.orchestrator"]
    assert [e["detail-type"] for e in outcomes] == ["RequestCompleted"]
    events = [e for e in published if e["source"] == "t-developer.executions"]
    types = sorted(e["detail-type"] for e in events)
    assert types == ["ExecutionAccepted"] + ["TaskCompleted"] * len(view["results"])
    detail = events[0]["detail"]
    assert detail["version"] == "1"
    assert detail["causationId"] == view["execution_id"]
    assert detail["correlationId"] and detail["eventId"] and detail["timestamp"]
    assert detail["metadata"]["source"] == "t-developer.executions"
    assert detail["metadata"]["partitionKey"] == f"EXECUTION#{view['execution_id']}"


def test_a_redelivered_stream_batch_publishes_again_but_changes_nothing_twice(runtime: Any) -> None:
    view = runtime.run(REQUEST)
    runtime.drain_messaging()
    runtime.published_events()
    again = runtime.invoke("outbox_publisher", {"Records": stream_records(runtime)})
    assert again == {"batchItemFailures": []}
    runtime.drain_messaging()
    republished = [e for e in runtime.published_events() if e["source"] == "t-developer.executions"]
    assert len(republished) == 1 + len(view["results"])  # at-least-once: published a second time ...
    item = execution_item(view["execution_id"])
    assert int(item["tasks_announced"]) == len(view["results"])  # ... applied once


def outcome_record(runtime: Any, execution_id: str) -> dict[str, Any]:
    """The stream record of the outbox item that announces the execution's outcome."""
    (record,) = [
        r
        for r in stream_records(runtime)
        if r["eventName"] == "INSERT"
        and r["dynamodb"]["NewImage"].get("entity") == {"S": "OUTBOX"}
        and r["dynamodb"]["NewImage"]["detail_type"]["S"] in ("RequestCompleted", "RequestFailed")
        and r["dynamodb"]["NewImage"]["partition_key"]["S"] == f"EXECUTION#{execution_id}"
    ]
    return record


def test_re_publishing_one_outcome_notifies_once(runtime: Any) -> None:
    # Given a finished request whose outcome was announced and notified
    view = runtime.run(REQUEST)
    runtime.drain_messaging()
    assert int(execution_item(view["execution_id"])["notifications_sent"]) == 1
    runtime.published_events()

    # When the publisher puts the same outcome on the bus again (a redelivered stream record)
    record = outcome_record(runtime, view["execution_id"])
    assert runtime.invoke("outbox_publisher", {"Records": [record]}) == {"batchItemFailures": []}
    runtime.drain_messaging()

    # Then EventBridge carried it twice (a new EventBridge id each time), the notification went out once:
    # the consumer deduplicates on the envelope's eventId, fixed by the execution and its outcome
    again = [e for e in runtime.published_events() if e["source"] == "t-developer.orchestrator"]
    assert [e["detail-type"] for e in again] == ["RequestCompleted"]
    event_id = record["dynamodb"]["NewImage"]["event_id"]["S"]
    assert again[0]["detail"]["eventId"] == event_id
    assert int(execution_item(view["execution_id"])["notifications_sent"]) == 1


def test_a_failed_announce_is_retried_from_the_outbox_not_lost(runtime: Any) -> None:
    from botocore.exceptions import ClientError

    from tdev import aws

    # Given EventBridge refuses the outcome event three times (beyond the SDK's own retries)
    refused: list[str] = []

    def refuse_outcomes(params: dict[str, Any], **_: Any) -> None:
        entry = params["Entries"][0]
        if entry["DetailType"] in ("RequestCompleted", "RequestFailed") and len(refused) < 3:
            refused.append(entry["DetailType"])
            raise ClientError({"Error": {"Code": "InternalFailure", "Message": "injected"}}, "PutEvents")

    events = aws.client("events")
    events.meta.events.register("before-parameter-build.eventbridge.PutEvents", refuse_outcomes, "refuse")
    try:
        view = runtime.run(REQUEST)
        runtime.drain_messaging()
    finally:
        events.meta.events.unregister("before-parameter-build.eventbridge.PutEvents", unique_id="refuse")

    # Then the publisher reported it failed, the stream handed it over again, and it got through once
    assert refused == ["RequestCompleted"] * 3
    assert [o for n, o in runtime.invocations if n == "outbox_publisher"].count("ok") >= 4
    assert runtime.messaging.stream_dead_letters == 0
    outcomes = [e for e in runtime.published_events() if e["source"] == "t-developer.orchestrator"]
    assert [(e["detail-type"], e["detail"]["data"]["executionId"]) for e in outcomes] == [
        ("RequestCompleted", view["execution_id"])
    ]
    assert int(execution_item(view["execution_id"])["notifications_sent"]) == 1


def test_the_publisher_holds_back_later_events_of_a_partition_whose_earlier_event_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[str] = []

    class Events:
        def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            event_id = json.loads(Entries[0]["Detail"])["eventId"]
            if event_id == "a1":
                return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure"}]}
            sent.append(event_id)
            return {"FailedEntryCount": 0, "Entries": [{"EventId": "x"}]}

    monkeypatch.setattr("tdev.messaging.publisher.aws.client", lambda service: Events())

    def record(partition: str, event_id: str) -> dict[str, Any]:
        image = {
            "entity": {"S": "OUTBOX"},
            "event_id": {"S": event_id},
            "partition_key": {"S": partition},
            "source": {"S": "t-developer.executions"},
            "detail_type": {"S": "TaskCompleted"},
            "detail": {"S": json.dumps({"eventId": event_id})},
        }
        return {"eventName": "INSERT", "dynamodb": {"NewImage": image}}

    publisher = OutboxPublisher(bus_name="t-developer")
    outcomes = []
    for rec in (record("A", "a1"), record("B", "b1"), record("A", "a2"), record("B", "b2")):
        try:
            publisher.handle(rec)
            outcomes.append("ok")
        except HeldForOrdering:
            outcomes.append("held")
        except Exception:
            outcomes.append("failed")
    assert outcomes == ["failed", "ok", "held", "ok"]
    assert sent == ["b1", "b2"]
    assert publisher.handle({"eventName": "MODIFY", "dynamodb": {"NewImage": {}}}) is None


def test_a_consumer_reports_only_the_bad_message_as_failed(runtime: Any) -> None:
    view = runtime.run(REQUEST)
    good = {
        "eventId": "e-good",
        "type": "RequestCompleted",
        "executionId": view["execution_id"],
        "status": "SUCCEEDED",
    }
    bad = {"eventId": "e-bad", "type": "RequestCompleted", "executionId": "", "status": "SUCCEEDED"}
    records = [
        {
            "messageId": name,
            "receiptHandle": name,
            "body": json.dumps(body),
            "attributes": {},
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:notifications",
            "awsRegion": "us-east-1",
        }
        for name, body in (("m-good", good), ("m-bad", bad))
    ]
    response = runtime.invoke("notifications_consumer", {"Records": records})
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-bad"}]}
    again = runtime.invoke(
        "notifications_consumer", {"Records": records[:1]}
    )  # redelivered: answered, not reapplied
    assert again == {"batchItemFailures": []}
    assert int(execution_item(view["execution_id"])["notifications_sent"]) == 1


def test_a_poison_message_is_dead_lettered_and_the_dlq_tool_counts_redrives_and_purges(
    runtime: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from tdev_cli.dlq import DeadLetters, run

    sqs = boto3.client("sqs", region_name="us-east-1")
    url = runtime.messaging.queue_urls[q.NOTIFICATIONS.name]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"eventId": "poison", "type": "X"}))
    runtime.drain_messaging()
    tool = DeadLetters(sqs)
    assert {c.queue: c.messages for c in tool.list()} == {
        spec.name: (1 if spec is q.NOTIFICATIONS else 0) for spec in q.QUEUES
    }
    assert run(tool, "list", None) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "total=1"
    assert run(tool, "redrive", q.NOTIFICATIONS) == 0
    assert "redriven=1 queue=notifications remaining=0" in capsys.readouterr().out
    body = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"][0]["Body"]
    assert json.loads(body) == {"eventId": "poison", "type": "X"}  # moved unchanged, not wrapped
    runtime.drain_messaging()  # still poison: back in the DLQ after 3 receives
    assert tool.count(q.NOTIFICATIONS) == 1
    assert run(tool, "purge", q.NOTIFICATIONS) == 0
    assert "purged=1 queue=notifications remaining=0" in capsys.readouterr().out


def test_dlq_command_refuses_an_unknown_queue(capsys: pytest.CaptureFixture[str]) -> None:
    from tdev_cli.main import main

    assert main(["dlq", "redrive", "nope"]) == 2
    assert "unknown queue 'nope'" in capsys.readouterr().err
    assert main(["dlq", "purge"]) == 2


def test_long_work_keeps_its_message_invisible(runtime: Any) -> None:
    from tdev.messaging.visibility import VisibilityExtender, queue_url_from_arn

    sqs = boto3.client("sqs", region_name="us-east-1")
    url = runtime.messaging.queue_urls[q.PROJECT_BUILD.name]
    assert queue_url_from_arn(runtime.messaging.queue_arns[q.PROJECT_BUILD.name]) == url
    sqs.send_message(QueueUrl=url, MessageBody="build")
    # Timeouts of seconds, not fractions: on a loaded CI machine the extender's thread can wait ~1 s for a
    # core, which a 1 s timeout would not survive (that flake is the emulation's, not the extender's).
    message = sqs.receive_message(QueueUrl=url, VisibilityTimeout=3)["Messages"][0]
    with VisibilityExtender(url, message["ReceiptHandle"], visibility=3, interval=0.3) as extender:
        time.sleep(4)  # longer than the original timeout
        assert sqs.receive_message(QueueUrl=url, VisibilityTimeout=1).get("Messages", []) == []
    assert extender.extensions >= 3


def test_a_consumer_whose_idempotency_record_write_was_throttled_after_it_was_stored_still_applies(
    runtime: Any,
) -> None:
    """Where seed 7's task activities went: the in-progress record's PutItem was stored, then answered
    with an error; the SDK's retry met that record and every delivery answered "already in progress"
    until the message was dead-lettered. The conditional marker now decides instead."""
    from tdev.messaging.idempotency import _persistence
    from tdev.messaging.queues import idempotency_table_name
    from tdev_cli.chaos import _error_response

    view = runtime.run(REQUEST)
    runtime.drain_messaging()
    message = {
        "eventId": "e-throttled",
        "type": "RequestCompleted",
        "executionId": view["execution_id"],
        "status": "SUCCEEDED",
    }
    record = {
        "messageId": "m-1",
        "receiptHandle": "m-1",
        "body": json.dumps(message),
        "attributes": {},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:notifications",
        "awsRegion": "us-east-1",
    }
    events = _persistence(idempotency_table_name()).client.meta.events
    answered: list[str] = []

    def stored_then_error(request: Any, **kwargs: Any) -> Any:
        if answered:
            return None
        answered.append(str(kwargs.get("event_name")))
        return _error_response(request, "dynamodb", "InternalServerError")  # moto still stores it

    events.register_first("before-send.dynamodb.PutItem", stored_then_error)
    try:
        first = runtime.invoke("notifications_consumer", {"Records": [record]})
    finally:
        events.unregister("before-send.dynamodb.PutItem", stored_then_error)
    assert answered, "the idempotency record's PutItem was not made"
    again = runtime.invoke("notifications_consumer", {"Records": [record]})
    assert first == again == {"batchItemFailures": []}
    assert int(execution_item(view["execution_id"])["notifications_sent"]) == 2  # the run's own + this one


def test_dlq_command_without_a_region_prints_a_message_not_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tdev_cli.main import main

    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    assert main(["dlq", "list"]) == 1
    err = capsys.readouterr().err
    assert "tdev dlq list:" in err and "region" in err and "Traceback" not in err


def test_dlq_command_local_reads_the_queues_of_a_local_emulation(capsys: pytest.CaptureFixture[str]) -> None:
    from moto.server import ThreadedMotoServer

    from tdev_cli.main import main

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        url = f"http://127.0.0.1:{port}"
        sqs = boto3.client(
            "sqs", region_name="us-east-1", endpoint_url=url, aws_access_key_id="t", aws_secret_access_key="t"
        )
        for spec in q.QUEUES:
            attributes = {"FifoQueue": "true"} if spec.fifo else {}
            sqs.create_queue(QueueName=spec.dlq_name, Attributes=attributes)
        dlq_url = sqs.get_queue_url(QueueName=q.NOTIFICATIONS.dlq_name)["QueueUrl"]
        sqs.send_message(QueueUrl=dlq_url, MessageBody="{}")
        assert main(["dlq", "list", "--local", "--endpoint-url", url]) == 0
        assert capsys.readouterr().out.strip().splitlines()[-1] == "total=1"
    finally:
        server.stop()
