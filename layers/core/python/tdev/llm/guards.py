"""The shared health state of every model (breakers, rate counters, history): one round trip per model call.

Each model call runs two Lua scripts: before the call, one acquires the breaker and counts the call against
the per-minute limits (`Guards.admit`); after it, one records the outcome on the breaker, corrects the
token estimate and updates the history (`Guards.settle`). Each script is atomic and touches only keys under
the model's hash tag (`tdev:llm:{<model>}:...`), so it runs on one slot of a Redis Cluster (ElastiCache
Serverless). Before: five round trips and ~20 commands per call.

The outcome need not hold up the caller: `settle_later` writes the settle script to the socket at once and
leaves its reply to be read later, pipelined behind the next `admit` of this thread (on the same
connection when both are on one node, so Redis runs the outcome before the next admission) or by `flush`.
Redis runs the script as soon as it arrives, whoever reads the reply: an outcome is never held back in
this process, so a process that dies or freezes after sending it loses nothing (a fire-and-forget send
that never read the reply would not know whether it ran; here the reply is read, and a script Redis did
not run, NOSCRIPT or a cluster redirection, is run again synchronously). What the caller no longer waits
for is the settle's round trip: a chain of calls waits for one round trip per call.

The semantics are those of `CircuitBreakers`, `RateLimits` and `History` (the scripts share their Lua
functions): a breaker opens after 5 consecutive transient failures, goes half-open after 30 s with one
probe lease, closes after 3 successful probes; a model at ≥ 80 % of its RPM or TPM is skipped, and a
half-open probe that was skipped for its rate gives its lease back.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from redis.exceptions import AskError, MovedError, NoScriptError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError

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


# Replies that mean Redis did not run the script: run it again the ordinary way (the client's Script loads
# it, follows the redirection).
_NOT_RUN = (NoScriptError, MovedError, AskError, TryAgainError)


class _Connection:
    """A connection taken from its pool for scripts sent ahead of their replies: it goes back to the pool
    once every reply sent on it has been read (dropped, if a read or a send failed half-way)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.raw: Any = pool.get_connection()
        self.replies_due = 0

    def send(self, *command: Any) -> None:
        if self.raw is None:
            raise RedisConnectionError("the connection was dropped")
        try:
            self.raw.send_command(*command)
        except BaseException:
            self._drop()
            raise
        self.replies_due += 1

    def read(self) -> Any:
        if self.raw is None:
            raise RedisConnectionError("the connection was dropped before this reply was read")
        try:
            value = self.raw.read_response()
        except ResponseError:  # a whole error reply was read: the connection is fine
            self._replied()
            raise
        except BaseException:
            self._drop()
            raise
        self._replied()
        return value

    def _replied(self) -> None:
        self.replies_due -= 1
        if self.replies_due == 0:
            self.pool.release(self.raw)

    def _drop(self) -> None:
        raw, self.raw = self.raw, None
        raw.disconnect()
        self.pool.release(raw)


class _Sent:
    """A script written to a connection whose reply is still to be read."""

    def __init__(self, connection: _Connection, script: Any, keys: list[str], args: list[Any]) -> None:
        self.connection, self.script, self.keys, self.args = connection, script, keys, args

    def reply(self) -> Any:
        """This script's reply (the replies of scripts sent before it on its connection are read first)."""
        try:
            return self.connection.read()
        except _NOT_RUN:
            return self.script(keys=self.keys, args=self.args)


