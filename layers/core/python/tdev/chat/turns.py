"""Chat turns through Agent Squad: our classifier picks one of the session's agents, our agent answers.

`AgentSquad` (the orchestrator) reads the session's history from `TableChatStorage`, asks
`IntentClassifier` which agent the message is for, runs that agent (`SquadAgent`, which runs our Agno
agent with the model the session uses) and stores the user message and the answer as two items. The
agent's model calls go through the ledger the caller put in place (`tdev.llm.metering.metered`: the
context variable reaches the agent's thread); a refused call ends the turn with BudgetExceeded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent_squad.agents import Agent, AgentOptions
from agent_squad.orchestrator import AgentSquad
from agent_squad.types import AgentSquadConfig, ConversationMessage, ParticipantRole

from tdev.agents.runtime import compose_prompt, run_agent
from tdev.chat.storage import TableChatStorage
from tdev.errors import BudgetExceeded, ExecutionCancelled
from tdev.models import AgentSpec, AgentTask, Usage
from tdev.orchestration.classifier import IntentClassifier

HISTORY_TURNS = 6


def _text(message: ConversationMessage) -> str:
    return " ".join(str(part.get("text", "")) for part in message.content or [] if isinstance(part, dict))


class SquadAgent(Agent):
    """One of our agents (an AgentSpec run on Agno) behind Agent Squad's Agent interface."""

    def __init__(self, spec: AgentSpec, model_name: str, context: Sequence[str] = ()) -> None:
        super().__init__(AgentOptions(name=spec.name, description=spec.description))
        self.spec, self.model_name, self.context = spec, model_name, list(context)
        self.usage: Usage | None = None
        # A budget refused a call, or the session was killed (tdev.llm.metering): Agent Squad turns what an
        # agent raises into an apology text; the turn must answer this instead.
        self.stopped: BudgetExceeded | ExecutionCancelled | None = None

    async def process_request(
        self,
        input_text: str,
        user_id: str,
        session_id: str,
        chat_history: list[ConversationMessage],
        additional_params: dict[str, str] | None = None,
    ) -> ConversationMessage:
        history = "\n".join(
            f"{getattr(m.role, 'value', m.role)}: {_text(m)[:500]}" for m in chat_history[-HISTORY_TURNS:]
        )
        description = "Answer the user's latest message in this conversation."
        if history:
            description += f"\nConversation so far:\n{history}"
        if self.context:
            description += "\nRelevant context from this session:\n" + "\n".join(
                f"- {c[:300]}" for c in self.context
            )
        task = AgentTask(task_id="chat-turn", agent=self.spec.name, intent="chat", description=description)
        try:
            run = await asyncio.to_thread(
                run_agent, self.spec, self.model_name, compose_prompt(input_text, task, [])
            )
        except (BudgetExceeded, ExecutionCancelled) as exc:
            self.stopped = exc
            raise
        self.usage = run.usage
        return ConversationMessage(role=ParticipantRole.ASSISTANT.value, content=[{"text": run.output}])


@dataclass
class TurnResult:
    agent: str | None
    confidence: float
    answer: str
    usage: Usage | None


def chat_turn(
    storage: TableChatStorage,
    specs: Sequence[AgentSpec],
    model_name: str,
    *,
    user_id: str,
    session_id: str,
    text: str,
    context: Sequence[str] = (),
) -> TurnResult:
    """Route one message to one agent through AgentSquad and store both sides of the turn."""
    squad = AgentSquad(
        options=AgentSquadConfig(MAX_MESSAGE_PAIRS_PER_AGENT=50),
        storage=storage,
        classifier=IntentClassifier(specs),
    )
    agents = [SquadAgent(spec, model_name, context) for spec in specs]
    for agent in agents:
        squad.add_agent(agent)
    response: Any = asyncio.run(squad.route_request(text, user_id, session_id))
    metadata = response.metadata
    output = response.output
    answer = _text(output) if isinstance(output, ConversationMessage) else str(output)
    stopped = next((a.stopped for a in agents if a.stopped is not None), None)
    if stopped is not None:  # no answer was made, and Agent Squad stored nothing of the turn
        raise stopped
    chosen = next((a for a in agents if a.id == getattr(metadata, "agent_id", None)), None)
    return TurnResult(
        agent=chosen.spec.name if chosen else None,
        confidence=0.0,
        answer=answer,
        usage=chosen.usage if chosen else None,
    )
