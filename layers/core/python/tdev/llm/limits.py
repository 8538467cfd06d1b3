"""Shared requests-per-minute and tokens-per-minute counters per model, and live call history, in Redis.

Every key carries the model's hash tag (`tdev:llm:{<model>}:...`, see `model_tag`), so a model call's
guards run as one script per step on one cluster slot (tdev.llm.guards).

Rate limits: one hash per model and minute (`requests`, `tokens`), expiring after two minutes. `admit` is a
Lua script that refuses a call when the model is at ≥ 80 % of either configured limit and otherwise counts
the request (and the prompt's estimated tokens) in the same step, so concurrent callers cannot all slip in
under the threshold. After the call, `settle` adds the difference between actual and estimated tokens.

History: one hash per model with exponentially weighted success rate and latency, updated atomically by
every instance: the router's live view of which models answer, and how fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tdev.llm.breaker import model_tag
from tdev.llm.models_data import limits_of

SKIP_AT = 0.8  # of the configured RPM or TPM
HISTORY_TTL_SECONDS = 7 * 86_400

# Lua functions shared by the single-purpose scripts below and the per-call scripts of tdev.llm.guards.
LUA_FUNCTIONS = """
local function rate_admit(key, rpm, tpm, estimated, threshold)
  local counts = redis.call('HMGET', key, 'requests', 'tokens')
  local requests, tokens = tonumber(counts[1] or '0'), tonumber(counts[2] or '0')
  local usage = 0
  if rpm > 0 then usage = math.max(usage, requests / rpm) end
  if tpm > 0 then usage = math.max(usage, tokens / tpm) end
  if usage >= threshold then return 0, math.floor(usage * 1000) end
  redis.call('HINCRBY', key, 'requests', 1)
  redis.call('HINCRBY', key, 'tokens', estimated)
  redis.call('EXPIRE', key, 120)
  return 1, math.floor(usage * 1000)
end

local function history_record(key, ok, latency, alpha, ttl)
  local h = redis.call('HMGET', key, 'calls', 'success_rate', 'latency_ms')
  local calls = tonumber(h[1] or '0') + 1
  local rate = ok
  if calls > 1 and h[2] then rate = tonumber(h[2]) * (1 - alpha) + ok * alpha end
  if ok == 1 then
    if h[3] then latency = tonumber(h[3]) * (1 - alpha) + latency * alpha end
    redis.call('HSET', key, 'calls', calls, 'success_rate', tostring(rate), 'latency_ms', tostring(latency))
  else
    redis.call('HSET', key, 'calls', calls, 'success_rate', tostring(rate))
  end
  redis.call('EXPIRE', key, ttl)
  return calls
end
"""

# KEYS[1] = this minute's hash; ARGV = rpm, tpm, estimated tokens, threshold → {admitted 0|1, usage x1000}
_ADMIT = (
    LUA_FUNCTIONS
    + """
local admitted, usage = rate_admit(
  KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
return {admitted, usage}
"""
)

# KEYS[1] = history hash; ARGV = success 0|1, latency_ms, alpha, ttl → calls
_HISTORY = (
    LUA_FUNCTIONS
    + """
return history_record(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4])
"""
)


@dataclass(frozen=True)
class RateAdmission:
    admitted: bool
    usage: float  # the larger of requests/RPM and tokens/TPM this minute, before this call


@dataclass(frozen=True)
class ModelHistory:
    calls: int = 0
    success_rate: float = 1.0
    latency_ms: float | None = None


def estimate_tokens(text: str) -> int:
    """~4 characters a token for English and code: good enough to count a prompt against a TPM budget."""
    return max(1, len(text) // 4)


class RateLimits:
    FIELDS = ("requests", "tokens")  # of a model's per-minute counter hash

    def __init__(
        self,
        redis: Any,
        *,
        skip_at: float = SKIP_AT,
        clock: Callable[[], float] = time.time,
        limits: Callable[[str], tuple[int, int]] = limits_of,
    ) -> None:
        self.redis = redis
        self.skip_at = skip_at
        self.clock = clock
        self.limits = limits
        self._admit = redis.register_script(_ADMIT)

    def key(self, model: str) -> str:
        """This minute's counters of `model` (under the model's hash tag, like its breaker and history)."""
        return f"{model_tag(model)}:rate:{int(self.clock() // 60)}"

    def admit(self, model: str, estimated_tokens: int = 0) -> RateAdmission:
        rpm, tpm = self.limits(model)
        admitted, usage = self._admit(keys=[self.key(model)], args=[rpm, tpm, estimated_tokens, self.skip_at])
        return RateAdmission(bool(int(admitted)), int(usage) / 1000)

    def settle(self, model: str, estimated_tokens: int, actual_tokens: int) -> None:
        """Replace the admission's estimate by the tokens the call really used."""
        if actual_tokens != estimated_tokens:
            self.redis.hincrby(self.key(model), "tokens", actual_tokens - estimated_tokens)

    def usage(self, model: str) -> float:
        return self.usage_of(model, self.redis.hmget(self.key(model), *self.FIELDS))

    def usage_of(self, model: str, values: Sequence[Any]) -> float:
        """The fraction of its limits `model` used this minute, from HMGET of FIELDS on its counter."""
        rpm, tpm = self.limits(model)
        requests, tokens = (int(v or 0) for v in values)
        return max(requests / rpm if rpm else 0.0, tokens / tpm if tpm else 0.0)


class History:
    def __init__(self, redis: Any, *, alpha: float = 0.2) -> None:
        self.redis = redis
        self.alpha = alpha
        self._record = redis.register_script(_HISTORY)

    def record(self, model: str, *, succeeded: bool, latency_ms: float) -> None:
        self._record(
            keys=[self.key(model)], args=[1 if succeeded else 0, latency_ms, self.alpha, HISTORY_TTL_SECONDS]
        )

    @staticmethod
    def key(model: str) -> str:
        return model_tag(model) + ":history"

    def get(self, model: str) -> ModelHistory:
        return self.history_of(self.redis.hgetall(self.key(model)))

    @staticmethod
    def history_of(fields: dict[Any, Any]) -> ModelHistory:
        """The history a history hash (as HGETALL returns it) stands for."""
        if not fields:
            return ModelHistory()
        fields = {_text(k): _text(v) for k, v in fields.items()}
        latency = fields.get("latency_ms")
        return ModelHistory(
            calls=int(fields.get("calls", 0)),
            success_rate=float(fields.get("success_rate", 1.0)),
            latency_ms=float(latency) if latency is not None else None,
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
