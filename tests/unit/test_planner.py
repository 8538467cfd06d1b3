"""The Supervisor's plans: pipeline wiring, failure policies, single intents, fallback, explicit DAGs."""

from __future__ import annotations

import pytest

from tdev.agents.catalog import DEFAULT_AGENTS, default_agent, intent_slug
from tdev.errors import ConfigurationError, PlanningError, UnknownAgentError
from tdev.models import AgentSpec, AgentTask, Dependency, DependencyKind, FailurePolicy
from tdev.orchestration.decision import FALLBACK_CONFIDENCE
from tdev.orchestration.planner import Supervisor, plan_from_tasks

EXAMPLE = "Design and implement a REST API for todo items, with unit tests and a security review"
HARD, SOFT = DependencyKind.HARD, DependencyKind.SOFT


class DictHistory:
    def __init__(self, rates: dict[str, float]) -> None:
        self.rates = rates

    def success_rate(self, agent: str) -> float | None:
        return self.rates.get(agent)


@pytest.fixture(scope="module")
def supervisor() -> Supervisor:
    return Supervisor()


def edges(task: AgentTask) -> set[tuple[str, DependencyKind]]:
    return {(dep.task_id, dep.kind) for dep in task.depends_on}


def test_full_request_becomes_the_canonical_pipeline(supervisor: Supervisor) -> None:
    # When the multi-intent example is planned
    plan = supervisor.plan(EXAMPLE)

    # Then it has five tasks in four levels, checks in parallel
    assert [(t.task_id, t.agent) for t in plan.tasks] == [
        ("design", "DesignAgent"),
        ("implement", "CodeAgent"),
        ("test", "TestAgent"),
        ("security-review", "SecurityAgent"),
        ("review", "ReviewAgent"),
    ]
    assert plan.levels == [["design"], ["implement"], ["security-review", "test"], ["review"]]
    # And the edges are hard along the pipeline, soft from the checks into the final review
    assert edges(plan.task("design")) == set()
    assert edges(plan.task("implement")) == {("design", HARD)}
    assert edges(plan.task("test")) == {("implement", HARD)}
    assert edges(plan.task("security-review")) == {("implement", HARD)}
    assert edges(plan.task("review")) == {("implement", HARD), ("test", SOFT), ("security-review", SOFT)}


def test_only_the_checks_may_fail_without_failing_the_request(supervisor: Supervisor) -> None:
    plan = supervisor.plan(EXAMPLE)

    assert {t.task_id: t.on_failure for t in plan.tasks} == {
        "design": FailurePolicy.FAIL,
        "implement": FailurePolicy.FAIL,
        "test": FailurePolicy.CONTINUE,
        "security-review": FailurePolicy.CONTINUE,
        "review": FailurePolicy.FAIL,
    }


def test_every_task_has_a_decision_and_the_added_review_says_why(supervisor: Supervisor) -> None:
    plan = supervisor.plan(EXAMPLE)

    assert [d.agent for d in plan.decisions] == [t.agent for t in plan.tasks]
    assert [d.intent for d in plan.decisions] == [t.intent for t in plan.tasks]
    assert plan.decisions[-1].reasoning.startswith("ReviewAgent added by the planner: a plan with 4 other")
    assert "rules matched CodeAgent" in plan.decisions[1].reasoning


def test_descriptions_are_built_from_the_request(supervisor: Supervisor) -> None:
    plan = supervisor.plan("write unit tests for the parser")

    assert plan.task("test").description == "Write unit tests for: write unit tests for the parser"


def test_a_single_intent_is_a_single_task(supervisor: Supervisor) -> None:
    # When a request asks for one kind of work
    plan = supervisor.plan("write unit tests for the parser")

    # Then the plan is exactly that task: no review added, no dependencies, a deliverable
    assert [(t.task_id, t.agent) for t in plan.tasks] == [("test", "TestAgent")]
    assert plan.levels == [["test"]]
    assert plan.tasks[0].depends_on == []
    assert plan.tasks[0].on_failure is FailurePolicy.FAIL


