"""Keep a long-running SQS message invisible while it is being worked on (a heartbeat thread)."""

from __future__ import annotations

import threading
from typing import Any

from tdev import aws
from tdev.observability import logger


def queue_url_from_arn(arn: str) -> str:
    """arn:aws:sqs:<region>:<account>:<name> -> the queue URL."""
    _, _, _, _region, account, name = arn.split(":", 5)
    return str(aws.client("sqs").get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])


class VisibilityExtender:
    """`with VisibilityExtender(url, receipt, visibility=300):` extends every `visibility/2` seconds."""

    def __init__(
        self, queue_url: str, receipt_handle: str, *, visibility: int, interval: float | None = None
    ):
        self.queue_url = queue_url
        self.receipt_handle = receipt_handle
        self.visibility = visibility
        self.interval = interval if interval is not None else visibility / 2
        self.extensions = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                aws.client("sqs").change_message_visibility(
                    QueueUrl=self.queue_url,
                    ReceiptHandle=self.receipt_handle,
                    VisibilityTimeout=self.visibility,
                )
                self.extensions += 1
            except Exception as exc:  # the message stays with its current timeout; work goes on
                logger.warning("could not extend message visibility", extra={"error": str(exc)})

    def __enter__(self) -> VisibilityExtender:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
