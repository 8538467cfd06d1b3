"""The read cache (tdev.caching) on the tests' real Redis (a three-master cluster by default).

Two "containers" are two TieredCache instances of one namespace: each has its own L1, both share Redis.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis.cluster import key_slot

from tdev import cache, caching
from tdev.caching import CacheUnavailable, Freshness, TieredCache


class Backend:
    """The source of truth: a dict, counting its reads."""

    def __init__(self, **values: Any) -> None:
        self.values = dict(values)
        self.loads = 0
        self._lock = threading.Lock()

    def loader(self, key: str, delay: float = 0.0) -> Callable[[], Any]:
        def load() -> Any:
            with self._lock:
                self.loads += 1
            if delay:
                time.sleep(delay)
            return self.values[key]

        return load


def _container(namespace: str = "executions", **options: Any) -> TieredCache:
    return TieredCache(namespace, redis=cache.redis_client, **options)


def test_cache_aside_loads_once_then_serves_from_l1_and_l2(redis_url: str) -> None:
    backend = Backend(item={"status": "RUNNING"})
    first, second = _container(), _container()
    assert first.get_or_load("e-1", backend.loader("item")) == {"status": "RUNNING"}
    assert first.get_or_load("e-1", backend.loader("item")) == {"status": "RUNNING"}
    assert second.get_or_load("e-1", backend.loader("item")) == {"status": "RUNNING"}
    assert backend.loads == 1
    assert first.counts["misses"] == 1 and first.counts["hits_l1"] == 1
    assert second.counts["hits_l2"] == 1


@pytest.mark.parametrize(
    ("freshness", "ttl"), [(Freshness.STABLE, 86_400), (Freshness.WARM, 3_600), (Freshness.VOLATILE, 300)]
)
def test_the_ttl_policy_is_the_specs(redis_url: str, freshness: Freshness, ttl: int) -> None:
    container = _container()
    container.get_or_load("k", lambda: 1, freshness=freshness)
    assert ttl - 5 <= cache.redis_client().ttl(container.entry_key("k")) <= ttl


def test_an_entry_its_lock_and_its_tags_are_cluster_safe_keys(redis_url: str) -> None:
    container = _container()
    entry = container.entry_key("e-1")
    assert key_slot(entry.encode()) == key_slot(f"{entry}:lock".encode())
    assert "{" not in container.entry_key("a{b}c")[len("tdev:cache:{") :]  # a brace cannot move the slot
    assert container.entry_key("a{b}c") != container.entry_key("a{b}d")


def test_no_stale_read_in_another_container_after_a_write_is_acknowledged(redis_url: str) -> None:
    backend = Backend(item="v1")
    writer, reader = _container(), _container()
    assert reader.get_or_load("e-1", backend.loader("item")) == "v1"  # reader's L1 and Redis hold v1
    assert writer.get_or_load("e-1", backend.loader("item")) == "v1"
    # The write: the backend changes, then (same code path) the entry is invalidated; then acknowledged.
    backend.values["item"] = "v2"
    writer.invalidate("e-1")
    assert reader.get_or_load("e-1", backend.loader("item")) == "v2"  # its L1 copy was not served
    assert writer.get_or_load("e-1", backend.loader("item")) == "v2"
    assert reader.get_or_load("e-1", backend.loader("item")) == "v2"


def test_a_tag_invalidates_every_entry_filled_under_it_in_every_container(redis_url: str) -> None:
    backend = Backend(a="a1", b="b1", c="c1")
    one, two = _container("roles"), _container("roles")
    one.get_or_load("a", backend.loader("a"), tags=["role:dev"])
    two.get_or_load("b", backend.loader("b"), tags=["role:dev"])
    one.get_or_load("c", backend.loader("c"), tags=["role:ops"])
    for name in ("a", "b", "c"):
        two.get_or_load(name, backend.loader(name))  # now in both L1s
    backend.values.update(a="a2", b="b2", c="c2")
    one.invalidate_tag("role:dev")
    assert [two.get_or_load(n, backend.loader(n)) for n in "abc"] == ["a2", "b2", "c1"]
    assert [one.get_or_load(n, backend.loader(n)) for n in "abc"] == ["a2", "b2", "c1"]


def test_invalidating_a_key_invalidates_its_dependents_in_every_container(redis_url: str) -> None:
    backend = Backend(a="a1", b="b1", listing="a1+b1")
    one, two = _container("registry"), _container("registry")
    for container in (one, two):  # the listing is derived from a and b: in both L1s and Redis
        assert container.get_or_load("listing", backend.loader("listing"), depends_on=["a", "b"]) == "a1+b1"
        assert container.get_or_load("a", backend.loader("a")) == "a1"
    backend.values.update(a="a2", listing="a2+b1")
    one.invalidate("a")  # the write's own key: its dependents go with it
    assert two.get_or_load("a", backend.loader("a")) == "a2"
    assert two.get_or_load("listing", backend.loader("listing"), depends_on=["a", "b"]) == "a2+b1"
    loads = backend.loads
    one.invalidate("c")  # nothing depends on c: the listing stays cached
    assert one.get_or_load("listing", backend.loader("listing"), depends_on=["a", "b"]) == "a2+b1"
    assert backend.loads == loads


def test_dependents_of_an_invalidation_made_while_redis_was_down_are_invalidated_when_it_is_back(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(caching, "DOWN_SECONDS", 0.0)
    backend = Backend(a="a1", listing="a1")
    switch = Switch()
    writer, reader = TieredCache("registry", redis=switch), _container("registry")
    assert reader.get_or_load("listing", backend.loader("listing"), depends_on=["a"]) == "a1"
    switch.up = False
    backend.values.update(a="a2", listing="a2")
    writer.invalidate("a")  # lenient: the key and its dependents are remembered
    switch.up = True
    writer.get_or_load("a", backend.loader("a"))  # the writer's next use of Redis replays both
    assert reader.get_or_load("listing", backend.loader("listing"), depends_on=["a"]) == "a2"


def test_a_value_loaded_before_a_write_is_not_stored_after_its_invalidation(redis_url: str) -> None:
    """The cache-aside race: a slow loader read v1, the write and its invalidation happen meanwhile."""
    backend = Backend(item="v1")
    slow, writer = _container(), _container()

    def load_then_write_happens() -> str:
        value = backend.values["item"]
        backend.values["item"] = "v2"
        writer.invalidate("e-1")  # acknowledged before the slow loader fills
        return str(value)

    assert slow.get_or_load("e-1", load_then_write_happens) == "v1"  # its own read, concurrent with the write
    assert slow.counts["rejected_fills"] == 1
    assert writer.get_or_load("e-1", backend.loader("item")) == "v2"
    assert slow.get_or_load("e-1", backend.loader("item")) == "v2"


def test_a_tag_invalidation_during_a_load_reaches_the_entry(redis_url: str) -> None:
    backend = Backend(item="v1")
    slow, writer = _container("roles"), _container("roles")

    def load_then_tag_changes() -> str:
        value = backend.values["item"]
        backend.values["item"] = "v2"
        writer.invalidate_tag("role:dev")
        return str(value)

    slow.get_or_load("p", load_then_tag_changes, tags=["role:dev"])
    assert writer.get_or_load("p", backend.loader("item"), tags=["role:dev"]) == "v2"


def test_two_hundred_concurrent_misses_load_the_backend_once(redis_url: str) -> None:
    backend = Backend(item={"status": "RUNNING"})
    containers = [_container(), _container()]
    start = threading.Barrier(200)
    answers: list[Any] = []

    def read(i: int) -> None:
        start.wait()
        answers.append(containers[i % 2].get_or_load("hot", backend.loader("item", delay=0.2)))

    threads = [threading.Thread(target=read, args=(i,)) for i in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 200 and all(a == {"status": "RUNNING"} for a in answers)
    assert backend.loads == 1


def test_a_reader_that_starts_after_a_write_does_not_take_an_older_load_in_flight(redis_url: str) -> None:
    """Threads of one container share a load in flight, but not one that read its source before a write
    that was acknowledged before they started."""
    backend = Backend(item="v1")
    container, writer = _container(), _container()
    read_v1, release = threading.Event(), threading.Event()

    def slow_load() -> str:
        value = str(backend.values["item"])
        read_v1.set()
        release.wait(5)
        return value

    answers: dict[str, Any] = {}
    leader = threading.Thread(target=lambda: answers.update(leader=container.get_or_load("e-1", slow_load)))
    leader.start()
    assert read_v1.wait(5)
    backend.values["item"] = "v2"
    writer.invalidate("e-1")  # the write is acknowledged here
    late = threading.Thread(
        target=lambda: answers.update(late=container.get_or_load("e-1", backend.loader("item")))
    )
    late.start()
    time.sleep(0.2)  # the late reader has joined the flight
    release.set()
    leader.join()
    late.join()
    assert answers == {
        "leader": "v1",
        "late": "v2",
    }  # the leader's call overlapped the write; the late one not


class Switch:
    """A Redis that can be taken away: the real client, or a connection error."""

    def __init__(self) -> None:
        self.up = True
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        if not self.up:
            return _DeadClient()
        return cache.redis_client()


class _DeadClient:
    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

        if name == "register_script":
            return lambda source: fail
        return fail


def test_redis_down_every_read_is_answered_by_the_backend_and_never_stale(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(caching, "DOWN_SECONDS", 0.0)  # retry Redis on every call: the slowest path
    backend = Backend(item="v1")
    switch = Switch()
    down_one = TieredCache("executions", redis=switch)
    other = _container()
    assert down_one.get_or_load("e-1", backend.loader("item")) == "v1"  # filled while up: in L1 and Redis
    assert other.get_or_load("e-1", backend.loader("item")) == "v1"
    switch.up = False
    backend.values["item"] = "v2"
    assert down_one.get_or_load("e-1", backend.loader("item")) == "v2"  # its L1 copy cannot be revalidated
    with pytest.raises(CacheUnavailable):
        down_one.invalidate("e-1", strict=True)  # authorization: not acknowledged
    down_one.invalidate("e-1")  # lenient: remembered
    assert down_one.counts["bypassed"] >= 1
    loads = backend.loads
    assert [down_one.get_or_load("e-1", backend.loader("item")) for _ in range(3)] == ["v2"] * 3
    assert backend.loads == loads + 3  # slower (every read from the backend), not wrong
    switch.up = True
    # Back: the remembered invalidation is replayed before anything is read from Redis.
    assert down_one.get_or_load("e-1", backend.loader("item")) == "v2"
    assert other.get_or_load("e-1", backend.loader("item")) == "v2"


def test_an_unreachable_redis_url_is_a_bypass_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("TABLE_NAME", "t")
    from tdev.settings import get_settings

    get_settings.cache_clear()
    cache.reset()
    try:
        container = _container()
        backend = Backend(item="v")
        started = time.monotonic()
        assert [container.get_or_load("k", backend.loader("item")) for _ in range(5)] == ["v"] * 5
        assert backend.loads == 5 and container.counts["bypassed"] == 5
        assert time.monotonic() - started < 5  # one failed connect, then straight to the backend
    finally:
        cache.reset()
        get_settings.cache_clear()


def test_stats_count_hits_and_misses_in_redis_and_read_the_servers_info(redis_url: str) -> None:
    backend = Backend(item=1)
    container = caching.named("executions")
    for _ in range(4):
        container.get_or_load("s", backend.loader("item"))
    container.flush_stats()
    figures = caching.stats(cache.redis_client())
    executions = figures["namespaces"]["executions"]
    assert executions["misses"] == 1 and executions["hits_l1"] == 3 and executions["hit_rate"] == 0.75
    assert figures["server"]["keys"] >= 2 and figures["server"]["used_memory"] > 0
    caching.reset()


def test_cache_metrics_are_emf_documents(capsys: pytest.CaptureFixture[str]) -> None:
    caching.emit_metrics("executions", {"hits_l1": 3, "hits_l2": 1, "misses": 2, "loads": 2})
    import json

    document = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert document["Cache"] == "executions"
    assert document["CacheHits"] == [4.0] and document["CacheMisses"] == [2.0]
    names = {m["Name"] for m in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"CacheHits", "CacheMisses", "CacheLoads"} <= names


def test_each_invocation_prints_its_own_counts_once(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A Lambda container may be reclaimed after any invocation: its counts are printed when it ends.
    import json

    backend = Backend(item=1)
    container = caching.named("apikeys")
    for _ in range(3):
        container.get_or_load("k", backend.loader("item"))
    capsys.readouterr()
    caching.publish_invocation_metrics()
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [(d["Cache"], d["CacheHits"], d["CacheMisses"]) for d in documents] == [("apikeys", [2.0], [1.0])]
    caching.publish_invocation_metrics()  # nothing new: nothing printed
    assert '"_aws"' not in capsys.readouterr().out
    caching.reset()


def test_tdev_cache_stats_prints_the_hit_rate_keys_and_memory(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tdev_cli.main import main

    backend = Backend(item=1)
    container = caching.named("apikeys")
    for _ in range(5):
        container.get_or_load("k", backend.loader("item"))
    container.flush_stats()
    capsys.readouterr()
    assert main(["cache", "stats", "--redis-url", redis_url]) == 0
    out = capsys.readouterr().out
    apikeys = next(line for line in out.splitlines() if line.startswith("apikeys"))
    assert apikeys.split()[1] == "80.0%"  # 4 of 5 lookups served by the cache
    assert "MiB used" in out and "keys" in out
    assert out.strip().splitlines()[-1].startswith("read cache: hit rate")
    assert main(["cache", "stats", "--redis-url", "redis://127.0.0.1:1/0"]) == 1
    caching.reset()


# ------------------------------------------------------------------ early refresh of hot keys
def _near_expiry(container: TieredCache, key: str, remaining_ms: int) -> None:
    """The entry's TTL as if it had been cached long ago: `remaining_ms` left."""
    cache.redis_client().pexpire(container.entry_key(key), remaining_ms)


