"""Feature-flag evaluation latency (tdev.config.flags), per flag shape, and the rollout's measured split.

Inputs: EVALUATIONS evaluations per shape (QUICK_EVALUATIONS with --quick), each for a different user
(`user-00000` ...), one FlagSet per shape built from stored JSON documents as a function reads them, so
every evaluation parses its document (what `tdev.config.flags.enabled` does per call). Shapes:

- `default`        a product flag with no stored document (PRODUCT_FLAGS' declared default)
- `stored on/off`  one stored document, `{"enabled": true}`
- `rollout 30%`    hash(salt + user) % 100 < 30
- `variants`       the user's sticky variant of 50/30/20 (two hashes: rollout gate and variant)
- `targeting`      500 targeted users and 50 segments, the user in none (the whole list is checked)
- `prerequisites`  a chain of 3 prerequisite flags, each evaluated for the user
- `rule`           a Powertools Feature Flags rule (EQUALS on `tier`), evaluated through FeatureFlags
- `live`           `tdev.config.flags.enabled("verify_loop", user)` end to end: the flag store read through
                   Powertools' AppConfigProvider from AppConfig's data plane (moto and
                   tdev_cli.local_appconfig, cached for the polling interval: one read for the whole run),
                   then the evaluation

Reported per shape: p50, p95 and p99 in microseconds. Also: the share of 10,000 users a 30 % rollout turns
on, and whether every user's variant is the same on a second FlagSet (stickiness).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from tdev_cli.benchmarks.common import OFFLINE_ENV, fmt, summary

NAME = "flags"
DESCRIPTION = (
    "Feature-flag evaluation latency per flag shape (default, stored, rollout, variants, targeting, "
    "prerequisites, Powertools rule, and end to end from AppConfig): p50/p95/p99 in us; the 30 % "
    "rollout's share of 10,000 users and the variants' stickiness."
)
EVALUATIONS, QUICK_EVALUATIONS, SPLIT_USERS = 10_000, 500, 10_000


def _shapes() -> dict[str, tuple[dict[str, str], Callable[[Any, str], Any]]]:
    from tdev.config.flags import FlagSpec, dump

    rule = {
        "premium": {"when_match": True, "conditions": [{"action": "EQUALS", "key": "tier", "value": "pro"}]}
    }
    chain = {
        "base": dump(FlagSpec(enabled=True)),
        "middle": dump(FlagSpec(enabled=True, prerequisites=("base",))),
        "upper": dump(FlagSpec(enabled=True, prerequisites=("middle",))),
        "gated": dump(FlagSpec(enabled=True, prerequisites=("upper",))),
    }
    variants = FlagSpec(
        enabled=True,
        salt="checkout",
        variants=(
            {"name": "control", "weight": 50},
            {"name": "green", "weight": 30},
            {"name": "blue", "weight": 20},
        ),  # type: ignore[arg-type]
    )
    targeting = FlagSpec(
        enabled=True,
        rollout_percent=0,
        users=tuple(f"target-{n}" for n in range(500)),
        segments=tuple(f"segment-{n}" for n in range(50)),
    )
    return {
        "default": ({}, lambda s, u: s.enabled("verify_loop", u)),
        "stored on/off": ({"f": dump(FlagSpec(enabled=True))}, lambda s, u: s.enabled("f", u)),
        "rollout 30%": (
            {"f": dump(FlagSpec(enabled=True, rollout_percent=30, salt="2026-11"))},
            lambda s, u: s.enabled("f", u),
        ),
        "variants": ({"f": dump(variants)}, lambda s, u: s.variant("f", u)),
        "targeting": ({"f": dump(targeting)}, lambda s, u: s.enabled("f", u, ("customers",))),
        "prerequisites": (chain, lambda s, u: s.enabled("gated", u)),
        "rule": (
            {"f": dump(FlagSpec(enabled=False, rules=rule))},
            lambda s, u: s.enabled("f", u, tier="pro"),
        ),
    }


def _time(count: int, evaluate: Callable[[str], Any]) -> dict[str, float]:
    latencies: list[float] = []
    for n in range(count):
        user = f"user-{n:05d}"
        started = time.perf_counter()
        evaluate(user)
        latencies.append((time.perf_counter() - started) * 1e6)
    return summary(latencies)


def _live(count: int) -> dict[str, float]:
    """`enabled()` as a function calls it: the flags read from AppConfig (emulated locally), cached."""
    from unittest import mock

    from moto import mock_aws

    from tdev import container
    from tdev.config import flags
    from tdev_cli.local_appconfig import LocalAppConfig, create_flag_store

    environment = {
        **OFFLINE_ENV,
        "TABLE_NAME": "tdev-bench-flags",
        "TDEV_ENV": "bench",
        "TDEV_CONFIG_POLL_SECONDS": "60",
    }
    with mock.patch.dict(os.environ, environment), mock_aws():
        appconfig = LocalAppConfig().start()
        try:
            os.environ.update(create_flag_store("bench"))
            container.reset()
            flags.enabled("verify_loop", "warm-up")  # the one AppConfig read of the interval
            return _time(count, lambda user: flags.enabled("verify_loop", user))
        finally:
            appconfig.stop()
            container.reset()


def run(quick: bool = False) -> dict[str, Any]:
    from datetime import UTC, datetime

    from tdev.config.flags import FlagSet

    count = QUICK_EVALUATIONS if quick else EVALUATIONS
    now = datetime.now(UTC)
    results: dict[str, dict[str, float]] = {}
    for name, (stored, evaluate) in _shapes().items():
        flag_set = FlagSet(stored, now=now)
        results[name] = _time(count, lambda user, s=flag_set, e=evaluate: e(s, user))  # type: ignore[misc]
    results["live"] = _live(count)

    stored, _ = _shapes()["rollout 30%"]
    split = FlagSet(stored, now=now)
    users = [f"user-{n:05d}" for n in range(SPLIT_USERS)]
    share = 100 * sum(split.enabled("f", u) for u in users) / SPLIT_USERS
    variant_docs, _ = _shapes()["variants"]
    first, second = FlagSet(variant_docs, now=now), FlagSet(json.loads(json.dumps(variant_docs)), now=now)
    sticky = all(first.variant("f", u) == second.variant("f", u) for u in users)

    figures = {
        "evaluations_per_shape": count,
        "latency_us": results,
        "rollout_30_share_percent": share,
        "variants_sticky": sticky,
    }
    slowest = max(results, key=lambda k: results[k]["p95"])
    return {
        "name": NAME,
        "headline": (
            f"flags: {count} evaluations per shape, p50 {fmt(results['stored on/off']['median'], 0)} us / "
            f"p95 {fmt(results['stored on/off']['p95'], 0)} us (stored on/off), "
            f"p50 {fmt(results['live']['median'], 0)} us / p95 {fmt(results['live']['p95'], 0)} us "
            f"end to end from AppConfig; slowest {slowest} p95 {fmt(results[slowest]['p95'], 0)} us; "
            f"30 % rollout: {share:.2f} % of {SPLIT_USERS:,} users, variants sticky: {sticky}"
        ),
        "figures": figures,
        "tables": [
            {
                "title": f"Flag evaluation latency ({count} evaluations per shape, one user each), us",
                "columns": ["shape", "p50", "p95", "p99", "max"],
                "rows": [
                    [name, fmt(r["median"], 1), fmt(r["p95"], 1), fmt(r["p99"], 1), fmt(r["max"], 1)]
                    for name, r in results.items()
                ],
            }
        ],
        "notes": [
            "Every evaluation parses the flag's stored JSON document (FlagSet.spec), as "
            "tdev.config.flags.enabled does per call; the `live` shape adds the cached AppConfig read "
            "(one GetLatestConfiguration per polling interval, here one for the whole run).",
        ],
    }
