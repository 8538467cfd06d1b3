"""Counting every AWS call a piece of code makes, through botocore event hooks on every client.

`AwsMeter` wraps botocore's ClientCreator.create_client so that each client created while it is active
gets `before-call` / `after-call` handlers: one count per service/operation, whichever session or
library made the client (our code, Agent Squad, moto's Step Functions interpreter). DynamoDB capacity
is computed from item sizes by the DynamoDB rules (moto's ReturnConsumedCapacity is a constant, not a
measurement): writes bill ceil(max(size before, size after) / 1 KB) WRU (x2 in a transaction), reads
ceil(size / 4 KB) RRU (half when eventually consistent, x2 in a transaction); sizes before and after
each write are read from the emulated table itself, outside the API, so they are not counted as calls.

Index writes are counted apart (`index_write_units`), from the table's own index definitions as the emulation
holds them (the same as deployed: `schema.create_table_kwargs` and the data stack share
`schema.GLOBAL_INDEXES`), by the DynamoDB rules for global secondary indexes: an index entry is the projected
attributes plus 100 bytes; a write that adds or removes an item's entry costs one index write, one that
changes the entry's key costs two (delete and put), one that changes only projected attributes costs one,
and one that leaves the projection unchanged (or whose item has no key for that index) costs none. Index
writes are propagated outside the transaction, so they are not doubled in one.
"""

from __future__ import annotations

import copy
import json
import math
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ITEM_LIMIT_BYTES = 400 * 1024
INDEX_ENTRY_OVERHEAD_BYTES = 100
_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}


def _attribute_size(value: dict[str, Any]) -> int:
    """Size of one typed DynamoDB attribute value by the documented rules (names counted by the caller)."""
    ((kind, data),) = value.items()
    if kind == "S":
        return len(data.encode())
    if kind == "N":
        digits = len(str(data).lstrip("-").replace(".", "").strip("0")) or 1
        return math.ceil(digits / 2) + 1
    if kind == "B":
        return len(data) if isinstance(data, bytes) else len(str(data)) * 3 // 4
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in data)
    if kind == "NS":
        return sum(_attribute_size({"N": n}) for n in data)
    if kind == "BS":
        return sum(_attribute_size({"B": b}) for b in data)
    if kind == "L":
        return 3 + sum(1 + _attribute_size(v) for v in data)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + _attribute_size(v) for k, v in data.items())
    return 0


def item_size(item: dict[str, Any]) -> int:
    """Bytes of a typed DynamoDB item ({"name": {"S": "..."}}): names plus values."""
    return sum(len(name.encode()) + _attribute_size(value) for name, value in item.items())


