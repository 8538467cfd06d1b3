"""Circuit breakers, rate-limit counters and call history on a real redis-server, shared by processes."""

from __future__ import annotations

import multiprocessing
import threading

import pytest
import redis

from tdev.cache import connect
from tdev.llm.breaker import BreakerState, CircuitBreakers
from tdev.llm.limits import History, RateLimits

MODEL = "bedrock:amazon.nova-pro-v1:0"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return connect(redis_url, decode_responses=True)


def breakers(r: redis.Redis, clock: Clock, **options: float) -> CircuitBreakers:
    return CircuitBreakers(r, reset_timeout=30, probe_ttl=60, clock=clock, **options)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- breaker
def test_the_breaker_opens_after_five_consecutive_failures(r: redis.Redis) -> None:
    clock = Clock()
    b = breakers(r, clock)
    states = [b.record_failure(MODEL) for _ in range(5)]

    assert states == [BreakerState.CLOSED] * 4 + [BreakerState.OPEN]
    assert b.acquire(MODEL).allowed is False
    assert b.state(MODEL) is BreakerState.OPEN


def test_a_success_resets_the_consecutive_failure_count(r: redis.Redis) -> None:
    b = breakers(r, Clock())
    for _ in range(4):
        b.record_failure(MODEL)
    b.record_success(MODEL)
    for _ in range(4):
        assert b.record_failure(MODEL) is BreakerState.CLOSED
    assert b.acquire(MODEL).allowed


def test_half_open_after_the_timeout_then_closed_after_three_successful_probes(r: redis.Redis) -> None:
    clock = Clock()
    b = breakers(r, clock)
    for _ in range(5):
        b.record_failure(MODEL)
    clock.now += 29.9
    assert not b.acquire(MODEL).allowed  # still open
    clock.now += 0.2
    for expected in (BreakerState.HALF_OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED):
        admission = b.acquire(MODEL)
        assert admission.allowed and admission.state is BreakerState.HALF_OPEN
        assert not b.acquire(MODEL).allowed  # one probe at a time
        assert b.record_success(MODEL) is expected
    assert b.acquire(MODEL) == b.acquire(MODEL)  # closed: everyone passes
    assert b.acquire(MODEL).allowed and b.state(MODEL) is BreakerState.CLOSED


def test_a_failed_probe_reopens_the_breaker_for_another_timeout(r: redis.Redis) -> None:
    clock = Clock()
    b = breakers(r, clock)
    for _ in range(5):
        b.record_failure(MODEL)
    clock.now += 31
    assert b.acquire(MODEL).allowed
    assert b.record_failure(MODEL) is BreakerState.OPEN
    clock.now += 10
    assert not b.acquire(MODEL).allowed
    clock.now += 21
    assert b.acquire(MODEL).allowed


def test_a_probe_that_never_reports_back_expires(r: redis.Redis) -> None:
    clock = Clock()
    b = breakers(r, clock)
    for _ in range(5):
        b.record_failure(MODEL)
    clock.now += 31
    assert b.acquire(MODEL).allowed  # this probe's Lambda dies
    assert not b.acquire(MODEL).allowed
    clock.now += 61
    assert b.acquire(MODEL).allowed


def test_breakers_are_per_model(r: redis.Redis) -> None:
    b = breakers(r, Clock())
    for _ in range(5):
        b.record_failure(MODEL)
    assert b.acquire("bedrock:amazon.nova-lite-v1:0").allowed
    assert not b.acquire(MODEL).allowed


def _probe_in_process(
    url: str, now: float, barrier: multiprocessing.synchronize.Barrier, out: object
) -> None:
    client = connect(url, decode_responses=True)
    b = CircuitBreakers(client, reset_timeout=30, probe_ttl=60, clock=lambda: now)
    barrier.wait()
    out.put(b.acquire(MODEL).allowed)  # type: ignore[attr-defined]


