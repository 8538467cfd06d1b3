"""The Supervisor: turns a plain-words request into a validated plan (tasks, dependencies, levels).

Plans follow the pipeline a small team uses, because each stage consumes the previous one's output:

    design -> implement -> (test || security-review) -> review

* implement hard-depends on design: code written without the agreed design is wasted work.
* test and security-review hard-depend on implement (on design when nothing is implemented): they need
  something to check, and they are independent of each other, so they run in parallel.
* review hard-depends on the deliverable (implement, else design) and only SOFT-depends on test and
  security-review: a failed test run must not block the final review, which reports the gap instead.
  So test and security-review get `on_failure=CONTINUE` and the request finishes DEGRADED, not FAILED.
* Any plan with two or more tasks ends with a review of the deliverable, whether or not the request
  asked for one; a single-intent request gets exactly one task.

Agents outside this pipeline (a custom catalog) are treated as producers at the implement stage: they
make an artefact the checks and the review work on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import IntEnum

from tdev.agents.catalog import DEFAULT_AGENTS, intent_slug
from tdev.errors import ConfigurationError, PlanningError, UnknownAgentError
from tdev.models import AgentSpec, AgentTask, Decision, Dependency, DependencyKind, Plan
from tdev.orchestration.classifier import IntentClassifier
from tdev.orchestration.dag import failure_policies, topological_levels
from tdev.orchestration.decision import AgentHistory
from tdev.orchestration.routing import LoadBalancer

FALLBACK_AGENT = "CodeAgent"
REVIEW_AGENT = "ReviewAgent"


class Stage(IntEnum):
    DESIGN = 0
    BUILD = 1
    CHECK = 2
    REVIEW = 3


PIPELINE_STAGES: dict[str, Stage] = {
    "DesignAgent": Stage.DESIGN,
    "CodeAgent": Stage.BUILD,
    "TestAgent": Stage.CHECK,
    "SecurityAgent": Stage.CHECK,
    "ReviewAgent": Stage.REVIEW,
}

# What each task is told to do; the request follows the colon.
_TASK_PREFIXES: dict[str, str] = {
    "DesignAgent": "Design the architecture, components, data model and interfaces for",
    "CodeAgent": "Implement complete, working code for",
    "TestAgent": "Write unit tests for",
    "SecurityAgent": "Review for security vulnerabilities (threat model, OWASP Top 10, secrets, access)",
    "ReviewAgent": "Review the deliverable for correctness, quality and fit to the request",
}


def _stage(agent: str) -> Stage:
    return PIPELINE_STAGES.get(agent, Stage.BUILD)


def plan_from_tasks(tasks: Sequence[AgentTask], agents: Iterable[AgentSpec] = DEFAULT_AGENTS) -> Plan:
    """Validate an explicit task list (a caller's fixed DAG) and return it as a plan.

    Rejects an empty list, duplicate task ids, unknown dependencies and cycles (PlanningError), and
    tasks naming an agent outside `agents` (UnknownAgentError). `on_failure` is recomputed from the
    edges, so it always agrees with the dependency kinds the executor will honour.
    """
    if not tasks:
        raise PlanningError("a plan needs at least one task", field="tasks")
    known = {spec.name for spec in agents}
    for task in tasks:
        if task.agent not in known:
            raise UnknownAgentError(
                f"task {task.task_id!r} names unknown agent {task.agent!r}; "
                f"known agents: {', '.join(sorted(known))}",
                field="tasks",
            )
    levels = topological_levels(tasks)
    policies = failure_policies(tasks)
    return Plan(
        tasks=[task.model_copy(update={"on_failure": policies[task.task_id]}) for task in tasks],
        levels=levels,
    )


class Supervisor:
    """Plans requests against an agent catalog: intents -> one decision per intent -> a DAG of tasks."""

    def __init__(
        self,
        agents: Sequence[AgentSpec] = DEFAULT_AGENTS,
        history: AgentHistory | None = None,
        balancer: LoadBalancer | None = None,
    ) -> None:
        # With a balancer, each intent's agent is chosen load-aware (tdev.orchestration.routing).
        self.classifier = IntentClassifier(agents, history, balancer=balancer)
        self.agents = {spec.name: spec for spec in agents}
        slugs = [intent_slug(name) for name in self.agents]
        if len(set(slugs)) != len(slugs):
            raise ConfigurationError(f"agents must map to distinct task ids, got {slugs}")

    def plan(self, request: str) -> Plan:
        """The plan for `request`; deterministic, so the same text always yields the same plan.

        A request nothing matches goes to the general-purpose CodeAgent at low confidence (the decision
        says it was a fallback) rather than failing: a vague request still deserves an attempt. Only an
        empty request, or a catalog without CodeAgent to fall back on, raises PlanningError.
        """
        text = " ".join(request.split())
        if not text:
            raise PlanningError("the request is empty", field="request")
        decisions = [match.decision for match in self.classifier.intents(text)]
        if not decisions:
            if FALLBACK_AGENT not in self.agents:
                raise PlanningError(f"no agent matches the request ({len(text)} characters)", field="request")
            decisions = [self.classifier.engine.fallback(text, FALLBACK_AGENT)]
        chosen = {decision.agent for decision in decisions}
        if len(chosen) >= 2 and REVIEW_AGENT in self.agents and REVIEW_AGENT not in chosen:
            decisions.append(
                Decision(
                    intent=intent_slug(REVIEW_AGENT),
                    agent=REVIEW_AGENT,
                    confidence=1.0,
                    reasoning=(
                        f"{REVIEW_AGENT} added by the planner: a plan with {len(chosen)} other tasks always "
                        "ends with a final review of the deliverable."
                    ),
                )
            )
        decisions.sort(key=lambda decision: _stage(decision.agent))  # stable: mention order within a stage
        plan = plan_from_tasks(self._tasks(text, [d.agent for d in decisions]), self.agents.values())
        return plan.model_copy(update={"decisions": decisions})

    def _tasks(self, request: str, agents: list[str]) -> list[AgentTask]:
        """One task per agent (already in pipeline order), wired as the module docstring describes."""
        at_stage = {stage: [intent_slug(a) for a in agents if _stage(a) is stage] for stage in Stage}
        producers = at_stage[Stage.BUILD] or at_stage[Stage.DESIGN]
        tasks = []
        for agent in agents:
            stage = _stage(agent)
            if stage is Stage.DESIGN:
                depends_on = []
            elif stage is Stage.BUILD:
                depends_on = _edges(at_stage[Stage.DESIGN], DependencyKind.HARD)
            elif stage is Stage.CHECK:
                depends_on = _edges(producers, DependencyKind.HARD)
            elif producers:
                depends_on = _edges(producers, DependencyKind.HARD) + _edges(
                    at_stage[Stage.CHECK], DependencyKind.SOFT
                )
            else:  # nothing was produced: the checks themselves are the deliverable under review
                depends_on = _edges(at_stage[Stage.CHECK], DependencyKind.HARD)
            spec = self.agents[agent]
            prefix = _TASK_PREFIXES.get(agent, f"Do the {spec.role.lower()}'s part of")
            tasks.append(
                AgentTask(
                    task_id=intent_slug(agent),
                    agent=agent,
                    intent=intent_slug(agent),
                    description=f"{prefix}: {request}",
                    depends_on=depends_on,
                    timeout_seconds=spec.timeout_seconds,
                )
            )
        return tasks


def _edges(task_ids: list[str], kind: DependencyKind) -> list[Dependency]:
    return [Dependency(task_id=task_id, kind=kind) for task_id in task_ids]
