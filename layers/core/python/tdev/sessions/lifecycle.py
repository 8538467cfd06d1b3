"""Session statuses and the only transitions allowed between them (anything else is a 409)."""

from __future__ import annotations

from tdev.errors import ConflictError
from tdev.models import SessionStatus  # defined with the other shared models: the budget ledger reads it too

MAX_DURATION_SECONDS = 28_800  # 8 hours
DEFAULT_IDLE_TIMEOUT_SECONDS = 1_800
HEARTBEAT_INTERVAL_SECONDS = 30
CHECKPOINT_INTERVAL_SECONDS = 300


TRANSITIONS: dict[SessionStatus, frozenset[SessionStatus]] = {
    SessionStatus.ACTIVE: frozenset(
        {SessionStatus.PAUSED, SessionStatus.RESUMING, SessionStatus.TERMINATING}
    ),
    SessionStatus.PAUSED: frozenset({SessionStatus.RESUMING, SessionStatus.TERMINATING}),
    SessionStatus.RESUMING: frozenset(
        {SessionStatus.ACTIVE, SessionStatus.RESUMING, SessionStatus.TERMINATING, SessionStatus.FAILED}
    ),
    SessionStatus.TERMINATING: frozenset({SessionStatus.COMPLETED}),
    SessionStatus.COMPLETED: frozenset(),
    SessionStatus.FAILED: frozenset(),
}

# Statuses that hold a concurrency slot and that the sweeper watches.
OPEN_STATUSES: tuple[SessionStatus, ...] = (
    SessionStatus.ACTIVE,
    SessionStatus.PAUSED,
    SessionStatus.RESUMING,
    SessionStatus.TERMINATING,
)


def check_transition(current: SessionStatus, target: SessionStatus) -> None:
    """Raise ConflictError (HTTP 409) unless `current -> target` is a legal transition."""
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (final status)"
        raise ConflictError(
            f"a session cannot go from {current} to {target}; allowed from {current}: {allowed}",
            field="status",
        )
