"""Generic single-table operations every repository shares.

- `Page` / cursors: every list that can grow is read one page at a time; the cursor handed to clients
  is opaque (base64url JSON of DynamoDB's LastEvaluatedKey, checked on the way back in).
- `update_versioned`: optimistic locking on `version` with bounded retries (3 by default).
- `transact_write`: at most 100 items per TransactWriteItems (DynamoDB's limit); larger sets are
  refused with a clear error instead of being split into several non-atomic transactions, and a
  client request token makes a retried transaction idempotent for 10 minutes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.conditions import ConditionBase, Key
from botocore.exceptions import ClientError

from tdev import aws
from tdev.data import schema
from tdev.data.codec import (  # noqa: F401  (re-exported: the kit's one codec and transient set)
    TRANSIENT_CODES,
    deserialize,
    error_code,
    from_item,
    raise_if_transient,
    serialize,
    to_item,
)
from tdev.errors import ConflictError, ValidationError

MAX_TRANSACTION_ITEMS = 100
MAX_PAGE_SIZE = 100


# ---------------------------------------------------------------------------------------- paging
def cursor_signature(secret: str, payload: str) -> str:
    """HMAC-SHA256 of a cursor's payload under the platform's API signing secret (128 bits, url-safe)."""
    digest = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def cursor_signed_by(secret: str, payload: str, signature: str) -> bool:
    return hmac.compare_digest(cursor_signature(secret, payload), signature)


def _signing_secret() -> str | None:
    """The API signing secret's name when this deployment signs its cursors (TDEV_API_SIGNING_SECRET)."""
    from tdev.settings import get_settings

    return get_settings().api_signing_secret


def sign_cursor(payload: str) -> str:
    """A cursor handed to clients, signed with the API signing secret when this deployment has one
    (`<payload>.<signature>`), so a client cannot make the API read from a key it was not given."""
    secret_id = _signing_secret()
    if not secret_id:
        return payload
    from tdev import secrets

    secret = secrets.read(secret_id, purpose="sign a cursor")
    if secret is None:
        raise ValidationError("the API signing secret has no current value", field="cursor")
    return f"{payload}.{cursor_signature(secret, payload)}"


def verified_cursor(cursor: str, *, field: str = "cursor") -> str:
    """The payload of a cursor this API signed; 400 naming `cursor` otherwise. Checked against the signing
    secret's current value, then its previous one (a cursor handed out before a rotation stays valid
    through the next one)."""
    secret_id = _signing_secret()
    if not secret_id:
        return cursor
    from tdev import secrets

    payload, _, signature = cursor.rpartition(".")
    if not payload or not secrets.verify_with_rotation(
        secret_id, lambda secret: cursor_signed_by(secret, payload, signature), purpose="verify a cursor"
    ):
        raise ValidationError(f"{field} is not a cursor this API returned", field=field)
    return payload


def encode_cursor(last_key: dict[str, Any] | None) -> str | None:
    if not last_key:
        return None
    raw = json.dumps(from_item(last_key), sort_keys=True, separators=(",", ":")).encode()
    return sign_cursor(base64.urlsafe_b64encode(raw).decode().rstrip("="))


def decode_cursor(cursor: str | None, *, allowed: Sequence[str]) -> dict[str, Any] | None:
    """The start key a cursor stands for; a cursor that was not ours is a 400 naming `cursor`."""
    if not cursor:
        return None
    cursor = verified_cursor(cursor)
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValidationError("cursor is not a cursor this API returned", field="cursor") from None
    if (
        not isinstance(data, dict)
        or set(data) - set(allowed)
        or not all(isinstance(v, str) for v in data.values())
    ):
        raise ValidationError("cursor is not a cursor this API returned", field="cursor")
    return to_item(data)


