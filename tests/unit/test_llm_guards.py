"""The model path's cost: one Redis script before and one after each model call, on one cluster slot;
no Agno session-metrics work for agents nothing stores; no metric objects when metrics are disabled."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tdev.agents.chain import run_chain
from tdev.cache import connect
from tdev.llm.breaker import BreakerState
from tdev.llm.fallback import Guards
from tdev.llm.limits import estimate_tokens
from tests.unit.test_llm_fallback import NOVA, PROMPT, SPEC, bedrock_client, converse_ok, resolver


class _Counting:
    """Counts the commands sent through a client (scripts go out as EVALSHA)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, Counter[str]()
        original = inner.execute_command

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[str(args[0]).upper()] += 1
            return original(*args, **kwargs)

        inner.execute_command = counted


def test_a_model_call_sends_two_redis_commands_one_script_before_and_one_after(redis_url: str) -> None:
    guards = Guards.from_redis(connect(redis_url, decode_responses=True))
    client, stub = bedrock_client()
    for _ in range(3):
        stub.add_response("converse", converse_ok())
    counting = _Counting(guards.breakers.redis)
    with stub:
        run_chain(SPEC, [NOVA], PROMPT, guards=guards, resolve=resolver(client))  # loads the scripts
        counting.calls.clear()
        run_chain(SPEC, [NOVA], PROMPT, guards=guards, resolve=resolver(client))
    assert counting.calls == Counter({"EVALSHA": 2})

    # ... and they did all the work of the five round trips they replace.
    limits = guards.limits
    assert guards.breakers.state(NOVA) is BreakerState.CLOSED
    assert guards.history.get(NOVA).calls == 2
    requests, tokens = (int(v) for v in guards.breakers.redis.hmget(limits.key(NOVA), *limits.FIELDS))
    assert requests == 2 and tokens == 2 * 1200  # the estimate replaced by the tokens really used
    assert estimate_tokens(PROMPT) != 1200


def test_the_per_call_scripts_keep_the_breakers_behaviour(redis_url: str) -> None:
    """5 transient failures open the breaker; after 30 s one probe is admitted; 3 successes close it."""
    now = [1_000.0]
    guards = Guards.from_redis(connect(redis_url, decode_responses=True), clock=lambda: now[0])
    for _ in range(5):
        admission = guards.admit(NOVA, 10)
        assert admission.skipped_by is None
        guards.settle(NOVA, admission, outcome="failure", latency_ms=5)
    assert guards.admit(NOVA, 10).skipped_by == "breaker_open"
    now[0] += 31
    probe = guards.admit(NOVA, 10)
    assert probe.skipped_by is None and probe.breaker is BreakerState.HALF_OPEN
    assert guards.admit(NOVA, 10).skipped_by == "breaker_open"  # one probe lease at a time
    states = []
    for _ in range(3):
        states.append(guards.settle(NOVA, probe, outcome="success", latency_ms=5))
        probe = guards.admit(NOVA, 10)
    assert states == [BreakerState.HALF_OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
    assert guards.history.get(NOVA).calls == 8


def test_a_half_open_probe_skipped_for_its_rate_gives_the_lease_back(redis_url: str) -> None:
    now = [1_000.0]
    guards = Guards.from_redis(connect(redis_url, decode_responses=True), clock=lambda: now[0])
    guards.limits.limits = lambda _model: (10, 0)  # 10 requests a minute
    for _ in range(5):
        guards.breakers.record_failure(NOVA)
    for _ in range(8):  # 80 % of the minute's requests
        guards.breakers.redis.hincrby(guards.limits.key(NOVA), "requests", 1)
    now[0] += 31
    skipped = guards.admit(NOVA, 10)
    assert skipped.skipped_by == "rate_limited" and skipped.usage == pytest.approx(0.8)
    assert guards.breakers.acquire(NOVA).allowed  # the lease was released, so a later probe may go


def test_agno_session_metrics_are_not_computed_for_an_agent_without_a_db(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import agno.agent._run as agno_run
    import agno.agent._storage as agno_storage

    import tdev.agents.runtime  # noqa: F401  # installs the skip

    assert getattr(agno_run.update_session_metrics, "tdev_skips_unstored", False)
    computed: list[object] = []
    monkeypatch.setattr(
        agno_storage, "get_session_metrics_internal", lambda agent, session: computed.append(agent)
    )
    client, stub = bedrock_client()
    stub.add_response("converse", converse_ok())
    with stub:
        run_chain(SPEC, [NOVA], PROMPT, resolve=resolver(client))
    assert computed == []

    class Stored:
        db = object()

    agno_run.update_session_metrics(Stored(), session=object(), run_response=object())  # type: ignore[arg-type]
    assert len(computed) == 1  # an agent with a db still gets Agno's session metrics


def test_no_metric_objects_are_built_when_metrics_are_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    import tdev.llm.fallback as fallback

    built: list[str] = []
    real = fallback.single_metric
    monkeypatch.setattr(fallback, "single_metric", lambda **kw: built.append(kw["name"]) or real(**kw))
    client, stub = bedrock_client()
    stub.add_response("converse", converse_ok())
    stub.add_response("converse", converse_ok())
    with stub:
        monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
        run_chain(SPEC, [NOVA], PROMPT, resolve=resolver(client))
        assert built == []
        monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
        run_chain(SPEC, [NOVA], PROMPT, resolve=resolver(client))
        assert built == ["LLMCalls", "LLMLatency"]
