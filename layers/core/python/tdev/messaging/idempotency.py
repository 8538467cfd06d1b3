"""Powertools idempotency for the queue consumers, on its own table (IDEMPOTENCY_TABLE_NAME, key `id`).

The record only saves work (a repeat is answered from the stored result); exactly-once comes from the
consumer's conditional marker transaction (`tdev.messaging.consumers.apply_once`). So an in-progress
record never blocks a message: such a record is either another delivery running right now (the marker
lets one of the two apply) or one left behind when its own write was throttled after DynamoDB had
stored it, or when storing the result failed. Left alone, that stale record answered "already in
progress" to every redelivery until it expired (the function's timeout later), and the message ended
in the DLQ although nothing was wrong with it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

from tdev import aws
from tdev.errors import ConfigurationError
from tdev.messaging.queues import idempotency_table_name
from tdev.observability import logger

CONFIG = IdempotencyConfig(event_key_jmespath="eventId", expires_after_seconds=24 * 3600)


@lru_cache(maxsize=8)
def _persistence(table_name: str, dynamodb: Any) -> DynamoDBPersistenceLayer:
    """One persistence layer per table and client: on the process's shared client (`tdev.aws`), so a
    `reset_clients()` (the local runtime, tests, `tdev chaos` installing its hooks) reaches it too."""
    return DynamoDBPersistenceLayer(table_name=table_name, boto3_client=dynamodb)


def idempotent(
    func: Callable[[dict[str, Any]], dict[str, Any]],
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """`func(message)` answered from its stored result when it already ran for this `eventId`.

    `func` must itself apply its effect at most once (a conditional marker): it runs again whenever
    the stored record is still "in progress".
    """

    def applied(message: dict[str, Any]) -> dict[str, Any]:
        return func(message)

    # Powertools keys a record by function name + payload hash. The consumers see the same events (the
    # same eventId), and locally they share one process (no AWS_LAMBDA_FUNCTION_NAME to tell them apart):
    # under one anonymous name, one consumer's stored result answered another's message, which was then
    # never applied. Each consumer's records are under its own operation's name.
    applied.__qualname__ = f"{func.__module__}.{func.__qualname__}"

    def call(message: dict[str, Any]) -> dict[str, Any]:
        table = idempotency_table_name()
        if not table:
            raise ConfigurationError("IDEMPOTENCY_TABLE_NAME is not set for this consumer")
        wrapped = idempotent_function(
            data_keyword_argument="message",
            config=CONFIG,
            persistence_store=_persistence(table, aws.client("dynamodb")),
        )(applied)
        try:
            result: dict[str, Any] = wrapped(message=message)
        except IdempotencyAlreadyInProgressError:
            logger.info(
                "idempotency record in progress; the marker transaction decides",
                extra={"event_id": message.get("eventId")},
            )
            result = func(message)
        return result

    return call
