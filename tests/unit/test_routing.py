"""Load-aware routing (spec 1.3): the planner's agent choice is probability x performance weight among the
agents the load balancer reports available (below 0.8 x capacity), with weighted round-robin,
least-connections and resource-based strategies among interchangeable agents, every decision logged."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import pytest

from tdev import cache
from tdev.agents.catalog import DEFAULT_AGENTS
from tdev.data.agents import StoredHistory
from tdev.models import AgentSpec
from tdev.orchestration.capacity import CapacityLoads, Semaphore, agent_key
from tdev.orchestration.planner import Supervisor
from tdev.orchestration.routing import (
    AgentLoad,
    LoadBalancer,
    Strategy,
    performance_weight,
    redis_turns,
)


class Loads:
    """A load balancer's view from a dict: (in flight, capacity, cpu, memory) per agent."""

    def __init__(self, loads: dict[str, tuple[int, int, float | None, float | None]]) -> None:
        self.table = loads

    def loads(self, agents: Sequence[str]) -> Mapping[str, AgentLoad]:
        return {a: AgentLoad(a, *self.table[a]) for a in agents if a in self.table}


def twins() -> list[AgentSpec]:
    """Two interchangeable custom agents (same words, no rule names either): peers for a routing choice."""
    common = {
        "role": "Documentation writer",
        "description": "Writes user documentation, guides and tutorials.",
        "capabilities": ["documentation", "user guides"],
        "keywords": ["documentation", "docs", "guide", "tutorial", "readme"],
        "max_concurrent": 10,
    }
    return [AgentSpec(name="DocsAgent", **common), AgentSpec(name="ManualAgent", **common)]  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ the balancer alone
def test_an_agent_at_eight_tenths_of_capacity_is_not_chosen_while_another_candidate_is_available() -> None:
    # Given the best-ranked agent at 8/10 in flight and a weaker candidate at 0/10
    balancer = LoadBalancer(Loads({"CodeAgent": (8, 10, None, None), "ReviewAgent": (0, 10, None, None)}))

    # When the balancer chooses
    routed = balancer.choose("implement", [("CodeAgent", 0.6), ("ReviewAgent", 0.2)])

    # Then the available one gets it, and the reason says why the best did not
    assert routed.agent == "ReviewAgent"
    assert "not available" in routed.reason and "CodeAgent" in routed.reason
    # ... while just below the threshold (7/10) the best keeps it
    balancer = LoadBalancer(Loads({"CodeAgent": (7, 10, None, None), "ReviewAgent": (0, 10, None, None)}))
    assert balancer.choose("implement", [("CodeAgent", 0.6), ("ReviewAgent", 0.2)]).agent == "CodeAgent"
    assert balancer.available(["CodeAgent", "ReviewAgent"]) == ["CodeAgent", "ReviewAgent"]


def test_when_no_candidate_is_available_the_best_is_chosen_and_waits() -> None:
    balancer = LoadBalancer(Loads({"CodeAgent": (9, 10, None, None), "ReviewAgent": (10, 10, None, None)}))

    routed = balancer.choose("implement", [("CodeAgent", 0.6), ("ReviewAgent", 0.2)])

    assert routed.agent == "CodeAgent" and "waits for a slot" in routed.reason
    assert balancer.available(["CodeAgent", "ReviewAgent"]) == []


def test_a_clear_winner_is_chosen_whatever_the_strategy() -> None:
    # A candidate below 90 % of the best routing weight is no peer: no strategy spreads work onto it
    loads = Loads({"CodeAgent": (7, 10, 0.9, 0.9), "ReviewAgent": (0, 10, 0.0, 0.0)})
    for strategy in Strategy:
        balancer = LoadBalancer(loads, strategy=strategy)
        chosen = [
            balancer.choose("implement", [("CodeAgent", 0.6), ("ReviewAgent", 0.5)]).agent for _ in range(5)
        ]
        assert chosen == ["CodeAgent"] * 5, strategy


