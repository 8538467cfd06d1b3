"""The model router: hard constraints, the spec's weighted score, live health from Redis, reasoning."""

from __future__ import annotations

from collections import Counter

import pytest
import redis

from tdev.cache import connect
from tdev.errors import ValidationError
from tdev.llm.breaker import BreakerState
from tdev.llm.fallback import Guards
from tdev.llm.limits import ModelHistory
from tdev.llm.models_data import MODELS, ModelInfo
from tdev.llm.router import Criteria, Health, live_health, route

CODE_CHEAP = ModelInfo(
    "a:coder", 128_000, 0.0001, 0.0004, frozenset({"tools", "json", "streaming"}), "fast",
    frozenset({"code"}),
)  # fmt: skip
CODE_DEAR = ModelInfo(
    "b:coder-pro", 200_000, 0.003, 0.015, frozenset({"tools", "vision", "json", "streaming"}), "slow",
    frozenset({"code", "reasoning"}),
)  # fmt: skip
CHAT = ModelInfo(
    "c:chat",
    32_000,
    0.00005,
    0.0001,
    frozenset({"streaming"}),
    "fast",
    frozenset({"chat"}),
    languages=("en",),
)
TABLE = [CODE_CHEAP, CODE_DEAR, CHAT]


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        (Criteria(task_type="code"), "a:coder"),  # specialist and cheapest
        (Criteria(task_type="code", capabilities=frozenset({"vision"})), "b:coder-pro"),
        (Criteria(task_type="chat"), "c:chat"),
        (Criteria(task_type="code", context_tokens=150_000), "b:coder-pro"),  # only one fits
        (Criteria(task_type="reasoning"), "b:coder-pro"),
        (Criteria(task_type="chat", language="ja"), "a:coder"),  # c:chat is English only
        # b:coder-pro is the only reasoning specialist; excluded, no specialist is left and the cheaper wins
        (Criteria(task_type="reasoning", latency_tier="fast"), "c:chat"),
        (Criteria(task_type="reasoning", max_cost_usd=0.001), "c:chat"),  # b costs ≈ $0.027
        (Criteria(task_type="reasoning", max_cost_usd=0.001, capabilities=frozenset({"tools"})), "a:coder"),
    ],
)
def test_router_choices_for_a_table_of_criteria(criteria: Criteria, expected: str) -> None:
    decision = route(criteria, models=TABLE)
    assert decision.model == expected, decision.reasoning
    assert expected in decision.reasoning and "0.3*specialty" in decision.reasoning


def test_the_score_is_the_specs_weighted_sum() -> None:
    decision = route(Criteria(task_type="code", max_cost_usd=0.01), models=[CODE_CHEAP])
    cost = 4 * 0.0001 + 1 * 0.0004
    assert decision.estimated_cost_usd == pytest.approx(cost)
    expected = 0.3 * 1.0 + 0.2 * (1 - cost / 0.01) + 0.3 * 0.5 + 0.2 * 1.0
    assert decision.score == pytest.approx(expected, abs=1e-6)


def test_history_and_availability_change_the_choice() -> None:
    healthy = route(Criteria(task_type="code"), models=TABLE)
    assert healthy.model == "a:coder"

    def flaky(name: str) -> Health:
        if name == "a:coder":
            return Health(
                BreakerState.HALF_OPEN, 0.5, ModelHistory(calls=50, success_rate=0.3, latency_ms=9000)
            )
        return Health(history=ModelHistory(calls=50, success_rate=1.0, latency_ms=800))

    assert route(Criteria(task_type="code"), models=TABLE, health=flaky).model == "b:coder-pro"


def test_an_open_breaker_or_a_saturated_model_is_never_chosen() -> None:
    def health(name: str) -> Health:
        return {
            "a:coder": Health(BreakerState.OPEN),
            "b:coder-pro": Health(rate_usage=0.85),
        }.get(name, Health())

    decision = route(Criteria(task_type="code"), models=TABLE, health=health)
    assert decision.model == "c:chat"
    assert "breaker open" in decision.rejected["a:coder"]
    assert "85%" in decision.rejected["b:coder-pro"]


def test_no_qualifying_model_is_a_validation_error_naming_the_reasons() -> None:
    with pytest.raises(ValidationError) as raised:
        route(Criteria(context_tokens=900_000), models=TABLE)
    assert "context window" in str(raised.value) and raised.value.field == "criteria"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"task_type": "dance"}, "task_type"), ({"latency_tier": "instant"}, "latency_tier"),
     ({"max_cost_usd": 0}, "max_cost_usd")],
)  # fmt: skip
def test_bad_criteria_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Criteria(**kwargs)  # type: ignore[arg-type]
    assert raised.value.field == field


def test_live_health_comes_from_redis_shared_by_all_instances(redis_url: str) -> None:
    guards = Guards.from_redis(connect(redis_url, decode_responses=True))
    for _ in range(5):
        guards.breakers.record_failure("openai:gpt-4.1-mini")
    guards.history.record("openai:gpt-4.1-nano", succeeded=True, latency_ms=300)

    decision = route(
        Criteria(task_type="code", providers=frozenset({"openai"})), health=live_health(guards), models=MODELS
    )
    assert "openai:gpt-4.1-mini" in decision.rejected  # its breaker is open
    nano = next(s for s in decision.ranking if s.model == "openai:gpt-4.1-nano")
    assert nano.parts["history"] > 0.5  # live history, not the neutral prior
    assert decision.model.startswith("openai:")


def test_the_real_table_routes_a_long_code_task_to_a_large_context_coder() -> None:
    decision = route(Criteria(task_type="code", context_tokens=500_000, capabilities=frozenset({"tools"})))
    assert decision.model in {m.name for m in MODELS if m.context_window >= 501_000}
    assert all(s.score <= decision.score for s in decision.ranking)


class _Counting:
    """A Redis client that counts the calls made on it (a pipeline's commands go in one `execute`)."""

    def __init__(self, inner: redis.Redis) -> None:
        self.inner, self.calls = inner, Counter[str]()

    def __getattr__(self, name: str) -> object:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def counted(*args: object, **kwargs: object) -> object:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted


def test_a_live_decision_reads_every_candidates_health_in_one_round_trip(redis_url: str) -> None:
    client = _Counting(connect(redis_url, decode_responses=True))
    guards = Guards.from_redis(client)
    for _ in range(5):
        guards.breakers.record_failure("openai:gpt-4.1-mini")
    client.calls.clear()
    decision = route(Criteria(task_type="code"), health=live_health(guards), models=MODELS)
    assert client.calls == Counter({"pipeline": 1})  # not three commands per model
    assert len(decision.ranking) + len(decision.rejected) == len(MODELS) > 25
    assert "openai:gpt-4.1-mini" in decision.rejected  # the pipelined read still sees the open breaker
