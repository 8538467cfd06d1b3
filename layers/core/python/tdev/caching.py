"""The read cache (spec 1.13): cache-aside, tiered (an in-process L1 in front of the shared Redis), tag
invalidation, one loader per key, and every path correct without Redis.

Keys (cluster-safe: each entry, its lock and its generation share one hash slot through `{...}`):
    tdev:cache:{<namespace>:<key>}        hash: g = generation token, v = the encoded value
    tdev:cache:{<namespace>:<key>}:lock   the loader's lease (SET NX PX, released by its owner only)
    tdev:cache:tag:{<namespace>:<tag>}    set of the entry hashes filled under that tag
    tdev:cache:stats:{<namespace>}        hash of counters (hits, misses, loads, ...) for `tdev cache stats`

Why a generation and not pub/sub for the L1s: Redis pub/sub is fire-and-forget, and a Lambda container is
frozen between invocations, so an L1 that trusted the invalidations it happened to hear would serve stale
values after a write was acknowledged (a message lost while frozen or reconnecting). Instead every L1 hit
checks the entry's generation with one HGET in the entry's own slot (a few bytes, not the value): an
invalidation changes the generation and deletes the value in one script, so the first read after it, in
any container, misses. The L1 saves the transfer and decoding of the value; it never decides freshness.

Cache-aside races are closed the same way: a loader notes the generation before it reads the backend and
fills only if it is unchanged (a script), so a value read before a write cannot land after that write's
invalidation. A tag invalidation invalidates each member entry (the entry joins the tag's set before its
loader reads the backend). Redis unreachable: reads go to the backend (no L1 either: nothing can say it is
fresh), invalidations are retried, then either raised (`strict`, for authorization: a revoke is not
acknowledged until no cache can serve the revoked thing) or remembered and replayed before this process
uses Redis again, the entry's TTL bounding what another container could serve meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any, TypeVar

from tdev import cache, resets
from tdev.errors import TransientError
from tdev.observability import NAMESPACE, logger

T = TypeVar("T")


class Freshness(StrEnum):
    """The spec's TTL policy: how hot an item is and how often it changes."""

    STABLE = "stable"  # hot and rarely updated: 24 h
    WARM = "warm"  # read often, changes sometimes: 1 h
    VOLATILE = "volatile"  # everything else: 5 min


TTL_SECONDS: dict[Freshness, int] = {
    Freshness.STABLE: 86_400,
    Freshness.WARM: 3_600,
    Freshness.VOLATILE: 300,
}

L1_SECONDS = 5.0  # an in-process copy lives this long at most (and is revalidated on every hit)
L1_MAX_ENTRIES = 2_048
LOCK_LEASE_MS = 10_000  # a loader that dies holding the lock blocks the others this long at most
WAIT_SECONDS = 5.0  # how long a reader waits for another loader's value before loading itself
POLL_SECONDS = 0.01
DOWN_SECONDS = 2.0  # after a Redis error, go straight to the backend this long before trying again
STATS_FLUSH_SECONDS = 10.0
METRICS_SERVICE = "cache"  # the `service` dimension of the cache metrics (what the alarms select)
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_RETRIES = 3
_FLIGHT_ROUNDS = 3

# Early refresh of hot keys (probabilistic early expiration): an L2 hit in the last EARLY_REFRESH_FRACTION of
# the entry's TTL reloads it with a probability rising from 0 at the window's start to 1 at expiry. A hot
# key is read in that window many times, so one read (the lock's winner) refreshes it before it expires and
# its readers never meet the miss; a cold one simply expires.
EARLY_REFRESH_FRACTION = 0.1

COUNTERS = (
    "hits_l1",
    "hits_l2",
    "misses",
    "loads",
    "waited",
    "bypassed",
    "rejected_fills",
    "invalidations",
    "refreshes",
    "warmed",
    "written",
)
WARM_BATCH = 100  # keys per warming round trip (and per BatchGetItem, whose limit it is)

