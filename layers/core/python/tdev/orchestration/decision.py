"""The decision engine: which agent serves an intent, how sure we are, and why.

Three signals vote for every candidate agent:

* **rules** - the specification's regular expressions (``code|implement|develop`` -> CodeAgent, ...). A
  rule hit is worth ``RULE_CONFIDENCE`` (0.8, the spec's number). Rules carry the most weight (0.5)
  because they encode what the user literally asked for; a verb like "test" or "design" is the
  strongest evidence a short request contains.
* **keyword similarity** - a bag-of-words cosine between the request and the agent's description,
  keywords and capabilities (see ``classifier``). It catches requests the rules miss ("add a REST
  endpoint", "pentest the login form") and separates agents when several rules fire, but it is noisier
  than a literal rule, so it weighs 0.3. With these two weights alone (0.625 / 0.375 after
  renormalisation) a rule hit (0.625 x 0.8 = 0.5) always beats a keyword-only candidate (at most
  0.375): a weak word overlap can never overrule what the user said.
* **history** - each agent's past success rate for this kind of work (``AgentHistory``). It weighs 0.2:
  enough to settle a close call between agents that both match, not enough to route a request to an
  agent nothing in the text points at. History only re-ranks candidates the text produced; it never
  adds one.

When no candidate has any history the history weight is dropped and the other two are renormalised,
so a fresh deployment does not divide every confidence by 1.25 for lack of data. When some candidates
have history and others do not, the ones without data get the neutral prior ``NEUTRAL_HISTORY`` (0.5):
absence of data neither helps nor hurts against an average agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from tdev.agents.catalog import intent_slug
from tdev.errors import PlanningError
from tdev.models import Decision
from tdev.orchestration.routing import LoadBalancer

RULE_CONFIDENCE = 0.8
RULE_WEIGHT = 0.5
KEYWORD_WEIGHT = 0.3
HISTORY_WEIGHT = 0.2
NEUTRAL_HISTORY = 0.5
FALLBACK_CONFIDENCE = 0.05


class AgentHistory(Protocol):
    """Where past outcomes come from (the executions table in production, a dict in tests)."""

    def success_rate(self, agent: str) -> float | None:
        """The share of the agent's past tasks that succeeded, in [0, 1]; None when there is no data."""
        ...


class NoHistory:
    """The default history: no data for anyone, so decisions rest on the request text alone."""

    def success_rate(self, agent: str) -> float | None:
        return None


@dataclass(frozen=True)
class Signals:
    """What the text says about one candidate agent; produced by the classifier, weighed here."""

    agent: str
    rule: float = 0.0
    rule_evidence: tuple[str, ...] = ()
    keyword: float = 0.0
    keyword_evidence: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (0.0 <= self.rule <= 1.0 and 0.0 <= self.keyword <= 1.0):
            raise ValueError(f"signals for {self.agent} must lie in [0, 1]: {self.rule}, {self.keyword}")


@dataclass(frozen=True)
class _Scored:
    signals: Signals
    history: float | None
    score: float


class DecisionEngine:
    """Combines rules, keyword similarity and history into a `Decision` (weights: see the module doc)."""

    def __init__(self, history: AgentHistory | None = None, balancer: LoadBalancer | None = None) -> None:
        self.history: AgentHistory = history if history is not None else NoHistory()
        self.balancer = balancer

    def decide(self, subject: str, candidates: Sequence[Signals]) -> Decision:
        """Pick the best candidate for `subject` (the text of one intent).

        Ties are broken by the rule signal, then the keyword signal, then the candidates' order (the
        catalog's), so the same input always yields the same decision.
        """
        if not candidates:
            raise PlanningError(
                f"no agent candidate for the request ({len(subject)} characters)", field="request"
            )
        ranked = self._rank(candidates)
        best = ranked[0]
        routing = ""
        if self.balancer is not None:  # load-aware: among the agents the load balancer reports available
            routed = self.balancer.choose(
                intent_slug(best.signals.agent), [(s.signals.agent, s.score) for s in ranked]
            )
            best = next(s for s in ranked if s.signals.agent == routed.agent)
            routing = f" Routing ({routed.strategy.value}): {routed.reason}."
        return Decision(
            intent=intent_slug(best.signals.agent),
            agent=best.signals.agent,
            confidence=round(best.score, 4),
            reasoning=self._reasoning(subject, best, ranked) + routing,
            alternatives=[
                (other.signals.agent, round(other.score, 4)) for other in ranked if other is not best
            ],
        )

    def fallback(self, subject: str, agent: str) -> Decision:
        """The decision recorded when nothing in the request matched and `agent` takes it anyway."""
        return Decision(
            intent=intent_slug(agent),
            agent=agent,
            confidence=FALLBACK_CONFIDENCE,
            reasoning=(
                f'Fallback: no rule, keyword or history signal matched "{_clip(subject)}", so the '
                f"general-purpose {agent} takes the request at low confidence."
            ),
        )

    def _rank(self, candidates: Sequence[Signals]) -> list[_Scored]:
        rates = {signals.agent: self._success_rate(signals.agent) for signals in candidates}
        use_history = any(rate is not None for rate in rates.values())
        scored = []
        for signals in candidates:
            rate = rates[signals.agent]
            if use_history:
                history = NEUTRAL_HISTORY if rate is None else rate
                text_score = RULE_WEIGHT * signals.rule + KEYWORD_WEIGHT * signals.keyword
                score = text_score + HISTORY_WEIGHT * history
            else:
                score = (RULE_WEIGHT * signals.rule + KEYWORD_WEIGHT * signals.keyword) / (
                    RULE_WEIGHT + KEYWORD_WEIGHT
                )
            scored.append(_Scored(signals, rate, score))
        # sorted() is stable: equal keys keep the candidates' (catalog) order.
        return sorted(scored, key=lambda s: (-s.score, -s.signals.rule, -s.signals.keyword))

    def _success_rate(self, agent: str) -> float | None:
        rate = self.history.success_rate(agent)
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise ValueError(f"success rate of {agent} must lie in [0, 1], got {rate}")
        return rate

    @staticmethod
    def _reasoning(subject: str, best: _Scored, ranked: list[_Scored]) -> str:
        votes = []
        ruled = [s for s in ranked if s.signals.rule > 0]
        if ruled:
            hits = ", ".join(f"{s.signals.agent} ({_quoted(s.signals.rule_evidence)})" for s in ruled)
            votes.append(f"rules matched {hits}")
        else:
            votes.append("no rule matched")
        by_keyword = max(ranked, key=lambda s: s.signals.keyword)
        if by_keyword.signals.keyword > 0:
            votes.append(
                f"keyword similarity favoured {by_keyword.signals.agent} "
                f"({by_keyword.signals.keyword:.2f} on {_quoted(by_keyword.signals.keyword_evidence)})"
            )
        else:
            votes.append("no keyword overlap")
        known = [s for s in ranked if s.history is not None]
        if known:
            by_history = max(known, key=lambda s: s.history or 0.0)
            votes.append(
                f"history favoured {by_history.signals.agent} (success rate {by_history.history:.2f})"
            )
        else:
            votes.append("no history")
        return (
            f'{best.signals.agent} chosen for "{_clip(subject)}" with confidence {best.score:.2f}: '
            + "; ".join(votes)
            + "."
        )


def _quoted(words: tuple[str, ...]) -> str:
    return ", ".join(f'"{word}"' for word in words) if words else "no terms"


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