def test_exactly_one_half_open_probe_among_concurrent_processes(redis_url: str, r: redis.Redis) -> None:
    clock = Clock()
    b = breakers(r, clock)
    for _ in range(5):
        b.record_failure(MODEL)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(8)
    out = context.Queue()
    processes = [
        context.Process(target=_probe_in_process, args=(redis_url, clock.now + 31, barrier, out))
        for _ in range(8)
    ]
    for p in processes:
        p.start()
    results = [out.get(timeout=60) for _ in processes]
    for p in processes:
        p.join(timeout=30)

    assert sorted(results) == [False] * 7 + [True]


def test_exactly_one_probe_among_concurrent_threads(r: redis.Redis) -> None:
    clock = Clock()
    b = breakers(r, clock)
    for _ in range(5):
        b.record_failure(MODEL)
    clock.now += 31
    barrier = threading.Barrier(16)
    results: list[bool] = []

    def probe() -> None:
        barrier.wait()
        results.append(b.acquire(MODEL).allowed)

    threads = [threading.Thread(target=probe) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1


# ------------------------------------------------------------------------------------ rate limits
def test_a_model_at_80_percent_of_its_requests_per_minute_is_refused(r: redis.Redis) -> None:
    limits = RateLimits(r, clock=Clock(), limits=lambda _m: (10, 0))
    admitted = [limits.admit(MODEL).admitted for _ in range(10)]

    assert admitted == [True] * 8 + [False] * 2
    assert limits.usage(MODEL) == pytest.approx(0.8)


def test_a_model_at_80_percent_of_its_tokens_per_minute_is_refused(r: redis.Redis) -> None:
    limits = RateLimits(r, clock=Clock(), limits=lambda _m: (0, 1000))
    assert limits.admit(MODEL, estimated_tokens=500).admitted
    limits.settle(MODEL, estimated_tokens=500, actual_tokens=795)
    assert limits.admit(MODEL, estimated_tokens=5).admitted  # 795 of 1000: under 80 %
    refused = limits.admit(MODEL, estimated_tokens=5)
    assert not refused.admitted and refused.usage == pytest.approx(0.8)


def test_the_counters_start_again_each_minute(r: redis.Redis) -> None:
    clock = Clock(60 * 1000)
    limits = RateLimits(r, clock=clock, limits=lambda _m: (2, 0))
    assert [limits.admit(MODEL).admitted for _ in range(3)] == [True, True, False]  # 2nd: at 50 %
    clock.now += 60
    assert limits.admit(MODEL).admitted
    assert 0 < r.ttl(limits.key(MODEL)) <= 120


def test_concurrent_admissions_never_exceed_the_threshold(r: redis.Redis) -> None:
    limits = RateLimits(r, clock=Clock(), limits=lambda _m: (50, 0))
    barrier = threading.Barrier(20)
    results: list[bool] = []

    def go() -> None:
        barrier.wait()
        for _ in range(5):
            results.append(limits.admit(MODEL).admitted)

    threads = [threading.Thread(target=go) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 40  # 80 % of 50, not one more


# ---------------------------------------------------------------------------------------- history
def test_history_tracks_success_rate_and_latency(r: redis.Redis, redis_url: str) -> None:
    history = History(r, alpha=0.5)
    assert history.get(MODEL).calls == 0
    history.record(MODEL, succeeded=True, latency_ms=100)
    history.record(MODEL, succeeded=False, latency_ms=5000)
    history.record(MODEL, succeeded=True, latency_ms=300)

    seen = history.get(MODEL)
    assert seen.calls == 3
    assert seen.success_rate == pytest.approx((1 * 0.5 + 0 * 0.5) * 0.5 + 1 * 0.5)
    assert seen.latency_ms == pytest.approx(200)  # failures do not count towards latency
    another_instance = History(connect(redis_url))  # bytes responses, a new connection
    assert another_instance.get(MODEL) == seen
