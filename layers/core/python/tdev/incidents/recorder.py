"""Recording an error where it happens: cheap, and never an error of its own.

The failure paths call `record_exception` (the API's unexpected errors, `run_agent` through `recorded`) or
`record_failure` (the workflow's failure recorders, with the Catch's `{Error, Cause}`). Each occurrence is
two unconditional updates (tdev.data.incidents); their answers say whether the group is new, regressed or
spiking, and only then is there a transaction announcing it through the outbox. Any failure to record is
logged and swallowed: the caller's own outcome never depends on the analytics.

Spike: the window's count reaches SPIKE_FLOOR and SPIKE_FACTOR times the group's baseline, its mean count
per window over the windows before this one since it was first seen (no history read: the group's count,
first_seen and the window's count are what the updates return). Announced once per window.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tdev.incidents.signature import Fingerprint, frames_in
from tdev.observability import logger

# The contract with the alerting (tdev.alerts): source, detail-types, detail.
EVENT_SOURCE = "t-developer.errors"
SIGNATURE_NEW = "ErrorSignatureNew"
SPIKE_DETECTED = "ErrorSpikeDetected"
WINDOW_SECONDS = 300
SPIKE_FACTOR = 3.0
SPIKE_FLOOR = 10

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Recorded:
    """What one occurrence did to its group (tests and logs read it)."""

    signature: str
    count: int
    window_count: int
    new: bool = False
    regression: bool = False
    spike: bool = False
    baseline: float = 0.0


def _repository() -> Any:
    from tdev import container

    return container.errors()


def record_exception(exc: BaseException, *, source: str, now: float | None = None) -> Recorded | None:
    """Record a raised exception (its live traceback gives the frame); None if recording failed."""
    try:
        fingerprint = Fingerprint.of_exception(exc)
    except Exception:
        logger.warning("error not recorded: no fingerprint", exc_info=True)
        return None
    return record(fingerprint, source=source, now=now)


def record_failure(error: dict[str, Any] | None, *, source: str, now: float | None = None) -> Recorded | None:
    """Record a Step Functions failure `{Error, Cause}` (frames from the Cause's stackTrace)."""
    try:
        fingerprint = Fingerprint.of_failure(error)
    except Exception:
        logger.warning("error not recorded: no fingerprint", exc_info=True)
        return None
    return record(fingerprint, source=source, now=now)


OUTCOMES = ("BudgetExceeded", "ExecutionCancelled", "CapacityExhausted")


def record_task_failure(error: dict[str, Any] | None) -> Recorded | None:
    """The task failure recorder's part: what `run_agent` could not record itself. An error raised through
    its handler (a `lambda_handler` frame in the Cause's stackTrace) was recorded there, attempt by attempt,
    unless it was an outcome the handler leaves alone (a capacity wait that ran out of retries). Timeouts,
    crashes and platform errors (`States.*`, `Lambda.*`) have no such frame and are recorded here."""
    try:
        fingerprint = Fingerprint.of_failure(error)
        through_handler = any(frame == "lambda_handler" for _, frame in frames_in(_stack_trace(error)))
    except Exception:
        logger.warning("error not recorded: no fingerprint", exc_info=True)
        return None
    if through_handler and fingerprint.type not in OUTCOMES:
        return None
    return record(fingerprint, source="record_task_failure")


def _stack_trace(error: dict[str, Any] | None) -> list[str]:
    cause = (error or {}).get("Cause")
    if not isinstance(cause, str) or not cause.lstrip().startswith("{"):
        return []
    try:
        parsed = json.loads(cause)
    except json.JSONDecodeError:
        return []
    trace = parsed.get("stackTrace") if isinstance(parsed, dict) else None
    return [str(line) for line in trace] if isinstance(trace, list) else []


def record(fingerprint: Fingerprint, *, source: str, now: float | None = None) -> Recorded | None:
    at = time.time() if now is None else now
    try:
        return _record(fingerprint, source, at)
    except Exception:
        logger.warning(
            "error not recorded", extra={"signature": fingerprint.signature, "source": source}, exc_info=True
        )
        return None


def _record(fingerprint: Fingerprint, source: str, now: float) -> Recorded:
    repository = _repository()
    occurrence = repository.occur(
        signature=fingerprint.signature,
        error_type=fingerprint.type,
        message=fingerprint.message,
        frame=fingerprint.frame,
        sample=fingerprint.sample,
        source=source,
        now=now,
        window_seconds=WINDOW_SECONDS,
    )
    group = occurrence.group
    regression = False
    if occurrence.resolved:  # a resolved signature seen again: reopened, a new episode
        reopened = repository.reopen(fingerprint.signature, now)
        regression = reopened is not None
        group = reopened or group
    count = int(group.get("count", 1))
    baseline = _baseline(count, occurrence.window_count, int(group.get("first_seen_epoch", now)), occurrence)
    spike = occurrence.window_count >= SPIKE_FLOOR and occurrence.window_count >= SPIKE_FACTOR * baseline
    detail = {
        "signature": fingerprint.signature,
        "type": fingerprint.type,
        "message": fingerprint.message,
        "count": count,
        "window_seconds": WINDOW_SECONDS,
        "first_seen": group.get("first_seen"),
        "last_seen": group.get("last_seen"),
    }
    new = False
    if occurrence.first or regression:
        episode = str(group.get("episode_started_at"))
        new = repository.announce(
            fingerprint.signature,
            flag="announced_episode",
            fact=episode,
            flag_values={},
            source=EVENT_SOURCE,
            detail_type=SIGNATURE_NEW,
            detail={**detail, "severity": "medium", "regression": regression},
            now=now,
        )
    spiked = False
    if spike and group.get("spike_window") != occurrence.window_start:
        spiked = repository.announce(
            fingerprint.signature,
            flag="spike_window",
            fact=occurrence.window_start,
            flag_values={
                "last_spike": {
                    "window_start": occurrence.window_start,
                    "count": occurrence.window_count,
                    "baseline": round(baseline, 3),
                    "detected_at": detail["last_seen"],
                }
            },
            source=EVENT_SOURCE,
            detail_type=SPIKE_DETECTED,
            detail={**detail, "count": occurrence.window_count, "total": count, "severity": "high"},
            now=now,
        )
    if new or spiked:
        logger.warning(
            "error signature announced",
            extra={"signature": fingerprint.signature, "new": new, "spike": spiked, "type": fingerprint.type},
        )
    return Recorded(
        fingerprint.signature, count, occurrence.window_count, new, regression, spiked, round(baseline, 3)
    )


def _baseline(count: int, window_count: int, first_seen_epoch: int, occurrence: Any) -> float:
    """Mean count per window before the current one, since the group was first seen (0 for a new group)."""
    first_window = first_seen_epoch // WINDOW_SECONDS * WINDOW_SECONDS
    earlier_windows = (occurrence.window_start - first_window) // WINDOW_SECONDS
    if earlier_windows <= 0:
        return 0.0
    return max(0, count - window_count) / earlier_windows


def recorded(source: str) -> Callable[[F], F]:
    """A handler decorator: an exception escaping the handler is recorded (under `source`), then re-raised
    unchanged. Exceptions that are outcomes, not errors (a budget spent, a cancel, a capacity wait the
    workflow retries durably), are not recorded."""
    from tdev.errors import BudgetExceeded, CapacityExhausted, ExecutionCancelled

    outcomes = (BudgetExceeded, ExecutionCancelled, CapacityExhausted)

    def decorate(handler: F) -> F:
        @functools.wraps(handler)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            except outcomes:
                raise
            except Exception as exc:
                record_exception(exc, source=source)
                raise

        return wrapper  # type: ignore[return-value]

    return decorate
