"""Intent classification: which kinds of work a request asks for, and which agent should do each.

Pure Python and deterministic on purpose: planning runs on every request, must cost nothing, must give
the same plan for the same text (plans are compared in tests and replayed after a crash), and must not
depend on a model being reachable. The signals it produces are weighed by `DecisionEngine`.

How a request is read:

1. It is split into clauses at punctuation and conjunctions ("Design and implement X, with unit tests"
   -> "Design" | "implement X" | "unit tests"). A clause is one piece of work, so it gets one agent;
   a request gets as many intents as its clauses name (clauses naming the same agent merge).
2. Negated words ("no tests", "without a review") are blanked, and a clause that says its work is "not
   needed" is dropped.
3. Rules: the spec's regular expressions, each hit worth 0.8. Before they run, nouns that are the
   *object* of other work are blanked, because the spec's bare stems misroute them: "code review" and
   "review the code" are reviews, "security review" and an audit "for vulnerabilities" are the
   security agent's, "implement the design" is coding, and "a service that validates tokens" or "input
   validation" describe the software, not a testing task.
4. Keyword similarity: a TF-IDF cosine between the clause's stemmed words (plus concept words from a
   small synonym table: "endpoint" -> code, "owasp" -> security, ...) and each agent's description,
   keywords and capabilities. Words no agent knows are left out of the clause's vector, so they do not
   dilute it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from agent_squad.agents import Agent
from agent_squad.classifiers.classifier import Classifier, ClassifierResult
from agent_squad.types import ConversationMessage

from tdev.agents.catalog import DEFAULT_AGENTS
from tdev.errors import ConfigurationError
from tdev.models import AgentSpec, Decision
from tdev.orchestration.decision import RULE_CONFIDENCE, AgentHistory, DecisionEngine, Signals
from tdev.orchestration.routing import LoadBalancer

# A clause with no rule hit becomes an intent only if its best keyword similarity reaches this: one
# strongly routed word ("pentest the login form", "add a REST endpoint") does, a passing mention of a
# generic word does not. Below KEYWORD_CANDIDATE_MIN an agent is not even listed as an alternative.
KEYWORD_INTENT_MIN = 0.2
KEYWORD_CANDIDATE_MIN = 0.05
# Nothing in the text matched, but the conversation was already with an agent ("yes", "go on").
FOLLOW_UP_CONFIDENCE = 0.5
MAX_KEYWORD_EVIDENCE = 5


@dataclass(frozen=True)
class Rule:
    """A literal routing rule: any match of `pattern` (on lower-cased text) votes for `agent`."""

    agent: str
    pattern: re.Pattern[str]


# The specification's rules, plus ReviewAgent's (the spec names no rule for it). "security" rather than
# "secur\w*": "implement a secure login" asks for code, not for a security review.
SPEC_RULES: tuple[Rule, ...] = (
    Rule("DesignAgent", re.compile(r"\b(?:design\w*|architect\w*)")),
    Rule("CodeAgent", re.compile(r"\b(?:cod(?:e|es|ed|ing)|implement\w*|develop\w*)\b")),
    Rule("TestAgent", re.compile(r"\b(?:test\w*|verif\w*|validat\w*)")),
    Rule("SecurityAgent", re.compile(r"\b(?:security|vulnerabilit\w*)")),
    Rule("ReviewAgent", re.compile(r"\b(?:review\w*|audit\w*|quality)\b")),
)

# Each pattern blanks its group `m` before the rules run (see the module docstring, step 3).
_RULE_MASKS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\b(?P<m>code)\s+(?:review|audit|quality|smell|style|coverage|base)"),
    re.compile(r"\b(?P<m>design|architecture)\s+(?:review|audit)"),
    re.compile(r"\bsecurity\s+(?P<m>review\w*|audit\w*)"),
    re.compile(r"\b(?P<m>review\w*|audit\w*)\b(?=.*\b(?:for|of)\s+(?:\w+\s+)?(?:security|vulnerabilit))"),
    re.compile(
        r"\b(?:review|audit|inspect|scan|analy[sz]e|check|test|verify|validate|implement|build|refactor"
        r"|fix|harden)\w*\s+(?:[\w'-]+\s+){0,4}(?P<m>code|design|architecture|implementation)\b"
    ),
    re.compile(r"\b(?:source|existing|legacy|generated)\s+(?P<m>code)\b"),
    re.compile(r"\b(?:that|which|who)\s+(?:\w+\s+)?(?P<m>validat\w*|verif\w*|test\w*)"),
    re.compile(
        r"\b(?:input|form|data|schema|request|payload|field|email|password|token|signature)\s+"
        r"(?P<m>validation|verification)"
    ),
)
_NEGATION = re.compile(
    r"\b(?:no|not|never|without|skip|skipping|excluding|except|don't|dont)\b(?:\W+\w+){0,3}"
)
_NOT_NEEDED = re.compile(r"\b(?:not\s+(?:needed|required|necessary|wanted)|unnecessary|unneeded)\b")
_CLAUSE_BREAK = re.compile(
    r"[,;:.!?\n]+|\b(?:and|then|with|plus|also|as well as|followed by|afterwards|including)\b"
)
_FOLLOW_UP_PREFIX = re.compile(r"^\[([^\]]+)\]")

_WORD = re.compile(r"[a-z0-9]+")
# The tables below are laid out by hand (compact rows); the formatter would put one entry per line.
# fmt: off
_STOPWORDS = frozenset((
    "a", "an", "the", "and", "or", "of", "for", "to", "in", "on", "at", "by", "with", "from", "into",
    "onto", "is", "are", "be", "been", "being", "it", "its", "this", "that", "these", "those", "as", "we",
    "i", "you", "our", "my", "your", "me", "us", "please", "can", "could", "would", "should", "will",
    "shall", "do", "does", "did", "let", "need", "needs", "want", "using", "use", "via", "per", "any",
    "all", "some", "each", "every", "also", "then", "so", "just", "new", "very",
))
# Suffixes stripped by `stem` (longest first); the number is the shortest stem that may remain.
_SUFFIXES: tuple[tuple[str, str, int], ...] = tuple(
    sorted(
        [
            ("ities", "", 4), ("ity", "", 4), ("ings", "", 3), ("ing", "", 3), ("ions", "", 4),
            ("ion", "", 4), ("ments", "", 6), ("ment", "", 6), ("ural", "", 4), ("ures", "", 4),
            ("ure", "", 4), ("ers", "", 4), ("er", "", 4), ("ies", "y", 3), ("ied", "y", 3),
            ("es", "", 4), ("ed", "", 4), ("ly", "", 4), ("s", "", 3),
        ],
        key=lambda entry: -len(entry[0]),
    )
)

# Concept words added to a clause when it contains a synonym, so the synonym counts for the agent whose
# vocabulary holds the concept even when the agent's spec never mentions the synonym itself.
SYNONYMS: dict[str, str] = {
    "api": "code", "endpoint": "code", "function": "code", "refactor": "code", "bug": "code",
    "script": "code", "crud": "code", "frontend": "code", "backend": "code", "app": "code",
    "website": "code", "cli": "code",
    "pentest": "security", "owasp": "security", "threat": "security", "xss": "security",
    "injection": "security", "auth": "security", "csrf": "security", "exploit": "security",
    "cve": "security", "hardening": "security",
    "unit tests": "test", "unit test": "test", "coverage": "test", "qa": "test", "tdd": "test",
    "e2e": "test", "pytest": "test", "regression": "test",
    "schema": "design", "diagram": "design", "architecture": "design", "erd": "design", "uml": "design",
    "blueprint": "design", "data model": "design",
    "lint": "review", "readability": "review", "maintainability": "review", "critique": "review",
    "feedback": "review",
}
# fmt: on


def stem(word: str) -> str:
    """A small suffix-stripping stemmer: enough to make "tests/testing/tested" or "security/secure" meet.

    Only the keyword signal uses it (rules match raw text), so an imperfect stem costs a little recall,
    never a wrong route.
    """
    for suffix, replacement, min_stem in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= min_stem:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                continue
            word = word[: len(word) - len(suffix)] + replacement
            break
    if len(word) > 4 and word.endswith("e"):
        word = word[:-1]
    if len(word) > 6 and word.endswith("at"):
        word = word[:-2]
    return word


def _tokens(text: str) -> list[tuple[str, str]]:
    """(stem, surface word) pairs of the informative words of `text`."""
    return [(stem(word), word) for word in _WORD.findall(text.lower()) if word not in _STOPWORDS]


def _phrase_key(phrase: str) -> tuple[str, ...]:
    return tuple(stem_ for stem_, _ in _tokens(phrase))


_SYNONYM_KEYS: dict[tuple[str, ...], str] = {_phrase_key(k): stem(v) for k, v in SYNONYMS.items()}


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + " " * (end - start) + text[end:]


@dataclass(frozen=True)
class IntentMatch:
    """One kind of work found in a request: the agent chosen for it, how sure, and the words that said so."""

    intent: str
    agent: str
    confidence: float
    evidence: tuple[str, ...]
    decision: Decision


class _KeywordIndex:
    """TF-IDF vectors of the agents' routing vocabulary, and the cosine of a clause against each."""

    def __init__(self, specs: Sequence[AgentSpec]) -> None:
        docs = {
            spec.name: Counter(
                stem_
                for stem_, _ in _tokens(
                    " ".join([spec.role, spec.description, *spec.keywords, *spec.capabilities])
                )
            )
            for spec in specs
        }
        df = Counter(term for counts in docs.values() for term in counts)
        self.idf = {term: math.log((1 + len(docs)) / (1 + n)) + 1.0 for term, n in df.items()}
        self.vectors = {name: self._unit(self._weigh(counts)) for name, counts in docs.items()}

    def _weigh(self, counts: Counter[str]) -> dict[str, float]:
        return {t: (1.0 + math.log(n)) * self.idf[t] for t, n in counts.items() if t in self.idf}

    @staticmethod
    def _unit(vector: dict[str, float]) -> dict[str, float]:
        norm = math.sqrt(sum(w * w for w in vector.values()))
        return {t: w / norm for t, w in vector.items()} if norm else {}

    def scores(self, clause: str) -> dict[str, tuple[float, tuple[str, ...]]]:
        """Per agent: cosine similarity with `clause`, and the clause's words that contributed most."""
        tokens = _tokens(clause)
        terms = [stem_ for stem_, _ in tokens]
        surface = {stem_: word for stem_, word in reversed(tokens)}  # first occurrence wins
        words = tuple(terms)
        for size in (2, 1):
            for i in range(len(words) - size + 1):
                concept = _SYNONYM_KEYS.get(words[i : i + size])
                if concept is not None:
                    terms.append(concept)
                    surface.setdefault(concept, " ".join(word for _, word in tokens[i : i + size]))
        query = self._unit(self._weigh(Counter(terms)))
        result = {}
        for agent, vector in self.vectors.items():
            contributions = {t: w * vector[t] for t, w in query.items() if t in vector}
            ranked = sorted(contributions, key=lambda t: (-contributions[t], t))
            evidence = tuple(dict.fromkeys(surface[t] for t in ranked))[:MAX_KEYWORD_EVIDENCE]
            result[agent] = (min(sum(contributions.values()), 1.0), evidence)
        return result