_READ = """
local r = redis.call('HMGET', KEYS[1], 'g', 'v')
if not r[1] then
  redis.call('HSET', KEYS[1], 'g', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return {ARGV[1], false, -2}
end
return {r[1], r[2], redis.call('PTTL', KEYS[1])}
"""
_FILL = """
if redis.call('HGET', KEYS[1], 'g') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
# Write-through: the new value under a new generation (every L1 copy and every load in flight is stale from
# now on), unless the entry already holds a revision as new or newer (two writers' puts arriving out of
# order): then 0, and the writer invalidates instead.
_PUT = """
local r = redis.call('HGET', KEYS[1], 'r')
if r and tonumber(r) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 'g', ARGV[1], 'v', ARGV[2], 'r', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""
_INVALIDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'g', ARGV[1])
redis.call('HDEL', KEYS[1], 'v')
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class _LoaderFailed(Exception):
    """The loader's own exception, carried past the Redis-error handling (the backend's error is the
    caller's to see, not a reason to load again)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _Flight:
    """One thread's fetch of an entry that other threads of the process wait for.

    A waiter takes the leader's value only if it joined before the leader's last read of its source
    (Redis or the backend) began: that read overlaps the waiter's call, so its value is as fresh as the
    waiter's own read would be. A waiter that joined later (a write may have been acknowledged in
    between) fetches for itself."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._encoded: str | None = None
        self.read_started = time.monotonic()

    def reading(self) -> None:
        self.read_started = time.monotonic()

    def filled(self, sent: float) -> None:
        """The leader's fill, sent at `sent`, found the generation unchanged: the value reflects every
        write acknowledged before then, so a waiter that joined before `sent` may take it too."""
        self.read_started = max(self.read_started, sent)

    def land(self, encoded: str | None) -> None:
        self._encoded = encoded
        self._done.set()

    def answer(self, joined: float, timeout: float) -> tuple[str | None, bool]:
        """(the leader's encoded value, whether it landed within `timeout`); the value is None when the
        leader failed, could not encode, or read its source after `joined`."""
        landed = self._done.wait(timeout)
        if not landed or self.read_started < joined:
            return None, landed
        return self._encoded, True


def _nothing() -> None:
    return None


def _ignore(_: float) -> None:
    return None


def _encoded_or_none(encode: Callable[[T], str], value: T) -> str | None:
    try:
        return encode(value)
    except (TypeError, ValueError):
        return None


class CacheUnavailable(TransientError):
    """An invalidation that must reach Redis (strict) could not: the write is done, retry the call."""


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.exceptions.RedisError, OSError)


def _part(text: str) -> str:
    """A key or tag as a hash-tag-safe part: braces (which would move the slot) are hashed away."""
    if "{" in text or "}" in text or len(text) > 200:
        return "h" + hashlib.sha256(text.encode()).hexdigest()[:32]
    return text


