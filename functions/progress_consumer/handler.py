"""progress queue consumer: each execution event from the bus appended once to its progress log.

The log (tdev.data.progress) numbers the events 1, 2, 3 ... per execution: the ids live streams
(`tdev serve`'s server-sent events, `GET /v1/executions/{id}/events`) resume from. Partial batch
failures: a message whose append failed comes back alone.
"""

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from tdev.environment import MessagingEnvironment
from tdev.messaging import consumers
from tdev.messaging.idempotency import CONFIG, idempotent
from tdev.observability import logger, metrics, tracer

# The stack's variables for this function, validated at cold start (tdev.environment).
environment = MessagingEnvironment.at_cold_start()

processor = BatchProcessor(event_type=EventType.SQS)
record_progress = idempotent(consumers.record_progress)


def record_handler(record: SQSRecord) -> dict[str, Any]:
    return record_progress(consumers.progress_message(json.loads(record.body)))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    CONFIG.register_lambda_context(context)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
