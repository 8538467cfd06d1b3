"""Admission order (spec 1.3): who gets a free slot first when agents or models are at capacity.

A waiting task's effective priority is its request's level (CRITICAL=1, HIGH=2, NORMAL=3, LOW=4) minus
an ageing bonus of min(wait / 300 s, 1), minus 2 when the request's deadline is less than 300 s away;
lower goes first, ties by arrival. The capacity semaphores (tdev.orchestration.capacity) apply exactly
this order in Redis, in Lua (`EFFECTIVE_PRIORITY_LUA` below is the same function); this module is its
Python form for validation, the tests and `tdev bench routing`.

What ageing can and cannot do, by the spec's numbers: the bonus is capped at one level, so a LOW task
that has waited 300 s ranks with a fresh NORMAL one and is admitted before it (it arrived earlier), but
under a sustained stream of fresh HIGH or CRITICAL work LOW still waits: ageing bounds starvation within
neighbouring levels, not across all four.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from tdev.errors import ValidationError
from tdev.models import Priority

LEVELS: dict[Priority, int] = {Priority.CRITICAL: 1, Priority.HIGH: 2, Priority.NORMAL: 3, Priority.LOW: 4}
AGEING_SECONDS = 300.0  # a wait this long is worth one level (at most)
SLA_WINDOW_SECONDS = 300.0  # a deadline closer than this ...
SLA_BOOST = 2.0  # ... lifts the task two levels
MAX_DEADLINE_AHEAD = timedelta(days=7)

# The same function in the capacity script: rank, enqueued, deadline (-1: none), now.
EFFECTIVE_PRIORITY_LUA = f"""
local function effective(rank, enqueued, deadline, now)
  local score = rank - math.min((now - enqueued) / {AGEING_SECONDS}, 1)
  if deadline >= 0 and deadline - now < {SLA_WINDOW_SECONDS} then score = score - {SLA_BOOST} end
  return score
end
"""


def effective_priority(priority: Priority, waited_seconds: float, deadline_in_seconds: float | None) -> float:
    """Lower is admitted first."""
    score = LEVELS[priority] - min(max(waited_seconds, 0.0) / AGEING_SECONDS, 1.0)
    if deadline_in_seconds is not None and deadline_in_seconds < SLA_WINDOW_SECONDS:
        score -= SLA_BOOST
    return score


@dataclass(frozen=True)
class Waiting:
    holder: str
    priority: Priority
    enqueued_at: float
    deadline: float | None = None  # epoch seconds


def admission_order(waiting: Iterable[Waiting], now: float) -> list[Waiting]:
    """The waiting tasks in the order free slots go to them (ties: who arrived first, then the holder)."""
    return sorted(
        waiting,
        key=lambda w: (
            effective_priority(
                w.priority, now - w.enqueued_at, None if w.deadline is None else w.deadline - now
            ),
            w.enqueued_at,
            w.holder,
        ),
    )


def check_deadline(deadline: datetime | None, now: datetime) -> datetime | None:
    """A request's deadline: in the future and at most 7 days away (400 naming `deadline` otherwise)."""
    if deadline is None:
        return None
    if deadline <= now:
        raise ValidationError("deadline: must be in the future", field="deadline")
    if deadline - now > MAX_DEADLINE_AHEAD:
        raise ValidationError("deadline: at most 7 days away", field="deadline")
    return deadline