class TieredCache:
    """One namespace of the cache (`executions`, `apikeys`, `roles`, ...), shared by a process.

    `redis` returns the client (the shared `tdev.cache.redis_client` by default); `clock` is monotonic time.
    """

    def __init__(
        self,
        namespace: str,
        *,
        redis: Callable[[], Any] = cache.redis_client,
        l1_seconds: float = L1_SECONDS,
        l1_max_entries: int = L1_MAX_ENTRIES,
        lock_lease_ms: int = LOCK_LEASE_MS,
        wait_seconds: float = WAIT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        chance: Callable[[], float] = random.random,
    ) -> None:
        if not _NAME.match(namespace):
            raise ValueError(f"cache namespace {namespace!r} must match {_NAME.pattern}")
        self.namespace = namespace
        self._redis, self._clock, self._chance = redis, clock, chance
        self.l1_seconds, self.l1_max_entries = l1_seconds, l1_max_entries
        self.lock_lease_ms, self.wait_seconds = lock_lease_ms, wait_seconds
        # entry key -> (generation, encoded value, monotonic time it lapses)
        self._l1: OrderedDict[str, tuple[str, str, float]] = OrderedDict()
        self._inflight: dict[str, _Flight] = {}  # entries a thread of this process is fetching now
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._pending: set[str] = set()  # invalidations that could not reach Redis yet (lenient ones)
        self._pending_tags: set[str] = set()  # tag keys (and dependents) whose invalidation is pending
        self._scripts: dict[str, Any] = {}
        self.counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._unflushed: dict[str, int] = dict.fromkeys(COUNTERS, 0)  # not yet added to Redis
        self._unpublished: dict[str, int] = dict.fromkeys(COUNTERS, 0)  # not yet printed as EMF
        self._flushed_at = clock()

    # ------------------------------------------------------------------------------------------- keys
    def entry_key(self, key: str) -> str:
        return f"tdev:cache:{{{self.namespace}:{_part(key)}}}"

    def tag_key(self, tag: str) -> str:
        return f"tdev:cache:tag:{{{self.namespace}:{_part(tag)}}}"

    def stats_key(self) -> str:
        return stats_key(self.namespace)

    # ------------------------------------------------------------------------------------------ reads
    def get_or_load(
        self,
        key: str,
        loader: Callable[[], T],
        *,
        freshness: Freshness | Callable[[T], Freshness] = Freshness.VOLATILE,
        encode: Callable[[T], str] = json.dumps,
        decode: Callable[[str], T] = json.loads,
        tags: Iterable[str] = (),
        depends_on: Iterable[str] = (),
    ) -> T:
        """The cached value of `key`, or `loader()`'s (stored for the policy's TTL, under `tags`).

        `freshness` is the TTL class, or a function of the loaded value that returns it (an execution
        that has finished is cached longer than a running one). `depends_on`: keys of this namespace the
        value is derived from; invalidating any of them invalidates this entry too (its dependents).

        Concurrent misses of one key (in any container) run one loader; the others wait for its value.
        Without Redis, `loader()` answers every call.
        """
        if not _enabled.is_set():  # switched off (the benchmark's "without" side): not a cache event
            return loader()
        client = self._client()
        if client is None:
            self._count("bypassed")
            return loader()
        ttl = TTL_SECONDS[freshness if isinstance(freshness, Freshness) else Freshness.VOLATILE]
        policy = freshness if callable(freshness) and not isinstance(freshness, Freshness) else None
        entry = self.entry_key(key)
        try:
            hit = self._l1_hit(client, entry)
        except _redis_errors() as exc:
            self._went_down(exc)
            self._count("bypassed")
            return loader()
        if hit is not None:
            self._count("hits_l1")
            return decode(hit)
        # Threads of this process that miss the same entry wait for one of them: its answer (from Redis
        # or the backend) is theirs, read while they were reading, with no Redis call of their own.
        # A thread that joined after the leader's read began waits for the next fetch (a new leader reads
        # Redis, which the first one filled), a few rounds at most; after a timeout it fetches alone.
        for _ in range(_FLIGHT_ROUNDS):
            joined = time.monotonic()
            flight, leader = self._join_flight(entry)
            if leader:
                break
            shared, landed = flight.answer(joined, self.wait_seconds)
            if shared is not None:
                self._count("waited")
                return decode(shared)
            if not landed:
                break
        encoded: str | None = None
        try:
            every_tag = (*tags, *(dependents_tag(key) for key in depends_on))
            value, encoded = self._fetch(
                client, entry, loader, encode, decode, ttl, every_tag, policy, flight if leader else None
            )
            return value
        except _LoaderFailed as failed:
            raise failed.error from None
        except _redis_errors() as exc:
            self._went_down(exc)
            self._count("bypassed")
            if leader:
                flight.reading()
            value = loader()
            encoded = _encoded_or_none(encode, value)
            return value
        finally:
            if leader:
                self._land_flight(entry, flight, encoded)

    def _join_flight(self, entry: str) -> tuple[_Flight, bool]:
        with self._lock:
            flight = self._inflight.get(entry)
            if flight is not None:
                return flight, False
            flight = self._inflight[entry] = _Flight()
            return flight, True

    def _land_flight(self, entry: str, flight: _Flight, encoded: str | None) -> None:
        with self._lock:
            if self._inflight.get(entry) is flight:
                del self._inflight[entry]
        flight.land(encoded)

    def _fetch(
        self,
        client: Any,
        entry: str,
        loader: Callable[[], T],
        encode: Callable[[T], str],
        decode: Callable[[str], T],
        ttl: int,
        tags: tuple[str, ...],
        policy: Callable[[T], Freshness] | None,
        flight: _Flight | None = None,
    ) -> tuple[T, str | None]:
        """Redis's value of the entry, or the backend's (one loader across processes): (value, encoded)."""
        reading = flight.reading if flight is not None else _nothing
        reading()
        generation, value, remaining_ms = self._read(client, entry, ttl)
        if value is not None:
            self._count("hits_l2")
            refreshed = self._refresh_early(
                client, entry, generation, remaining_ms, ttl, loader, encode, policy
            )
            if refreshed is not None:
                value = refreshed
            self._l1_put(entry, generation, value, ttl)
            return decode(value), value
        self._count("misses")
        return self._load(
            client,
            entry,
            generation,
            loader,
            encode,
            decode,
            ttl,
            tags,
            policy,
            reading,
            flight.filled if flight is not None else _ignore,
        )

    def _l1_hit(self, client: Any, entry: str) -> str | None:
        with self._lock:
            held = self._l1.get(entry)
            if held is None:
                return None
            if held[2] < self._clock():
                del self._l1[entry]
                return None
        if client.hget(entry, "g") == held[0]:  # still the generation it was filled under
            return held[1]
        with self._lock:
            self._l1.pop(entry, None)
        return None

    def _l1_put(self, entry: str, generation: str, value: str, ttl: int) -> None:
        with self._lock:
            self._l1[entry] = (generation, value, self._clock() + min(self.l1_seconds, ttl))
            self._l1.move_to_end(entry)
            while len(self._l1) > self.l1_max_entries:
                self._l1.popitem(last=False)

    def _read(self, client: Any, entry: str, ttl: int) -> tuple[str, str | None, int]:
        """(generation, value or None, the entry's remaining TTL in ms: negative when it had none)."""
        read = self._script(client, "read", _READ)
        generation, value, remaining_ms = read(keys=[entry], args=[secrets.token_hex(8), ttl])
        return str(generation), value, int(remaining_ms)

    def _refresh_early(
        self,
        client: Any,
        entry: str,
        generation: str,
        remaining_ms: int,
        ttl: int,
        loader: Callable[[], T],
        encode: Callable[[T], str],
        policy: Callable[[T], Freshness] | None,
    ) -> str | None:
        """The reloaded value when this hit refreshes the entry before it expires, else None (serve the
        cached one). One refresher per key (the loader's lock, not waited for); the fill is conditional on
        the generation like any other, so an invalidation during the refresh wins."""
        window_ms = ttl * 1000 * EARLY_REFRESH_FRACTION
        if remaining_ms < 0 or remaining_ms >= window_ms:
            return None
        if self._chance() >= 1 - remaining_ms / window_ms:
            return None
        token = secrets.token_hex(8)
        if not client.set(f"{entry}:lock", token, nx=True, px=self.lock_lease_ms):
            return None  # another reader is loading it: this one serves the cached value
        try:
            # A refresher that held the lock a moment ago gave the entry its TTL again: nothing to do.
            if int(client.pttl(entry)) >= window_ms:
                return None
            self._count("refreshes")
            self._count("loads")
            try:
                loaded = loader()
            except Exception as exc:  # the cached value is still valid: serve it, the next hit retries
                logger.warning(
                    "cache early refresh failed", extra={"cache": self.namespace, "error": str(exc)[:200]}
                )
                return None
            if policy is not None:
                ttl = TTL_SECONDS[policy(loaded)]
            encoded = _encoded_or_none(encode, loaded)
            if encoded is None:
                return None
            if self._script(client, "fill", _FILL)(keys=[entry], args=[generation, encoded, ttl]):
                return encoded
            self._count("rejected_fills")  # invalidated meanwhile: the next read loads the new value
            return None
        finally:
            self._script(client, "release", _RELEASE)(keys=[f"{entry}:lock"], args=[token])

    def _filled_by_another(
        self, client: Any, entry: str, ttl: int, reading: Callable[[], None]
    ) -> str | None:
        """The entry's value when another loader has filled it meanwhile (kept in L1 too), else None."""
        reading()
        generation, value, _ = self._read(client, entry, ttl)
        if value is None:
            return None
        self._count("waited")
        self._l1_put(entry, generation, value, ttl)
        return value

    def _run_loader(self, loader: Callable[[], T], reading: Callable[[], None]) -> T:
        """One load from the backend, counted; its failure is the caller's (not Redis's) to handle."""
        self._count("loads")
        reading()
        try:
            return loader()
        except Exception as exc:
            raise _LoaderFailed(exc) from exc

    def _load(
        self,
        client: Any,
        entry: str,
        generation: str,
        loader: Callable[[], T],
        encode: Callable[[T], str],
        decode: Callable[[str], T],
        ttl: int,
        tags: tuple[str, ...],
        policy: Callable[[T], Freshness] | None = None,
        reading: Callable[[], None] = _nothing,
        filled: Callable[[float], None] = _ignore,
    ) -> tuple[T, str | None]:
        """One loader per key: the lock's holder loads and fills; the others wait for its value.

        Returns the value and its encoding (None when it could not be encoded)."""
        token = secrets.token_hex(8)
        deadline = self._clock() + self.wait_seconds
        while not client.set(f"{entry}:lock", token, nx=True, px=self.lock_lease_ms):
            time.sleep(POLL_SECONDS)
            filled_by_other = self._filled_by_another(client, entry, ttl, reading)
            if filled_by_other is not None:
                return decode(filled_by_other), filled_by_other
            if self._clock() > deadline:  # the holder is slow or gone: answer from the backend
                loaded = self._run_loader(loader, reading)
                return loaded, _encoded_or_none(encode, loaded)
        try:
            # Another loader may have filled it between our read and our lock.
            filled_by_other = self._filled_by_another(client, entry, ttl, reading)
            if filled_by_other is not None:
                return decode(filled_by_other), filled_by_other
            for tag in tags:  # join the tags first, so an invalidation during the load reaches this entry
                tag_key = self.tag_key(tag)
                client.sadd(tag_key, entry)
                client.expire(tag_key, TTL_SECONDS[Freshness.STABLE])
            loaded = self._run_loader(loader, reading)
            if policy is not None:
                ttl = TTL_SECONDS[policy(loaded)]
            encoded = _encoded_or_none(encode, loaded)
            if encoded is None:  # not cacheable: answered, not stored
                logger.warning("cache value not encodable", extra={"cache": self.namespace})
                return loaded, None
            sent = time.monotonic()
            if self._script(client, "fill", _FILL)(keys=[entry], args=[generation, encoded, ttl]):
                filled(sent)
                self._l1_put(entry, generation, encoded, ttl)
            else:
                self._count("rejected_fills")  # invalidated while loading: the next read loads again
            return loaded, encoded
        finally:
            self._script(client, "release", _RELEASE)(keys=[f"{entry}:lock"], args=[token])

    # ---------------------------------------------------------------------------------------- warming
    def warm(
        self,
        keys: Iterable[str],
        load_many: Callable[[list[str]], dict[str, T]],
        *,
        freshness: Freshness = Freshness.VOLATILE,
        encode: Callable[[T], str] = json.dumps,
        batch_size: int = WARM_BATCH,
    ) -> int:
        """At cold start: every key's value into this container's L1, in batches of `batch_size` (100).

        Each batch is one pipelined round trip to Redis (one HMGET per key: cluster-safe, no cross-slot
        command) and, for the keys Redis does not hold, one `load_many(keys)` call to the backend (a
        BatchGetItem takes 100 keys), each filled under its generation like any load (an invalidation
        meanwhile wins). A key `load_many` does not answer is left to the first read. Returns how many
        keys this container now holds. Never raises: warming only saves the first reads' misses."""
        if not _enabled.is_set():
            return 0
        client = self._client()
        if client is None:
            return 0
        ttl, warmed, wanted = TTL_SECONDS[freshness], 0, list(dict.fromkeys(keys))
        try:
            for start in range(0, len(wanted), batch_size):
                batch = wanted[start : start + batch_size]
                pipe = client.pipeline(transaction=False)
                for key in batch:
                    pipe.hmget(self.entry_key(key), "g", "v")
                missing: dict[str, str] = {}
                for key, (generation, value) in zip(batch, pipe.execute(), strict=True):
                    if generation is not None and value is not None:
                        self._l1_put(self.entry_key(key), generation, value, ttl)
                        warmed += 1
                    else:  # a generation to fill under, noted before the backend is read
                        missing[key] = self._read(client, self.entry_key(key), ttl)[0]
                if not missing:
                    continue
                self._count("loads")
                loaded = load_many(list(missing))
                fill = self._script(client, "fill", _FILL)
                for key, generation in missing.items():
                    if key not in loaded:
                        continue
                    encoded = _encoded_or_none(encode, loaded[key])
                    if encoded is not None and fill(
                        keys=[self.entry_key(key)], args=[generation, encoded, ttl]
                    ):
                        self._l1_put(self.entry_key(key), generation, encoded, ttl)
                        warmed += 1
        except _redis_errors() as exc:
            self._went_down(exc)
        except Exception as exc:  # the backend's failure: the first reads load what is not warmed
            logger.warning("cache warming failed", extra={"cache": self.namespace, "error": str(exc)[:300]})
        self._count_many("warmed", warmed)
        return warmed

    # ----------------------------------------------------------------------------------- invalidation
    def invalidate(self, key: str, *, strict: bool = False) -> None:
        """Make `key` miss everywhere (Redis and every container's L1) from now on.

        Call it in the code path of the write, after the write. `strict`: raise CacheUnavailable when
        Redis cannot be told (authorization: the caller retries), else remember it and replay it later.
        The entries filled with `depends_on=[key]` (its dependents) are invalidated with it.
        """
        self._invalidate_entries([self.entry_key(key)], strict=strict)
        self.invalidate_tag(dependents_tag(key), strict=strict)

    def put(
        self,
        key: str,
        value: T,
        *,
        revision: int,
        freshness: Freshness = Freshness.VOLATILE,
        encode: Callable[[T], str] = json.dumps,
        strict: bool = False,
    ) -> bool:
        """Write-through: after the write of `value` to the backend, the cache holds it too, so the first
        read in any container is a hit. `revision` is the value's revision in the backend (a counter the
        write advanced, conditionally): a put older than what the entry holds (two writers' puts crossing)
        invalidates instead, and so does anything that fails; dependents are invalidated. True when the
        value was stored. `strict` as for `invalidate`."""
        entry = self.entry_key(key)
        encoded = encode(value)
        ttl = TTL_SECONDS[freshness]
        generation = secrets.token_hex(8)
        stored = False

        def write(client: Any) -> None:
            nonlocal stored
            with self._lock:
                self._l1.pop(entry, None)
            stored = bool(
                self._script(client, "put", _PUT)(keys=[entry], args=[generation, encoded, revision, ttl])
            )
            if stored:
                self._count("written")
                self._l1_put(entry, generation, encoded, ttl)
            else:
                self._invalidate_now(client, [entry])

        self._with_retries(write, strict, entry)
        self.invalidate_tag(dependents_tag(key), strict=strict)
        return stored

    def invalidate_tag(self, tag: str, *, strict: bool = False) -> None:
        """Invalidate every entry filled under `tag` (in any container)."""
        tag_key = self.tag_key(tag)

        def members(client: Any) -> list[str]:
            return sorted(client.smembers(tag_key))

        self._with_retries(
            lambda client: self._invalidate_tag(client, tag_key, members(client)), strict, tag_key
        )

    def _invalidate_tag(self, client: Any, tag_key: str, entries: list[str]) -> None:
        self._invalidate_now(client, entries)
        if entries:
            client.srem(tag_key, *entries)  # members only: an entry that joined since keeps its place

    def _invalidate_entries(self, entries: list[str], *, strict: bool) -> None:
        with self._lock:
            for entry in entries:
                self._l1.pop(entry, None)
        self._with_retries(lambda client: self._invalidate_now(client, entries), strict, *entries)

    def _invalidate_now(self, client: Any, entries: list[str]) -> None:
        script = self._script(client, "invalidate", _INVALIDATE)
        for entry in entries:
            with self._lock:
                self._l1.pop(entry, None)
            script(keys=[entry], args=[secrets.token_hex(8)])
            self._count("invalidations")

    def _with_retries(self, action: Callable[[Any], None], strict: bool, *entries: str) -> None:
        errors = _redis_errors()
        for attempt in range(_RETRIES):
            try:
                action(self._connected())
                return
            except errors as exc:
                if attempt == _RETRIES - 1:
                    self._went_down(exc)
                    logger.error(
                        "cache invalidation could not reach Redis",
                        extra={"cache": self.namespace, "keys": list(entries)[:10], "strict": strict},
                    )
                    if strict:
                        raise CacheUnavailable(
                            "the change is stored but the cache could not be invalidated; retry"
                        ) from exc
                    with self._lock:
                        self._pending.update(e for e in entries if not e.startswith("tdev:cache:tag:"))
                        self._pending_tags.update(e for e in entries if e.startswith("tdev:cache:tag:"))
                    return
                time.sleep(0.05 * (attempt + 1))

    # ------------------------------------------------------------------------------- redis, health
    def _connected(self) -> Any:
        return self._redis()

    def _client(self) -> Any | None:
        """The client, or None while Redis is known to be down (or unconfigured); replays pending work."""
        if self._clock() < self._down_until:
            return None
        try:
            client = self._redis()
        except Exception as exc:  # unconfigured (no REDIS_URL) counts as down: the backend answers
            self._went_down(exc)
            return None
        if self._pending or self._pending_tags:
            with self._lock:
                pending, self._pending = sorted(self._pending), set()
                tags, self._pending_tags = sorted(self._pending_tags), set()
            try:
                self._invalidate_now(client, pending)
                while tags:  # what is left of them stays pending if Redis goes away again
                    self._invalidate_tag(client, tags[0], sorted(client.smembers(tags[0])))
                    tags.pop(0)
            except _redis_errors() as exc:
                with self._lock:
                    self._pending.update(pending)
                    self._pending_tags.update(tags)
                self._went_down(exc)
                return None
        self._maybe_flush_stats(client)
        return client

    def _went_down(self, exc: BaseException) -> None:
        import redis

        if isinstance(exc, redis.exceptions.MaxConnectionsError):
            return  # this process's pool is full (many threads at once): Redis is fine, this call bypassed
        if self._clock() >= self._down_until:
            logger.warning(
                "cache unavailable: reading from the backend",
                extra={"cache": self.namespace, "error": f"{type(exc).__name__}: {exc}"[:300]},
            )
        self._down_until = self._clock() + DOWN_SECONDS
        with self._lock:
            self._l1.clear()  # nothing can revalidate these while Redis is away

    def _script(self, client: Any, name: str, source: str) -> Any:
        held = self._scripts.get(name)
        if held is None or held[0] is not client:
            held = self._scripts[name] = (client, client.register_script(source))
        return held[1]

    # -------------------------------------------------------------------------------------- stats
    def _count(self, name: str) -> None:
        self._count_many(name, 1)

    def _count_many(self, name: str, amount: int) -> None:
        with self._lock:
            self.counts[name] += amount
            self._unflushed[name] += amount
            self._unpublished[name] += amount

    def hit_rate(self) -> float:
        hits = self.counts["hits_l1"] + self.counts["hits_l2"] + self.counts["waited"]
        total = hits + self.counts["misses"] + self.counts["bypassed"]
        return hits / total if total else 0.0

    def _maybe_flush_stats(self, client: Any, *, force: bool = False) -> None:
        if not force and self._clock() - self._flushed_at < STATS_FLUSH_SECONDS:
            return
        self.flush_stats(client)

    def publish_metrics(self) -> None:
        """Print this process's counters since the last call as EMF metrics (no network: a log line).

        Called at the end of every invocation that read through a cache (`publish_invocation_metrics`):
        a Lambda container is frozen between invocations and may be reclaimed without notice, so counts
        kept for later would be lost."""
        with self._lock:
            delta, self._unpublished = self._unpublished, dict.fromkeys(COUNTERS, 0)
        delta = {k: v for k, v in delta.items() if v}
        if delta:
            emit_metrics(self.namespace, delta)

    def flush_stats(self, client: Any | None = None) -> None:
        """Add this process's counters since the last flush to Redis (what `tdev cache stats` reads): at
        most every STATS_FLUSH_SECONDS, one pipelined round trip."""
        with self._lock:
            delta, self._unflushed = self._unflushed, dict.fromkeys(COUNTERS, 0)
            self._flushed_at = self._clock()
        delta = {k: v for k, v in delta.items() if v}
        if not delta:
            return
        try:
            target = client if client is not None else self._redis()
            pipe = target.pipeline(transaction=False)
            for name, value in delta.items():
                pipe.hincrby(self.stats_key(), name, value)
            pipe.execute()
        except Exception as exc:  # statistics never fail a read
            logger.debug("cache statistics not flushed", extra={"error": str(exc)[:200]})

    def forget_local(self) -> None:
        """Drop the L1 (tests; a process that changes REDIS_URL)."""
        with self._lock:
            self._l1.clear()
            self._pending.clear()
            self._pending_tags.clear()
        self._scripts.clear()
        self._down_until = 0.0


