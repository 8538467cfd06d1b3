"""The pusher: the table's stream (new progress events, new subscriptions) -> the WebSocket connections
that follow the execution (tdev.realtime.push_after_write), with partial batch failures.

The stack's mapping lets through only INSERTs of PROGRESS and SUBSCRIPTION items. A record whose push
failed (a throttled post, a table error) comes back with everything after it, so an execution's events are
pushed in order; a connection API Gateway reports gone is deleted, not retried.
"""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from tdev import realtime
from tdev.environment import PushProgressEnvironment
from tdev.observability import logger, metrics, tracer

# The stack's variables for this function, validated at cold start (tdev.environment).
environment = PushProgressEnvironment.at_cold_start()

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def record_handler(record: DynamoDBRecord) -> dict[str, Any]:
    return realtime.push_after_write(dict(record.dynamodb.new_image) if record.dynamodb else {})


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
