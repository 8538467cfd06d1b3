"""Capacity: how many runs of one agent, and on one model, are in flight at once, across every container.

Each limit is a semaphore in the shared Redis: one sorted set per agent and per model whose members are
the holders (`<execution>#<task>`) scored by the end of their lease. Acquiring is one Lua script on that
one key (atomic across processes, and cluster-safe: a single key, its hash tag in braces), which first
drops expired leases, so a holder that crashed without releasing gives its slot back when its lease ends.
A holder that acquires again (a retried or redelivered step) renews its own slot instead of taking a
second one. When every slot is taken the task raises `CapacityExhausted`, which the workflow's `Retry`
waits on (statemachines/request_workflow.asl.json): the task waits durably in Step Functions, it does
not fail.

Free slots go to the waiting tasks in admission order (tdev.orchestration.admission: the request's
priority, aged, boosted near its deadline): a refused task joins the semaphore's waiting list (a hash
under the same hash tag) and keeps its arrival time while it keeps asking; one that stopped asking for
STALE_WAITER_SECONDS (cancelled, failed) is skipped and dropped.

The agent's slot is taken before the model's; if the model is full the agent's is given back at once.
The model slot counts the run's first model (a fallback hop runs under the same slot).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tdev import cache
from tdev.data.agents import AgentRepository, StoredHistory
from tdev.errors import CapacityExhausted, NotFoundError, UnknownAgentError
from tdev.models import AgentSpec, Priority
from tdev.observability import logger
from tdev.orchestration.admission import EFFECTIVE_PRIORITY_LUA, LEVELS
from tdev.orchestration.routing import (
    AVAILABLE_BELOW,
    AgentLoad,
    LoadBalancer,
    Strategy,
    record_admission,
    record_decision,
    record_queue,
    redis_turns,
)
from tdev.settings import get_settings

KEY_PREFIX = "tdev:capacity"

# KEYS[1] = the semaphore (zset holder -> lease end), KEYS[2] = its waiting list (hash holder ->
# "rank|enqueued|deadline|last seen"), one hash tag; ARGV = now, limit, holder, lease end, key ttl, rank,
# deadline (-1: none), stale after.
# -> {1, held, seconds waited, still waiting} when the holder has a slot (the wait as text: a Lua number
# would reach the client truncated to an integer); {0, held, soonest lease end, waiting ahead, waiting}
# when it waits.
_ACQUIRE = (
    EFFECTIVE_PRIORITY_LUA
    + """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
local enqueued = now
local function grant(count)
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('HDEL', KEYS[2], ARGV[3])
  return {1, count, string.format('%.6f', now - enqueued), redis.call('HLEN', KEYS[2])}
end
if redis.call('ZSCORE', KEYS[1], ARGV[3]) ~= false then return grant(held) end
local rank, deadline, stale = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local mine = redis.call('HGET', KEYS[2], ARGV[3])
if mine then enqueued = tonumber(string.match(mine, '^[^|]*|([^|]*)|')) end
local free = tonumber(ARGV[2]) - held
local ahead = 0
if free > 0 then
  local score = effective(rank, enqueued, deadline, now)
  local waiting = redis.call('HGETALL', KEYS[2])
  for i = 1, #waiting, 2 do
    local other = waiting[i]
    if other ~= ARGV[3] then
      local r, e, d, seen = string.match(waiting[i + 1], '^([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
      r, e, d, seen = tonumber(r), tonumber(e), tonumber(d), tonumber(seen)
      if now - seen > stale then
        redis.call('HDEL', KEYS[2], other)  -- stopped asking (cancelled, failed): skipped
      else
        local s = effective(r, e, d, now)
        if s < score or (s == score and (e < enqueued or (e == enqueued and other < ARGV[3]))) then
          ahead = ahead + 1
        end
      end
    end
  end
  if ahead < free then return grant(held + 1) end
end
local entry = ARGV[6] .. '|' .. string.format('%.6f', enqueued) .. '|' .. ARGV[7] .. '|' .. ARGV[1]
redis.call('HSET', KEYS[2], ARGV[3], entry)
redis.call('EXPIRE', KEYS[2], ARGV[5])
local soonest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, held, soonest[2] or ARGV[1], ahead, redis.call('HLEN', KEYS[2])}
"""
)
# KEYS[1] = the semaphore; ARGV = now -> holders whose lease has not ended
_COUNT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZCARD', KEYS[1])
"""


