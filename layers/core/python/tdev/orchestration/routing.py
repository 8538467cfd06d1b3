"""Load-aware routing (spec 1.3): which of the agents able to serve an intent gets it, given their load.

The decision engine (tdev.orchestration.decision) ranks the candidates of an intent by what the request says
and their success rate; that score is the agent's *probability*. The router multiplies it by the agent's
*performance weight* from the run history the platform stores (success rate x a latency factor, the same
shape as the model router's history score), and asks the load balancer which candidates are *available*:
fewer runs in flight than 0.8 x the agent's `max_concurrent`, read from the capacity semaphores
(tdev.orchestration.capacity). An agent at or above 0.8 x capacity is not chosen while another candidate is
available; when none is, the best is chosen anyway and its task waits for a slot (CapacityExhausted, a
durable wait in the workflow).

Among the available candidates, the *peers* (routing weight within PEER_SHARE of the best available one)
are interchangeable for the request, and the configured strategy (TDEV_ROUTING_STRATEGY) picks one of them:

* weighted round-robin (default): turns shared through a Redis counter per set of peers, each peer taking
  turns in proportion to its routing weight;
* least-connections: the fewest runs in flight relative to capacity;
* resource-based: the lowest 0.4 cpu + 0.3 memory + 0.3 in-flight/capacity, where cpu and memory are the
  shares the agent's runs used on average (recorded by every run, tdev.data.agents), 0.5 before any run.

A clear winner (no peer within PEER_SHARE) is chosen whatever the strategy, so a request the text points
at one agent is never spread over agents it barely matches. Every decision is logged with its inputs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from tdev.observability import NAMESPACE, logger

AVAILABLE_BELOW = 0.8  # spec 1.3: available below 0.8 x capacity
PEER_SHARE = 0.9  # candidates within 90 % of the best available routing weight are peers
NEUTRAL_PERFORMANCE = 0.5  # no run history: neither helps nor hurts against an average agent
NEUTRAL_RESOURCE = 0.5  # cpu / memory share before an agent's first recorded run
RESOURCE_WEIGHTS = {"cpu": 0.4, "memory": 0.3, "tasks": 0.3}
ROUND_ROBIN_SCALE = 10  # turns of the best peer in a cycle; the others' in proportion to their weights


class Strategy(StrEnum):
    WEIGHTED_ROUND_ROBIN = "weighted_round_robin"
    LEAST_CONNECTIONS = "least_connections"
    RESOURCE_BASED = "resource_based"


@dataclass(frozen=True)
class AgentLoad:
    """What the load balancer knows about one agent right now."""

    agent: str
    in_flight: int
    max_concurrent: int
    cpu: float | None = None  # average share of a CPU its runs used, in [0, 1]
    memory: float | None = None  # average share of the function's memory its runs used, in [0, 1]

    @property
    def utilisation(self) -> float:
        return self.in_flight / self.max_concurrent

    @property
    def available(self) -> bool:
        return self.in_flight < AVAILABLE_BELOW * self.max_concurrent

    @property
    def resource_load(self) -> float:
        """Spec 1.3's resource-based load: 0.4 cpu + 0.3 memory + 0.3 tasks / capacity (lower is better)."""
        cpu = NEUTRAL_RESOURCE if self.cpu is None else self.cpu
        memory = NEUTRAL_RESOURCE if self.memory is None else self.memory
        return (
            RESOURCE_WEIGHTS["cpu"] * cpu
            + RESOURCE_WEIGHTS["memory"] * memory
            + RESOURCE_WEIGHTS["tasks"] * min(self.utilisation, 1.0)
        )


class LoadSource(Protocol):
    """Where the balancer reads agents' load (the capacity semaphores in production, a dict in tests)."""

    def loads(self, agents: Sequence[str]) -> Mapping[str, AgentLoad]: ...


class RunHistory(Protocol):
    """The stored run history the performance weight is computed from (tdev.data.agents.StoredHistory)."""

    def success_rate(self, agent: str) -> float | None: ...

    def average_duration_ms(self, agent: str) -> float | None: ...


def performance_weight(success_rate: float | None, average_duration_ms: float | None) -> float:
    """Success rate x (0.8 + 0.2 speed), speed 1.0 at 0 ms and 0.5 at 10 s; neutral without history."""
    if success_rate is None:
        return NEUTRAL_PERFORMANCE
    latency = average_duration_ms or 0.0
    speed = 1.0 / (1.0 + latency / 10_000)
    return round(success_rate * (0.8 + 0.2 * speed), 6)


