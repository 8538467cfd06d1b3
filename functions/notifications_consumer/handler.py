"""notifications queue consumer: request outcomes, applied once per event (partial batch failures)."""

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
notify = idempotent(consumers.notify)


def record_handler(record: SQSRecord) -> dict[str, Any]:
    return notify(json.loads(record.body))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    CONFIG.register_lambda_context(context)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
