"""Concurrent-session limits shared by every instance: one atomic Lua script on the shared Redis.

Both sets live under one hash tag (`{tdev:sessions}`) so the script touches a single slot, as Redis
Cluster requires. Acquiring is idempotent (a set of session ids, not a counter that a retry could
double-count); releasing removes the id from both sets.
"""

from __future__ import annotations

from typing import Any

from tdev.errors import TDevError

GLOBAL_KEY = "{tdev:sessions}:open"
USER_KEY = "{tdev:sessions}:user:%s"

_ACQUIRE = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return -2 end
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[3]) then return -1 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""


class SessionLimitError(TDevError):
    status_code = 429
    code = "SessionLimitReached"


class SessionLimits:
    def __init__(self, redis: Any, *, per_user: int = 5, global_max: int = 100) -> None:
        self.redis, self.per_user, self.global_max = redis, per_user, global_max
        self._acquire = redis.register_script(_ACQUIRE)

    def acquire(self, user_id: str, session_id: str) -> None:
        result = int(
            self._acquire(
                keys=[GLOBAL_KEY, USER_KEY % user_id], args=[session_id, self.global_max, self.per_user]
            )
        )
        if result == -2:
            raise SessionLimitError(
                f"the platform already runs its maximum of {self.global_max} concurrent sessions"
            )
        if result == -1:
            raise SessionLimitError(
                f"user {user_id} already has the maximum of {self.per_user} concurrent sessions open",
                field="user_id",
            )

    def release(self, user_id: str, session_id: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.srem(GLOBAL_KEY, session_id)
        pipe.srem(USER_KEY % user_id, session_id)
        pipe.execute()

    def open_count(self, user_id: str | None = None) -> int:
        return int(self.redis.scard(GLOBAL_KEY if user_id is None else USER_KEY % user_id))
