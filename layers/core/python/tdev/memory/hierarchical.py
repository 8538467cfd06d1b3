"""Three memory tiers with placement by importance, promotion on recall, demotion by age, and GC.

- working: in-process LRU of at most 1000 items (lost with the process; checkpoints carry it over);
- short-term: the shared Redis, one key per item with a TTL of 1 h (24 h for critical items), plus a
  per-session index set so the tier can be listed without KEYS;
- long-term: the single table, `PK = MEMORY#<session>`, `SK = ITEM#<id>`.

Placement: importance >= 0.7 (or critical) goes to long-term, >= 0.3 to short-term, the rest stays in
working only. Every stored item is also cached in working. Recall looks working -> short -> long, counts
the access and copies the item into working (recall promotes); an item recalled 5 times is promoted to
long-term. `demote()` moves long-term items not accessed for 30 days back to short-term (where their TTL
ends them unless they are used again). `collect()` runs when working + short-term reach 80 % of the
byte budget and evicts the items with the lowest keep-score (importance, access rate, age) until usage
is back under 60 %.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from boto3.dynamodb.conditions import Key

from tdev import aws
from tdev.data.fields import FieldSealer

WORKING_CAPACITY = 1000
SHORT_TTL_SECONDS = 3_600
CRITICAL_TTL_SECONDS = 86_400
PROMOTE_AFTER_ACCESSES = 5
DEMOTE_AFTER_SECONDS = 30 * 86_400
LONG_TERM_IMPORTANCE = 0.7
SHORT_TERM_IMPORTANCE = 0.3
GC_THRESHOLD = 0.8
GC_TARGET = 0.6


class Tier(StrEnum):
    WORKING = "working"
    SHORT = "short"
    LONG = "long"


@dataclass
class MemoryItem:
    item_id: str
    content: str
    importance: float = 0.5
    critical: bool = False
    created_at: float = field(default_factory=time.time)
    last_access: float = field(default_factory=time.time)
    access_count: int = 0
    tier: Tier = Tier.WORKING
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.content.encode()) + 64

    def to_json(self) -> str:
        data = asdict(self)
        data["tier"] = str(self.tier)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> MemoryItem:
        data = json.loads(text)
        data["tier"] = Tier(data["tier"])
        return cls(**data)

    def keep_score(self, now: float) -> float:
        """Higher = more worth keeping: importance, then access rate per hour, then freshness."""
        age_hours = max(now - self.created_at, 1.0) / 3600
        rate = self.access_count / age_hours
        freshness = 1.0 / (1.0 + (now - self.last_access) / 3600)
        return (
            0.5 * self.importance + 0.3 * min(rate, 1.0) + 0.2 * freshness + (1.0 if self.critical else 0.0)
        )


class WorkingMemory:
    def __init__(self, capacity: int = WORKING_CAPACITY) -> None:
        self.capacity = capacity
        self.items: OrderedDict[str, MemoryItem] = OrderedDict()

    def put(self, item: MemoryItem) -> None:
        self.items[item.item_id] = item
        self.items.move_to_end(item.item_id)
        while len(self.items) > self.capacity:
            self.items.popitem(last=False)

    def get(self, item_id: str) -> MemoryItem | None:
        item = self.items.get(item_id)
        if item is not None:
            self.items.move_to_end(item_id)
        return item

    def remove(self, item_id: str) -> None:
        self.items.pop(item_id, None)

    def __len__(self) -> int:
        return len(self.items)


class ShortTermMemory:
    """Memory items in Redis, their texts sealed like the long-term tier's (bound to the Redis key)."""

    def __init__(self, redis: Any, session_id: str, sealer: FieldSealer | None = None) -> None:
        self.redis, self.session_id = redis, session_id
        self.index = f"tdev:mem:{{{session_id}}}:index"
        self._sealer = sealer

    @property
    def sealer(self) -> FieldSealer:
        if self._sealer is None:
            from tdev import container

            self._sealer = container.sealer()
        return self._sealer

    def _seal(self, item: MemoryItem) -> str:
        return self.sealer.seal(item.to_json(), {"PK": self._key(item.item_id), "SK": "MEMORY"}, "body")

    def _open(self, key: str, value: str) -> MemoryItem:
        return MemoryItem.from_json(self.sealer.open(value, {"PK": key, "SK": "MEMORY"}, "body"))

    def _key(self, item_id: str) -> str:
        return f"tdev:mem:{{{self.session_id}}}:{item_id}"

    def put(self, item: MemoryItem) -> None:
        ttl = CRITICAL_TTL_SECONDS if item.critical else SHORT_TTL_SECONDS
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self._key(item.item_id), self._seal(item), ex=ttl)
        pipe.sadd(self.index, item.item_id)
        pipe.expire(self.index, CRITICAL_TTL_SECONDS)
        pipe.execute()

    def get(self, item_id: str) -> MemoryItem | None:
        value = self.redis.get(self._key(item_id))
        return self._open(self._key(item_id), value) if value else None

    def ttl(self, item_id: str) -> int:
        return int(self.redis.ttl(self._key(item_id)))

    def remove(self, item_id: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self._key(item_id))
        pipe.srem(self.index, item_id)
        pipe.execute()

    def all(self) -> list[MemoryItem]:
        ids = sorted(self.redis.smembers(self.index))
        if not ids:
            return []
        values = self.redis.mget([self._key(i) for i in ids])
        expired = [i for i, v in zip(ids, values, strict=True) if v is None]
        if expired:
            self.redis.srem(self.index, *expired)
        return [self._open(self._key(i), v) for i, v in zip(ids, values, strict=True) if v]