def dependents_tag(key: str) -> str:
    """The tag of the entries derived from `key` (`get_or_load(..., depends_on=[key])`)."""
    return f"dependents-of:{key}"


def stats_key(namespace: str) -> str:
    return f"tdev:cache:stats:{{{namespace}}}"


def emit_metrics(namespace: str, counts: dict[str, int]) -> None:
    """CacheHits / CacheMisses (and the rest) as one EMF document for the cache `namespace`."""
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    hits = counts.get("hits_l1", 0) + counts.get("hits_l2", 0) + counts.get("waited", 0)
    misses = counts.get("misses", 0) + counts.get("bypassed", 0)
    # Its own metric set, flushed here (not by a handler), under service "cache" whichever function reads.
    document = EphemeralMetrics(namespace=NAMESPACE, service=METRICS_SERVICE)
    document.add_dimension(name="Cache", value=namespace)
    for name, value in (
        ("CacheHits", hits),
        ("CacheMisses", misses),
        ("CacheBypassed", counts.get("bypassed", 0)),
        ("CacheLoads", counts.get("loads", 0)),
    ):
        document.add_metric(name=name, unit=MetricUnit.Count, value=value)
    document.flush_metrics()


# ------------------------------------------------------------------------------ the process's caches
# Every namespace a product path caches; `tdev cache stats` reads their counters (no keyspace walk).
NAMESPACES = ("executions", "apikeys", "roles", "registry")
_caches: dict[str, TieredCache] = {}
_registry_lock = threading.Lock()
_enabled = threading.Event()
_enabled.set()