@dataclass(frozen=True)
class Candidate:
    """One agent's inputs to a routing decision (logged as they are)."""

    agent: str
    probability: float
    performance: float
    weight: float
    in_flight: int
    max_concurrent: int
    available: bool
    cpu: float | None
    memory: float | None
    resource_load: float


@dataclass(frozen=True)
class Routed:
    """The balancer's choice for an intent and what it rested on."""

    agent: str
    strategy: Strategy
    reason: str
    candidates: tuple[Candidate, ...]

    def inputs(self) -> list[dict[str, Any]]:
        return [asdict(candidate) for candidate in self.candidates]


class LoadBalancer:
    """Chooses among an intent's candidates by routing weight, availability and the configured strategy."""

    def __init__(
        self,
        source: LoadSource,
        *,
        strategy: Strategy = Strategy.WEIGHTED_ROUND_ROBIN,
        history: RunHistory | None = None,
        next_turn: Callable[[str], int] | None = None,
    ) -> None:
        self.source, self.strategy, self.history = source, strategy, history
        self._next_turn = next_turn if next_turn is not None else _local_turns()

    def available(self, agents: Sequence[str]) -> list[str]:
        """The agents below 0.8 x capacity, in the given order."""
        loads = self.source.loads(agents)
        return [agent for agent in agents if agent in loads and loads[agent].available]

    def choose(self, intent: str, ranked: Sequence[tuple[str, float]]) -> Routed:
        """The agent for `intent` among `ranked` ((agent, probability), best first, as the engine ranks)."""
        if not ranked:
            raise ValueError("a routing decision needs at least one candidate")
        try:
            loads = self.source.loads([agent for agent, _ in ranked])
            failed = False
        except Exception as exc:  # Redis unreachable: route by the request alone rather than fail the plan
            logger.warning(
                "routing without load: the load balancer's source failed", extra={"error": str(exc)}
            )
            loads, failed = {}, True
        record_error(failed)
        candidates = tuple(
            self._candidate(agent, probability, loads.get(agent)) for agent, probability in ranked
        )
        available = [c for c in candidates if c.available]
        if not available:
            best = max(candidates, key=lambda c: c.weight)  # the first of equals: the engine's order
            routed = Routed(
                best.agent,
                self.strategy,
                f"no candidate below {AVAILABLE_BELOW:.0%} of capacity: {best.agent} (best routing weight "
                f"{best.weight:.3f}) is chosen and its task waits for a slot",
                candidates,
            )
        else:
            top = max(c.weight for c in available)
            peers = [c for c in available if c.weight >= PEER_SHARE * top]
            chosen = peers[0] if len(peers) == 1 else self._by_strategy(intent, peers)
            skipped = [c.agent for c in candidates if not c.available]
            routed = Routed(chosen.agent, self.strategy, self._reason(chosen, peers, skipped), candidates)
        logger.info(
            "routing decision",
            extra={
                "intent": intent,
                "agent": routed.agent,
                "strategy": routed.strategy.value,
                "reason": routed.reason,
                "candidates": routed.inputs(),
            },
        )
        return routed

    def _candidate(self, agent: str, probability: float, load: AgentLoad | None) -> Candidate:
        if self.history is not None:
            performance = performance_weight(
                self.history.success_rate(agent), self.history.average_duration_ms(agent)
            )
        else:
            performance = NEUTRAL_PERFORMANCE
        load = load if load is not None else AgentLoad(agent, 0, 1)
        return Candidate(
            agent=agent,
            probability=round(probability, 6),
            performance=performance,
            weight=round(probability * performance, 6),
            in_flight=load.in_flight,
            max_concurrent=load.max_concurrent,
            available=load.available,
            cpu=load.cpu,
            memory=load.memory,
            resource_load=round(load.resource_load, 6),
        )

    def _by_strategy(self, intent: str, peers: list[Candidate]) -> Candidate:
        if self.strategy is Strategy.LEAST_CONNECTIONS:
            return min(peers, key=lambda c: (c.in_flight / c.max_concurrent, -c.weight))
        if self.strategy is Strategy.RESOURCE_BASED:
            return min(peers, key=lambda c: (c.resource_load, -c.weight))
        top = max(c.weight for c in peers) or 1.0
        turns = [max(1, round(ROUND_ROBIN_SCALE * c.weight / top)) for c in peers]
        cycle = _smooth_cycle(turns)
        return peers[cycle[self._next_turn(intent + ":" + ",".join(c.agent for c in peers)) % len(cycle)]]

    def _reason(self, chosen: Candidate, peers: list[Candidate], skipped: list[str]) -> str:
        parts = [
            f"{chosen.agent}: probability {chosen.probability:.3f} x performance {chosen.performance:.3f} "
            f"= {chosen.weight:.3f}, {chosen.in_flight}/{chosen.max_concurrent} in flight"
        ]
        if len(peers) > 1:
            parts.append(f"{self.strategy.value} among peers {', '.join(c.agent for c in peers)}")
        if skipped:
            parts.append(f"not available (>= {AVAILABLE_BELOW:.0%} of capacity): {', '.join(skipped)}")
        return "; ".join(parts)