@dataclass
class Guards:
    """The shared health state of every model: breakers, rate counters, history (all in one Redis)."""

    breakers: CircuitBreakers
    limits: RateLimits
    history: History
    # The model path sends outcomes ahead of their replies (`settle_later`) when the owner of these guards
    # flushes them at the end of its work (`tdev.llm.fallback.model_guards`); otherwise `settle` waits.
    defers_outcomes: bool = False

    def __post_init__(self) -> None:
        redis = self.breakers.redis
        self._admit = redis.register_script(_ADMIT)
        self._settle = redis.register_script(_SETTLE)
        self._in_flight = threading.local()  # .settle: this thread's settle whose reply is unread

    @classmethod
    def from_redis(cls, redis: Any, *, defers_outcomes: bool = False, **breaker_options: Any) -> Guards:
        return cls(
            CircuitBreakers(redis, **breaker_options), RateLimits(redis), History(redis), defers_outcomes
        )

    def admit(self, model: str, estimated_tokens: int) -> CallAdmission:
        """Breaker and rate limit for one call, in one script (one round trip, shared with the reply of
        this thread's previous `settle_later` if one is unread)."""
        b, limits = self.breakers, self.limits
        rpm, tpm = limits.limits(model)
        rate_key = limits.key(model)
        keys = [b.key(model), rate_key]
        args = [
            b.clock(), b.reset_timeout, b.probe_ttl, KEY_TTL_SECONDS,
            rpm, tpm, estimated_tokens, limits.skip_at,
        ]  # fmt: skip
        settling: _Sent | None = getattr(self._in_flight, "settle", None)
        if settling is None:
            allowed, state, admitted, usage = self._admit(keys=keys, args=args)
        else:
            self._in_flight.settle = None
            try:
                sent = self._send(self._admit, keys, args, behind=settling)
            finally:
                _read_quietly(settling)  # its reply was on its way while the admission was being sent
            allowed, state, admitted, usage = sent.reply()
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
        keys, args = self._settle_call(model, admission, outcome, latency_ms, token_correction)
        self.flush()  # an earlier outcome of this thread goes first
        return BreakerState(_text(self._settle(keys=keys, args=args)))

    def settle_later(
        self,
        model: str,
        admission: CallAdmission,
        *,
        outcome: str,
        latency_ms: float,
        token_correction: int = 0,
    ) -> None:
        """`settle`, sent now and read later: Redis runs it on arrival, and its reply is read behind this
        thread's next `admit` or by `flush` (see the module doc). Call `flush` before the work ends."""
        keys, args = self._settle_call(model, admission, outcome, latency_ms, token_correction)
        self.flush()
        self._in_flight.settle = self._send(self._settle, keys, args)

    def flush(self) -> BreakerState | None:
        """Read this thread's outstanding settle reply, if any: the breaker's state after it."""
        settling: _Sent | None = getattr(self._in_flight, "settle", None)
        if settling is None:
            return None
        self._in_flight.settle = None
        return BreakerState(_text(settling.reply()))

    def _settle_call(
        self, model: str, admission: CallAdmission, outcome: str, latency_ms: float, token_correction: int
    ) -> tuple[list[str], list[Any]]:
        if outcome not in {"success", "failure", "release"}:
            raise ValueError(f"unknown outcome {outcome!r}")
        b = self.breakers
        keys = [b.key(model), admission.rate_key, self.history.key(model)]
        args = [
            outcome, b.clock(), b.failure_threshold, b.success_threshold, KEY_TTL_SECONDS,
            token_correction, latency_ms, self.history.alpha, HISTORY_TTL_SECONDS,
        ]  # fmt: skip
        return keys, args

    def _pool(self, key: str) -> Any:
        """The connection pool of the node that serves `key` (the only node, or its cluster master)."""
        redis = self.breakers.redis
        if hasattr(redis, "get_node_from_key"):  # a RedisCluster
            return redis.get_redis_connection(redis.get_node_from_key(key)).connection_pool
        return redis.connection_pool

    def _send(self, script: Any, keys: list[str], args: list[Any], behind: _Sent | None = None) -> _Sent:
        """Write EVALSHA of `script` without reading its reply; on `behind`'s connection when that one is
        on the same node, so Redis runs the two in the order they were sent."""
        pool = self._pool(keys[0])
        if behind is not None and behind.connection.pool is pool and behind.connection.raw is not None:
            connection = behind.connection
        else:
            connection = _Connection(pool)
        connection.send("EVALSHA", script.sha, len(keys), *keys, *args)
        return _Sent(connection, script, keys, args)


def _read_quietly(sent: _Sent) -> None:
    """Read a settle's reply; a failure is logged, not raised (the admission does not depend on it)."""
    try:
        sent.reply()
    except Exception as exc:
        from tdev.observability import logger

        logger.warning("could not record the model call's outcome", extra={"error": str(exc)})


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