def test_weighted_round_robin_gives_peers_turns_in_proportion_to_their_weights() -> None:
    # Given two peers with routing weights 0.5 x 0.5 = 0.25 and 0.45 x 0.5 = 0.225 (within 90 %)
    balancer = LoadBalancer(Loads({"A": (0, 10, None, None), "B": (0, 10, None, None)}))

    # When one cycle of 19 requests is routed (10 turns for the best peer, 9 for 0.225 / 0.25 of it)
    order = [balancer.choose("docs", [("A", 0.5), ("B", 0.45)]).agent for _ in range(19)]

    # Then each gets its turns, interleaved rather than in runs
    assert Counter(order) == {"A": 10, "B": 9}
    assert order[:4] == ["A", "B", "A", "B"]


def test_least_connections_picks_the_peer_with_the_fewest_runs_relative_to_capacity() -> None:
    balancer = LoadBalancer(
        Loads({"A": (3, 10, None, None), "B": (1, 10, None, None), "C": (1, 4, None, None)}),
        strategy=Strategy.LEAST_CONNECTIONS,
    )

    routed = balancer.choose("docs", [("A", 0.5), ("B", 0.5), ("C", 0.5)])

    assert routed.agent == "B"  # 1/10 beats 1/4 and 3/10
    assert "least_connections among peers A, B, C" in routed.reason


def test_resource_based_picks_the_lowest_weighted_cpu_memory_and_task_load() -> None:
    # A: 0.4*0.9 + 0.3*0.1 + 0.3*0.0 = 0.39; B: 0.4*0.1 + 0.3*0.2 + 0.3*0.5 = 0.25;
    # C: 0.4*0.2 + 0.3*0.9 = 0.35
    balancer = LoadBalancer(
        Loads({"A": (0, 10, 0.9, 0.1), "B": (5, 10, 0.1, 0.2), "C": (0, 10, 0.2, 0.9)}),
        strategy=Strategy.RESOURCE_BASED,
    )

    routed = balancer.choose("docs", [("A", 0.5), ("B", 0.5), ("C", 0.5)])

    assert routed.agent == "B"
    loads = {c.agent: c.resource_load for c in routed.candidates}
    assert loads == {"A": pytest.approx(0.39), "B": pytest.approx(0.25), "C": pytest.approx(0.35)}
    # ... where least-connections would have taken A (0 in flight, first of equals)
    balancer.strategy = Strategy.LEAST_CONNECTIONS
    assert balancer.choose("docs", [("A", 0.5), ("B", 0.5), ("C", 0.5)]).agent == "A"


def test_the_routing_weight_is_probability_times_historical_performance() -> None:
    class History:
        def success_rate(self, agent: str) -> float | None:
            return {"A": 0.5, "B": 1.0}.get(agent)

        def average_duration_ms(self, agent: str) -> float | None:
            return {"A": 0.0, "B": 10_000.0}.get(agent)

    balancer = LoadBalancer(Loads({"A": (0, 10, None, None), "B": (0, 10, None, None)}), history=History())

    routed = balancer.choose("docs", [("A", 0.6), ("B", 0.5)])

    weights = {c.agent: (c.performance, c.weight) for c in routed.candidates}
    assert weights["A"] == (0.5, 0.3)  # 0.5 x (0.8 + 0.2 x 1.0)
    assert weights["B"] == (0.9, 0.45)  # 1.0 x (0.8 + 0.2 x 0.5)
    assert routed.agent == "B"  # the better performer wins though its probability is lower
    assert performance_weight(None, None) == 0.5


def test_every_decision_is_logged_with_its_inputs(caplog: pytest.LogCaptureFixture) -> None:
    balancer = LoadBalancer(Loads({"A": (8, 10, 0.3, 0.4), "B": (0, 10, None, None)}))

    with caplog.at_level("INFO"):
        balancer.choose("docs", [("A", 0.6), ("B", 0.2)])

    records = [r for r in caplog.records if r.getMessage() == "routing decision"]
    assert len(records) == 1
    record = records[0].__dict__
    assert (
        record["agent"] == "B" and record["intent"] == "docs" and record["strategy"] == "weighted_round_robin"
    )
    by_agent = {c["agent"]: c for c in record["candidates"]}
    assert by_agent["A"]["in_flight"] == 8 and by_agent["A"]["available"] is False
    assert by_agent["A"]["probability"] == 0.6 and by_agent["A"]["cpu"] == 0.3