# A waiter that has not asked again for this long stopped waiting (the workflow retries at most every
# 60 s): it no longer holds back the ones behind it.
STALE_WAITER_SECONDS = 180


def agent_key(name: str) -> str:
    return f"{KEY_PREFIX}:{{agent:{name}}}"


def model_key(model: str) -> str:
    return f"{KEY_PREFIX}:{{model:{model}}}"


def waiting_key(key: str) -> str:
    """The waiting list of a semaphore: the same hash tag, so one script may touch both (cluster-safe)."""
    return f"{key}:waiting"


@dataclass(frozen=True)
class Lease:
    key: str
    holder: str
    ends_at: float
    waited_seconds: float = 0.0  # since the holder first asked and was refused (0: admitted at once)
    still_waiting: int = 0  # the tasks left on the waiting list when this one was admitted


class Semaphore:
    """Counting semaphores with leases on the shared Redis (one sorted set per limit)."""

    def __init__(self, redis: Any, *, clock: Callable[[], float] = time.time) -> None:
        self._redis, self._clock = redis, clock
        self._acquire = redis.register_script(_ACQUIRE)
        self._count = redis.register_script(_COUNT)

    def acquire(
        self,
        key: str,
        limit: int,
        holder: str,
        lease_seconds: float,
        *,
        priority: Priority = Priority.NORMAL,
        deadline: float | None = None,
    ) -> Lease:
        """A slot of `key` for `holder` until now + `lease_seconds`, or CapacityExhausted: every slot is
        taken, or the free ones go to waiters ahead of it in admission order (tdev.orchestration.admission;
        the holder is then on the waiting list, keeping its arrival time while it keeps asking)."""
        now = self._clock()
        ends_at = now + lease_seconds
        answer = self._acquire(
            keys=[key, waiting_key(key)],
            args=[
                f"{now:.6f}",
                limit,
                holder,
                f"{ends_at:.6f}",
                math.ceil(lease_seconds) + STALE_WAITER_SECONDS,
                LEVELS[priority],
                -1 if deadline is None else f"{deadline:.6f}",
                STALE_WAITER_SECONDS,
            ],
        )
        if int(answer[0]) == 1:
            return Lease(key, holder, ends_at, float(answer[2]), int(answer[3]))
        held, soonest, ahead = int(answer[1]), float(answer[2]), int(answer[3])
        name = key.removeprefix(KEY_PREFIX + ":")
        raise CapacityExhausted(
            f"{name} is at capacity ({held}/{limit} in flight)"
            if held >= limit
            else f"{name}: its free slots go to {ahead} waiting task(s) ahead in admission order",
            retry_after=max(1, math.ceil(soonest - now)) if held >= limit else 1,
            waiting=int(answer[4]),
        )

    def waiting(self, key: str) -> int:
        """How many tasks wait for a slot of `key` (queue depth)."""
        return int(self._redis.hlen(waiting_key(key)))

    def release(self, lease: Lease) -> None:
        self._redis.zrem(lease.key, lease.holder)

    def in_flight(self, key: str) -> int:
        return int(self._count(keys=[key], args=[repr(self._clock())]))


def semaphore() -> Semaphore:
    return Semaphore(cache.redis_client())


@contextmanager
def running(
    spec: AgentSpec,
    model: str,
    *,
    holder: str,
    priority: Priority = Priority.NORMAL,
    deadline: datetime | None = None,
    sem: Semaphore | None = None,
) -> Iterator[None]:
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
    order: dict[str, Any] = {"priority": priority, "deadline": deadline.timestamp() if deadline else None}
    started = time.perf_counter()
    outcome = "error"
    try:
        agent_lease = sem.acquire(agent_key(spec.name), spec.max_concurrent, holder, lease_seconds, **order)
        try:
            model_lease = sem.acquire(
                model_key(model), settings.model_max_concurrent, holder, lease_seconds, **order
            )
        except BaseException:
            sem.release(agent_lease)
            raise
        outcome = "admitted"
        record_admission(agent_lease.waited_seconds, agent_lease.still_waiting)
    except CapacityExhausted as exc:
        outcome = "waiting"
        record_queue(exc.waiting)
        raise
    finally:
        record_decision(outcome, (time.perf_counter() - started) * 1000)
    try:
        yield
    finally:
        sem.release(model_lease)
        sem.release(agent_lease)


