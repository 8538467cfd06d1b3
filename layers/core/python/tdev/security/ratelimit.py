"""Token buckets in Redis: one Lua script reads, refills, takes and writes atomically (Redis TIME is the
clock, so every Lambda container agrees). A limit "N/S" is a bucket of N tokens refilled at N per S
seconds: N requests at once, then one every S/N seconds; the answer to an empty bucket is the wait."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tdev import cache

# KEYS[1] bucket; ARGV: capacity, refill per second.
# Returns {allowed (1|0), remaining (floor), retry_after in seconds}.
TOKEN_BUCKET_LUA = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = capacity; ts = now end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local retry_after = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_after = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
return {allowed, math.floor(tokens), retry_after}
"""


@dataclass(frozen=True)
class Limit:
    requests: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> Limit:
        requests, _, seconds = text.partition("/")
        limit = cls(int(requests), int(seconds))
        if limit.requests < 1 or limit.seconds < 1:
            raise ValueError(f"a rate limit needs positive numbers: {text!r}")
        return limit

    @property
    def refill_per_second(self) -> float:
        return self.requests / self.seconds


@dataclass(frozen=True)
class Outcome:
    allowed: bool
    remaining: int
    retry_after: int
    limit: Limit

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit.requests),
            "X-RateLimit-Remaining": str(self.remaining),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, self.retry_after))
        return headers


class RateLimiter:
    def __init__(self, redis: Any = None, *, prefix: str = "tdev:ratelimit:") -> None:
        self._redis, self.prefix = redis, prefix
        self._script: Any = None

    @property
    def redis(self) -> Any:
        return self._redis if self._redis is not None else cache.redis_client()

    def hit(self, bucket: str, limit: Limit) -> Outcome:
        if self._script is None or self._redis is None:
            self._script = self.redis.register_script(TOKEN_BUCKET_LUA)
        allowed, remaining, retry_after = self._script(
            keys=[f"{self.prefix}{bucket}"], args=[limit.requests, repr(limit.refill_per_second)]
        )
        return Outcome(bool(int(allowed)), int(remaining), math.ceil(float(retry_after)), limit)
