"""What the benchmarks share: summary statistics, the machine they ran on, a network-free environment."""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from typing import Any

# For subprocesses that must not reach AWS: fake credentials and region, no instance metadata lookups,
# proxies that point at a closed loopback port (anything that tries the network fails fast and locally).
OFFLINE_ENV: dict[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
    "AGNO_TELEMETRY": "false",
}


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by the nearest-rank method; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def summary(values: Sequence[float]) -> dict[str, float]:
    """min/max/mean/median/p95/p99/stddev of `values` (in their own unit)."""
    if not values:
        return {}
    return {
        "n": len(values),
        "min": float(min(values)),
        "mean": float(statistics.fmean(values)),
        "median": float(statistics.median(values)),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": float(max(values)),
        "stddev": float(statistics.pstdev(values)) if len(values) > 1 else 0.0,
    }


def histogram(values: Sequence[float], bins: int = 30) -> list[list[float]]:
    """[[bin start, count], ...] over equal-width bins, for a bar chart."""
    if not values:
        return []
    low, high = min(values), max(values)
    width = (high - low) / bins or 1.0
    counts = [0] * bins
    for value in values:
        counts[min(int((value - low) / width), bins - 1)] += 1
    return [[low + i * width, float(count)] for i, count in enumerate(counts)]


def machine() -> dict[str, Any]:
    """The machine the figures came from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_gib = None
    try:
        with open("/proc/meminfo") as info:
            memory_gib = round(int(info.readline().split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
    }


def offline_env(**extra: str) -> dict[str, str]:
    """This process's environment with OFFLINE_ENV (and `extra`) on top, for a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "REDIS_URL"))}
    env.update(OFFLINE_ENV)
    env.update(extra)
    return env


def fmt(value: float, digits: int = 1) -> str:
    """A figure for a headline: thousands separators, fixed decimals."""
    return f"{value:,.{digits}f}"
