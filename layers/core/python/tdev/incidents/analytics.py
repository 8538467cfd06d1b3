"""What operators read and do with error groups: `GET /v1/errors`, `GET /v1/errors/{signature}`,
`POST /v1/errors/{signature}/resolve`, and `tdev errors list|show|resolve` through them."""

from __future__ import annotations

import time
from typing import Any

from tdev import container
from tdev.data.incidents import iso
from tdev.incidents.recorder import SPIKE_FACTOR, SPIKE_FLOOR, WINDOW_SECONDS
from tdev.observability import logger

HISTORY_WINDOWS = 288  # a day of 5-minute windows in a group's counts over time


def _with_spike_state(group: dict[str, Any], now: float) -> dict[str, Any]:
    """`spiking`: the group's last spike is in the current or the previous window."""
    current = int(now // WINDOW_SECONDS) * WINDOW_SECONDS
    spike_window = group.get("spike_window")
    spiking = spike_window is not None and int(spike_window) >= current - WINDOW_SECONDS
    return {**group, "spiking": spiking}


def list_errors(
    *, status: str | None = None, since: str | None = None, limit: int = 50, cursor: str | None = None
) -> dict[str, Any]:
    """Groups, most recently seen first; `status` open|resolved, `since` an ISO time (last_seen ≥)."""
    now = time.time()
    page = container.errors().page(status=status, since=since, limit=limit, cursor=cursor)
    return {
        "errors": [_with_spike_state(g, now) for g in page.items],
        "next_cursor": page.cursor,
        "window_seconds": WINDOW_SECONDS,
    }


def show_error(signature: str, *, windows: int = HISTORY_WINDOWS) -> dict[str, Any]:
    """One group with its counts over time (the last `windows` windows that had any), spike thresholds,
    MTTR and resolutions."""
    now = time.time()
    repository = container.errors()
    group = repository.get(signature)
    since = int(now // WINDOW_SECONDS) * WINDOW_SECONDS - windows * WINDOW_SECONDS
    buckets = [{**b, "at": iso(b["window_start"])} for b in repository.buckets(signature, since)]
    return {
        **_with_spike_state(group, now),
        "window_seconds": WINDOW_SECONDS,
        "spike_rule": {"factor": SPIKE_FACTOR, "floor": SPIKE_FLOOR},
        "counts": buckets,
        "resolutions": repository.resolutions(signature),
    }


def resolve_error(signature: str, *, by: str, reason: str) -> dict[str, Any]:
    """Open -> resolved (409 when it is not open), with the MTTR of the episode; audited."""
    group = container.errors().resolve(signature, by=by, reason=reason, now=time.time())
    logger.info(
        "error signature resolved",
        extra={
            "signature": signature,
            "resolved_by": by,
            "mttr_seconds": group.get("mttr_seconds"),
            "reason": reason,
        },
    )
    return group
