"""Powertools idempotency for the queue consumers, on its own table (IDEMPOTENCY_TABLE_NAME, key `id`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from tdev.errors import ConfigurationError
from tdev.messaging.queues import idempotency_table_name

CONFIG = IdempotencyConfig(event_key_jmespath="eventId", expires_after_seconds=24 * 3600)


@lru_cache(maxsize=8)
def _persistence(table_name: str) -> DynamoDBPersistenceLayer:
    return DynamoDBPersistenceLayer(table_name=table_name)


def idempotent(
    func: Callable[[dict[str, Any]], dict[str, Any]],
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """`func(message)` run at most once per `eventId` (the stored result answers repeats)."""

    def call(message: dict[str, Any]) -> dict[str, Any]:
        table = idempotency_table_name()
        if not table:
            raise ConfigurationError("IDEMPOTENCY_TABLE_NAME is not set for this consumer")
        wrapped = idempotent_function(
            data_keyword_argument="message", config=CONFIG, persistence_store=_persistence(table)
        )(lambda message: func(message))
        result: dict[str, Any] = wrapped(message=message)
        return result

    return call
