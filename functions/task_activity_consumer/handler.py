"""agent-execution.fifo consumer: task completions in order per execution, applied once per event.

FIFO: a failed message stops its message group for this batch (later messages of that execution are
returned too, so order holds); other groups go on. Long work keeps its message invisible.
"""

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from tdev.environment import MessagingEnvironment
from tdev.messaging import consumers
from tdev.messaging.idempotency import CONFIG, idempotent
from tdev.messaging.queues import AGENT_EXECUTION
from tdev.messaging.visibility import VisibilityExtender, queue_url_from_arn
from tdev.observability import logger, metrics, tracer

# The stack's variables for this function, validated at cold start (tdev.environment).
environment = MessagingEnvironment.at_cold_start()

processor = SqsFifoPartialProcessor(skip_group_on_error=True)
record_activity = idempotent(consumers.record_task_activity)


def record_handler(record: SQSRecord) -> dict[str, Any]:
    with VisibilityExtender(
        queue_url_from_arn(record.event_source_arn),
        record.receipt_handle,
        visibility=AGENT_EXECUTION.visibility_seconds,
    ):
        return record_activity(json.loads(record.body))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    CONFIG.register_lambda_context(context)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