def test_a_hit_outside_the_last_tenth_of_the_ttl_never_refreshes(redis_url: str) -> None:
    backend = Backend(item=1)
    container = _container(l1_seconds=0, chance=lambda: 0.0)  # the most eager draw
    container.get_or_load("hot", backend.loader("item"))
    _near_expiry(container, "hot", 200_000)  # 2/3 of 300 s left

    backend.values["item"] = 2
    assert container.get_or_load("hot", backend.loader("item")) == 1
    assert backend.loads == 1 and container.counts["refreshes"] == 0


@pytest.mark.parametrize(("draw", "refreshes"), [(0.95, False), (0.5, True)])
def test_a_hit_near_expiry_refreshes_with_a_probability_rising_to_one(
    redis_url: str, draw: float, refreshes: bool
) -> None:
    backend = Backend(item=1)
    container = _container(l1_seconds=0, chance=lambda: draw)
    container.get_or_load("hot", backend.loader("item"))
    _near_expiry(container, "hot", 3_000)  # 3 s of the 30 s window left: refresh when the draw < 0.9

    backend.values["item"] = 2
    assert container.get_or_load("hot", backend.loader("item")) == (2 if refreshes else 1)
    assert backend.loads == (2 if refreshes else 1)
    remaining = cache.redis_client().pttl(container.entry_key("hot"))
    assert (remaining > 290_000) is refreshes  # a refresh gives the entry its whole TTL again
    # Another container reads the refreshed value from Redis, without a load of its own.
    assert _container(l1_seconds=0, chance=lambda: 1.0).get_or_load("hot", backend.loader("item")) == (
        2 if refreshes else 1
    )
    assert backend.loads == (2 if refreshes else 1)


