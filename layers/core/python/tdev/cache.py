"""The shared Redis connection: circuit breakers, rate limits, revocations, nonces, heartbeats, memory.

Deployed, REDIS_URL points at the ElastiCache endpoint (`rediss://` for TLS); locally the runtime
starts a real redis-server on 127.0.0.1 and sets REDIS_URL. The client is created on first use and
shared by the whole process (redis-py's connection pool is thread-safe).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from tdev.errors import ConfigurationError
from tdev.settings import get_settings


@lru_cache(maxsize=1)
def redis_client() -> Any:
    """A `redis.Redis` for REDIS_URL (responses decoded to str); ConfigurationError when it is unset."""
    import redis

    url = get_settings().redis_url
    if not url:
        raise ConfigurationError("REDIS_URL is not set: this feature needs the shared Redis")
    return redis.Redis.from_url(
        url, decode_responses=True, socket_connect_timeout=2, socket_timeout=2, health_check_interval=30
    )


def reset() -> None:
    """Close and forget the client (tests and the local runtime change REDIS_URL)."""
    if redis_client.cache_info().currsize:
        redis_client().close()
    redis_client.cache_clear()
