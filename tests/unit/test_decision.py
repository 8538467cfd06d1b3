"""The decision engine: signal weights, rules over weak keywords, history as a tie-breaker, reasoning."""

from __future__ import annotations

import pytest

from tdev.errors import PlanningError
from tdev.orchestration.decision import (
    FALLBACK_CONFIDENCE,
    AgentHistory,
    DecisionEngine,
    NoHistory,
    Signals,
)


class DictHistory:
    """Success rates from a dict; agents missing from it have no data."""

    def __init__(self, rates: dict[str, float]) -> None:
        self.rates = rates

    def success_rate(self, agent: str) -> float | None:
        return self.rates.get(agent)


def test_a_rule_beats_a_strong_keyword_only_match() -> None:
    # Given one agent named by a rule with a weak keyword score, another with a perfect keyword score only
    candidates = [
        Signals("TestAgent", keyword=1.0, keyword_evidence=("coverage",)),
        Signals("CodeAgent", rule=0.8, rule_evidence=("implement",), keyword=0.05),
    ]

    # When the engine decides
    decision = DecisionEngine().decide("implement coverage", candidates)

    # Then the rule wins
    assert decision.agent == "CodeAgent"
    assert decision.intent == "implement"
    assert decision.alternatives == [("TestAgent", 0.375)]


def test_without_history_the_text_weights_are_renormalised() -> None:
    # Given a rule-only candidate and no history for anyone
    decision = DecisionEngine(NoHistory()).decide("design", [Signals("DesignAgent", rule=0.8)])

    # Then confidence = 0.5 * 0.8 / (0.5 + 0.3)
    assert decision.confidence == 0.5


def test_history_shifts_a_close_decision() -> None:
    # Given two agents both named by a rule with nearly equal keyword scores
    candidates = [
        Signals("TestAgent", rule=0.8, rule_evidence=("test",), keyword=0.30),
        Signals("SecurityAgent", rule=0.8, rule_evidence=("security",), keyword=0.35),
    ]
    subject = "test the security of the login flow"

    # When there is no history, the keyword score decides
    assert DecisionEngine().decide(subject, candidates).agent == "SecurityAgent"

    # When TestAgent has a much better track record, it wins
    history = DictHistory({"TestAgent": 0.95, "SecurityAgent": 0.40})
    decision = DecisionEngine(history).decide(subject, candidates)
    assert decision.agent == "TestAgent"
    assert decision.confidence == round(0.5 * 0.8 + 0.3 * 0.30 + 0.2 * 0.95, 4)
    assert "history favoured TestAgent (success rate 0.95)" in decision.reasoning


def test_history_does_not_overturn_a_clear_rule_decision() -> None:
    # Given only one agent named by a rule, and a perfect history for the keyword-only one
    candidates = [
        Signals("CodeAgent", rule=0.8, keyword=0.2),
        Signals("ReviewAgent", keyword=0.3),
    ]
    history = DictHistory({"CodeAgent": 0.3, "ReviewAgent": 1.0})

    assert DecisionEngine(history).decide("implement it", candidates).agent == "CodeAgent"


def test_agents_without_history_get_a_neutral_prior_when_others_have_data() -> None:
    # Given equal text signals, one agent with an average record and one with none
    candidates = [
        Signals("TestAgent", rule=0.8, keyword=0.3),
        Signals("SecurityAgent", rule=0.8, keyword=0.3),
    ]
    decision = DecisionEngine(DictHistory({"SecurityAgent": 0.5})).decide("check it", candidates)

    # Then neither is favoured by history: both score the same, and the tie goes to the first candidate
    assert decision.agent == "TestAgent"
    assert decision.alternatives == [("SecurityAgent", decision.confidence)]


def test_reasoning_names_the_signals_that_voted() -> None:
    candidates = [
        Signals(
            "SecurityAgent",
            rule=0.8,
            rule_evidence=("vulnerabilities",),
            keyword=0.4,
            keyword_evidence=("xss",),
        ),
        Signals("ReviewAgent", rule=0.8, rule_evidence=("audit",), keyword=0.1),
    ]

    reasoning = DecisionEngine().decide("audit for vulnerabilities", candidates).reasoning

    assert reasoning == (
        'SecurityAgent chosen for "audit for vulnerabilities" with confidence 0.65: '
        'rules matched SecurityAgent ("vulnerabilities"), ReviewAgent ("audit"); '
        'keyword similarity favoured SecurityAgent (0.40 on "xss"); no history.'
    )


def test_alternatives_are_ranked_best_first() -> None:
    candidates = [
        Signals("A1Agent", keyword=0.2),
        Signals("A2Agent", keyword=0.9),
        Signals("A3Agent", keyword=0.5),
    ]

    decision = DecisionEngine().decide("anything", candidates)

    assert decision.agent == "A2Agent"
    assert [agent for agent, _ in decision.alternatives] == ["A3Agent", "A1Agent"]


def test_fallback_is_low_confidence_and_says_so() -> None:
    decision = DecisionEngine().fallback("make it nicer", "CodeAgent")

    assert (decision.agent, decision.intent, decision.confidence) == (
        "CodeAgent",
        "implement",
        FALLBACK_CONFIDENCE,
    )
    assert decision.reasoning.startswith(
        'Fallback: no rule, keyword or history signal matched "make it nicer"'
    )


def test_no_candidates_is_a_planning_error() -> None:
    with pytest.raises(PlanningError):
        DecisionEngine().decide("nothing", [])


def test_a_success_rate_outside_zero_one_is_refused() -> None:
    engine = DecisionEngine(DictHistory({"CodeAgent": 95.0}))

    with pytest.raises(ValueError, match="CodeAgent"):
        engine.decide("implement", [Signals("CodeAgent", rule=0.8)])


def test_signals_outside_zero_one_are_refused() -> None:
    with pytest.raises(ValueError):
        Signals("CodeAgent", keyword=1.5)


def test_history_implementations_satisfy_the_protocol() -> None:
    history: AgentHistory = DictHistory({"CodeAgent": 0.9})

    assert history.success_rate("CodeAgent") == 0.9
    assert NoHistory().success_rate("CodeAgent") is None
