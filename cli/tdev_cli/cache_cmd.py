"""`tdev cache stats`: the read cache's hit rate and counters per namespace, and the Redis server's keys,
memory, evictions and slow commands (INFO, DBSIZE, SLOWLOG LEN on every primary; nothing lists keys)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(commands: Any) -> None:
    cache = commands.add_parser("cache", help="the read cache over the shared Redis")
    actions = cache.add_subparsers(dest="cache_command", required=True)
    stats = actions.add_parser("stats", help="hit rate, misses, keys and memory of the read cache")
    stats.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL"),
        help="the Redis to ask (default: $REDIS_URL; add ?cluster=true for a cluster endpoint)",
    )
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(func=stats_command)


def stats_command(args: argparse.Namespace) -> int:
    import redis

    from tdev import cache, caching

    if not args.redis_url:
        print("tdev cache stats: set REDIS_URL or pass --redis-url", file=sys.stderr)
        return EXIT_USAGE
    client = cache.connect(args.redis_url, decode_responses=True, socket_connect_timeout=2, socket_timeout=5)
    try:
        figures = caching.stats(client)
    except (redis.exceptions.RedisError, OSError) as exc:
        print(f"tdev cache stats: Redis did not answer: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        client.close()
    if args.json:
        print(json.dumps(figures, indent=2))
        return EXIT_OK
    print(render(figures))
    return EXIT_OK


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def render(figures: dict[str, Any]) -> str:
    """The figures as a table per namespace, then the server; the overall hit rate last."""
    lines = [
        f"{'namespace':<12} {'hit rate':>8} {'L1 hits':>8} {'L2 hits':>8} {'waited':>7} {'misses':>7} "
        f"{'loads':>6} {'bypassed':>8} {'invalidations':>13}"
    ]
    hits = lookups = 0
    for name, n in figures["namespaces"].items():
        lines.append(
            f"{name:<12} {_rate(n['hit_rate']):>8} {n['hits_l1']:>8} {n['hits_l2']:>8} {n['waited']:>7} "
            f"{n['misses']:>7} {n['loads']:>6} {n['bypassed']:>8} {n['invalidations']:>13}"
        )
        served = n["hits_l1"] + n["hits_l2"] + n["waited"]
        hits += served
        lookups += served + n["misses"] + n["bypassed"]
    server = figures["server"]
    lines.append(
        f"server: {server['nodes']} primary node(s), {server['keys']} keys, "
        f"{server['used_memory'] / 1_048_576:.1f} MiB used, {server['evicted_keys']} evicted, "
        f"{server['slowlog_entries']} slow-log entries, keyspace hit rate {_rate(server['server_hit_rate'])}"
    )
    lines.append(f"read cache: hit rate {_rate(hits / lookups if lookups else None)} over {lookups} lookups")
    return "\n".join(lines)
