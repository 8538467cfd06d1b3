"""The one codec and the one set of transient DynamoDB errors, shared by every repository.

- `to_item` / `from_item`: plain JSON types <-> the resource API's items (floats <-> Decimals);
- `serialize` / `deserialize`: plain dicts <-> the client API's attribute values (transactions, streams);
- `TRANSIENT_CODES` / `raise_if_transient`: throttling, 5xx and transaction contention become
  TransientError, which the workflow's ASL Retry and the API's 503 treat as worth retrying.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from tdev.errors import TransientError

TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
        "TransactionInProgressException",
    }
)

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_item(data: dict[str, Any], *, drop_none: bool = True) -> dict[str, Any]:
    """JSON-compatible dict -> DynamoDB item (floats become Decimals; top-level None dropped for items)."""
    converted: dict[str, Any] = json.loads(json.dumps(data, default=str), parse_float=Decimal)
    return {k: v for k, v in converted.items() if v is not None or not drop_none}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB item -> plain JSON types (Decimals become int or float)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return {k: plain(v) for k, v in item.items()}


def serialize(item: dict[str, Any], *, drop_none: bool = True) -> dict[str, Any]:
    """Plain dict -> low-level attribute values (floats become Decimals).

    Items drop top-level None attributes; expression values keep them as NULL (`drop_none=False`).
    """
    return {k: _serializer.serialize(v) for k, v in to_item(item, drop_none=drop_none).items()}


def deserialize(image: dict[str, Any]) -> dict[str, Any]:
    """Low-level attribute values (a stream image) -> plain JSON types."""
    return from_item({k: _deserializer.deserialize(v) for k, v in image.items()})


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def raise_if_transient(exc: ClientError) -> None:
    """Throttling and 5xx from DynamoDB become TransientError, which callers retry."""
    if error_code(exc) in TRANSIENT_CODES:
        raise TransientError(f"DynamoDB {error_code(exc)}: {exc}") from exc
