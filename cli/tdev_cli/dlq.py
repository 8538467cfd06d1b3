"""`tdev dlq list|redrive|purge [QUEUE]`: dead letters of the messaging queues, with counts.

Works against the deployed queues (your AWS credentials and region; names `<prefix><queue>`, `--prefix`)
or, with `--local`, against a local AWS emulation serving the same queue names over HTTP
(`--endpoint-url`, default moto_server's http://127.0.0.1:5000, region us-east-1, test credentials).
`tdev chaos` runs its emulation in process and redrives with this same code before it counts.
`redrive` moves every message of a queue's DLQ back to its source queue, unchanged (never wrapped a
second time); `purge` deletes them.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from dataclasses import dataclass
from typing import Any

from tdev.messaging import queues as q

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LOCAL_ENDPOINT = "http://127.0.0.1:5000"


@dataclass
class DlqCount:
    queue: str
    dead_letter_queue: str
    messages: int


class DeadLetters:
    """Operations on the DLQs of the queues in `tdev.messaging.queues`, named `<prefix><name>`."""

    def __init__(self, sqs: Any, prefix: str = "") -> None:
        self.sqs = sqs
        self.prefix = prefix

    def _url(self, name: str) -> str:
        return str(self.sqs.get_queue_url(QueueName=f"{self.prefix}{name}")["QueueUrl"])

    def count(self, spec: q.QueueSpec) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self._url(spec.dlq_name),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def list(self) -> list[DlqCount]:
        return [DlqCount(spec.name, spec.dlq_name, self.count(spec)) for spec in q.QUEUES]

    def redrive(self, spec: q.QueueSpec) -> int:
        """Move every dead letter back to the source queue; returns how many moved."""
        source, dlq = self._url(spec.name), self._url(spec.dlq_name)
        moved = 0
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=dlq,
                MaxNumberOfMessages=10,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                VisibilityTimeout=60,
            ).get("Messages", [])
            if not messages:
                return moved
            for message in messages:
                send: dict[str, Any] = {"QueueUrl": source, "MessageBody": message["Body"]}
                if message.get("MessageAttributes"):
                    send["MessageAttributes"] = message["MessageAttributes"]
                if spec.fifo:
                    attributes = message.get("Attributes", {})
                    send["MessageGroupId"] = attributes.get("MessageGroupId", "redrive")
                    # Fresh per redrive: a message dead-lettered twice keeps its MessageId, and SQS would
                    # drop a second redrive within 5 minutes as a duplicate (the consumers dedup anyway).
                    send["MessageDeduplicationId"] = f"{message['MessageId']}-{uuid.uuid4().hex[:12]}"
                self.sqs.send_message(**send)
                # Deleted only once safely on the source queue: a crash in between duplicates, never loses.
                self.sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
                moved += 1

    def purge(self, spec: q.QueueSpec) -> int:
        """Delete every dead letter; returns how many were deleted."""
        dlq = self._url(spec.dlq_name)
        deleted = 0
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=60
            ).get("Messages", [])
            if not messages:
                return deleted
            for message in messages:
                self.sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
                deleted += 1


def register(commands: Any) -> None:
    dlq = commands.add_parser("dlq", help="list, redrive or purge the queues' dead letters")
    dlq.add_argument("action", choices=["list", "redrive", "purge"])
    dlq.add_argument("queue", nargs="?", help="agent-execution.fifo, project-build or notifications")
    dlq.add_argument("--prefix", default="", help="queue name prefix of the deployment, e.g. tdev-dev-")
    dlq.add_argument("--region", default=None, help="AWS region (default: your AWS configuration's)")
    dlq.add_argument("--local", action="store_true", help="use a local AWS emulation (--endpoint-url)")
    dlq.add_argument(
        "--endpoint-url", default=LOCAL_ENDPOINT, help=f"with --local (default {LOCAL_ENDPOINT})"
    )
    dlq.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    import boto3

    if args.action != "list" and not args.queue:
        print(
            f"tdev dlq {args.action}: name the queue ({', '.join(s.name for s in q.QUEUES)})", file=sys.stderr
        )
        return EXIT_USAGE
    spec: q.QueueSpec | None = None
    if args.queue:
        try:
            spec = q.queue(args.queue)
        except KeyError:
            print(
                f"tdev dlq: unknown queue {args.queue!r}; one of {', '.join(s.name for s in q.QUEUES)}",
                file=sys.stderr,
            )
            return EXIT_USAGE
    from botocore.exceptions import BotoCoreError

    try:
        if args.local:
            sqs = boto3.client(
                "sqs",
                region_name=args.region or "us-east-1",
                endpoint_url=args.endpoint_url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",  # the emulation's placeholder
            )
        else:
            sqs = boto3.client("sqs", region_name=args.region)
    except BotoCoreError as exc:  # e.g. no region configured: a message, not a stack trace
        print(f"tdev dlq {args.action}: {exc} (pass --region, or --local)", file=sys.stderr)
        return EXIT_FAILED
    return run(DeadLetters(sqs, args.prefix), args.action, spec)


def run(dead_letters: DeadLetters, action: str, spec: q.QueueSpec | None) -> int:
    try:
        if action == "list":
            rows = [c for c in dead_letters.list() if spec is None or c.queue == spec.name]
            for row in rows:
                print(f"{row.dead_letter_queue:28} {row.messages:6d}")
            print(f"total={sum(r.messages for r in rows)}")
        elif action == "redrive" and spec is not None:
            print(
                f"redriven={dead_letters.redrive(spec)} queue={spec.name} "
                f"remaining={dead_letters.count(spec)}"
            )
        elif spec is not None:
            print(f"purged={dead_letters.purge(spec)} queue={spec.name} remaining={dead_letters.count(spec)}")
    except Exception as exc:  # no credentials, missing queue: a message, not a stack trace
        print(f"tdev dlq {action}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
