"""The agent pool (spec 1.5): agents reused across runs, reset on release, bounded (an exhausted pool is a
clear, retryable error), idle ones dropped after the timeout above the minimum, pre-warmed on request, and
every build, memory measure, lease and failure a metric."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tdev.agents import runtime
from tdev.agents.catalog import DEFAULT_AGENTS
from tdev.agents.pool import AgentPool, PoolConfig, bucket_of
from tdev.agents.runtime import build_agent, run_agent
from tdev.errors import AgentError, AgentPoolExhausted, CapacityExhausted, ConfigurationError
from tdev.llm.catalog import resolve_model

SPEC = DEFAULT_AGENTS[1]  # CodeAgent
MODEL = "offline:tdev-offline-1"
PROMPT = (
    '<request>a hello world</request>\n<task id="implement" agent="CodeAgent" intent="implement">x</task>'
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fresh_pool(monkeypatch: pytest.MonkeyPatch) -> AgentPool:
    """run_agent's pool, replaced by a small one for the test."""
    pool = AgentPool(PoolConfig(min_size=0, max_size=2, idle_timeout_seconds=60), build=build_agent)
    monkeypatch.setattr(runtime, "agent_pool", lambda: pool)
    return pool


def test_run_agent_reuses_a_pooled_agent_and_resets_it_between_runs(fresh_pool: AgentPool) -> None:
    # Given two runs of the same agent on the same model, one after the other
    first = run_agent(SPEC, MODEL, PROMPT)
    (pooled,) = fresh_pool._kinds[(SPEC.ref, MODEL, False)].idle
    agent = pooled.agent
    assert agent.session_id is None and agent.model is None and agent.tools == []  # reset on release
    second = run_agent(SPEC, MODEL, PROMPT)

    # Then both answered, one agent was built, and it is idle again, reset
    assert first.output and second.output
    kind = fresh_pool._kinds[(SPEC.ref, MODEL, False)]
    assert [p.agent for p in kind.idle] == [agent] and kind.in_use == 0
    assert agent.session_id is None and fresh_pool.active() == 0


def test_an_exhausted_pool_is_a_clear_error_the_workflow_waits_on(fresh_pool: AgentPool) -> None:
    model = resolve_model(MODEL)
    with (
        fresh_pool.lease(SPEC, MODEL, model=model) as one,
        fresh_pool.lease(SPEC, MODEL, model=model) as two,
    ):
        assert one is not two and fresh_pool.active() == 2
        with pytest.raises(AgentPoolExhausted) as exhausted, fresh_pool.lease(SPEC, MODEL, model=model):
            pytest.fail("leased a third agent from a pool of 2")
        # another kind (another agent) has its own bound
        with fresh_pool.lease(DEFAULT_AGENTS[0], MODEL, model=model):
            assert fresh_pool.active() == 3
    assert "exhausted" in str(exhausted.value) and "2/2 in use" in str(exhausted.value)
    assert isinstance(exhausted.value, CapacityExhausted)  # the ASL Retry on capacity waits on it
    assert exhausted.value.code == "AgentPoolExhausted"
    assert fresh_pool.active() == 0


def test_idle_agents_past_the_timeout_are_dropped_down_to_the_minimum() -> None:
    clock = Clock()
    pool = AgentPool(
        PoolConfig(min_size=1, max_size=5, idle_timeout_seconds=60), build=build_agent, clock=clock
    )
    model = resolve_model(MODEL)
    with pool.lease(SPEC, MODEL, model=model), pool.lease(SPEC, MODEL, model=model):
        pass
    assert pool.idle(SPEC, MODEL) == 2
    clock.now += 61
    with pool.lease(DEFAULT_AGENTS[0], MODEL, model=model):
        pass  # (another kind: CodeAgent's are only looked at on its next lease)
    with pool.lease(SPEC, MODEL, model=model):
        assert pool.idle(SPEC, MODEL) == 0  # one past the timeout dropped, the other leased again
    assert pool.idle(SPEC, MODEL) == 1  # the minimum is kept