ROUTING_SERVICE = "routing"  # the `service` dimension of the routing metrics, whichever function routes


def record_decision(outcome: str, latency_ms: float) -> None:
    """Routing monitoring (spec 1.3.4) of a capacity decision (tdev.orchestration.capacity.running):
    RoutingDecisions by outcome (admitted, waiting for capacity, error), RoutingLatency (the time to take
    both slots: the p99 alarm's metric) and RoutingErrors (stacks/orchestration_stack)."""
    if is_metrics_disabled():
        return
    with single_metric(name="RoutingDecisions", unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as m:
        m.add_dimension(name="service", value=ROUTING_SERVICE)
        m.add_dimension(name="outcome", value=outcome)
    with single_metric(
        name="RoutingLatency", unit=MetricUnit.Milliseconds, value=latency_ms, namespace=NAMESPACE
    ) as m:
        m.add_dimension(name="service", value=ROUTING_SERVICE)
    record_error(outcome == "error")


def record_admission(waited_seconds: float, still_waiting: int) -> None:
    """Admission monitoring (spec 1.3): AdmissionWait, how long an admitted task waited for its agent's slot
    (0 when there was one at once), and AdmissionQueueDepth, the tasks still waiting for that agent."""
    if is_metrics_disabled():
        return
    with single_metric(
        name="AdmissionWait", unit=MetricUnit.Seconds, value=waited_seconds, namespace=NAMESPACE
    ) as m:
        m.add_dimension(name="service", value=ROUTING_SERVICE)
    record_queue(still_waiting)


def record_queue(waiting: int) -> None:
    """AdmissionQueueDepth: the tasks on a semaphore's waiting list after a decision (its Maximum is the
    deepest queue of the period)."""
    if is_metrics_disabled():
        return
    with single_metric(
        name="AdmissionQueueDepth", unit=MetricUnit.Count, value=waiting, namespace=NAMESPACE
    ) as m:
        m.add_dimension(name="service", value=ROUTING_SERVICE)


def record_error(failed: bool) -> None:
    """RoutingErrors: 1 for a routing decision that failed, 0 for one that did not, so the metric's
    Average is the error rate (the > 5 % alarm, stacks/orchestration_stack)."""
    if is_metrics_disabled():
        return
    with single_metric(
        name="RoutingErrors", unit=MetricUnit.Count, value=1 if failed else 0, namespace=NAMESPACE
    ) as m:
        m.add_dimension(name="service", value=ROUTING_SERVICE)


def _smooth_cycle(turns: list[int]) -> list[int]:
    """One cycle of smooth weighted round-robin (nginx's): peer i appears turns[i] times, interleaved."""
    current = [0] * len(turns)
    total, cycle = sum(turns), []
    for _ in range(total):
        current = [c + t for c, t in zip(current, turns, strict=True)]
        best = max(range(len(turns)), key=lambda i: (current[i], -i))
        current[best] -= total
        cycle.append(best)
    return cycle


def _local_turns() -> Callable[[str], int]:
    """Round-robin turns counted in this process (tests, a deployment without Redis)."""
    counters: dict[str, itertools.count[int]] = {}

    def next_turn(key: str) -> int:
        return next(counters.setdefault(key, itertools.count()))

    return next_turn


ROUND_ROBIN_PREFIX = "tdev:routing"
ROUND_ROBIN_TTL_SECONDS = 86_400


def redis_turns(redis: Any) -> Callable[[str], int]:
    """Round-robin turns shared by every container: one counter per intent and set of peers."""

    def next_turn(key: str) -> int:
        name = f"{ROUND_ROBIN_PREFIX}:{{rr:{key}}}"
        pipe = redis.pipeline(transaction=False)
        pipe.incr(name)
        pipe.expire(name, ROUND_ROBIN_TTL_SECONDS)
        return int(pipe.execute()[0]) - 1

    return next_turn
