"""The LLM benchmark runs and reports its figures (what they are is printed, never asserted on)."""

from __future__ import annotations

from tdev_cli.benchmarks import llm


def test_the_llm_benchmark_reports_overhead_and_router_throughput(redis_url: str) -> None:
    report = llm.run(quick=True)

    assert report["name"] == llm.NAME == "llm"
    figures = report["figures"]
    for key in ("direct_client_us", "layer_us", "layer_with_redis_us", "router_decisions_per_s"):
        assert figures[key] > 0, key
    assert figures["overhead_ratio"] == round(figures["layer_us"] / figures["direct_client_us"], 2)
    assert "decisions/s" in report["headline"]
    assert figures["redis_requests_per_call"] == 2  # one script before the model call, one after
    # ... in one round trip per call: a call's outcome is read behind the next call's admission. The count
    # starts with the first measured call's admission, and the last call's outcome goes out on its own.
    calls = figures["calls"]
    assert figures["redis_round_trips_per_call"] == round((calls + 1) / calls, 2)
    assert figures["goal_us"] == round(2 * figures["direct_client_us"] + figures["redis_round_trip_us"], 1)