def test_pre_warm_builds_the_minimum_of_each_agent() -> None:
    pool = AgentPool(PoolConfig(min_size=2, max_size=5, pre_warm=True), build=build_agent)

    built = pool.pre_warm(DEFAULT_AGENTS, MODEL, resolve_model)

    assert built == 2 * len(DEFAULT_AGENTS)
    assert all(pool.idle(spec, MODEL) == 2 for spec in DEFAULT_AGENTS)
    assert pool.pre_warm(DEFAULT_AGENTS, MODEL, resolve_model) == 0  # already warm
    with pool.lease(SPEC, MODEL, model=resolve_model(MODEL)):
        assert pool.idle(SPEC, MODEL) == 1


def test_invalid_settings_are_refused() -> None:
    for bad in ({"min_size": 3, "max_size": 2}, {"max_size": 0}, {"idle_timeout_seconds": -1}):
        with pytest.raises(ValueError):
            PoolConfig(**bad)  # type: ignore[arg-type]


def test_the_instantiation_histogram_buckets() -> None:
    assert [bucket_of(us) for us in (0.5, 1, 2, 3, 9, 50, 100, 999, 1_000, 1_001)] == [
        "le_1us",
        "le_1us",
        "le_3us",
        "le_3us",
        "le_10us",
        "le_100us",
        "le_100us",
        "le_1ms",
        "le_1ms",
        "gt_1ms",
    ]


def test_builds_memory_leases_and_errors_are_metrics(
    fresh_pool: AgentPool, capsys: pytest.CaptureFixture[str]
) -> None:
    from tdev.observability import metrics

    metrics.clear_metrics()  # (the leases of earlier tests)
    capsys.readouterr()
    run_agent(SPEC, MODEL, PROMPT)
    with pytest.raises(AgentError), fresh_pool.lease(SPEC, MODEL, model=resolve_model(MODEL)):
        raise AgentError("an empty answer")  # a run that failed

    metrics.flush_metrics()  # (what the handler's log_metrics does at the end of an invocation)
    records: list[dict[str, Any]] = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line
    ]
    names = [r["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"] for r in records]
    assert names.count("AgentInstantiationTime") == 1  # built once, then reused
    (histogram,) = [r for r in records if "AgentInstantiations" in r]
    assert histogram["bucket"] in {"le_1us", "le_3us", "le_10us", "le_100us", "le_1ms", "gt_1ms"}
    (memory,) = [r for r in records if "AgentMemory" in r]
    assert memory["agent"] == "CodeAgent" and _value(memory["AgentMemory"]) > 1_000  # bytes
    (active,) = [r["ActiveAgents"] for r in records if "ActiveAgents" in r]
    assert active == [1.0, 1.0]  # at each lease
    (error,) = [r for r in records if "AgentErrors" in r]
    assert error["type"] == "AgentError"
    assert all(r["service"] == "agent_pool" for r in records if "ActiveAgents" not in r)


def _value(value: Any) -> float:
    return float(value[0] if isinstance(value, list) else value)


def test_the_pool_is_sized_by_its_settings_and_pre_warms_at_cold_start_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TABLE_NAME", "tdev-test")
    monkeypatch.setenv("TDEV_AGENT_POOL_MIN_SIZE", "1")
    monkeypatch.setenv("TDEV_AGENT_POOL_MAX_SIZE", "3")
    monkeypatch.setenv("TDEV_AGENT_POOL_IDLE_TIMEOUT_SECONDS", "30")
    monkeypatch.setenv("TDEV_AGENT_POOL_PRE_WARM", "true")
    from tdev.settings import get_settings

    get_settings.cache_clear()
    runtime.agent_pool.cache_clear()
    try:
        pool = runtime.agent_pool()
        assert pool.config == PoolConfig(min_size=1, max_size=3, idle_timeout_seconds=30, pre_warm=True)
        assert runtime.pre_warm_at_cold_start() == len(DEFAULT_AGENTS)
        assert pool.idle(SPEC, get_settings().default_model) == 1
        monkeypatch.setenv("TDEV_AGENT_POOL_MAX_SIZE", "0")
        runtime.agent_pool.cache_clear()
        with pytest.raises(ConfigurationError, match="TDEV_AGENT_POOL"):
            runtime.agent_pool()
    finally:
        runtime.agent_pool.cache_clear()
        get_settings.cache_clear()
