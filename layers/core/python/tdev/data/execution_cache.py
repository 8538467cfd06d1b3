"""The read cache's copy of execution views (`GET /v1/executions/{id}`): its namespace, its key, and the one
call every writer of an execution's partition makes after writing (`execution_changed`)."""

from __future__ import annotations

from tdev import caching
from tdev.settings import get_settings

EXECUTION_CACHE = "executions"  # the read cache's namespace for execution views


def view_key(execution_id: str) -> str:
    return f"{execution_id}:view"


def execution_changed(execution_id: str) -> None:
    """Forget the cached view of `execution_id` (in Redis and every container's L1)."""
    if get_settings().redis_url:
        caching.named(EXECUTION_CACHE).invalidate(view_key(execution_id))
