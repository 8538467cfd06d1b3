"""Circuit breakers per model, shared by every Lambda instance through Redis.

closed → open after `failure_threshold` consecutive transient failures; open → half-open once
`reset_timeout` has passed, admitting ONE probe at a time (a lease that expires after `probe_ttl`, so a
probe that crashed does not wedge the breaker); half-open → closed after `success_threshold` successful
probes, back to open on a failed one.

Each decision is one Lua script on one key, so it is atomic across processes (no check-then-set race) and
cluster-safe (a single hash slot). A model call makes its decisions together with the rate limit and
history in one script per step (tdev.llm.guards), on keys that share the model's hash tag. Time comes
from the caller's clock (injectable for tests); Lambda hosts are NTP-synchronised, and the thresholds
are seconds, not milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

KEY_TTL_SECONDS = 7 * 86_400  # a model nobody called for a week starts closed again


def model_tag(model: str) -> str:
    """The hash tag of every key about `model` (breaker, rate counters, history): one cluster slot, so one
    Lua script may touch them all (tdev.llm.guards)."""
    return "tdev:llm:{" + model.replace("{", "(").replace("}", ")") + "}"


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# Lua functions shared by the single-purpose scripts below and the per-call scripts of tdev.llm.guards.
LUA_FUNCTIONS = """
local function breaker_acquire(key, now, reset_timeout, probe_ttl, key_ttl)
  local state = redis.call('HGET', key, 'state') or 'closed'
  if state == 'closed' then return 1, 'closed' end
  if state == 'open' then
    local opened = tonumber(redis.call('HGET', key, 'opened_at') or '0')
    if now - opened < reset_timeout then return 0, 'open' end
    redis.call('HSET', key, 'state', 'half_open', 'successes', 0, 'probe_until', now + probe_ttl)
    redis.call('EXPIRE', key, key_ttl)
    return 1, 'half_open'
  end
  local probe_until = tonumber(redis.call('HGET', key, 'probe_until') or '0')
  if probe_until > now then return 0, 'half_open' end
  redis.call('HSET', key, 'probe_until', now + probe_ttl)
  return 1, 'half_open'
end

local function breaker_record(key, outcome, now, failure_threshold, success_threshold, key_ttl)
  local state = redis.call('HGET', key, 'state') or 'closed'
  redis.call('EXPIRE', key, key_ttl)
  if outcome == 'success' then
    if state == 'half_open' then
      local s = redis.call('HINCRBY', key, 'successes', 1)
      if s >= success_threshold then
        redis.call('HSET', key, 'state', 'closed', 'failures', 0, 'successes', 0, 'probe_until', 0)
        return 'closed'
      end
      redis.call('HSET', key, 'probe_until', 0)
      return 'half_open'
    end
    if state == 'closed' then redis.call('HSET', key, 'state', 'closed', 'failures', 0) end
    return state
  end
  if state == 'half_open' then
    redis.call('HSET', key, 'state', 'open', 'opened_at', now, 'successes', 0, 'probe_until', 0)
    return 'open'
  end
  if state == 'open' then return 'open' end
  local f = redis.call('HINCRBY', key, 'failures', 1)
  if f >= failure_threshold then
    redis.call('HSET', key, 'state', 'open', 'opened_at', now)
    return 'open'
  end
  redis.call('HSET', key, 'state', 'closed')
  return 'closed'
end

local function breaker_release(key)
  local state = redis.call('HGET', key, 'state') or 'closed'
  if state == 'half_open' then redis.call('HSET', key, 'probe_until', 0) end
  return state
end
"""

# KEYS[1] = breaker hash; ARGV = now, reset_timeout, probe_ttl, key_ttl → {allowed 0|1, state}
_ACQUIRE = (
    LUA_FUNCTIONS
    + """
local allowed, state = breaker_acquire(
  KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4])
return {allowed, state}
"""
)

# KEYS[1] = breaker hash; ARGV = outcome, now, failure_threshold, success_threshold, key_ttl → new state
_RECORD = (
    LUA_FUNCTIONS
    + """
return breaker_record(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5])
"""
)

# KEYS[1] = breaker hash: a half-open probe that did not test the model (skipped, or a permanent error)
_RELEASE = LUA_FUNCTIONS + "\nbreaker_release(KEYS[1])\nreturn 1\n"


@dataclass(frozen=True)
class Admission:
    allowed: bool
    state: BreakerState


class CircuitBreakers:
    """All models' breakers in one Redis; cheap to create (scripts are registered per client)."""

    def __init__(
        self,
        redis: Any,
        *,
        failure_threshold: int = 5,
        success_threshold: int = 3,
        reset_timeout: float = 30.0,
        probe_ttl: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.failure_threshold = failure_threshold
        self.success_threshold = success_threshold
        self.reset_timeout = reset_timeout
        self.probe_ttl = probe_ttl
        self.clock = clock
        self._acquire = redis.register_script(_ACQUIRE)
        self._record = redis.register_script(_RECORD)
        self._release = redis.register_script(_RELEASE)

    @staticmethod
    def key(model: str) -> str:
        return model_tag(model) + ":breaker"

    def acquire(self, model: str) -> Admission:
        """May a call to `model` go now? In half-open, True for exactly one caller until it reports back."""
        allowed, state = self._acquire(
            keys=[self.key(model)], args=[self.clock(), self.reset_timeout, self.probe_ttl, KEY_TTL_SECONDS]
        )
        return Admission(bool(int(allowed)), BreakerState(_text(state)))

    def record_success(self, model: str) -> BreakerState:
        return self._record_outcome(model, "success")

    def record_failure(self, model: str) -> BreakerState:
        """A transient failure (throttling, timeout, 5xx). Permanent errors say nothing about health."""
        return self._record_outcome(model, "failure")

    def release_probe(self, model: str) -> None:
        """Give back a half-open probe that said nothing about the model's health."""
        self._release(keys=[self.key(model)], args=[])

    def _record_outcome(self, model: str, outcome: str) -> BreakerState:
        state = self._record(
            keys=[self.key(model)],
            args=[outcome, self.clock(), self.failure_threshold, self.success_threshold, KEY_TTL_SECONDS],
        )
        return BreakerState(_text(state))

    def state(self, model: str) -> BreakerState:
        """The stored state; an open breaker whose timeout passed reads as half-open (as acquire sees it)."""
        return self.state_of(self.redis.hgetall(self.key(model)))

    def state_of(self, fields: dict[Any, Any]) -> BreakerState:
        """The state a breaker hash (as HGETALL returns it) stands for."""
        if not fields:
            return BreakerState.CLOSED
        fields = {_text(k): _text(v) for k, v in fields.items()}
        state = BreakerState(fields.get("state", "closed"))
        if (
            state is BreakerState.OPEN
            and self.clock() - float(fields.get("opened_at", 0)) >= self.reset_timeout
        ):
            return BreakerState.HALF_OPEN
        return state


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
