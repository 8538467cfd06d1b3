"""Hierarchical memory: placement by importance, TTLs, promotion on recall, demotion, GC, snapshots."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tdev.memory.hierarchical import (
    CRITICAL_TTL_SECONDS,
    DEMOTE_AFTER_SECONDS,
    SHORT_TTL_SECONDS,
    HierarchicalMemory,
    MemoryItem,
    Tier,
    WorkingMemory,
    placement,
)
from tdev_cli.runtime import TABLE_NAME


@pytest.fixture
def memory(runtime: Any) -> HierarchicalMemory:
    from tdev import cache

    return HierarchicalMemory("ses-m", redis=cache.redis_client(), table_name=TABLE_NAME, budget_bytes=20_000)


def test_placement_by_importance() -> None:
    assert placement(0.1) is Tier.WORKING
    assert placement(0.3) is Tier.SHORT and placement(0.69) is Tier.SHORT
    assert placement(0.7) is Tier.LONG
    assert placement(0.0, critical=True) is Tier.LONG


def test_working_memory_is_an_lru_of_1000() -> None:
    working = WorkingMemory()
    for i in range(1001):
        working.put(MemoryItem(f"i{i}", "x"))
        if i == 500:
            working.get("i0")  # used: survives eviction
    assert len(working) == 1000
    assert working.get("i0") is not None and working.get("i1") is None


def test_store_places_items_in_their_tier_with_ttls(memory: HierarchicalMemory) -> None:
    assert memory.store(MemoryItem("low", "scratch", importance=0.1)) is Tier.WORKING
    assert memory.store(MemoryItem("mid", "useful", importance=0.5)) is Tier.SHORT
    assert memory.store(MemoryItem("crit", "must keep a day", importance=0.5, critical=True)) is Tier.LONG
    assert memory.store(MemoryItem("high", "decision", importance=0.9)) is Tier.LONG
    assert memory.short.get("low") is None and memory.long.get("low") is None
    assert memory.short.get("mid") is not None
    assert SHORT_TTL_SECONDS - 5 <= memory.short.ttl("mid") <= SHORT_TTL_SECONDS
    assert {i.item_id for i in memory.long.all()} == {"crit", "high"}
    critical_short = MemoryItem("crit2", "critical but short-lived", importance=0.5, critical=True)
    memory.short.put(critical_short)
    assert memory.short.ttl("crit2") > SHORT_TTL_SECONDS and memory.short.ttl("crit2") <= CRITICAL_TTL_SECONDS


def test_recall_promotes_into_working_and_to_long_term_after_five_accesses(
    memory: HierarchicalMemory,
) -> None:
    memory.store(MemoryItem("fact", "the API uses JWT", importance=0.5))
    memory.working.remove("fact")  # as if evicted from this process's working set
    first = memory.recall("fact")
    assert first is not None and first.access_count == 1 and first.tier is Tier.SHORT
    assert memory.working.get("fact") is not None  # recall promotes into working
    for _ in range(3):
        memory.recall("fact")
    assert memory.long.get("fact") is None
    fifth = memory.recall("fact")
    assert fifth is not None and fifth.access_count == 5 and fifth.tier is Tier.LONG
    assert memory.long.get("fact") is not None and memory.short.get("fact") is None
    assert memory.recall("unknown") is None


def test_demotion_after_thirty_days_without_access(memory: HierarchicalMemory) -> None:
    now = time.time()
    memory.store(
        MemoryItem("old", "stale decision", importance=0.9, last_access=now - DEMOTE_AFTER_SECONDS - 1)
    )
    memory.store(MemoryItem("recent", "fresh decision", importance=0.9, last_access=now - 86_400))
    memory.store(MemoryItem("kept", "critical", importance=0.9, critical=True, last_access=now - 90 * 86_400))
    assert memory.demote(now=now) == ["old"]
    assert memory.long.get("old") is None
    demoted = memory.short.get("old")
    assert demoted is not None and demoted.tier is Tier.SHORT
    assert {i.item_id for i in memory.long.all()} == {"recent", "kept"}


def test_gc_runs_at_eighty_percent_and_evicts_the_least_worth_keeping(memory: HierarchicalMemory) -> None:
    now = time.time()
    # Each item is ~1,064 bytes against a 20,000-byte budget: GC triggers on the 16th.
    for i in range(15):
        memory.store(MemoryItem(f"n{i}", "z" * 1000, importance=0.1 if i % 2 else 0.6, created_at=now - 7200))
    assert memory.collections == 0 and memory.usage() < 0.8 * memory.budget_bytes
    memory.store(MemoryItem("trigger", "z" * 1000, importance=0.6))
    assert memory.collections == 1
    assert memory.usage() < 0.6 * memory.budget_bytes
    survivors = set(memory.working.items) | {i.item_id for i in memory.short.all()}
    evicted = {f"n{i}" for i in range(15)} - survivors
    assert evicted and all(int(e[1:]) % 2 == 1 for e in list(evicted)[:5])  # low importance goes first
    assert "trigger" in survivors


def test_snapshot_and_restore_carry_the_volatile_tiers(memory: HierarchicalMemory, runtime: Any) -> None:
    from tdev import cache

    memory.store(MemoryItem("w", "working only", importance=0.1))
    memory.store(MemoryItem("s", "short term", importance=0.5))
    snapshot = memory.snapshot()
    cache.redis_client().flushdb()  # Redis lost its data too
    fresh = HierarchicalMemory("ses-m", redis=cache.redis_client(), table_name=TABLE_NAME)
    assert fresh.recall("w") is None
    assert fresh.restore(snapshot) == 3  # w, s in working + s in short-term
    assert fresh.recall("w") is not None and fresh.short.get("s") is not None