@dataclass
class Page:
    items: list[dict[str, Any]]
    cursor: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def query_page(
    table_name: str,
    partition: tuple[str, str],
    *,
    index_name: str | None = None,
    sort_prefix: str | None = None,
    sort_between: tuple[str, str] | None = None,
    newest_first: bool = False,
    limit: int = 50,
    cursor: str | None = None,
    filter_expression: ConditionBase | None = None,
) -> Page:
    """One page of a Query on the table or one of its indexes; `cursor` continues where it stopped."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValidationError(f"limit must be between 1 and {MAX_PAGE_SIZE}", field="limit")
    pk_name, pk_value = partition
    if index_name is None:
        sk_name, allowed = schema.SORT_KEY, [schema.PARTITION_KEY, schema.SORT_KEY]
    else:
        gsi = schema.index(index_name)
        sk_name = gsi.sort_key
        allowed = [schema.PARTITION_KEY, schema.SORT_KEY, gsi.partition_key, gsi.sort_key]
    condition = Key(pk_name).eq(pk_value)
    if sort_prefix is not None:
        condition = condition & Key(sk_name).begins_with(sort_prefix)
    if sort_between is not None:
        condition = condition & Key(sk_name).between(*sort_between)
    kwargs: dict[str, Any] = {
        "KeyConditionExpression": condition,
        "ScanIndexForward": not newest_first,
        "Limit": limit,
    }
    if index_name:
        kwargs["IndexName"] = index_name
    if filter_expression is not None:
        kwargs["FilterExpression"] = filter_expression
    start = decode_cursor(cursor, allowed=allowed)
    if start:
        kwargs["ExclusiveStartKey"] = start
    try:
        page = aws.table(table_name).query(**kwargs)
    except ClientError as exc:
        raise_if_transient(exc)
        raise
    return Page([from_item(i) for i in page.get("Items", [])], encode_cursor(page.get("LastEvaluatedKey")))


# ---------------------------------------------------------------------------------- transactions
def transact_write(actions: Sequence[dict[str, Any]], *, token: str | None = None) -> None:
    """One atomic TransactWriteItems of up to 100 actions; more is refused, never split silently.

    Splitting would make part of the change visible without the rest (no atomicity across
    transactions), so a caller with more than 100 items must model its change differently.
    """
    if not actions:
        return
    if len(actions) > MAX_TRANSACTION_ITEMS:
        raise ValidationError(
            f"a transaction holds at most {MAX_TRANSACTION_ITEMS} items, this one has {len(actions)}; "
            "it was refused rather than split into non-atomic parts",
            field="items",
        )
    kwargs: dict[str, Any] = {"TransactItems": list(actions)}
    if token:
        kwargs["ClientRequestToken"] = token[:36]
    try:
        aws.client("dynamodb").transact_write_items(**kwargs)
    except ClientError as exc:
        raise_if_transient(exc)
        raise


def cancellation_codes(exc: ClientError) -> list[str]:
    """Per-action reasons of a cancelled transaction ('None' where that action was fine)."""
    reasons = exc.response.get("CancellationReasons") or []
    return [str(r.get("Code", "None")) for r in reasons]


# -------------------------------------------------------------------------------- optimistic lock
def update_versioned(
    table_name: str,
    key: dict[str, str],
    change: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    retries: int = 3,
    create: bool = False,
) -> dict[str, Any]:
    """Read, apply `change`, write back only if nobody wrote in between (`version` unchanged).

    A lost race re-reads and re-applies `change` up to `retries` more times, then raises
    ConflictError (409). `create` allows a missing item (starting from {} at version 0).
    """
    table = aws.table(table_name)
    for _ in range(retries + 1):
        current = table.get_item(Key=key, ConsistentRead=True).get("Item")
        if current is None and not create:
            from tdev.errors import NotFoundError

            raise NotFoundError(f"{key['PK']} not found")
        state = from_item(current) if current else {}
        version = int(state.get(schema.VERSION_ATTRIBUTE, 0))
        updated = {**change(dict(state)), **key, schema.VERSION_ATTRIBUTE: version + 1}
        condition = "attribute_not_exists(PK)" if current is None else "#version = :expected"
        kwargs: dict[str, Any] = {"Item": to_item(updated), "ConditionExpression": condition}
        if current is not None:
            kwargs["ExpressionAttributeNames"] = {"#version": schema.VERSION_ATTRIBUTE}
            kwargs["ExpressionAttributeValues"] = {":expected": version}
        try:
            table.put_item(**kwargs)
            return updated
        except ClientError as exc:
            raise_if_transient(exc)
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
    raise ConflictError(f"{key['PK']} kept changing: gave up after {retries} retries", field="version")