def is_enabled() -> bool:
    return _enabled.is_set()


def set_enabled(enabled: bool) -> None:
    """Serve reads from the cache (the default) or straight from the backends, in this process.

    Invalidations are sent either way, so switching back on never serves what changed meanwhile. The
    benchmark measures the same paths with and without the cache with it."""
    if enabled:
        _enabled.set()
    else:
        _enabled.clear()


def named(namespace: str) -> TieredCache:
    """The process-wide cache of `namespace` (one of NAMESPACES), created on first use."""
    if namespace not in NAMESPACES:
        raise ValueError(f"unknown cache namespace {namespace!r}; add it to tdev.caching.NAMESPACES")
    with _registry_lock:
        if namespace not in _caches:
            _caches[namespace] = TieredCache(namespace)
        return _caches[namespace]


_warmed: set[str] = set()  # what this process has warmed (once per container: its cold start)


def warm_at_cold_start(what: str, warm: Callable[[], int]) -> None:
    """Run `warm` (a `TieredCache.warm` of what every invocation reads) once per process: a handler calls
    it first thing, so only the cold start pays. Never fails the invocation."""
    with _registry_lock:
        if what in _warmed:
            return
        _warmed.add(what)
    started = time.perf_counter()
    try:
        warmed = warm()
    except Exception as exc:  # warming only saves first misses; the reads load what it could not
        logger.warning("cache warming failed", extra={"warming": what, "error": str(exc)[:300]})
        return
    logger.info(
        "cache warmed at cold start",
        extra={"warming": what, "keys": warmed, "ms": round((time.perf_counter() - started) * 1000, 1)},
    )