class LongTermMemory:
    """Memory items in the single table; their bodies (the texts) envelope-encrypted like request texts,
    bound to the item's key. Items stored in clear before that are read as they are."""

    def __init__(self, table_name: str, session_id: str, sealer: FieldSealer | None = None) -> None:
        self.table_name, self.session_id = table_name, session_id
        self._sealer = sealer

    @property
    def table(self) -> Any:
        return aws.table(self.table_name)

    @property
    def sealer(self) -> FieldSealer:
        if self._sealer is None:
            from tdev import container

            self._sealer = container.sealer()
        return self._sealer

    def _key(self, item_id: str) -> dict[str, str]:
        return {"PK": f"MEMORY#{self.session_id}", "SK": f"ITEM#{item_id}"}

    def _open(self, found: dict[str, Any]) -> MemoryItem:
        return MemoryItem.from_json(self.sealer.open(str(found["body"]), found, "body"))

    def put(self, item: MemoryItem) -> None:
        key = self._key(item.item_id)
        self.table.put_item(
            Item={
                **key,
                "entity": "MemoryItem",
                "body": self.sealer.seal(item.to_json(), key, "body"),
                "last_access": Decimal(str(round(item.last_access, 3))),
            }
        )

    def get(self, item_id: str) -> MemoryItem | None:
        found = self.table.get_item(Key=self._key(item_id)).get("Item")
        return self._open(found) if found else None

    def remove(self, item_id: str) -> None:
        self.table.delete_item(Key={"PK": f"MEMORY#{self.session_id}", "SK": f"ITEM#{item_id}"})

    def all(self) -> list[MemoryItem]:
        items: list[MemoryItem] = []
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("PK").eq(f"MEMORY#{self.session_id}")
            & Key("SK").begins_with("ITEM#")
        }
        while True:
            response = self.table.query(**kwargs)
            items += [self._open(i) for i in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                return items
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def placement(importance: float, critical: bool = False) -> Tier:
    if critical or importance >= LONG_TERM_IMPORTANCE:
        return Tier.LONG
    if importance >= SHORT_TERM_IMPORTANCE:
        return Tier.SHORT
    return Tier.WORKING


class HierarchicalMemory:
    def __init__(
        self,
        session_id: str,
        *,
        redis: Any,
        table_name: str,
        budget_bytes: int = 4 * 1024 * 1024,
        working_capacity: int = WORKING_CAPACITY,
    ) -> None:
        self.session_id = session_id
        self.working = WorkingMemory(working_capacity)
        self.short = ShortTermMemory(redis, session_id)
        self.long = LongTermMemory(table_name, session_id)
        self.budget_bytes = budget_bytes
        self.collections = 0

    def _store_in(self, item: MemoryItem) -> None:
        if item.tier is Tier.LONG:
            self.long.put(item)
        elif item.tier is Tier.SHORT:
            self.short.put(item)

    def store(self, item: MemoryItem) -> Tier:
        item.tier = placement(item.importance, item.critical)
        self._store_in(item)
        self.working.put(item)
        if self.usage() >= GC_THRESHOLD * self.budget_bytes:
            self.collect()
        return item.tier

    def recall(self, item_id: str, *, now: float | None = None) -> MemoryItem | None:
        now = time.time() if now is None else now
        item = self.working.get(item_id) or self.short.get(item_id) or self.long.get(item_id)
        if item is None:
            return None
        item.access_count += 1
        item.last_access = now
        if item.access_count >= PROMOTE_AFTER_ACCESSES and item.tier is not Tier.LONG:
            if item.tier is Tier.SHORT:
                self.short.remove(item_id)
            item.tier = Tier.LONG
        self._store_in(item)  # the access count and time persist in the item's tier
        self.working.put(item)  # recall promotes into working
        return item

    def demote(self, *, now: float | None = None) -> list[str]:
        """Long-term items untouched for 30 days go back to short-term (their TTL then applies)."""
        now = time.time() if now is None else now
        demoted = []
        for item in self.long.all():
            if now - item.last_access >= DEMOTE_AFTER_SECONDS and not item.critical:
                self.long.remove(item.item_id)
                item.tier = Tier.SHORT
                self.short.put(item)
                self.working.remove(item.item_id)
                demoted.append(item.item_id)
        return demoted

    def usage(self) -> int:
        """Bytes held by the volatile tiers (working + short-term), what the budget bounds."""
        ids = set(self.working.items)
        total = sum(i.size for i in self.working.items.values())
        total += sum(i.size for i in self.short.all() if i.item_id not in ids)
        return total

    def collect(self, *, now: float | None = None) -> list[str]:
        """GC: at >= 80 % of the budget, evict the lowest keep-scores until usage is under 60 %."""
        now = time.time() if now is None else now
        if self.usage() < GC_THRESHOLD * self.budget_bytes:
            return []
        self.collections += 1
        candidates: dict[str, MemoryItem] = {i.item_id: i for i in self.short.all()}
        candidates.update(self.working.items)
        ranked = sorted(candidates.values(), key=lambda i: i.keep_score(now))
        usage, evicted = self.usage(), []
        for item in ranked:
            if usage < GC_TARGET * self.budget_bytes:
                break
            if item.critical:
                continue
            self.working.remove(item.item_id)
            if item.tier is Tier.SHORT:
                self.short.remove(item.item_id)
            usage -= item.size
            evicted.append(item.item_id)
        return evicted

    # ---------------------------------------------------------------------------- checkpoints
    def snapshot(self) -> dict[str, Any]:
        """The volatile tiers as plain data (long-term is durable on its own)."""
        return {
            "working": [json.loads(i.to_json()) for i in self.working.items.values()],
            "short": [json.loads(i.to_json()) for i in self.short.all()],
        }

    def restore(self, snapshot: dict[str, Any]) -> int:
        count = 0
        for data in snapshot.get("short", []):
            self.short.put(MemoryItem.from_json(json.dumps(data)))
            count += 1
        for data in snapshot.get("working", []):
            self.working.put(MemoryItem.from_json(json.dumps(data)))
            count += 1
        return count