def test_many_readers_near_expiry_refresh_it_once(redis_url: str) -> None:
    backend = Backend(item=1)
    containers = [_container(l1_seconds=0, chance=lambda: 0.0) for _ in range(4)]
    containers[0].get_or_load("hot", backend.loader("item"))
    _near_expiry(containers[0], "hot", 1_000)
    start = threading.Barrier(40)

    def read(container: TieredCache) -> None:
        start.wait()
        container.get_or_load("hot", backend.loader("item", delay=0.2))

    threads = [threading.Thread(target=read, args=(containers[i % 4],)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert backend.loads == 2  # the first fill, and one refresh for all 40 readers


def test_an_invalidation_during_a_refresh_wins(redis_url: str) -> None:
    backend = Backend(item=1)
    container = _container(l1_seconds=0, chance=lambda: 0.0)
    container.get_or_load("hot", backend.loader("item"))
    _near_expiry(container, "hot", 1_000)

    def stale_then_write() -> int:
        value = backend.values["item"]  # the refresh reads the backend, then a write lands and invalidates
        backend.values["item"] = 3
        _container().invalidate("hot")
        return value

    container.get_or_load("hot", stale_then_write)
    assert container.counts["rejected_fills"] == 1
    assert container.get_or_load("hot", backend.loader("item")) == 3


# ------------------------------------------------------------------------------ warming
class ManyBackend:
    """A backend read 100 keys at a time (BatchGetItem's limit), recording each call's keys."""

    def __init__(self, count: int) -> None:
        self.values = {f"k{i}": {"n": i} for i in range(count)}
        self.calls: list[list[str]] = []

    def load_many(self, keys: list[str]) -> dict[str, Any]:
        self.calls.append(list(keys))
        return {k: self.values[k] for k in keys if k in self.values}


def test_warming_loads_in_batches_of_100_then_serves_every_key_from_l1(redis_url: str) -> None:
    backend = ManyBackend(250)
    first = _container()
    assert first.warm(sorted(backend.values), backend.load_many) == 250
    assert [len(c) for c in backend.calls] == [100, 100, 50]

    second = _container()  # another container's cold start: every key from Redis, no backend call
    assert second.warm(sorted(backend.values), backend.load_many) == 250
    assert len(backend.calls) == 3
    never = Backend()
    assert all(second.get_or_load(k, never.loader("absent")) == v for k, v in backend.values.items())
    assert never.loads == 0 and second.counts["hits_l1"] == 250 and second.counts["warmed"] == 250


def test_an_invalidation_during_warming_wins(redis_url: str) -> None:
    backend = ManyBackend(3)
    container = _container()

    def load_then_write(keys: list[str]) -> dict[str, Any]:
        loaded = backend.load_many(keys)
        backend.values["k1"] = {"n": 100}  # a write after the read, acknowledged with its invalidation
        _container().invalidate("k1")
        return loaded

    assert container.warm(["k0", "k1", "k2"], load_then_write) == 2
    assert container.get_or_load("k1", lambda: backend.values["k1"]) == {"n": 100}


def test_warming_without_redis_does_nothing_and_never_fails() -> None:
    def down() -> Any:
        raise redis.exceptions.ConnectionError("refused")

    backend = ManyBackend(5)
    assert TieredCache("registry", redis=down).warm(list(backend.values), backend.load_many) == 0
    assert backend.calls == []


def test_warming_runs_once_per_process(redis_url: str) -> None:
    runs: list[int] = []
    for _ in range(3):
        caching.warm_at_cold_start("roles", lambda: runs.append(1) or 1)
    assert runs == [1]
    caching.reset()  # a new container
    caching.warm_at_cold_start("roles", lambda: runs.append(1) or 1)
    assert runs == [1, 1]


def test_clearing_the_shared_cache_leaves_nothing_another_table_cached(redis_url: str) -> None:
    """What the local runtime does at start: a new table, so no entry of an earlier one may be served."""
    backend = Backend(a="old", b="old")
    first = _container("registry")
    first.get_or_load("a", backend.loader("a"), depends_on=["b"])
    first.get_or_load("b", backend.loader("b"), tags=["t"])
    client = cache.redis_client()
    from tdev_cli.runtime import clear_read_cache

    assert clear_read_cache() >= 3  # the entries and the tags' sets
    assert not list(client.scan_iter(match="tdev:cache:*"))
    backend.values.update(a="new", b="new")
    second = _container("registry")
    assert second.get_or_load("a", backend.loader("a")) == "new"


def test_write_through_makes_the_first_read_everywhere_a_hit_on_the_new_value(redis_url: str) -> None:
    backend = Backend(a="a1")
    writer, reader = _container("registry"), _container("registry")
    assert reader.get_or_load("a", backend.loader("a")) == "a1"  # in reader's L1 and Redis
    backend.values["a"] = "a2"  # the write to the backend, then the cache in the same code path
    assert writer.put("a", "a2", revision=1) is True
    loads = backend.loads
    assert reader.get_or_load("a", backend.loader("a")) == "a2"  # its L1 copy was revalidated: stale
    assert writer.get_or_load("a", backend.loader("a")) == "a2"
    assert backend.loads == loads  # both from the cache, no load
    assert writer.counts["written"] == 1


def test_crossing_write_throughs_never_leave_the_older_value(redis_url: str) -> None:
    backend = Backend(a="a2")
    one, two = _container("registry"), _container("registry")
    assert two.put("a", "a2", revision=2) is True  # the later write's put arrives first
    assert one.put("a", "a1", revision=1) is False  # the earlier one's, late: refused, and it invalidates
    assert one.get_or_load("a", backend.loader("a")) == "a2"  # loaded from the backend, never "a1"
    assert backend.loads == 1


def test_a_write_through_while_redis_is_down_becomes_a_replayed_invalidation(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(caching, "DOWN_SECONDS", 0.0)
    backend = Backend(a="a1")
    switch = Switch()
    writer, reader = TieredCache("registry", redis=switch), _container("registry")
    assert reader.get_or_load("a", backend.loader("a")) == "a1"
    switch.up = False
    backend.values["a"] = "a2"
    with pytest.raises(CacheUnavailable):
        writer.put("a", "a2", revision=1, strict=True)
    assert writer.put("a", "a2", revision=1) is False  # lenient: remembered as an invalidation
    switch.up = True
    writer.get_or_load("b", lambda: "b")  # the writer's next use of Redis replays it
    assert reader.get_or_load("a", backend.loader("a")) == "a2"
