"""Task activity on the agent-execution FIFO queue: one message group per execution.

The outbox publisher sends each TaskCompleted event to the queue itself (an EventBridge rule target has
one fixed MessageGroupId), grouped by the execution id and deduplicated on the event id, so a message that
keeps failing holds back only its own execution's activity. The local emulation keeps FIFO's per-group
semantics: a group's messages in order, one in flight per group, other groups not blocked.
"""

from __future__ import annotations

import json
from typing import Any

import boto3

from tdev.data.executions import fact_event_id
from tdev.data.outbox import outbox_put
from tdev.data.store import transact_write
from tdev.messaging import queues as q
from tdev.settings import get_settings

REQUEST = "Design and implement a REST API for todo items"
POISONED = "00000000-0000-4000-8000-00000000dead"  # no such execution: its activity can never be recorded


def execution_item(execution_id: str) -> dict[str, Any]:
    table = boto3.resource("dynamodb", region_name="us-east-1").Table(get_settings().table_name)
    return dict(table.get_item(Key={"PK": f"EXECUTION#{execution_id}", "SK": "EXECUTION"})["Item"])


def task_completed(execution_id: str, task_id: str) -> str:
    """A TaskCompleted event written to the outbox as the execution repository writes it; its event id."""
    event_id = fact_event_id(execution_id, "task", task_id, "SUCCEEDED")
    transact_write(
        [
            outbox_put(
                get_settings().table_name,
                source="t-developer.executions",
                detail_type="TaskCompleted",
                data={
                    "executionId": execution_id,
                    "taskId": task_id,
                    "agent": "CodeAgent",
                    "status": "SUCCEEDED",
                },
                partition_key=f"EXECUTION#{execution_id}",
                event_id=event_id,
                correlation_id=execution_id,
                causation_id=execution_id,
            )
        ]
    )
    return event_id


def test_the_publisher_groups_task_activity_by_execution_and_deduplicates_on_the_event_id(
    runtime: Any,
) -> None:
    # Given a finished request whose outbox holds its task completions
    view = runtime.run(REQUEST)
    # When the publisher hands the outbox over
    runtime.messaging.pump_stream()
    # Then every task completion is on the FIFO queue in its execution's group, with its event id
    sqs = boto3.client("sqs", region_name="us-east-1")
    messages = sqs.receive_message(
        QueueUrl=runtime.messaging.queue_urls[q.AGENT_EXECUTION.name],
        MaxNumberOfMessages=10,
        AttributeNames=["All"],
        VisibilityTimeout=0,
    )["Messages"]
    assert len(messages) == len(view["results"]) > 1
    for message in messages:
        body = json.loads(message["Body"])
        assert message["Attributes"]["MessageGroupId"] == view["execution_id"] == body["executionId"]
        assert message["Attributes"]["MessageDeduplicationId"] == body["eventId"]
        assert body["type"] == "TaskCompleted" and body["status"] == "SUCCEEDED" and body["taskId"]
    # A republished event (a redelivered stream record) is the same message: SQS drops it in its window
    runtime.invoke("outbox_publisher", {"Records": _outbox_records(runtime)})
    assert runtime.messaging.queue_depth(q.AGENT_EXECUTION.name) == len(view["results"])


def test_a_poisoned_message_of_one_execution_does_not_delay_another_executions_activity(
    runtime: Any,
) -> None:
    # Given two task completions of an execution whose activity cannot be recorded, queued first
    poisoned = [task_completed(POISONED, "design"), task_completed(POISONED, "build")]
    # and then a real request's task completions
    view = runtime.run(REQUEST)
    runtime.messaging.pump_stream()
    queued = runtime.messaging.queue_depth(q.AGENT_EXECUTION.name)
    assert queued == len(poisoned) + len(view["results"]) <= 10  # one batch holds them all

    # When the consumer gets ONE batch (the poisoned execution's messages fail)
    runtime.messaging.pump_queue(q.AGENT_EXECUTION.name)

    # Then the other execution's activity is all recorded in that same batch: not delayed by the poison
    assert int(execution_item(view["execution_id"])["tasks_announced"]) == len(view["results"])
    # and only the poisoned execution's messages are back on the queue, none dead-lettered yet
    assert runtime.messaging.queue_depth(q.AGENT_EXECUTION.name) == len(poisoned)
    assert runtime.messaging.queue_depth(q.AGENT_EXECUTION.dlq_name) == 0

    # When messaging settles, the poisoned execution's messages end in the DLQ; the other is unchanged
    runtime.drain_messaging()
    assert runtime.messaging.queue_depth(q.AGENT_EXECUTION.dlq_name) == len(poisoned)
    assert int(execution_item(view["execution_id"])["tasks_announced"]) == len(view["results"])


def test_the_local_fifo_queue_keeps_one_message_in_flight_per_group_in_order(runtime: Any) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = runtime.messaging.queue_urls[q.AGENT_EXECUTION.name]
    for group, n in (("exec-a", 1), ("exec-a", 2), ("exec-b", 1)):
        sqs.send_message(
            QueueUrl=url,
            MessageBody=json.dumps({"group": group, "n": n}),
            MessageGroupId=group,
            MessageDeduplicationId=f"{group}-{n}",
        )

    def receive() -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60)
        return [
            {**json.loads(m["Body"]), "receipt": m["ReceiptHandle"]} for m in messages.get("Messages", [])
        ]

    (a1,) = receive()
    assert (a1["group"], a1["n"]) == ("exec-a", 1)  # a group's first message first
    (b1,) = receive()
    assert (b1["group"], b1["n"]) == ("exec-b", 1)  # exec-a has one in flight: exec-a 2 waits, exec-b goes
    assert receive() == []  # both groups have a message in flight
    sqs.delete_message(QueueUrl=url, ReceiptHandle=a1["receipt"])
    (a2,) = receive()
    assert (a2["group"], a2["n"]) == ("exec-a", 2)  # exec-a goes on once its first message is done


def _outbox_records(runtime: Any) -> list[dict[str, Any]]:
    from tdev_cli.local_messaging import _client, _plain

    streams = _client("dynamodbstreams")
    arn = runtime.messaging.stream_arn
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records = streams.get_records(ShardIterator=iterator["ShardIterator"], Limit=1000)["Records"]
    return [_plain({**r, "eventSourceARN": arn}) for r in records]
