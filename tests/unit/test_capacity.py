"""Capacity semaphores with leases on the real (cluster-mode) test Redis: a burst never takes more slots
than the limit, a crashed holder's slot comes back when its lease ends, a retried step keeps its own slot,
and a task over capacity raises the workflow's retryable CapacityExhausted."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tdev import cache
from tdev.errors import CapacityExhausted
from tdev.models import AgentSpec, Priority
from tdev.orchestration import capacity
from tdev.orchestration.admission import Waiting, admission_order, effective_priority
from tdev.orchestration.capacity import Semaphore, agent_key, model_key


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sem(redis_url: str) -> Semaphore:
    return Semaphore(cache.redis_client())


def test_a_burst_of_concurrent_acquirers_never_exceeds_the_limit(redis_url: str) -> None:
    # Given 40 workers, each with its own client, trying for one of 5 slots at the same instant
    limit, workers = 5, 40
    start, attempted = threading.Barrier(workers), threading.Barrier(workers)
    granted: list[str] = []
    refused: list[int] = []
    peak: list[int] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        sem = Semaphore(cache.connect(redis_url, decode_responses=True))
        start.wait()
        try:
            lease = sem.acquire(agent_key("BurstAgent"), limit, f"e#{i}", 60)
        except CapacityExhausted as exc:
            with lock:
                refused.append(exc.retry_after)
            attempted.wait()
            return
        with lock:
            granted.append(lease.holder)
            peak.append(sem.in_flight(agent_key("BurstAgent")))
        attempted.wait()  # nobody releases before everyone has tried
        sem.release(lease)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    # Then exactly the limit got a slot, the rest were told to come back, and the count never went over
    assert len(granted) == limit and len(refused) == workers - limit
    assert max(peak) <= limit
    assert all(0 < r <= 61 for r in refused)
    assert Semaphore(cache.redis_client()).in_flight(agent_key("BurstAgent")) == 0  # all released


def test_a_crashed_holders_slot_comes_back_when_its_lease_ends(redis_url: str) -> None:
    clock = Clock()
    sem = Semaphore(cache.redis_client(), clock=clock)
    key = agent_key("CrashAgent")
    sem.acquire(key, 1, "crashed-run", 30)  # never released: its container died

    with pytest.raises(CapacityExhausted) as full:
        sem.acquire(key, 1, "next-run", 30)
    assert full.value.retry_after == 30 and full.value.code == "CapacityExhausted"

    clock.now += 29
    with pytest.raises(CapacityExhausted):
        sem.acquire(key, 1, "next-run", 30)
    clock.now += 2  # the crashed holder's lease has ended
    lease = sem.acquire(key, 1, "next-run", 30)
    assert sem.in_flight(key) == 1 and lease.holder == "next-run"


def test_a_retried_step_renews_its_own_slot_instead_of_taking_another(sem: Semaphore) -> None:
    key = agent_key("RetryAgent")
    sem.acquire(key, 2, "e-1#implement", 60)
    sem.acquire(key, 2, "e-1#implement", 60)  # the same task again (a redelivery)
    assert sem.in_flight(key) == 1
    sem.acquire(key, 2, "e-2#implement", 60)
    with pytest.raises(CapacityExhausted):
        sem.acquire(key, 2, "e-3#implement", 60)


def test_a_full_model_gives_the_agent_slot_back(redis_url: str, sem: Semaphore, monkeypatch: Any) -> None:
    monkeypatch.setenv("TDEV_MODEL_MAX_CONCURRENT", "1")
    from tdev.settings import get_settings

    get_settings.cache_clear()
    spec = AgentSpec(name="ModelBoundAgent", role="r", description="d", capabilities=["c"], max_concurrent=5)
    with capacity.running(spec, "offline:tdev-offline-1", holder="e-1#a", sem=sem):
        assert sem.in_flight(agent_key(spec.name)) == 1
        assert sem.in_flight(model_key("offline:tdev-offline-1")) == 1
        with (
            pytest.raises(CapacityExhausted, match="model:offline:tdev-offline-1"),
            capacity.running(spec, "offline:tdev-offline-1", holder="e-2#a", sem=sem),
        ):
            pytest.fail("ran over the model's capacity")
        assert sem.in_flight(agent_key(spec.name)) == 1  # the refused run holds nothing
    assert (
        sem.in_flight(agent_key(spec.name)) == 0 and sem.in_flight(model_key("offline:tdev-offline-1")) == 0
    )
    get_settings.cache_clear()


def test_every_routing_decision_is_a_metric_with_its_outcome_and_latency(
    redis_url: str, sem: Semaphore, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from redis.exceptions import ConnectionError as RedisConnectionError

    spec = AgentSpec(name="MeteredAgent", role="r", description="d", capabilities=["c"], max_concurrent=1)
    capsys.readouterr()
    with (
        capacity.running(spec, "offline:tdev-offline-1", holder="e-1#a", sem=sem),
        pytest.raises(CapacityExhausted),
        capacity.running(spec, "offline:tdev-offline-1", holder="e-2#a", sem=sem),
    ):
        pytest.fail("ran over the agent's capacity")
    failing = Semaphore(cache.connect("redis://127.0.0.1:1/0"))  # Redis unreachable: an error, counted
    with (
        pytest.raises(RedisConnectionError),
        capacity.running(spec, "offline:tdev-offline-1", holder="e-3#a", sem=failing),
    ):
        pytest.fail("ran without a slot")
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    outcomes = [r["outcome"] for r in records if "RoutingDecisions" in r]
    latencies = [r["RoutingLatency"] for r in records if "RoutingLatency" in r]
    assert outcomes == ["admitted", "waiting", "error"] and len(latencies) == 3
    # the admitted task's wait (none) and the queue after each decision: empty, then the refused task
    assert [r["AdmissionWait"] for r in records if "AdmissionWait" in r] in ([0.0], [[0.0]])
    assert [r["AdmissionQueueDepth"] for r in records if "AdmissionQueueDepth" in r] in ([0, 1], [[0], [1]])
    # RoutingErrors: 0 per decision that did not fail, 1 per failed one; its Average is the error rate
    assert [r["RoutingErrors"] for r in records if "RoutingErrors" in r] in ([0, 0, 1], [[0], [0], [1]])
    assert all(r["service"] == "routing" for r in records)


# ------------------------------------------------------------------------------ admission order
def test_a_freed_slot_goes_to_the_higher_priority_waiter_not_the_first_to_ask(redis_url: str) -> None:
    clock = Clock()
    sem = Semaphore(cache.redis_client(), clock=clock)
    key = agent_key("OrderAgent")
    running = sem.acquire(key, 1, "e-0#a", 600)
    # Both wait: LOW since t=0, HIGH since t=10
    with pytest.raises(CapacityExhausted):
        sem.acquire(key, 1, "low#a", 600, priority=Priority.LOW)
    clock.now += 10
    with pytest.raises(CapacityExhausted):
        sem.acquire(key, 1, "high#a", 600, priority=Priority.HIGH)
    assert sem.waiting(key) == 2

    sem.release(running)
    clock.now += 1
    # LOW asks first after the release, but HIGH ranks ahead of it: LOW keeps waiting
    with pytest.raises(CapacityExhausted, match="1 waiting task"):
        sem.acquire(key, 1, "low#a", 600, priority=Priority.LOW)
    admitted = sem.acquire(key, 1, "high#a", 600, priority=Priority.HIGH)
    assert admitted.holder == "high#a"
    assert sem.waiting(key) == 1
    # what the admission metrics report: HIGH waited from its first refusal (t=10) to now (t=11), LOW is left
    assert (admitted.waited_seconds, admitted.still_waiting) == (pytest.approx(1.0), 1)
    assert (running.waited_seconds, running.still_waiting) == (0.0, 0)  # a free slot at once


def test_a_deadline_within_300_s_jumps_two_levels(redis_url: str) -> None:
    clock = Clock()
    sem = Semaphore(cache.redis_client(), clock=clock)
    for due_in, winner in ((100, "normal#a"), (400, "high#a")):
        key = agent_key(f"Deadline{due_in}Agent")
        running = sem.acquire(key, 1, "e-0#a", 600)
        with pytest.raises(CapacityExhausted):  # HIGH (2) waits first
            sem.acquire(key, 1, "high#a", 600, priority=Priority.HIGH)
        clock.now += 1
        with pytest.raises(CapacityExhausted):  # NORMAL (3), minus 2 when due within 300 s
            sem.acquire(key, 1, "normal#a", 600, priority=Priority.NORMAL, deadline=clock.now + due_in)
        sem.release(running)
        clock.now += 1
        # Whoever asks first, the free slot goes to the one ranked first
        loser = "high#a" if winner == "normal#a" else "normal#a"
        with pytest.raises(CapacityExhausted):
            sem.acquire(key, 1, loser, 600, priority=Priority[loser.split("#")[0].upper()], deadline=None)
        deadline = clock.now + due_in - 2 if winner == "normal#a" else None
        granted = sem.acquire(
            key, 1, winner, 600, priority=Priority[winner.split("#")[0].upper()], deadline=deadline
        )
        assert granted.holder == winner, due_in


def test_a_waiter_that_stopped_asking_is_skipped(redis_url: str) -> None:
    clock = Clock()
    sem = Semaphore(cache.redis_client(), clock=clock)
    key = agent_key("CancelAgent")
    running = sem.acquire(key, 1, "e-0#a", 600)
    with pytest.raises(CapacityExhausted):
        sem.acquire(
            key, 1, "cancelled#a", 600, priority=Priority.CRITICAL
        )  # then cancelled: never asks again
    sem.release(running)
    clock.now += 5
    with pytest.raises(CapacityExhausted):  # still within its grace: the CRITICAL waiter is ahead
        sem.acquire(key, 1, "normal#a", 600)
    clock.now += capacity.STALE_WAITER_SECONDS
    assert sem.acquire(key, 1, "normal#a", 600).holder == "normal#a"
    assert sem.waiting(key) == 0


def test_ageing_lets_a_low_request_through_a_stream_of_normal_ones() -> None:
    """Starvation: one slot, a fresh NORMAL request every 20 s (each holding the slot 20 s), a LOW one
    waiting from the start. Without ageing it would never run; with it, it runs once it has waited 300 s."""
    now, low = 0.0, Waiting("low", Priority.LOW, enqueued_at=0.0)
    queue = [low]
    admitted_at: float | None = None
    for tick in range(60):
        now = tick * 20.0
        queue.append(Waiting(f"normal-{tick}", Priority.NORMAL, enqueued_at=now))
        first = admission_order(queue, now)[0]
        queue.remove(first)
        if first is low:
            admitted_at = now
            break
    assert admitted_at is not None and 300 <= admitted_at <= 320
    assert effective_priority(Priority.LOW, 300, None) == effective_priority(Priority.NORMAL, 0, None)
    assert effective_priority(Priority.LOW, 10_000, None) == 3.0  # the bonus is capped at one level
    assert effective_priority(Priority.LOW, 0, 299) == 2.0 and effective_priority(Priority.LOW, 0, 301) == 4.0
