"""`tdev bench flags`: every flag shape is measured, the figures are consistent, and the rollout's split and
stickiness are the ones the statistical test holds (tests/unit/test_feature_flags.py)."""

from __future__ import annotations

from tdev_cli.benchmarks import flags


def test_the_flags_benchmark_measures_every_shape_and_the_split() -> None:
    result = flags.run(quick=True)

    latency = result["figures"]["latency_us"]
    assert set(latency) == {*flags._shapes(), "live"}
    for shape, figures in latency.items():
        assert figures["n"] == flags.QUICK_EVALUATIONS, shape
        assert 0 < figures["median"] <= figures["p95"] <= figures["p99"] <= figures["max"], shape
    assert abs(result["figures"]["rollout_30_share_percent"] - 30) <= 2
    assert result["figures"]["variants_sticky"] is True
    assert result["headline"].startswith("flags: 500 evaluations per shape")
