"""The Redis limiter on a real redis-server: exact counts per window, atomic under concurrency."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tdev.security.ratelimit import Limit, RateLimiter


def test_n_per_window_then_refused_until_the_oldest_token_returns(redis_url: str) -> None:
    limiter, limit = RateLimiter(), Limit.parse("3/1")
    outcomes = [limiter.hit("p", limit) for _ in range(4)]
    assert [o.allowed for o in outcomes] == [True, True, True, False]
    assert [o.remaining for o in outcomes[:3]] == [2, 1, 0]
    assert outcomes[3].retry_after == 1 and outcomes[3].headers()["Retry-After"] == "1"
    time.sleep(1.05)
    assert limiter.hit("p", limit).allowed
    assert limiter.hit("other", limit).allowed  # buckets are independent


def test_the_limit_holds_exactly_under_concurrency(redis_url: str) -> None:
    limiter, limit = RateLimiter(), Limit.parse("10/60")
    with ThreadPoolExecutor(8) as pool:
        allowed = sum(o.allowed for o in pool.map(lambda _: limiter.hit("burst", limit), range(40)))
    assert allowed == 10


@pytest.mark.parametrize("text", ["0/60", "10/0", "x/60", "10"])
def test_bad_limits_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Limit.parse(text)