def test_code_and_tests_get_a_final_review(supervisor: Supervisor) -> None:
    plan = supervisor.plan("Implement a CSV parser and write tests for it")

    assert plan.levels == [["implement"], ["test"], ["review"]]
    assert edges(plan.task("review")) == {("implement", HARD), ("test", SOFT)}
    assert plan.task("test").on_failure is FailurePolicy.CONTINUE


def test_without_code_the_checks_depend_on_the_design(supervisor: Supervisor) -> None:
    plan = supervisor.plan("Design an order schema and validate it against the reporting queries")

    assert plan.levels == [["design"], ["test"], ["review"]]
    assert edges(plan.task("test")) == {("design", HARD)}
    assert edges(plan.task("review")) == {("design", HARD), ("test", SOFT)}


def test_without_a_producer_the_checks_are_the_deliverable(supervisor: Supervisor) -> None:
    # Given only checks are asked for, there is nothing else for the review to depend on
    plan = supervisor.plan("Write unit tests and run a security scan of the auth module")

    assert plan.levels == [["security-review", "test"], ["review"]]
    assert edges(plan.task("review")) == {("test", HARD), ("security-review", HARD)}
    assert all(t.on_failure is FailurePolicy.FAIL for t in plan.tasks)


def test_a_requested_review_is_not_duplicated(supervisor: Supervisor) -> None:
    plan = supervisor.plan("Design a plugin architecture and review it")

    assert [t.task_id for t in plan.tasks] == ["design", "review"]
    assert edges(plan.task("review")) == {("design", HARD)}


# Request -> the plan's agents (with the final review the planner adds to multi-task plans).
PLAN_TABLE = [
    (EXAMPLE, ["DesignAgent", "CodeAgent", "TestAgent", "SecurityAgent", "ReviewAgent"]),
    ("write unit tests for the parser", ["TestAgent"]),
    ("Do a code review of the payment module", ["ReviewAgent"]),
    ("Audit the authentication code for vulnerabilities", ["SecurityAgent"]),
    ("Implement a rate limiter, no tests needed", ["CodeAgent"]),
    ("Implement OAuth login and write integration tests for it", ["CodeAgent", "TestAgent", "ReviewAgent"]),
    ("Test and review the importer", ["TestAgent", "ReviewAgent"]),
    (
        "Refactor the order service, then check it for vulnerabilities",
        ["CodeAgent", "SecurityAgent", "ReviewAgent"],
    ),
    ("Tell me a joke about cats", ["CodeAgent"]),
]


@pytest.mark.parametrize(("request_text", "expected"), PLAN_TABLE, ids=[r for r, _ in PLAN_TABLE])
def test_plan_table(supervisor: Supervisor, request_text: str, expected: list[str]) -> None:
    assert [t.agent for t in supervisor.plan(request_text).tasks] == expected


def test_unmatched_request_falls_back_to_the_code_agent_at_low_confidence(supervisor: Supervisor) -> None:
    plan = supervisor.plan("qwx zzv blorp")

    assert [t.agent for t in plan.tasks] == ["CodeAgent"]
    (decision,) = plan.decisions
    assert decision.confidence == FALLBACK_CONFIDENCE
    assert decision.reasoning.startswith("Fallback:")


@pytest.mark.parametrize("request_text", ["", "   \n\t "])
def test_an_empty_request_is_a_planning_error(supervisor: Supervisor, request_text: str) -> None:
    with pytest.raises(PlanningError, match="empty"):
        supervisor.plan(request_text)


def test_no_fallback_without_a_code_agent() -> None:
    supervisor = Supervisor([spec for spec in DEFAULT_AGENTS if spec.name != "CodeAgent"])

    with pytest.raises(PlanningError, match="no agent matches"):
        supervisor.plan("qwx zzv blorp")


def test_planning_is_deterministic() -> None:
    assert Supervisor().plan(EXAMPLE).model_dump() == Supervisor().plan(EXAMPLE).model_dump()


