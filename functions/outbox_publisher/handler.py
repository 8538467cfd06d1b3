"""The outbox publisher: the table's stream (new OUTBOX items) -> the t-developer bus, partial failures."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from tdev.environment import OutboxPublisherEnvironment
from tdev.messaging.publisher import OutboxPublisher
from tdev.observability import logger, metrics, tracer

# The stack's variables for this function, validated at cold start (tdev.environment).
environment = OutboxPublisherEnvironment.at_cold_start()

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    publisher = OutboxPublisher()  # per batch: remembers the partitions that failed in this batch

    def record_handler(record: DynamoDBRecord) -> str | None:
        return publisher.handle(record.raw_event)

    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
