"""Heartbeats: a Redis key per session whose TTL lapses when the worker holding the session stops.

The worker beats every 30 s; the key lives for three intervals, so one late beat is not a crash. The
sweeper (a scheduled Lambda), not an in-process timer, notices a lapsed key and recovers the session.
"""

from __future__ import annotations

import time
from typing import Any

from tdev.sessions.lifecycle import HEARTBEAT_INTERVAL_SECONDS

KEY = "tdev:session:heartbeat:%s"


class Heartbeats:
    def __init__(self, redis: Any, *, interval_seconds: int = HEARTBEAT_INTERVAL_SECONDS) -> None:
        self.redis = redis
        self.interval_seconds = interval_seconds
        self.ttl_seconds = 3 * interval_seconds

    def beat(self, session_id: str, worker: str = "api") -> None:
        self.redis.set(KEY % session_id, f"{time.time():.3f} {worker}", ex=self.ttl_seconds)

    def alive(self, session_id: str) -> bool:
        return bool(self.redis.exists(KEY % session_id))

    def last(self, session_id: str) -> float | None:
        value = self.redis.get(KEY % session_id)
        return float(value.split()[0]) if value else None

    def stop(self, session_id: str) -> None:
        self.redis.delete(KEY % session_id)
