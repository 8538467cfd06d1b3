"""The model path's cost: one Redis script before and one after each model call, on one cluster slot, in
one round trip per call when outcomes are sent ahead of their replies; no Agno session-metrics work for
agents nothing stores; no metric objects when metrics are disabled."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from tdev.agents.chain import run_chain
from tdev.cache import connect
from tdev.llm.breaker import BreakerState, CircuitBreakers
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


# ---------------------------------------------------------------------- outcomes sent ahead of replies
class _RoundTrips:
    """Round trips on every connection: one starts when a request goes out while no reply is outstanding."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from redis.connection import AbstractConnection

        self.requests = self.round_trips = self.outstanding = 0
        send, read = AbstractConnection.send_command, AbstractConnection.read_response

        def counted_send(connection: Any, *args: Any, **kwargs: Any) -> Any:
            self.round_trips += self.outstanding == 0
            self.requests += 1
            self.outstanding += 1
            return send(connection, *args, **kwargs)

        def counted_read(connection: Any, *args: Any, **kwargs: Any) -> Any:
            self.outstanding = max(self.outstanding - 1, 0)
            return read(connection, *args, **kwargs)

        monkeypatch.setattr(AbstractConnection, "send_command", counted_send)
        monkeypatch.setattr(AbstractConnection, "read_response", counted_read)


def test_guards_that_defer_outcomes_take_one_round_trip_per_call_and_keep_the_state(
    any_redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each outcome is sent ahead of its reply, which is read behind the next call's admission."""
    redis = connect(any_redis_url, decode_responses=True)
    guards = Guards.from_redis(redis, defers_outcomes=True)
    client, stub = bedrock_client()
    for _ in range(6):
        stub.add_response("converse", converse_ok())
    with stub:
        run_chain(SPEC, [NOVA], PROMPT, guards=guards, resolve=resolver(client))  # loads the scripts
        assert guards.flush() is BreakerState.CLOSED
        trips = _RoundTrips(monkeypatch)
        for _ in range(5):
            run_chain(SPEC, [NOVA], PROMPT, guards=guards, resolve=resolver(client))
        guards.flush()
    assert trips.requests == 10  # two scripts per call, as before ...
    # ... in one round trip per call (each admission with the previous call's outcome), plus the last
    # outcome's own, read when the work ends
    assert trips.round_trips == 5 + 1
    monkeypatch.undo()
    limits = guards.limits
    assert guards.history.get(NOVA).calls == 6
    requests, tokens = (int(v) for v in redis.hmget(limits.key(NOVA), *limits.FIELDS))
    assert requests == 6 and tokens == 6 * 1200
    assert guards.breakers.state(NOVA) is BreakerState.CLOSED


def test_an_outcome_sent_ahead_reaches_redis_without_being_read(redis_url: str) -> None:
    """Not fire-and-forget, and not held back: Redis runs the outcome on arrival, so a process that stops
    before reading the reply (a frozen or killed Lambda) loses nothing."""
    now = [1_000.0]
    redis = connect(redis_url, decode_responses=True)
    guards = Guards.from_redis(redis, defers_outcomes=True, clock=lambda: now[0])
    admission = guards.admit(NOVA, 10)
    guards.settle(NOVA, admission, outcome="failure", latency_ms=5)  # loads the script
    for _ in range(4):
        admission = guards.admit(NOVA, 10)
        guards.settle_later(NOVA, admission, outcome="failure", latency_ms=5)
    # the fifth failure's reply is never read by `guards`: another client sees the breaker open
    observer = CircuitBreakers(connect(redis_url, decode_responses=True), clock=lambda: now[0])
    for _ in range(100):
        if observer.state(NOVA) is BreakerState.OPEN:
            break
        time.sleep(0.01)
    assert observer.state(NOVA) is BreakerState.OPEN
    assert guards.flush() is BreakerState.OPEN


def test_an_outcome_redis_did_not_run_is_run_again(redis_url: str) -> None:
    """NOSCRIPT (a restarted or failed-over Redis forgot the script): the outcome is run the ordinary way."""
    redis = connect(redis_url, decode_responses=True)
    guards = Guards.from_redis(redis, defers_outcomes=True)
    admission = guards.admit(NOVA, 10)
    redis.script_flush()  # every node of a cluster
    guards.settle_later(NOVA, admission, outcome="success", latency_ms=5)
    assert guards.flush() is BreakerState.CLOSED
    assert guards.history.get(NOVA).calls == 1


def test_a_task_reads_its_outcomes_before_it_ends(redis_url: str) -> None:
    from tdev.llm.fallback import model_guards

    with model_guards() as guards:
        assert guards is not None and guards.defers_outcomes
        admission = guards.admit(NOVA, 10)
        guards.settle_later(NOVA, admission, outcome="success", latency_ms=5)
        assert guards._in_flight.settle is not None
    assert guards._in_flight.settle is None
    assert guards.history.get(NOVA).calls == 1
