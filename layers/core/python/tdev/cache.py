"""The shared Redis connection: circuit breakers, rate limits, revocations, nonces, heartbeats, memory.

Deployed, REDIS_URL points at the ElastiCache Serverless (Valkey) endpoint over TLS and says
`?cluster=true`: that cache speaks the cluster protocol, so the client is redis-py's `RedisCluster`,
which routes each key to the node owning its hash slot. Every multi-key operation in `tdev` (a Lua
script, MGET, a MULTI pipeline) names keys that share one hash tag (`{...}`), and nothing scans the
keyspace (no KEYS, no SCAN) on a request path. Locally the runtime starts a real redis-server on
127.0.0.1 (the tests a three-master cluster) and sets REDIS_URL. The client is created on first use and
shared by the whole process (redis-py's connection pools are thread-safe).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tdev.errors import ConfigurationError
from tdev.settings import get_settings

CLUSTER_PARAMETER = "cluster"  # REDIS_URL's query parameter: `?cluster=true` for a cluster-mode endpoint
_TRUE = {"1", "true", "yes", "on"}


def split_cluster_flag(url: str) -> tuple[str, bool]:
    """(`url` without the `cluster` parameter, whether it asked for cluster mode)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    flags = [value for name, value in query if name == CLUSTER_PARAMETER]
    rest = [(name, value) for name, value in query if name != CLUSTER_PARAMETER]
    cluster = any(value.strip().lower() in _TRUE for value in flags)
    return urlunsplit(parts._replace(query=urlencode(rest))), cluster


def is_cluster_url(url: str) -> bool:
    return split_cluster_flag(url)[1]


def connect(url: str, **options: Any) -> Any:
    """A client for `url`: `redis.cluster.RedisCluster` when it says `cluster=true`, else `redis.Redis`.

    `options` go to redis-py (`decode_responses`, timeouts, ...). A cluster URL names any one node (the
    ElastiCache endpoint, or the first local master); the client learns the slot map from it.
    """
    import redis

    base, cluster = split_cluster_flag(url)
    if cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(base, **options)
    return redis.Redis.from_url(base, **options)


@lru_cache(maxsize=1)
def redis_client() -> Any:
    """The client for REDIS_URL (responses decoded to str); ConfigurationError when it is unset."""
    url = get_settings().redis_url
    if not url:
        raise ConfigurationError("REDIS_URL is not set: this feature needs the shared Redis")
    return connect(
        url, decode_responses=True, socket_connect_timeout=2, socket_timeout=2, health_check_interval=30
    )


def reset() -> None:
    """Close and forget the client (tests and the local runtime change REDIS_URL)."""
    if redis_client.cache_info().currsize:
        redis_client().close()
    redis_client.cache_clear()
