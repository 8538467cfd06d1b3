"""The shared health state of every model (breakers, rate counters, history), two scripts per model call.

A model call asks Redis twice: before the call, one Lua script acquires the breaker and counts the call
against the per-minute limits (`Guards.admit`); after it, one script records the outcome on the breaker,
corrects the token estimate and updates the history (`Guards.settle`). Each script is atomic and touches
only keys under the model's hash tag (`tdev:llm:{<model>}:...`), so it runs on one slot of a Redis
Cluster (ElastiCache Serverless). Before: five round trips and ~20 commands per call.

The semantics are those of `CircuitBreakers`, `RateLimits` and `History` (the scripts share their Lua
functions): a breaker opens after 5 consecutive transient failures, goes half-open after 30 s with one
probe lease, closes after 3 successful probes; a model at ≥ 80 % of its RPM or TPM is skipped, and a
half-open probe that was skipped for its rate gives its lease back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tdev.llm import breaker as breaker_module
from tdev.llm import limits as limits_module
from tdev.llm.breaker import KEY_TTL_SECONDS, BreakerState, CircuitBreakers
from tdev.llm.limits import HISTORY_TTL_SECONDS, History, RateLimits

_FUNCTIONS = breaker_module.LUA_FUNCTIONS + limits_module.LUA_FUNCTIONS

# KEYS = breaker, this minute's rate hash
# ARGV = now, reset_timeout, probe_ttl, key_ttl, rpm, tpm, estimated tokens, skip_at
# → {breaker allowed 0|1, breaker state, rate admitted 0|1, usage x1000}
_ADMIT = (
    _FUNCTIONS
    + """
local allowed, state = breaker_acquire(
  KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4])
if allowed == 0 then return {0, state, 0, 0} end
local admitted, usage = rate_admit(
  KEYS[2], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]))
if admitted == 0 and state == 'half_open' then breaker_release(KEYS[1]) end
return {1, state, admitted, usage}
"""
)

# KEYS = breaker, the rate hash the call was admitted on, history
# ARGV = outcome (success | failure | release), now, failure_threshold, success_threshold, key_ttl,
#        token correction, latency_ms, alpha, history_ttl → the breaker's state
_SETTLE = (
    _FUNCTIONS
    + """
local outcome = ARGV[1]
local state
if outcome == 'release' then
  state = breaker_release(KEYS[1])
else
  state = breaker_record(KEYS[1], outcome, ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5])
end
local correction = tonumber(ARGV[6])
if correction ~= 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'tokens', correction)
end
local ok = 0
if outcome == 'success' then ok = 1 end
history_record(KEYS[3], ok, tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9])
return state
"""
)


@dataclass(frozen=True)
class CallAdmission:
    """The answer to "may this call go now?": what skipped it, if anything, and the rate key it counts on."""

    allowed: bool
    breaker: BreakerState
    rate_admitted: bool
    usage: float  # the larger of requests/RPM and tokens/TPM this minute, before this call
    rate_key: str

    @property
    def skipped_by(self) -> str | None:
        """`breaker_open`, `rate_limited` or None when admitted."""
        if not self.allowed:
            return "breaker_open"
        if not self.rate_admitted:
            return "rate_limited"
        return None


@dataclass
class Guards:
    """The shared health state of every model: breakers, rate counters, history (all in one Redis)."""

    breakers: CircuitBreakers
    limits: RateLimits
    history: History

    def __post_init__(self) -> None:
        redis = self.breakers.redis
        self._admit = redis.register_script(_ADMIT)
        self._settle = redis.register_script(_SETTLE)

    @classmethod
    def from_redis(cls, redis: Any, **breaker_options: Any) -> Guards:
        return cls(CircuitBreakers(redis, **breaker_options), RateLimits(redis), History(redis))

    def admit(self, model: str, estimated_tokens: int) -> CallAdmission:
        """Breaker and rate limit for one call, in one script (one round trip)."""
        b, limits = self.breakers, self.limits
        rpm, tpm = limits.limits(model)
        rate_key = limits.key(model)
        allowed, state, admitted, usage = self._admit(
            keys=[b.key(model), rate_key],
            args=[
                b.clock(), b.reset_timeout, b.probe_ttl, KEY_TTL_SECONDS,
                rpm, tpm, estimated_tokens, limits.skip_at,
            ],
        )  # fmt: skip
        return CallAdmission(
            allowed=bool(int(allowed)),
            breaker=BreakerState(_text(state)),
            rate_admitted=bool(int(admitted)),
            usage=int(usage) / 1000,
            rate_key=rate_key,
        )

    def settle(
        self,
        model: str,
        admission: CallAdmission,
        *,
        outcome: str,
        latency_ms: float,
        token_correction: int = 0,
    ) -> BreakerState:
        """Record an admitted call's outcome in one script: `success`, `failure` (transient) or `release`
        (a permanent error, which says nothing about the model's health but gives a probe lease back)."""
        if outcome not in {"success", "failure", "release"}:
            raise ValueError(f"unknown outcome {outcome!r}")
        b = self.breakers
        state = self._settle(
            keys=[b.key(model), admission.rate_key, self.history.key(model)],
            args=[
                outcome, b.clock(), b.failure_threshold, b.success_threshold, KEY_TTL_SECONDS,
                token_correction, latency_ms, self.history.alpha, HISTORY_TTL_SECONDS,
            ],
        )  # fmt: skip
        return BreakerState(_text(state))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
