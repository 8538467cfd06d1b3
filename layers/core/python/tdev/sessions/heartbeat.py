"""Heartbeats: a Redis key per session whose TTL lapses when the worker holding the session stops.

The worker beats every 30 s; the key lives for three intervals, so one late beat is not a crash. The
sweeper (a scheduled Lambda), not an in-process timer, notices a lapsed key and recovers the session.
A worker that ends cleanly (an API request, a CLI command) detaches instead: the key then lasts for the
session's idle timeout, so a session nobody is using is closed as idle rather than "recovered".
"""

from __future__ import annotations

import os
import time
from typing import Any

from tdev.sessions.lifecycle import HEARTBEAT_INTERVAL_SECONDS

KEY = "tdev:session:heartbeat:%s"


class Heartbeats:
    def __init__(self, redis: Any, *, interval_seconds: int | None = None) -> None:
        if interval_seconds is None:  # TDEV_HEARTBEAT_SECONDS: shorter beats for local crash drills
            interval_seconds = int(os.environ.get("TDEV_HEARTBEAT_SECONDS", HEARTBEAT_INTERVAL_SECONDS))
        self.redis = redis
        self.interval_seconds = interval_seconds
        self.ttl_seconds = 3 * interval_seconds

    def beat(self, session_id: str, worker: str = "api") -> None:
        self.redis.set(KEY % session_id, f"{time.time():.3f} {worker}", ex=self.ttl_seconds)

    def detach(self, session_id: str, ttl_seconds: int) -> None:
        """A worker finished cleanly: no worker holds the session now, and that is not a crash.

        The key then lives for the idle timeout, after which the sweeper closes the session as idle.
        """
        self.redis.set(KEY % session_id, f"{time.time():.3f} detached", ex=max(ttl_seconds, self.ttl_seconds))

    def alive(self, session_id: str) -> bool:
        return bool(self.redis.exists(KEY % session_id))

    def last(self, session_id: str) -> float | None:
        value = self.redis.get(KEY % session_id)
        return float(value.split()[0]) if value else None

    def stop(self, session_id: str) -> None:
        self.redis.delete(KEY % session_id)