class IntentClassifier(Classifier):
    """Finds every intent in a request (`intents`) and routes Agent Squad requests (`process_request`).

    `specs` is the catalog to route among; rules for agents that are not in it are ignored, and an
    agent in it without a rule is routed by keyword similarity (and history) alone.
    """

    def __init__(
        self,
        specs: Sequence[AgentSpec] = DEFAULT_AGENTS,
        history: AgentHistory | None = None,
        rules: Sequence[Rule] = SPEC_RULES,
        balancer: LoadBalancer | None = None,
    ) -> None:
        super().__init__()
        names = [spec.name for spec in specs]
        if not names or len(set(names)) != len(names):
            raise ConfigurationError(f"the agent catalog must be non-empty with unique names: {names}")
        self.specs = tuple(specs)
        self.engine = DecisionEngine(history, balancer)
        self.rules = tuple(rule for rule in rules if rule.agent in names)
        self._index = _KeywordIndex(self.specs)

    def intents(self, text: str) -> list[IntentMatch]:
        """Every intent of `text`, in the order the request first mentions them (one per agent)."""
        return self._intents(text, allowed=None)

    async def process_request(
        self, input_text: str, chat_history: list[ConversationMessage]
    ) -> ClassifierResult:
        """Agent Squad's hook: the single best registered agent (matched by name) for `input_text`.

        With no match, a follow-up ("yes, go on") stays with the agent that answered last; otherwise
        the result has no agent, which Agent Squad treats as "no agent could be selected".
        """
        by_name = {agent.name: agent for agent in self.agents.values()}
        matches = self._intents(input_text, allowed=by_name.keys())
        if matches:
            best = max(matches, key=lambda match: match.confidence)  # first of equals: earliest mentioned
            return ClassifierResult(selected_agent=by_name[best.agent], confidence=best.confidence)
        previous = self._previous_agent(chat_history)
        if previous is not None:
            return ClassifierResult(selected_agent=previous, confidence=FOLLOW_UP_CONFIDENCE)
        return ClassifierResult(selected_agent=None, confidence=0.0)

    def _intents(self, text: str, allowed: Collection[str] | None) -> list[IntentMatch]:
        found: dict[str, IntentMatch] = {}
        for clause in self._clauses(text):
            candidates = [s for s in self._signals(clause) if allowed is None or s.agent in allowed]
            if not candidates:
                continue
            decision = self.engine.decide(clause, candidates)
            chosen = next(s for s in candidates if s.agent == decision.agent)
            match = IntentMatch(
                intent=decision.intent,
                agent=decision.agent,
                confidence=decision.confidence,
                evidence=tuple(dict.fromkeys(chosen.rule_evidence + chosen.keyword_evidence)),
                decision=decision,
            )
            found[match.agent] = _merge(found[match.agent], match) if match.agent in found else match
        return list(found.values())

    @staticmethod
    def _clauses(text: str) -> list[str]:
        clauses = []
        for piece in _CLAUSE_BREAK.split(text.lower()):
            if _NOT_NEEDED.search(piece):
                continue
            for negated in _NEGATION.finditer(piece):
                piece = _blank(piece, *negated.span())
            piece = " ".join(piece.split())
            if piece:
                clauses.append(piece)
        return clauses

    def _signals(self, clause: str) -> list[Signals]:
        """The candidates for one clause, in catalog order; empty when the clause names no work."""
        ruled_text = clause
        for mask in _RULE_MASKS:
            for found in mask.finditer(clause):
                ruled_text = _blank(ruled_text, *found.span("m"))
        rule_hits: dict[str, list[str]] = {}
        for rule in self.rules:
            for found in rule.pattern.finditer(ruled_text):
                rule_hits.setdefault(rule.agent, []).append(found.group(0))
        keyword = self._index.scores(clause)
        if not rule_hits and max(score for score, _ in keyword.values()) < KEYWORD_INTENT_MIN:
            return []
        return [
            Signals(
                agent=spec.name,
                rule=RULE_CONFIDENCE if spec.name in rule_hits else 0.0,
                rule_evidence=tuple(dict.fromkeys(rule_hits.get(spec.name, []))),
                keyword=round(keyword[spec.name][0], 4),
                keyword_evidence=keyword[spec.name][1],
            )
            for spec in self.specs
            if spec.name in rule_hits or keyword[spec.name][0] >= KEYWORD_CANDIDATE_MIN
        ]

    def _previous_agent(self, chat_history: Sequence[ConversationMessage]) -> Agent | None:
        for message in reversed(chat_history):
            role = getattr(message.role, "value", message.role)
            if role != "assistant" or not message.content:
                continue
            text = message.content[0].get("text", "") if isinstance(message.content[0], dict) else ""
            prefix = _FOLLOW_UP_PREFIX.match(text)
            return self.get_agent_by_id(prefix.group(1)) if prefix else None
        return None


def _merge(first: IntentMatch, second: IntentMatch) -> IntentMatch:
    """Two clauses asked the same agent for work: keep the surer decision and all the evidence."""
    best = first if first.confidence >= second.confidence else second
    return IntentMatch(
        intent=best.intent,
        agent=best.agent,
        confidence=best.confidence,
        evidence=tuple(dict.fromkeys(first.evidence + second.evidence)),
        decision=best.decision,
    )