class AwsMeter:
    """Counts calls (service, operation), DynamoDB units and bytes, EventBridge entries (module doc)."""

    def __init__(self, account: str = "123456789012", region: str = "us-east-1") -> None:
        self.account, self.region = account, region
        self.calls: Counter[tuple[str, str]] = Counter()
        self.write_units = 0.0
        self.index_write_units = 0.0
        self.read_units = 0.0
        self.bytes_written = 0
        self.largest_item = 0
        self.event_entries = 0
        self.errors: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._ignored = threading.local()
        self.paused = False  # nothing is counted while True (e.g. set-up and warm-up)
        self._pending: dict[int, list[tuple[str, dict[str, Any]]]] = {}

    # ------------------------------------------------------------------------------- installation
    @contextmanager
    def installed(self) -> Iterator[AwsMeter]:
        """Hook every client created inside the block (drop cached clients first so they are rebuilt)."""
        from botocore.client import ClientCreator

        original = ClientCreator.create_client
        meter = self

        def create_client(creator: Any, *args: Any, **kwargs: Any) -> Any:
            client = original(creator, *args, **kwargs)
            client.meta.events.register("before-call", meter._before_call)
            client.meta.events.register("after-call", meter._after_call)
            client.meta.events.register("after-call-error", meter._after_error)
            return client

        ClientCreator.create_client = create_client
        try:
            yield self
        finally:
            ClientCreator.create_client = original

    @contextmanager
    def pause(self) -> Iterator[None]:
        """Nothing is counted inside the block, from any thread."""
        self.paused = True
        try:
            yield
        finally:
            self.paused = False

    @contextmanager
    def ignored(self) -> Iterator[None]:
        """Calls made by this thread inside the block are not counted (e.g. the benchmark's own polling)."""
        self._ignored.on = True
        try:
            yield
        finally:
            self._ignored.on = False

    def _counting(self) -> bool:
        return not self.paused and not getattr(self._ignored, "on", False)

    # ------------------------------------------------------------------------------------- hooks
    def _before_call(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        if not self._counting():
            return
        service = model.service_model.service_name
        operation = model.name
        with self._lock:
            self.calls[(service, operation)] += 1
        if service == "events" and operation == "PutEvents":
            body = self._body(params)
            with self._lock:
                self.event_entries += len(body.get("Entries", []))
        if service == "dynamodb":
            self._pending.setdefault(threading.get_ident(), []).append(self._writes_before(operation, params))

    def _after_call(self, model: Any, http_response: Any = None, parsed: Any = None, **_: Any) -> None:
        if not self._counting():
            return
        failed = http_response is not None and http_response.status_code >= 300
        if failed:  # an error answer (4xx/5xx) arrives here too, not at after-call-error
            with self._lock:
                self.errors[f"{model.service_model.service_name}.{model.name}"] += 1
        if model.service_model.service_name != "dynamodb":
            return
        pending = self._pending.get(threading.get_ident()) or [("", {})]
        operation, body = pending.pop()
        if failed:  # nothing was written or read
            return
        try:
            response = json.loads(http_response.content) if http_response is not None else {}
        except ValueError:
            response = {}
        self._account(operation, body, response)

    def _after_error(self, model: Any, **_: Any) -> None:
        if self._counting():
            with self._lock:
                self.errors[f"{model.service_model.service_name}.{model.name}"] += 1
            pending = self._pending.get(threading.get_ident())
            if model.service_model.service_name == "dynamodb" and pending:
                pending.pop()

    # ----------------------------------------------------------------------------------- DynamoDB
    @staticmethod
    def _body(params: dict[str, Any]) -> dict[str, Any]:
        body = params.get("body") or b"{}"
        try:
            return dict(json.loads(body))
        except (ValueError, TypeError):
            return {}

    def _writes_before(self, operation: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The request and, for writes, the sizes of the items it will overwrite (read before it runs)."""
        body = self._body(params)
        return operation, {
            **body,
            "_before": [self._stored_item(t, k) for t, k in self._written_keys(operation, body)],
        }

    def _written_keys(self, operation: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        if operation in _WRITES:
            return [
                (
                    body.get("TableName", ""),
                    self._key_of(body.get("TableName", ""), body.get("Key") or body.get("Item") or {}),
                )
            ]
        if operation == "TransactWriteItems":
            keys = []
            for entry in body.get("TransactItems", []):
                for kind in ("Put", "Update", "Delete"):
                    if kind in entry:
                        part = entry[kind]
                        keys.append(
                            (
                                part["TableName"],
                                self._key_of(part["TableName"], part.get("Key") or part.get("Item") or {}),
                            )
                        )
            return keys
        if operation == "BatchWriteItem":
            keys = []
            for table, requests in body.get("RequestItems", {}).items():
                for request in requests:
                    part = (
                        request.get("PutRequest", {}).get("Item")
                        or request.get("DeleteRequest", {}).get("Key")
                        or {}
                    )
                    keys.append((table, self._key_of(table, part)))
            return keys
        return []

    def _table(self, name: str) -> Any:
        from moto.dynamodb.models import dynamodb_backends

        return dynamodb_backends[self.account][self.region].get_table(name)

    def _key_of(self, table_name: str, item: dict[str, Any]) -> dict[str, Any]:
        try:
            table = self._table(table_name)
        except Exception:  # unknown table: the call itself will fail and be counted as an error
            return {}
        names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
        return {name: item[name] for name in names if name in item}

    def _stored_item(self, table_name: str, key: dict[str, Any]) -> Any:
        """A copy of the item stored under `key` right now (None when absent), read from the emulation
        (a copy: the emulation updates items in place)."""
        from moto.dynamodb.models.dynamo_type import DynamoType

        try:
            table = self._table(table_name)
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
            item = table.get_item(hash_key, range_key)
        except Exception:
            return None
        return copy.deepcopy(item) if item is not None else None

    def _index_write_units(self, table_name: str, before: Any, after: Any) -> float:
        """Write units the table's global secondary indexes bill for one item going from `before` to
        `after` (either None when absent), by the rules in the module doc."""
        try:
            indexes = list(self._table(table_name).global_indexes)
        except Exception:
            return 0.0

        def units(entry: Any) -> int:
            return max(1, math.ceil((int(entry.size()) + INDEX_ENTRY_OVERHEAD_BYTES) / 1024))

        total = 0
        for index in indexes:
            names = [k["AttributeName"] for k in index.schema]

            def entry(item: Any, index: Any = index, names: list[str] = names) -> Any:
                if item is None or any(name not in item.attrs for name in names):
                    return None
                return index.project(copy.deepcopy(item))

            old, new = entry(before), entry(after)
            if old is None and new is None:
                continue
            if old is None or new is None:
                total += units(new if old is None else old)
            elif any(before.attrs[n] != after.attrs[n] for n in names):
                total += units(old) + units(new)
            elif old.attrs != new.attrs:
                total += units(new)
        return float(total)

    def _account(self, operation: str, body: dict[str, Any], response: dict[str, Any]) -> None:
        wru, rru, index_wru = 0.0, 0.0, 0.0
        written = 0
        if operation in _WRITES or operation in ("TransactWriteItems", "BatchWriteItem"):
            factor = 2 if operation == "TransactWriteItems" else 1
            keys = self._written_keys(operation, body)
            for (table, key), before in zip(keys, body.get("_before", []), strict=False):
                after_item = self._stored_item(table, key)
                after = int(after_item.size()) if after_item is not None else 0
                size = max(int(before.size()) if before is not None else 0, after)
                written += after
                self.largest_item = max(self.largest_item, after)
                wru += factor * max(1, math.ceil(size / 1024))
                index_wru += self._index_write_units(table, before, after_item)
        elif operation in ("GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"):
            consistent = bool(body.get("ConsistentRead"))
            if operation == "GetItem":
                sizes = [item_size(response.get("Item") or {})]
            elif operation in ("Query", "Scan"):
                sizes = [sum(item_size(i) for i in response.get("Items", []))]
            elif operation == "BatchGetItem":
                sizes = [item_size(i) for items in response.get("Responses", {}).values() for i in items]
            else:
                sizes = [item_size(r.get("Item") or {}) for r in response.get("Responses", [])]
            read_factor = 2.0 if operation == "TransactGetItems" else 1.0 if consistent else 0.5
            rru = sum((read_factor * max(1, math.ceil(size / 4096)) for size in sizes), 0.0)
        with self._lock:
            self.write_units += wru
            self.index_write_units += index_wru
            self.read_units += rru
            self.bytes_written += written

    # ---------------------------------------------------------------------------------- summary
    def by_service(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for (service, _), count in self.calls.items():
            totals[service] += count
        return dict(totals.most_common())

    def count(self, service: str, operation: str | None = None) -> int:
        return sum(
            n for (s, o), n in self.calls.items() if s == service and (operation is None or o == operation)
        )