def test_history_changes_a_close_routing_decision() -> None:
    request = "Test the security of the session handling"
    assert [t.agent for t in Supervisor().plan(request).tasks] == ["SecurityAgent"]

    favoured = Supervisor(history=DictHistory({"TestAgent": 0.95, "SecurityAgent": 0.40}))

    assert [t.agent for t in favoured.plan(request).tasks] == ["TestAgent"]


def test_task_timeouts_come_from_the_agent_specs() -> None:
    slow_tests = default_agent("TestAgent").model_copy(update={"timeout_seconds": 600})
    agents = [slow_tests if spec.name == "TestAgent" else spec for spec in DEFAULT_AGENTS]

    plan = Supervisor(agents).plan(EXAMPLE)

    assert plan.task("test").timeout_seconds == 600
    assert plan.task("implement").timeout_seconds == default_agent("CodeAgent").timeout_seconds


def test_agents_whose_task_ids_collide_are_a_configuration_error() -> None:
    clash = AgentSpec(name="ImplementAgent", role="Engineer", description="Builds.", capabilities=["code"])

    with pytest.raises(ConfigurationError, match="distinct task ids"):
        Supervisor([*DEFAULT_AGENTS, clash])


# -------------------------------------------------------------------------------- explicit plans
def explicit(task_id: str, agent: str, *hard: str, soft: tuple[str, ...] = (), **extra: object) -> AgentTask:
    deps = [Dependency(task_id=d) for d in hard] + [Dependency(task_id=d, kind=SOFT) for d in soft]
    return AgentTask(
        task_id=task_id, agent=agent, intent=task_id, description=task_id, depends_on=deps, **extra
    )


def test_plan_from_tasks_levels_an_explicit_dag_and_derives_policies() -> None:
    # Given a caller's DAG that (wrongly) marks the hard-depended-on build task CONTINUE
    tasks = [
        explicit("build", "CodeAgent", on_failure=FailurePolicy.CONTINUE),
        explicit("lint", "ReviewAgent", "build"),
        explicit("ship", "CodeAgent", "build", soft=("lint",)),
    ]

    plan = plan_from_tasks(tasks)

    assert plan.levels == [["build"], ["lint"], ["ship"]]
    assert {t.task_id: t.on_failure for t in plan.tasks} == {
        "build": FailurePolicy.FAIL,
        "lint": FailurePolicy.CONTINUE,
        "ship": FailurePolicy.FAIL,
    }


def test_plan_from_tasks_rejects_a_cycle_by_name() -> None:
    tasks = [explicit("build", "CodeAgent", "check"), explicit("check", "TestAgent", "build")]

    with pytest.raises(PlanningError, match="dependency cycle: build -> check -> build"):
        plan_from_tasks(tasks)


def test_plan_from_tasks_rejects_an_unknown_agent() -> None:
    with pytest.raises(UnknownAgentError, match="'DeployAgent'"):
        plan_from_tasks([explicit("deploy", "DeployAgent")])


def test_plan_from_tasks_rejects_duplicate_ids() -> None:
    with pytest.raises(PlanningError, match="duplicate task id 'build'"):
        plan_from_tasks([explicit("build", "CodeAgent"), explicit("build", "TestAgent")])


def test_plan_from_tasks_rejects_an_empty_list() -> None:
    with pytest.raises(PlanningError, match="at least one task"):
        plan_from_tasks([])


# ------------------------------------------------------------------------------------- catalog
def test_default_agent_raises_for_an_unknown_name() -> None:
    assert default_agent("ReviewAgent").name == "ReviewAgent"
    with pytest.raises(UnknownAgentError, match="known agents: DesignAgent, CodeAgent"):
        default_agent("DeployAgent")


def test_every_default_agent_has_instructions_and_routing_words() -> None:
    for spec in DEFAULT_AGENTS:
        assert len(spec.instructions) >= 4, spec.name
        assert spec.keywords, spec.name


def test_intent_slugs_for_custom_agents_are_kebab_case() -> None:
    assert intent_slug("SecurityAgent") == "security-review"
    assert intent_slug("DocsWriterAgent") == "docs-writer"
