"""Rate limits in Redis: a bucket of N tokens per principal (or API key), where each token taken returns to
the bucket S seconds later. So a limit "N/S" means exactly what it says: never more than N requests in
any S seconds (the 101st request in the window is refused, whatever the pace), and the answer to an empty
bucket is the wait until the oldest token returns (Retry-After). One Lua script checks, takes and trims
atomically; Redis TIME is the clock, so every Lambda container agrees.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any

from tdev import cache

# KEYS[1] = the bucket (a sorted set of the times tokens were taken); ARGV = capacity, window seconds, id.
# Returns {allowed (1|0), tokens remaining, retry_after in milliseconds}.
TOKEN_BUCKET_LUA = """
local capacity = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2]) * 1000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window_ms)
local taken = redis.call('ZCARD', KEYS[1])
if taken < capacity then
  redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window_ms)
  return {1, capacity - taken - 1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, 0, tonumber(oldest[2]) + window_ms - now}
"""


# The same bucket, looked at without taking a token: {full (1|0), retry_after in milliseconds}.
PEEK_LUA = """
local capacity = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2]) * 1000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window_ms)
if redis.call('ZCARD', KEYS[1]) < capacity then
  return {0, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {1, tonumber(oldest[2]) + window_ms - now}
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
        allowed, remaining, retry_after_ms = self._script(
            keys=[f"{self.prefix}{bucket}"], args=[limit.requests, limit.seconds, uuid.uuid4().hex[:12]]
        )
        return Outcome(bool(int(allowed)), int(remaining), math.ceil(int(retry_after_ms) / 1000), limit)

    def full(self, bucket: str, limit: Limit) -> int:
        """Seconds until `bucket` has room again (0: it has room now); takes nothing."""
        full, retry_after_ms = self.redis.register_script(PEEK_LUA)(
            keys=[f"{self.prefix}{bucket}"], args=[limit.requests, limit.seconds]
        )
        return max(1, math.ceil(int(retry_after_ms) / 1000)) if int(full) else 0
