"""`tdev bench routing`'s admission simulation: the policies differ the way the figures claim."""

from __future__ import annotations

from tdev_cli.benchmarks import routing


def test_admission_by_priority_meets_more_deadlines_than_fifo_on_the_same_arrivals() -> None:
    arrivals = routing._arrivals()
    policies = routing._policies()
    ours = routing._outcome(routing._simulate(arrivals, policies["priority, ageing, SLA boost (ours)"]))
    fifo = routing._outcome(routing._simulate(arrivals, policies["first come, first served"]))

    assert len(arrivals) == routing.REQUESTS
    assert ours["deadlines_met"] > fifo["deadlines_met"]
    assert ours["mean_wait_s"]["CRITICAL"] < ours["mean_wait_s"]["HIGH"] < ours["mean_wait_s"]["NORMAL"]
    assert fifo["priority_inversions"] == 0.0  # FIFO never lets a later arrival ahead


def test_the_simulation_serves_everyone_once_and_never_more_than_the_slots_at_a_time() -> None:
    arrivals = routing._arrivals()
    started = routing._simulate(arrivals, routing._policies()["priority, ageing, SLA boost (ours)"])
    assert sorted(r.holder for r, _ in started) == sorted(a.holder for a in arrivals)
    assert all(start >= r.enqueued_at for r, start in started)
    events = sorted([(s, 1) for _, s in started] + [(s + routing.SERVICE_SECONDS, -1) for _, s in started])
    running = peak = 0
    for _, change in sorted(events, key=lambda e: (e[0], e[1])):
        running += change
        peak = max(peak, running)
    assert peak <= routing.SLOTS
