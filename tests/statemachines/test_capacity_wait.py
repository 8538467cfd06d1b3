"""A task over its agent's capacity waits in the workflow (the ASL `Retry` on CapacityExhausted) and runs
once a slot frees, here when a crashed holder's lease ends: executed from the real ASL file by moto's
Step Functions interpreter, with the real run_agent handler taking its slot in the real Redis."""

from __future__ import annotations

from typing import Any

import pytest

from tdev import cache, container
from tdev.agents.catalog import default_agent
from tdev.orchestration.capacity import Semaphore, agent_key
from tdev_cli.runtime import LocalRuntime

pytestmark = pytest.mark.slow

REQUEST = "Design and implement a REST API for todo items, with unit tests and a security review"
LEASE_SECONDS = 3


class CrashedHolder:
    """Just before the implement task's first run, a run that died without releasing takes CodeAgent's
    only slot, with a short lease."""

    def __init__(self) -> None:
        self.held_at: float | None = None

    def __call__(self, function: str, event: dict[str, Any]) -> None:
        if function == "run_agent" and event["task"]["task_id"] == "implement" and self.held_at is None:
            lease = Semaphore(cache.redis_client()).acquire(
                agent_key("CodeAgent"), 1, "crashed-execution#implement", LEASE_SECONDS
            )
            self.held_at = lease.ends_at - LEASE_SECONDS


def test_a_task_over_capacity_waits_durably_then_runs_when_the_crashed_lease_ends() -> None:
    crashed = CrashedHolder()
    with LocalRuntime(fault_hook=crashed) as rt:
        # Given an operator's CodeAgent that may run once at a time
        one_at_a_time = default_agent("CodeAgent").model_copy(
            update={"version": "1.1.0", "max_concurrent": 1}
        )
        assert container.agents().register(one_at_a_time, author="ops", reason="one at a time")

        # When a request needs it while a crashed run still holds the slot
        view = rt.run(REQUEST, timeout=120)
        outcomes = [o for n, o in rt.invocations if n == "run_agent"]
        in_flight = Semaphore(cache.redis_client()).in_flight(agent_key("CodeAgent"))

    # Then the task was refused while the lease lasted, waited in the workflow, and ran after it ended
    assert crashed.held_at is not None
    assert outcomes.count("CapacityExhausted") >= 1, outcomes
    assert view["status"] == "SUCCEEDED"
    assert view["tasks"]["implement"]["status"] == "SUCCEEDED"
    assert in_flight == 0  # the run released its slot