def agent_health(registry: AgentRepository, name: str, *, sem: Semaphore | None = None) -> dict[str, Any]:
    """An agent's health: its version, runs in flight and waiting against its capacity, whether it is
    available (below 0.8 x capacity), and its run history (success rate, average duration)."""
    try:
        spec = registry.get(name)
    except UnknownAgentError:
        raise NotFoundError(f"no agent named {name} in the registry", field="agent_name") from None
    if sem is None and get_settings().redis_url:
        sem = semaphore()
    key = agent_key(spec.name)
    in_flight = sem.in_flight(key) if sem else None
    waiting = sem.waiting(key) if sem else None
    stats = registry.stats(spec.name)
    runs = stats["runs"]
    return {
        "agent": spec.name,
        "ref": spec.ref,
        "origin": registry.origin(spec.name) or "builtin",
        "max_concurrent": spec.max_concurrent,
        "in_flight": in_flight,
        "waiting": waiting,
        "utilisation": None if in_flight is None else round(in_flight / spec.max_concurrent, 4),
        "available": None if in_flight is None else in_flight < AVAILABLE_BELOW * spec.max_concurrent,
        "runs": runs,
        "successes": stats["successes"],
        "failures": stats["failures"],
        "success_rate": round(stats["successes"] / runs, 4) if runs else None,
        "average_duration_ms": round(stats["total_duration_ms"] / runs) if runs else None,
    }


class CapacityLoads:
    """The load balancer's view of agents (tdev.orchestration.routing.LoadSource): runs in flight from the
    capacity semaphores, capacity from the specs, cpu and memory shares from the stored run history."""

    def __init__(
        self, sem: Semaphore, specs: Iterable[AgentSpec], history: StoredHistory | None = None
    ) -> None:
        self._sem, self._history = sem, history
        self._capacity = {spec.name: spec.max_concurrent for spec in specs}

    def loads(self, agents: Sequence[str]) -> dict[str, AgentLoad]:
        return {
            agent: AgentLoad(
                agent,
                self._sem.in_flight(agent_key(agent)),
                self._capacity[agent],
                cpu=self._history.cpu_share(agent) if self._history else None,
                memory=self._history.memory_share(agent) if self._history else None,
            )
            for agent in agents
            if agent in self._capacity
        }


def load_balancer(specs: Sequence[AgentSpec], history: StoredHistory) -> LoadBalancer | None:
    """The planner's load balancer on the shared Redis, with the configured strategy; None (routing by the
    request alone, logged) in a deployment without Redis, where no load is counted (see `running`)."""
    settings = get_settings()
    if not settings.redis_url:
        logger.warning("load-aware routing skipped: REDIS_URL is not set")
        return None
    redis = cache.redis_client()
    return LoadBalancer(
        CapacityLoads(Semaphore(redis), specs, history),
        strategy=Strategy(settings.routing_strategy),
        history=history,
        next_turn=redis_turns(redis),
    )


def platform_health(registry: AgentRepository, *, sem: Semaphore | None = None) -> dict[str, Any]:
    """The platform's health for operators: registered and active agents (runs in flight), tasks running
    and queued for capacity (the semaphores), completed and failed (every agent's run counters, one batch
    read), and the average response time of a run. In-flight figures are None without the shared Redis."""
    specs = registry.list()
    if sem is None and get_settings().redis_url:
        sem = semaphore()
    history = registry.history(spec.name for spec in specs)
    agents = []
    for spec in specs:
        in_flight = sem.in_flight(agent_key(spec.name)) if sem else None
        waiting = sem.waiting(agent_key(spec.name)) if sem else None
        agents.append(
            {
                "agent": spec.name,
                "in_flight": in_flight,
                "waiting": waiting,
                "max_concurrent": spec.max_concurrent,
                "available": None if in_flight is None else in_flight < AVAILABLE_BELOW * spec.max_concurrent,
            }
        )
    totals = history.totals()
    counted = sem is not None
    return {
        "agents": len(specs),
        "active_agents": sum(1 for a in agents if a["in_flight"]) if counted else None,
        "available_agents": sum(1 for a in agents if a["available"]) if counted else None,
        "tasks": {
            "running": sum(a["in_flight"] or 0 for a in agents) if counted else None,
            "queued": sum(a["waiting"] or 0 for a in agents) if counted else None,
            "completed": totals["successes"],
            "failed": totals["failures"],
        },
        "average_response_ms": round(totals["total_duration_ms"] / totals["runs"])
        if totals["runs"]
        else None,
        "by_agent": agents,
    }
