"""Feature flags (tdev.config.flags): rollout and variants measured over 10,000 users, stickiness, schedules,
targeting, Powertools rules, prerequisites, and the default when evaluation fails."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from tdev.config.flags import PRODUCT_FLAGS, FlagSet, FlagSpec, bucket, dump

USERS = [f"user-{n}" for n in range(10_000)]
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def flags(**specs: FlagSpec) -> FlagSet:
    return FlagSet({name: dump(spec) for name, spec in specs.items()}, now=NOW)


@pytest.mark.parametrize("percent", [5, 30, 50, 90])
def test_rollout_reaches_its_share_of_10000_users_within_2_points(percent: int) -> None:
    flag_set = flags(new_agent=FlagSpec(enabled=True, rollout_percent=percent, salt="2026-11"))

    on = sum(flag_set.enabled("new_agent", user) for user in USERS)

    share = 100 * on / len(USERS)
    print(f"\nrollout {percent}%: {on} of {len(USERS)} users on ({share:.2f} %)")
    assert abs(share - percent) <= 2


def test_variants_split_10000_users_by_weight_within_2_points_and_stick() -> None:
    spec = FlagSpec(
        enabled=True,
        salt="checkout",
        variants=(
            {"name": "control", "weight": 50},
            {"name": "green", "weight": 30},
            {"name": "blue", "weight": 20},
        ),  # type: ignore[arg-type]
    )
    first = flags(checkout=spec)
    counts = Counter(first.variant("checkout", user) for user in USERS)

    print(f"\nvariants 50/30/20 over {len(USERS)} users: {dict(counts)}")
    for name, weight in (("control", 50), ("green", 30), ("blue", 20)):
        assert abs(100 * counts[name] / len(USERS) - weight) <= 2
    # Sticky: another container (a new FlagSet, a later time) gives every user the same variant
    later = FlagSet({"checkout": dump(spec)}, now=NOW + timedelta(days=3))
    assert all(first.variant("checkout", u) == later.variant("checkout", u) for u in USERS[:2_000])


def test_a_user_keeps_their_rollout_bucket_and_widening_only_adds_users() -> None:
    narrow = flags(f=FlagSpec(enabled=True, rollout_percent=20, salt="s"))
    wide = flags(f=FlagSpec(enabled=True, rollout_percent=40, salt="s"))
    on_narrow = {u for u in USERS if narrow.enabled("f", u)}
    on_wide = {u for u in USERS if wide.enabled("f", u)}
    assert on_narrow < on_wide
    assert bucket("s", "user-7") == bucket("s", "user-7")
    # Another salt reshuffles: a new experiment does not reuse the same 20 %
    other = flags(f=FlagSpec(enabled=True, rollout_percent=20, salt="t"))
    assert {u for u in USERS if other.enabled("f", u)} != on_narrow


def test_the_kill_switch_turns_a_rollout_off_for_everyone() -> None:
    flag_set = flags(f=FlagSpec(enabled=False, rollout_percent=100))
    assert not any(flag_set.enabled("f", u) for u in USERS[:500])


def test_schedule_window_turns_the_flag_on_only_inside_it() -> None:
    window = {"start": NOW - timedelta(hours=1), "end": NOW + timedelta(hours=1)}
    inside = flags(sale=FlagSpec(enabled=True, schedule=window))  # type: ignore[arg-type]
    assert inside.explain("sale", "u") == (True, "enabled")
    before = FlagSet(inside.stored, now=NOW - timedelta(hours=2))
    assert before.explain("sale", "u") == (False, "outside its schedule")
    after = FlagSet(inside.stored, now=NOW + timedelta(hours=1))  # the end is exclusive
    assert after.enabled("sale", "u") is False


def test_users_and_segments_are_targeted_over_a_zero_rollout() -> None:
    flag_set = flags(beta=FlagSpec(enabled=True, rollout_percent=0, users=("alice",), segments=("staff",)))
    assert flag_set.explain("beta", "alice") == (True, "user targeted")
    assert flag_set.explain("bob", "bob")[0] is False  # unknown flag
    assert flag_set.explain("beta", "bob", segments=["staff"]) == (True, "segment targeted")
    assert flag_set.enabled("beta", "bob", segments=["customers"]) is False


def test_powertools_rules_match_on_the_context() -> None:
    rules = {
        "premium tier": {
            "when_match": True,
            "conditions": [{"action": "EQUALS", "key": "tier", "value": "premium"}],
        }
    }
    flag_set = flags(premium=FlagSpec(enabled=False, rules=rules))
    assert flag_set.explain("premium", "u", tier="premium") == (True, "rule matched")
    assert flag_set.explain("premium", "u", tier="free") == (False, "disabled")


def test_prerequisites_gate_a_flag_and_a_cycle_falls_back_to_the_default() -> None:
    flag_set = flags(
        base=FlagSpec(enabled=True, users=("alice",), rollout_percent=0),
        child=FlagSpec(enabled=True, prerequisites=("base",)),
        loop_a=FlagSpec(enabled=True, prerequisites=("loop_b",), default_on_error=True),
        loop_b=FlagSpec(enabled=True, prerequisites=("loop_a",)),
    )
    assert flag_set.enabled("child", "alice") is True
    assert flag_set.explain("child", "bob") == (False, "prerequisite base is off")
    value, why = flag_set.explain("loop_a", "alice")
    assert value is True and "evaluation failed" in why  # default_on_error, logged


def test_evaluation_failure_gives_the_flag_default() -> None:
    broken = FlagSet({"verify_loop": "{not json", "other": json.dumps({"enabled": "maybe"})}, now=NOW)
    # A product flag whose stored document is broken: its declared default_on_error (off) ...
    assert broken.explain("verify_loop", "u")[1].startswith("evaluation failed")
    # ... and a store that cannot be read: the product flags' declared defaults
    unreadable = FlagSet(None, now=NOW)
    assert unreadable.enabled("verify_loop", "u") is PRODUCT_FLAGS["verify_loop"].enabled is True
    assert unreadable.explain("anything", "u") == (False, "flag store unreadable: default")


def test_invalid_specs_are_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as bad_weights:
        FlagSpec(variants=({"name": "a", "weight": 60}, {"name": "b", "weight": 30}))  # type: ignore[arg-type]
    assert "add up to 100" in str(bad_weights.value)
    with pytest.raises(ValidationError):
        FlagSpec(rollout_percent=101)
    with pytest.raises(ValidationError):
        FlagSpec(rules={"r": {"when_match": "yes", "conditions": []}})
    with pytest.raises(ValidationError):
        FlagSpec(schedule={"start": NOW, "end": NOW - timedelta(seconds=1)})  # type: ignore[arg-type]
