"""The model router: pick a model for a task from the model table, the live history and the live health.

Hard constraints first (context window, capabilities, language, latency tier, maximum cost, allowed
providers); every model that passes is scored as the spec says:

    score = 0.3 specialty + 0.2 (1 - cost / maxCost) + 0.3 history + 0.2 availability

- specialty: 1.0 when the task type is one of the model's specialties, 0.6 for a generalist, 0.2 otherwise;
- cost: the estimated cost of this call (context tokens in + expected tokens out) against `max_cost_usd`,
  or, without one, against the dearest candidate's (so the cheapest scores 1.0 and the dearest 0.0); a
  model without a per-token price (self-hosted) scores 0.5;
- history: the live success rate (EWMA, shared by every instance through Redis) * a latency factor; a model
  with no history yet scores a neutral 0.5;
- availability: 1.0 with a closed breaker, 0.5 half-open, 0.0 open, times the headroom under its
  per-minute limits (a model at ≥ 80 % of its limit is unavailable, as the fallback chain skips it).

A model with availability 0 is never chosen. The decision carries its reasoning and the runners-up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tdev.errors import ValidationError
from tdev.llm.breaker import BreakerState
from tdev.llm.limits import SKIP_AT, ModelHistory
from tdev.llm.models_data import LATENCY_TIERS, MODELS, TASK_TYPES, ModelInfo

if TYPE_CHECKING:
    from tdev.llm.guards import Guards

WEIGHTS = {"specialty": 0.3, "cost": 0.2, "history": 0.3, "availability": 0.2}
_TIER_RANK = {tier: i for i, tier in enumerate(LATENCY_TIERS)}


@dataclass(frozen=True)
class Criteria:
    task_type: str = "general"
    context_tokens: int = 4_000
    expected_output_tokens: int = 1_000
    language: str = "en"
    max_cost_usd: float | None = None
    latency_tier: str | None = None  # the slowest acceptable tier: "fast" admits only fast models
    capabilities: frozenset[str] = frozenset()
    providers: frozenset[str] | None = None  # None: every provider in the table

    def __post_init__(self) -> None:
        if self.task_type not in TASK_TYPES:
            raise ValidationError(
                f"unknown task type {self.task_type!r}; one of {', '.join(TASK_TYPES)}", field="task_type"
            )
        if self.latency_tier is not None and self.latency_tier not in _TIER_RANK:
            raise ValidationError(
                f"unknown latency tier {self.latency_tier!r}; one of {', '.join(LATENCY_TIERS)}",
                field="latency_tier",
            )
        if self.context_tokens < 0 or self.expected_output_tokens < 0:
            raise ValidationError("token counts cannot be negative", field="context_tokens")
        if self.max_cost_usd is not None and self.max_cost_usd <= 0:
            raise ValidationError("max_cost_usd must be positive", field="max_cost_usd")


@dataclass(frozen=True)
class Health:
    breaker: BreakerState = BreakerState.CLOSED
    rate_usage: float = 0.0  # fraction of the per-minute limit used
    history: ModelHistory = field(default_factory=ModelHistory)


@dataclass(frozen=True)
class Scored:
    model: str
    score: float
    parts: dict[str, float]
    estimated_cost_usd: float


@dataclass(frozen=True)
class RouteDecision:
    model: str
    score: float
    reasoning: str
    estimated_cost_usd: float
    ranking: list[Scored]
    rejected: dict[str, str]

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "score": self.score,
            "reasoning": self.reasoning,
            "estimated_cost_usd": self.estimated_cost_usd,
            "ranking": [
                {
                    "model": s.model,
                    "score": s.score,
                    "parts": s.parts,
                    "estimated_cost_usd": s.estimated_cost_usd,
                }
                for s in self.ranking
            ],
            "rejected": self.rejected,
        }


def estimated_cost(model: ModelInfo, criteria: Criteria) -> float:
    return criteria.context_tokens / 1000 * (
        model.input_per_1k or 0.0
    ) + criteria.expected_output_tokens / 1000 * (model.output_per_1k or 0.0)


def _rejection(model: ModelInfo, criteria: Criteria) -> str | None:
    if criteria.providers is not None and model.provider not in criteria.providers:
        return "provider not allowed"
    if criteria.providers is None and model.provider == "offline":
        return "the offline template model is chosen only when asked for (providers={'offline'})"
    needed = criteria.context_tokens + criteria.expected_output_tokens
    if model.context_window < needed:
        return f"context window {model.context_window:,} < {needed:,} tokens"
    missing = criteria.capabilities - model.capabilities
    if missing:
        return f"lacks {', '.join(sorted(missing))}"
    if criteria.language not in model.languages:
        return f"does not support language {criteria.language!r}"
    if (
        criteria.latency_tier is not None
        and _TIER_RANK[model.latency_tier] > _TIER_RANK[criteria.latency_tier]
    ):
        return f"latency tier {model.latency_tier} is slower than {criteria.latency_tier}"
    if criteria.max_cost_usd is not None and estimated_cost(model, criteria) > criteria.max_cost_usd:
        return f"estimated ${estimated_cost(model, criteria):.6f} > max ${criteria.max_cost_usd:.6f}"
    return None


def _cost_score(model: ModelInfo, cost: float, ceiling: float) -> float:
    if model.input_per_1k is None or model.output_per_1k is None:
        return 0.5  # no per-token price (self-hosted, credits): neither cheap nor dear
    return round(1.0 - cost / ceiling, 6) if ceiling > 0 else 1.0


def specialty_score(model: ModelInfo, task_type: str) -> float:
    if task_type in model.specialties:
        return 1.0
    if "general" in model.specialties or task_type == "general":
        return 0.6
    return 0.2


def history_score(history: ModelHistory) -> float:
    if history.calls == 0:
        return 0.5
    latency = history.latency_ms if history.latency_ms is not None else 0.0
    speed = 1.0 / (1.0 + latency / 10_000)  # 0 ms → 1.0, 10 s → 0.5
    return round(history.success_rate * (0.8 + 0.2 * speed), 6)


def availability_score(health: Health) -> float:
    breaker = {BreakerState.CLOSED: 1.0, BreakerState.HALF_OPEN: 0.5, BreakerState.OPEN: 0.0}[health.breaker]
    if health.rate_usage >= SKIP_AT:
        return 0.0
    return round(breaker * (1.0 - health.rate_usage), 6)


def route(
    criteria: Criteria,
    *,
    health: Callable[[str], Health] = lambda _name: Health(),
    models: Iterable[ModelInfo] = MODELS,
) -> RouteDecision:
    """The best model for `criteria`, with reasoning; ValidationError when no model qualifies."""
    candidates: list[ModelInfo] = []
    rejected: dict[str, str] = {}
    for model in models:
        reason = _rejection(model, criteria)
        if reason is None:
            candidates.append(model)
        else:
            rejected[model.name] = reason
    costs = {m.name: estimated_cost(m, criteria) for m in candidates}
    ceiling = criteria.max_cost_usd if criteria.max_cost_usd is not None else max(costs.values(), default=0.0)
    ranking: list[Scored] = []
    many = getattr(health, "many", None)  # a LiveHealth reads every candidate in one round trip
    states = many([m.name for m in candidates]) if many else {m.name: health(m.name) for m in candidates}
    for model in candidates:
        state = states[model.name]
        parts = {
            "specialty": specialty_score(model, criteria.task_type),
            "cost": _cost_score(model, costs[model.name], ceiling),
            "history": history_score(state.history),
            "availability": availability_score(state),
        }
        if parts["availability"] == 0.0:
            rejected[model.name] = (
                f"unavailable (breaker {state.breaker.value}, {state.rate_usage:.0%} of its rate limit)"
            )
            continue
        score = round(sum(WEIGHTS[k] * v for k, v in parts.items()), 6)
        ranking.append(Scored(model.name, score, parts, round(costs[model.name], 8)))
    if not ranking:
        raise ValidationError(
            "no model meets the criteria: "
            + "; ".join(f"{name}: {why}" for name, why in list(rejected.items())[:8]),
            field="criteria",
        )
    ranking.sort(key=lambda s: (-s.score, s.estimated_cost_usd, s.model))
    best = ranking[0]
    runner_up = f"; runner-up {ranking[1].model} at {ranking[1].score:.3f}" if len(ranking) > 1 else ""
    reasoning = (
        f"{best.model} scored {best.score:.3f} = 0.3*specialty {best.parts['specialty']:.2f} "
        f"+ 0.2*cost {best.parts['cost']:.2f} + 0.3*history {best.parts['history']:.2f} "
        f"+ 0.2*availability {best.parts['availability']:.2f} for a {criteria.task_type} task "
        f"(≈${best.estimated_cost_usd:.6f}); {len(ranking)} of {len(ranking) + len(rejected)} models "
        f"qualified{runner_up}"
    )
    return RouteDecision(best.model, best.score, reasoning, best.estimated_cost_usd, ranking, rejected)


class LiveHealth:
    """Every model's health from the shared Redis (breakers, rate counters, history). `route` asks for all
    its candidates at once (`many`): one pipelined round trip per decision, not three per model."""

    def __init__(self, guards: Guards) -> None:
        self.guards = guards

    def __call__(self, name: str) -> Health:
        return self.many([name])[name]

    def many(self, names: Sequence[str]) -> dict[str, Health]:
        g = self.guards
        pipe = g.breakers.redis.pipeline(transaction=False)  # one Redis holds all three (Guards)
        for name in names:
            pipe.hgetall(g.breakers.key(name))
            pipe.hmget(g.limits.key(name), *g.limits.FIELDS)
            pipe.hgetall(g.history.key(name))
        values = pipe.execute()
        return {
            name: Health(
                g.breakers.state_of(values[3 * i]),
                g.limits.usage_of(name, values[3 * i + 1]),
                g.history.history_of(values[3 * i + 2]),
            )
            for i, name in enumerate(names)
        }


def live_health(guards: object | None) -> Callable[[str], Health]:
    """Health from the shared Redis (breakers, rate counters, history); neutral without Redis."""
    from tdev.llm.guards import Guards

    if not isinstance(guards, Guards):
        return lambda _name: Health()
    return LiveHealth(guards)
