"""The messaging half of the local runtime: the table's stream, the bus rules, the queues and their consumers.

Built from `tdev.messaging.queues` (the same definitions as the messaging stack). Lambda's event
source mappings are emulated by `drain()`:
- the table's DynamoDB stream (moto) is read in order, filtered as the stack's mapping filters it (new
  OUTBOX items only) and handed to the outbox publisher in batches of up to 100 as Lambda would
  (`{"Records": [...]}`); reported failures are retried from the first failed sequence number,
  and after `stream_max_retries` the record goes to the on-failure queue (OUTBOX_FAILURES); the
  publisher puts events on the bus (moto's rules route them) or, for a queue route, sends them to the
  FIFO queue itself with the execution id as message group (AGENT_EXECUTION_QUEUE_URL is set here);
- each queue with a consumer is received in batches of up to 10 (ApproximateReceiveCount requested);
  messages the consumer reports as failed (partial batch response) stay on the queue and the rest are deleted.
  Locally a failed message is made visible again at once instead of after its visibility timeout;
  SQS's own redrive policy (maxReceiveCount) moves it to its DLQ.
- FIFO queues keep SQS's rules per message group (moto): a group's messages in order, none of a group
  handed out while one of it is in flight, other groups never blocked by it; the task-activity consumer
  (SqsFifoPartialProcessor) skips only the failed message's group in a batch
  (tests/unit/test_task_activity_groups.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tdev.messaging import queues as q

REGION = "us-east-1"
IDEMPOTENCY_TABLE = "tdev-local-idempotency"
# queue name -> the function that consumes it
CONSUMERS = {
    q.NOTIFICATIONS.name: "notifications_consumer",
    q.AGENT_EXECUTION.name: "task_activity_consumer",
    q.PROGRESS.name: "progress_consumer",
}
PUBLISHER = "outbox_publisher"

Invoke = Callable[[str, dict[str, Any]], Any]


_clients: dict[str, Any] = {}


def _client(service: str) -> Any:
    """One client per service (made inside the runtime's moto mock, dropped with `forget_clients`)."""
    if service not in _clients:
        _clients[service] = _new_client(service)
    return _clients[service]


def forget_clients() -> None:
    _clients.clear()


def _new_client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    # moto answers DynamoDB Streams only on the classic endpoint, not the account-id endpoint.
    return boto3.client(service, region_name=REGION, config=Config(account_id_endpoint_mode="disabled"))


def _is_new_outbox_item(record: dict[str, Any]) -> bool:
    """The stream mapping's filter: `eventName` INSERT and `NewImage.entity.S` OUTBOX."""
    image = (record.get("dynamodb") or {}).get("NewImage") or {}
    return record.get("eventName") == "INSERT" and image.get("entity", {}).get("S") == "OUTBOX"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class LocalMessaging:
    def __init__(
        self,
        table_name: str,
        invoke: Invoke,
        *,
        stream_max_retries: int = 10,
        stream_batch_size: int = 100,
        queue_batch_size: int = 10,
    ) -> None:
        self.table_name = table_name
        self.invoke = invoke
        self.stream_max_retries = stream_max_retries
        # Records per invocation, at most (the stack's batch sizes). Lambda may hand over fewer, down to
        # one: `tdev chaos` uses 1, so each invocation is about one message, named the same in every run.
        self.stream_batch_size = stream_batch_size
        self.queue_batch_size = queue_batch_size
        self.queue_urls: dict[str, str] = {}
        self.queue_arns: dict[str, str] = {}
        self.stream_arn = ""
        self._position: dict[str, str] = {}  # shard id -> last sequence number handed over successfully
        self._attempts: dict[str, int] = {}  # sequence number -> failed deliveries
        self.stream_dead_letters = 0
        self.stats = {"stream_batches": 0, "stream_records": 0, "queue_batches": 0, "queue_messages": 0}

    # ------------------------------------------------------------------------------------- set-up
    def create(self) -> LocalMessaging:
        import os

        forget_clients()
        ddb = _client("dynamodb")
        ddb.create_table(
            TableName=IDEMPOTENCY_TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        )
        os.environ["IDEMPOTENCY_TABLE_NAME"] = IDEMPOTENCY_TABLE
        os.environ["EVENT_BUS_NAME"] = q.EVENT_BUS
        self.stream_arn = ddb.describe_table(TableName=self.table_name)["Table"]["LatestStreamArn"]
        sqs = _client("sqs")
        for spec in q.QUEUES:
            dlq_url, dlq_arn = self._queue(sqs, spec.dlq_name, spec, dlq=True)
            url, arn = self._queue(sqs, spec.name, spec, dead_letter_arn=dlq_arn)
            self.queue_urls[spec.name], self.queue_arns[spec.name] = url, arn
            self.queue_urls[spec.dlq_name], self.queue_arns[spec.dlq_name] = dlq_url, dlq_arn
        for route in q.QUEUE_ROUTES:  # the publisher sends these itself, one message group per execution
            os.environ[route.queue_url_variable] = self.queue_urls[route.queue]
        url = sqs.create_queue(QueueName=q.OUTBOX_FAILURES)["QueueUrl"]
        self.queue_urls[q.OUTBOX_FAILURES] = url
        events = _client("events")
        for rule in q.RULES:
            events.put_rule(Name=rule.name, EventBusName=q.EVENT_BUS, EventPattern=json.dumps(rule.pattern))
            target: dict[str, Any] = {"Id": "queue", "Arn": self.queue_arns[rule.queue]}
            if rule.input_template is not None:
                target["InputTransformer"] = {
                    "InputPathsMap": rule.input_paths or {},
                    "InputTemplate": rule.input_template,
                }
            events.put_targets(Rule=rule.name, EventBusName=q.EVENT_BUS, Targets=[target])
        return self

    @staticmethod
    def _queue(
        sqs: Any, name: str, spec: q.QueueSpec, *, dlq: bool = False, dead_letter_arn: str | None = None
    ) -> tuple[str, str]:
        attributes = {
            "VisibilityTimeout": str(spec.visibility_seconds),
            "MessageRetentionPeriod": str(14 * 86_400 if dlq else spec.retention_seconds),
        }
        if spec.fifo:
            attributes["FifoQueue"] = "true"
            if spec.content_based_deduplication:
                attributes["ContentBasedDeduplication"] = "true"
        if dead_letter_arn:
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": spec.max_receive_count}
            )
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return str(url), str(arn)

    # ------------------------------------------------------------------------------------- stream
    def pump_stream(self, limit: int = 100) -> int:
        """Hand the next stream records to the publisher; returns how many records were read."""
        streams = _client("dynamodbstreams")
        shards = streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        handed = 0
        for shard in shards:
            shard_id = shard["ShardId"]
            after = self._position.get(shard_id)
            kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard_id}
            if after is None:
                kwargs["ShardIteratorType"] = "TRIM_HORIZON"
            else:
                kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=after)
            iterator = streams.get_shard_iterator(**kwargs)["ShardIterator"]
            records = streams.get_records(ShardIterator=iterator, Limit=limit).get("Records", [])
            if not records:
                continue
            # The mapping's filter (the messaging stack's FilterCriteria): only new outbox items reach
            # the publisher; Lambda drops every other record without an invocation.
            handed += len(records)
            arn = self.stream_arn
            batch = [_plain({**r, "eventSourceARN": arn}) for r in records if _is_new_outbox_item(r)]
            for first in range(0, len(batch), self.stream_batch_size):
                chunk = batch[first : first + self.stream_batch_size]
                self.stats["stream_batches"] += 1
                self.stats["stream_records"] += len(chunk)
                failed_from = self._deliver_stream(chunk)
                if failed_from is None:
                    continue
                index = next(i for i, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] == failed_from)
                if index > 0:
                    self._position[shard_id] = batch[index - 1]["dynamodb"]["SequenceNumber"]
                self._attempts[failed_from] = self._attempts.get(failed_from, 0) + 1
                if self._attempts[failed_from] > self.stream_max_retries:
                    # The on-failure destination: the record's metadata goes to a queue, the shard moves on.
                    _client("sqs").send_message(
                        QueueUrl=self.queue_urls[q.OUTBOX_FAILURES], MessageBody=json.dumps(batch[index])
                    )
                    self.stream_dead_letters += 1
                    self._position[shard_id] = failed_from
                break
            else:  # every record read was handed over (or filtered out)
                self._position[shard_id] = records[-1]["dynamodb"]["SequenceNumber"]
        return handed

    def _deliver_stream(self, batch: list[dict[str, Any]]) -> str | None:
        """Invoke the publisher; the first failed sequence number, or None when all succeeded."""
        try:
            response = self.invoke(PUBLISHER, {"Records": batch})
        except Exception:
            return str(batch[0]["dynamodb"]["SequenceNumber"])
        failures = (response or {}).get("batchItemFailures", [])
        if not failures:
            return None
        return str(min((f["itemIdentifier"] for f in failures), key=int))

    # ------------------------------------------------------------------------------------- queues
    def pump_queue(self, queue_name: str) -> int:
        """One batch (at most `queue_batch_size` messages) through the consumer; how many were received."""
        sqs = _client("sqs")
        url = self.queue_urls[queue_name]
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=self.queue_batch_size,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        records = [self._sqs_record(m, self.queue_arns[queue_name]) for m in messages]
        self.stats["queue_batches"] += 1
        self.stats["queue_messages"] += len(records)
        try:
            response = self.invoke(CONSUMERS[queue_name], {"Records": records})
            failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        except Exception:  # the whole batch failed: every message comes back
            failed = {m["MessageId"] for m in messages}
        for message in messages:
            if message["MessageId"] in failed:
                sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    @staticmethod
    def _sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
        """An SQS message as Lambda's event source mapping hands it over."""
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": REGION,
        }

    # -------------------------------------------------------------------------------------- drain
    def drain(self, *, max_rounds: int = 10_000) -> int:
        """Pump the stream and every consumed queue until a whole round moves nothing."""
        moved_total = 0
        for _ in range(max_rounds):
            moved = self.pump_stream()
            for queue_name in CONSUMERS:
                while self.pump_queue(queue_name):
                    moved += 1
            moved_total += moved
            if moved == 0:
                return moved_total
        raise RuntimeError("messaging did not settle")

    # ------------------------------------------------------------------------------------ counts
    def queue_depth(self, name: str) -> int:
        attrs = _client("sqs").get_queue_attributes(
            QueueUrl=self.queue_urls[name],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def dead_letter_counts(self) -> dict[str, int]:
        counts = {spec.dlq_name: self.queue_depth(spec.dlq_name) for spec in q.QUEUES}
        counts[q.OUTBOX_FAILURES] = self.queue_depth(q.OUTBOX_FAILURES)
        return counts


def share_stream_in_transaction_snapshots() -> Callable[[], None]:
    """Make moto's transactions isolated from concurrent writes, and their snapshots O(table items)
    instead of O(items + whole stream history).

    moto deep-copies a table before each TransactWriteItems to roll it back on cancellation; with a
    stream enabled that copy includes every stream record ever written, so each transaction gets
    slower as the run goes on. Here the snapshot shares the stream's record list, and a cancelled
    transaction truncates the records it appended: the same outcome (a cancelled transaction leaves
    no stream record), at a fraction of the cost. Returns the function that undoes the patch.
    """
    import copy
    import threading

    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import StreamShard

    originals = {name: getattr(DynamoDBBackend, name) for name in ("put_item", "update_item", "delete_item")}
    original_transact = DynamoDBBackend.transact_write_items
    # DynamoDB isolates transactions from other writes; moto does not: a cancelled transaction puts back
    # whole-table snapshots taken when it began, so a write another thread made meanwhile would vanish
    # with it. Every write takes this lock (re-entrant: a transaction's own puts go through it too).
    isolation = threading.RLock()

    def shard_deepcopy(self: StreamShard, memo: dict[int, Any]) -> StreamShard:
        clone: Any = StreamShard.__new__(StreamShard)
        memo[id(self)] = clone
        clone.__dict__.update(self.__dict__)
        clone.table = copy.deepcopy(self.table, memo)
        clone.items = self.items  # shared: truncated below if the transaction is cancelled
        return clone

    def isolated(method: Callable[..., Any]) -> Callable[..., Any]:
        def write(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
            with isolation:
                return method(self, *args, **kwargs)

        return write

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        with isolation:  # no other write can append to a stream until this one has ended
            lengths = {
                name: len(table.stream_shard.items)
                for name, table in self.tables.items()
                if table.stream_shard is not None
            }
            try:
                original_transact(self, transact_items)
            except Exception:
                for name, length in lengths.items():  # only this transaction's own records
                    shard = self.tables[name].stream_shard
                    if shard is not None:
                        del shard.items[length:]
                raise

    StreamShard.__deepcopy__ = shard_deepcopy  # type: ignore[attr-defined]
    for name, method in originals.items():
        setattr(DynamoDBBackend, name, isolated(method))
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]

    def undo() -> None:
        del StreamShard.__deepcopy__  # type: ignore[attr-defined]
        for name, method in originals.items():
            setattr(DynamoDBBackend, name, method)
        DynamoDBBackend.transact_write_items = original_transact  # type: ignore[method-assign]

    return undo