def publish_invocation_metrics() -> None:
    """The end of an invocation: every cache this process used prints its counters as EMF."""
    with _registry_lock:
        held = list(_caches.values())
    for each in held:
        each.publish_metrics()


@resets.on_reset
def reset() -> None:
    """Forget every namespace's L1 and state (the container's reset; tests change REDIS_URL)."""
    with _registry_lock:
        for held in _caches.values():
            held.forget_local()
        _caches.clear()
        _warmed.clear()


def stats(client: Any) -> dict[str, Any]:
    """What `tdev cache stats` prints: per-namespace counters, and the server's memory, keys and hits."""
    namespaces: dict[str, dict[str, Any]] = {}
    for namespace in NAMESPACES:
        raw = client.hgetall(stats_key(namespace)) or {}
        counts = {name: int(raw.get(name, 0)) for name in COUNTERS}
        hits = counts["hits_l1"] + counts["hits_l2"] + counts["waited"]
        total = hits + counts["misses"] + counts["bypassed"]
        namespaces[namespace] = {**counts, "hit_rate": round(hits / total, 4) if total else None}
    server = _server_info(client)
    return {"namespaces": namespaces, "server": server}


def _server_info(client: Any) -> dict[str, Any]:
    """INFO (memory, stats) and DBSIZE summed over the primaries (one node outside cluster mode)."""
    from redis.cluster import RedisCluster

    nodes: list[Any]
    if isinstance(client, RedisCluster):
        nodes = [client.get_redis_connection(node) for node in client.get_primaries()]
    else:
        nodes = [client]
    totals = {"keys": 0, "used_memory": 0, "keyspace_hits": 0, "keyspace_misses": 0, "evicted_keys": 0}
    slow = 0
    for node in nodes:
        info = node.info()
        totals["keys"] += int(node.dbsize())
        for name in ("used_memory", "keyspace_hits", "keyspace_misses", "evicted_keys"):
            totals[name] += int(info.get(name, 0))
        slow += int(node.slowlog_len())
    lookups = totals["keyspace_hits"] + totals["keyspace_misses"]
    return {
        **totals,
        "nodes": len(nodes),
        "slowlog_entries": slow,
        "server_hit_rate": round(totals["keyspace_hits"] / lookups, 4) if lookups else None,
    }
