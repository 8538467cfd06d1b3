"""Intent classification: multi-intent extraction, rule masks, keyword routing, Agent Squad routing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agent_squad.agents import Agent, AgentOptions
from agent_squad.types import ConversationMessage, ParticipantRole

from tdev.agents.catalog import DEFAULT_AGENTS
from tdev.errors import ConfigurationError
from tdev.models import AgentSpec
from tdev.orchestration.classifier import FOLLOW_UP_CONFIDENCE, IntentClassifier, stem

EXAMPLE = "Design and implement a REST API for todo items, with unit tests and a security review"


class SquadAgent(Agent):
    """A registered Agent Squad agent; routing never calls it."""

    async def process_request(
        self, input_text: str, user_id: str, session_id: str, chat_history: Any, additional_params: Any = None
    ) -> ConversationMessage:
        raise AssertionError("the classifier must not run agents")


def squad(*names: str) -> dict[str, Agent]:
    agents = [SquadAgent(AgentOptions(name=name, description=f"{name} does its job")) for name in names]
    return {agent.id: agent for agent in agents}


@pytest.fixture(scope="module")
def classifier() -> IntentClassifier:
    return IntentClassifier()


def agents_of(classifier: IntentClassifier, text: str) -> list[str]:
    return [match.agent for match in classifier.intents(text)]


def test_multi_intent_request_yields_every_intent_in_mention_order(classifier: IntentClassifier) -> None:
    # When the canonical multi-intent request is classified
    matches = classifier.intents(EXAMPLE)

    # Then each kind of work is found once, in the order the request names it
    assert [(m.intent, m.agent) for m in matches] == [
        ("design", "DesignAgent"),
        ("implement", "CodeAgent"),
        ("test", "TestAgent"),
        ("security-review", "SecurityAgent"),
    ]
    # And each carries the words that triggered it and a rule-level confidence
    evidence = {m.agent: m.evidence for m in matches}
    assert evidence["CodeAgent"][0] == "implement"
    assert {"api", "rest"} <= set(evidence["CodeAgent"])
    assert evidence["SecurityAgent"][0] == "security"
    assert all(m.confidence >= 0.5 for m in matches)
    assert all(m.decision.agent == m.agent for m in matches)


# Request -> the agents its intents route to (the planner adds the final review; this is the raw read).
ROUTING_TABLE = [
    ("write unit tests for the parser", ["TestAgent"]),
    ("Implement a CSV to JSON converter in Python", ["CodeAgent"]),
    ("Develop a Slack bot that posts the daily standup summary", ["CodeAgent"]),
    ("Architect a multi-tenant SaaS platform on AWS", ["DesignAgent"]),
    ("Design the database schema for a library system", ["DesignAgent"]),
    ("Verify that the checkout flow rejects expired cards", ["TestAgent"]),
    ("Validate the parser against the JSON specification", ["TestAgent"]),
    ("Scan the login form for security vulnerabilities", ["SecurityAgent"]),
    ("Pentest the admin portal", ["SecurityAgent"]),
    ("Check the comment form for XSS and SQL injection", ["SecurityAgent"]),
    ("Do a code review of the payment module", ["ReviewAgent"]),
    ("Review the code in the billing service", ["ReviewAgent"]),
    ("Audit the authentication code for vulnerabilities", ["SecurityAgent"]),
    ("Refactor the order service", ["CodeAgent"]),
    ("Add a REST endpoint that returns the user's orders", ["CodeAgent"]),
    ("Write a function that validates email addresses", ["CodeAgent"]),
    ("Implement input validation for the signup form", ["CodeAgent"]),
    ("Implement a secure login form", ["CodeAgent"]),
    ("Implement a rate limiter, no tests needed", ["CodeAgent"]),
    ("Implement a cache; tests are not needed", ["CodeAgent"]),
    ("Design a plugin architecture and review it", ["DesignAgent", "ReviewAgent"]),
    ("Implement OAuth login and write integration tests for it", ["CodeAgent", "TestAgent"]),
    ("Increase the test coverage of the auth module", ["TestAgent"]),
    ("Draw a sequence diagram of the login flow", ["DesignAgent"]),
    ("Give feedback on the readability of this module", ["ReviewAgent"]),
    ("Test the security of the session handling", ["SecurityAgent"]),
    ("Fix the bug in the date parser", ["CodeAgent"]),
    ("What is the weather like today", []),
    (EXAMPLE, ["DesignAgent", "CodeAgent", "TestAgent", "SecurityAgent"]),
]


@pytest.mark.parametrize(("request_text", "expected"), ROUTING_TABLE, ids=[r for r, _ in ROUTING_TABLE])
def test_routing_table(classifier: IntentClassifier, request_text: str, expected: list[str]) -> None:
    assert agents_of(classifier, request_text) == expected


def test_rule_matches_outrank_keyword_only_matches(classifier: IntentClassifier) -> None:
    # Given a clause a rule routes and a clause only keywords route
    (ruled,) = classifier.intents("write unit tests for the parser")
    (keyword_only,) = classifier.intents("Pentest the admin portal")

    # Then the keyword-only match is less certain, and says which word carried it
    assert keyword_only.confidence < 0.375 < 0.5 <= ruled.confidence
    assert keyword_only.evidence == ("pentest",)
    assert "no rule matched" in keyword_only.decision.reasoning


def test_the_same_agent_named_twice_is_one_intent(classifier: IntentClassifier) -> None:
    matches = classifier.intents("Write unit tests, then write integration tests")

    assert [m.agent for m in matches] == ["TestAgent"]
    assert {"unit", "integration"} <= set(matches[0].evidence)


def test_classification_is_deterministic() -> None:
    first = IntentClassifier().intents(EXAMPLE)
    second = IntentClassifier().intents(EXAMPLE)

    assert first == second


def test_a_custom_agent_without_rules_is_routed_by_its_keywords() -> None:
    # Given a catalog with a documentation agent the spec's rules know nothing about
    docs = AgentSpec(
        name="DocsAgent",
        role="Technical writer",
        description="Writes documentation: READMEs, user guides, API reference and changelogs.",
        capabilities=["documentation", "tutorials"],
        keywords=["docs", "documentation", "readme", "guide", "changelog"],
    )
    classifier = IntentClassifier([*DEFAULT_AGENTS, docs])

    # When / Then a documentation request goes to it, next to a rule-routed intent
    assert agents_of(classifier, "Implement the exporter and update the README and changelog") == [
        "CodeAgent",
        "DocsAgent",
    ]


def test_rules_for_agents_outside_the_catalog_are_ignored() -> None:
    # Given a catalog with only the test and code agents
    classifier = IntentClassifier([s for s in DEFAULT_AGENTS if s.name in {"TestAgent", "CodeAgent"}])

    # Then only their rules are kept, and a design request cannot route to an agent that does not exist
    assert {rule.agent for rule in classifier.rules} == {"TestAgent", "CodeAgent"}
    assert agents_of(IntentClassifier(), "Architect and implement a queue") == ["DesignAgent", "CodeAgent"]
    assert "DesignAgent" not in agents_of(classifier, "Architect and implement a queue")
    assert "CodeAgent" in agents_of(classifier, "Architect and implement a queue")


def test_duplicate_agent_names_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        IntentClassifier([DEFAULT_AGENTS[0], DEFAULT_AGENTS[0]])


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("tests", "test"),
        ("testing", "test"),
        ("security", "secur"),
        ("secure", "secur"),
        ("architecture", "architect"),
        ("implementation", "implement"),
        ("classes", "class"),
        ("status", "status"),
    ],
)
def test_stemmer_joins_word_forms(word: str, expected: str) -> None:
    assert stem(word) == expected


# ----------------------------------------------------------------------------------- Agent Squad
def test_process_request_returns_the_registered_agent() -> None:
    # Given an Agent Squad classifier with registered agents named like the catalog
    classifier = IntentClassifier()
    agents = squad("DesignAgent", "CodeAgent", "TestAgent", "SecurityAgent", "ReviewAgent")
    classifier.set_agents(agents)

    # When a test request is classified
    result = asyncio.run(classifier.process_request("write unit tests for the parser", []))

    # Then the TestAgent instance is selected with the intent's confidence
    assert result.selected_agent is agents["testagent"]
    assert result.confidence == classifier.intents("write unit tests for the parser")[0].confidence


def test_process_request_picks_the_most_confident_intent() -> None:
    classifier = IntentClassifier()
    agents = squad("DesignAgent", "CodeAgent", "TestAgent", "SecurityAgent", "ReviewAgent")
    classifier.set_agents(agents)
    best = max(classifier.intents(EXAMPLE), key=lambda m: m.confidence)

    result = asyncio.run(classifier.process_request(EXAMPLE, []))

    assert result.selected_agent is not None
    assert result.selected_agent.name == best.agent == "TestAgent"


def test_process_request_routes_only_among_registered_agents() -> None:
    # Given a request that would go to SecurityAgent, with TestAgent as the runner-up
    request = "Test the security of the session handling"
    assert [m.agent for m in IntentClassifier().intents(request)] == ["SecurityAgent"]
    classifier = IntentClassifier()
    agents = squad("CodeAgent", "TestAgent")
    classifier.set_agents(agents)

    # When no SecurityAgent is registered
    result = asyncio.run(classifier.process_request(request, []))

    # Then the best registered candidate takes it
    assert result.selected_agent is agents["testagent"]


def test_process_request_returns_no_agent_for_gibberish() -> None:
    classifier = IntentClassifier()
    classifier.set_agents(squad("CodeAgent", "TestAgent"))

    result = asyncio.run(classifier.process_request("qwx zzv blorp", []))

    assert result.selected_agent is None
    assert result.confidence == 0.0


def test_a_follow_up_stays_with_the_previous_agent() -> None:
    # Given a conversation in which CodeAgent answered last (Agent Squad prefixes the agent id)
    classifier = IntentClassifier()
    agents = squad("CodeAgent", "TestAgent")
    classifier.set_agents(agents)
    history = [
        ConversationMessage(role=ParticipantRole.USER.value, content=[{"text": "implement a stack"}]),
        ConversationMessage(role=ParticipantRole.ASSISTANT.value, content=[{"text": "[codeagent] Done"}]),
    ]

    # When the user only says "yes, go on"
    result = asyncio.run(classifier.classify("yes, go on", history))

    # Then the same agent continues, at follow-up confidence
    assert result.selected_agent is agents["codeagent"]
    assert result.confidence == FOLLOW_UP_CONFIDENCE