# --------------------------------------------------------------- the planner on the real semaphores
def test_the_supervisor_routes_around_a_busy_agent_on_the_capacity_semaphores(redis_url: str) -> None:
    # Given CodeAgent at 8 of its 10 slots on the shared Redis, and a custom builder the text also matches
    builder = AgentSpec(
        name="BuilderAgent",
        role="Engineer",
        description="Implements REST API endpoints and services.",
        capabilities=["api endpoint implementation"],
        keywords=["rest", "api", "endpoint", "service", "implement"],
    )
    specs = [*DEFAULT_AGENTS, builder]
    sem = Semaphore(cache.redis_client())
    balancer = LoadBalancer(CapacityLoads(sem, specs), next_turn=redis_turns(cache.redis_client()))
    supervisor = Supervisor(specs, balancer=balancer)
    request = "implement a REST API endpoint for orders"
    assert [t.agent for t in supervisor.plan(request).tasks] == ["CodeAgent"]  # idle: the rule's agent
    leases = [sem.acquire(agent_key("CodeAgent"), 10, f"busy#{i}", 60) for i in range(8)]

    # When the same request is planned
    plan = supervisor.plan(request)

    # Then the available builder takes the work, and the decision says why
    assert [t.agent for t in plan.tasks] == ["BuilderAgent"]
    assert "not available" in plan.decisions[0].reasoning and "CodeAgent" in plan.decisions[0].reasoning
    # ... and once CodeAgent's runs end, it is chosen again
    for lease in leases:
        sem.release(lease)
    assert [t.agent for t in supervisor.plan(request).tasks] == ["CodeAgent"]


def test_peers_take_turns_through_the_shared_round_robin_counter(redis_url: str) -> None:
    specs = [*DEFAULT_AGENTS, *twins()]
    sem = Semaphore(cache.redis_client())
    # Two planners (two containers) sharing one Redis counter
    planners = [
        Supervisor(
            specs,
            balancer=LoadBalancer(CapacityLoads(sem, specs), next_turn=redis_turns(cache.redis_client())),
        )
        for _ in range(2)
    ]

    chosen = [planners[i % 2].plan("write the documentation guide").tasks[0].agent for i in range(4)]

    assert chosen == ["DocsAgent", "ManualAgent", "DocsAgent", "ManualAgent"]


def test_capacity_loads_read_cpu_and_memory_shares_from_the_stored_run_history(redis_url: str) -> None:
    history = StoredHistory(
        {
            "DocsAgent": {
                "runs": 5,
                "successes": 5,
                "total_duration_ms": 1000,
                "cpu_ms": 250,
                "memory_permille": 1500,
            }
        }
    )
    loads = CapacityLoads(Semaphore(cache.redis_client()), twins(), history).loads(
        ["DocsAgent", "ManualAgent"]
    )

    assert loads["DocsAgent"].cpu == 0.25 and loads["DocsAgent"].memory == 0.3
    assert loads["ManualAgent"].cpu is None and loads["ManualAgent"].in_flight == 0
    assert history.average_duration_ms("DocsAgent") == 200


def test_a_failing_load_source_routes_by_the_request_alone_and_counts_a_routing_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    class Unreachable:
        def loads(self, agents: Sequence[str]) -> Mapping[str, AgentLoad]:
            raise ConnectionError("Redis unreachable")

    capsys.readouterr()
    routed = LoadBalancer(Unreachable()).choose("implement", [("CodeAgent", 0.6), ("ReviewAgent", 0.2)])
    LoadBalancer(Loads({"CodeAgent": (0, 10, None, None)})).choose("implement", [("CodeAgent", 0.6)])

    assert routed.agent == "CodeAgent"  # the plan goes on; its task still waits for capacity if need be
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [r["RoutingErrors"] for r in records if "RoutingErrors" in r] in ([1.0, 0.0], [[1.0], [0.0]])
