"""Session lifecycle: legal and illegal transitions, and limits enforced across instances."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tdev.cache import connect
from tdev.errors import ConflictError
from tdev.sessions.lifecycle import TRANSITIONS, SessionStatus, check_transition
from tdev.sessions.limits import SessionLimitError, SessionLimits

LEGAL = [(a, b) for a, targets in TRANSITIONS.items() for b in sorted(targets)]  # stable order for xdist
ILLEGAL = [(a, b) for a in SessionStatus for b in SessionStatus if b not in TRANSITIONS[a]]


@pytest.mark.parametrize(("current", "target"), LEGAL)
def test_legal_transitions_pass(current: SessionStatus, target: SessionStatus) -> None:
    check_transition(current, target)


@pytest.mark.parametrize(("current", "target"), ILLEGAL)
def test_illegal_transitions_are_conflicts(current: SessionStatus, target: SessionStatus) -> None:
    with pytest.raises(ConflictError) as error:
        check_transition(current, target)
    assert error.value.status_code == 409
    assert f"from {current} to {target}" in error.value.message


def test_final_statuses_allow_nothing() -> None:
    assert not TRANSITIONS[SessionStatus.COMPLETED]
    assert not TRANSITIONS[SessionStatus.FAILED]
    assert SessionStatus.ACTIVE not in TRANSITIONS[SessionStatus.TERMINATING]


def test_repository_transitions_are_conditional(runtime: Any) -> None:
    from tdev.sessions.repository import SessionRepository

    repo = SessionRepository("tdev-local")
    session = repo.create("u1", "p", ["CodeAgent"])
    repo.transition(session.session_id, SessionStatus.PAUSED)
    with pytest.raises(ConflictError):
        repo.transition(session.session_id, SessionStatus.COMPLETED)
    # Another instance moved it first: the status read no longer holds, the update is refused.
    stale = repo.get(session.session_id)
    repo.transition(session.session_id, SessionStatus.RESUMING)
    import tdev.sessions.repository as module

    original = module.SessionRepository.get
    module.SessionRepository.get = lambda self, sid, **kw: stale  # type: ignore[method-assign]
    try:
        with pytest.raises(ConflictError, match="changed while"):
            repo.transition(session.session_id, SessionStatus.TERMINATING)
    finally:
        module.SessionRepository.get = original  # type: ignore[method-assign]
    assert repo.get(session.session_id).status is SessionStatus.RESUMING


def _parallel(count: int, attempt: Any) -> list[Any]:
    results: list[Any] = [None] * count
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = attempt(index)
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_limits_hold_under_parallel_acquisition_from_separate_instances(redis_url: str) -> None:

    # Each "instance" has its own client and script registration, as separate Lambda containers would.
    def attempt(index: int) -> str:
        limits = SessionLimits(connect(redis_url), per_user=3, global_max=7)
        limits.acquire(f"user-{index % 4}", f"ses-{index:04d}")
        return "ok"

    results = _parallel(40, attempt)
    accepted = [r for r in results if r == "ok"]
    refused = [r for r in results if isinstance(r, SessionLimitError)]
    assert len(accepted) == 7 and len(refused) == 33
    limits = SessionLimits(connect(redis_url), per_user=3, global_max=7)
    assert limits.open_count() == 7
    assert all(limits.open_count(f"user-{u}") <= 3 for u in range(4))


def test_per_user_limit_and_release(redis_url: str) -> None:

    limits = SessionLimits(connect(redis_url, decode_responses=True), per_user=2, global_max=10)
    limits.acquire("ann", "ses-1")
    limits.acquire("ann", "ses-1")  # idempotent: a retried open does not take a second slot
    limits.acquire("ann", "ses-2")
    with pytest.raises(SessionLimitError, match="ann already has the maximum of 2") as error:
        limits.acquire("ann", "ses-3")
    assert error.value.status_code == 429
    limits.acquire("ben", "ses-4")
    limits.release("ann", "ses-1")
    limits.acquire("ann", "ses-3")
    assert limits.open_count("ann") == 2 and limits.open_count() == 3


def test_session_service_limit_under_parallel_opens(runtime: Any) -> None:
    """Parallel POST /v1/sessions by one user: exactly the per-user maximum (5) get in, the rest are 429."""
    results = _parallel(8, lambda i: runtime.api("POST", "/v1/sessions", {"agents": ["CodeAgent"]})[0])
    assert sorted(results) == [201] * 5 + [429] * 3
