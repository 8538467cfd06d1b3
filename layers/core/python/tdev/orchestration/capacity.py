"""Capacity: how many runs of one agent, and on one model, are in flight at once, across every container.

Each limit is a semaphore in the shared Redis: one sorted set per agent and per model whose members are
the holders (`<execution>#<task>`) scored by the end of their lease. Acquiring is one Lua script on that
one key (atomic across processes, and cluster-safe: a single key, its hash tag in braces), which first
drops expired leases, so a holder that crashed without releasing gives its slot back when its lease ends.
A holder that acquires again (a retried or redelivered step) renews its own slot instead of taking a
second one. When every slot is taken the task raises `CapacityExhausted`, which the workflow's `Retry`
waits on (statemachines/request_workflow.asl.json): the task waits durably in Step Functions, it does
not fail.

The agent's slot is taken before the model's; if the model is full the agent's is given back at once.
The model slot counts the run's first model (a fallback hop runs under the same slot).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tdev import cache
from tdev.errors import CapacityExhausted
from tdev.models import AgentSpec
from tdev.observability import logger
from tdev.settings import get_settings

KEY_PREFIX = "tdev:capacity"

# KEYS[1] = the semaphore (zset holder -> lease end); ARGV = now, limit, holder, lease end, key ttl
# -> {1, held} when the holder has a slot; {0, held, soonest lease end} when every slot is taken.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local held = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) == false then
  if held >= tonumber(ARGV[2]) then
    local soonest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {0, held, soonest[2]}
  end
  held = held + 1
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {1, held}
"""
# KEYS[1] = the semaphore; ARGV = now -> holders whose lease has not ended
_COUNT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZCARD', KEYS[1])
"""


def agent_key(name: str) -> str:
    return f"{KEY_PREFIX}:{{agent:{name}}}"


def model_key(model: str) -> str:
    return f"{KEY_PREFIX}:{{model:{model}}}"


@dataclass(frozen=True)
class Lease:
    key: str
    holder: str
    ends_at: float


class Semaphore:
    """Counting semaphores with leases on the shared Redis (one sorted set per limit)."""

    def __init__(self, redis: Any, *, clock: Callable[[], float] = time.time) -> None:
        self._redis, self._clock = redis, clock
        self._acquire = redis.register_script(_ACQUIRE)
        self._count = redis.register_script(_COUNT)

    def acquire(self, key: str, limit: int, holder: str, lease_seconds: float) -> Lease:
        """A slot of `key` for `holder` until now + `lease_seconds`; CapacityExhausted when all are taken."""
        now = self._clock()
        ends_at = now + lease_seconds
        answer = self._acquire(
            keys=[key], args=[repr(now), limit, holder, repr(ends_at), math.ceil(lease_seconds) + 60]
        )
        if int(answer[0]) == 1:
            return Lease(key, holder, ends_at)
        soonest = float(answer[2]) if len(answer) > 2 and answer[2] is not None else ends_at
        raise CapacityExhausted(
            f"{key.removeprefix(KEY_PREFIX + ':')} is at capacity ({int(answer[1])}/{limit} in flight)",
            retry_after=max(1, math.ceil(soonest - now)),
        )

    def release(self, lease: Lease) -> None:
        self._redis.zrem(lease.key, lease.holder)

    def in_flight(self, key: str) -> int:
        return int(self._count(keys=[key], args=[repr(self._clock())]))


def semaphore() -> Semaphore:
    return Semaphore(cache.redis_client())


@contextmanager
def running(spec: AgentSpec, model: str, *, holder: str, sem: Semaphore | None = None) -> Iterator[None]:
    """Hold a slot of `spec`'s agent and of `model` while the block runs; CapacityExhausted when either
    limit is reached (nothing is held then)."""
    settings = get_settings()
    if sem is None:
        if not settings.redis_url:
            # No shared Redis in this deployment: nothing can count across containers. Said, not hidden.
            logger.warning("capacity limits skipped: REDIS_URL is not set", extra={"agent": spec.name})
            yield
            return
        sem = semaphore()
    lease_seconds = settings.capacity_lease_seconds
    agent_lease = sem.acquire(agent_key(spec.name), spec.max_concurrent, holder, lease_seconds)
    try:
        model_lease = sem.acquire(model_key(model), settings.model_max_concurrent, holder, lease_seconds)
    except BaseException:
        sem.release(agent_lease)
        raise
    try:
        yield
    finally:
        sem.release(model_lease)
        sem.release(agent_lease)
