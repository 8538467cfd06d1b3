"""Test data (spec 1.19.3): factories over the domain models, builders, scenarios, snapshots, loading.

Factories are polyfactory's over the domain's pydantic models (so a new field is filled without anyone
editing this file); builders give them the shape real data has (a project's owner submits into it, a
finished execution has its tasks' results, a failed one its error and skipped successors). Everything is
deterministic for a seed. Data goes in through the domain's own write paths: projects through
`ProjectOwners.claim` and `add_member` (as `PUT /v1/projects/{id}/members/{principal}` does), executions
through `ExecutionRepository.import_history` (the items `create` and `save_result` write, in batches).

Used by `tdev seed` / `tdev serve --seed` (tdev_cli.seed) and by tests (tests/e2e/test_seed.py).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from polyfactory.factories.pydantic_factory import ModelFactory

from tdev.models import (
    AgentResult,
    Execution,
    ExecutionStatus,
    Priority,
    TaskState,
    TaskStatus,
    Usage,
)

AGENTS = ("architect", "code", "test", "security", "docs")
MODELS = ("bedrock:amazon.nova-lite-v1:0", "bedrock:amazon.nova-pro-v1:0", "offline:planner")


# ------------------------------------------------------------------------------------ factories
class UsageFactory(ModelFactory[Usage]):
    @classmethod
    def input_tokens(cls) -> int:
        return cls.__random__.randint(200, 6_000)

    @classmethod
    def output_tokens(cls) -> int:
        return cls.__random__.randint(50, 2_500)

    @classmethod
    def cost_usd(cls) -> float:
        return round(cls.__random__.uniform(0.0001, 0.05), 6)


class AgentResultFactory(ModelFactory[AgentResult]):
    usage = UsageFactory
    hops = list
    error = None

    @classmethod
    def agent(cls) -> str:
        return cls.__random__.choice(AGENTS)

    @classmethod
    def model(cls) -> str:
        return cls.__random__.choice(MODELS)

    @classmethod
    def status(cls) -> TaskStatus:
        return TaskStatus.SUCCEEDED

    @classmethod
    def output(cls) -> str:
        return cls.__faker__.paragraph(nb_sentences=3)

    @classmethod
    def duration_ms(cls) -> int:
        return cls.__random__.randint(300, 45_000)

    @classmethod
    def attempts(cls) -> int:
        return 1

    @classmethod
    def files_changed(cls) -> list[str]:
        return [f"src/{cls.__faker__.word()}.py" for _ in range(cls.__random__.randint(0, 3))]


class ExecutionFactory(ModelFactory[Execution]):
    usage = UsageFactory
    error = None
    compensations = list
    compensation_error = None
    base = None
    fallback_models = list
    tasks = dict
    levels = list
    # Fixed, so adding admission fields drew nothing new from the seeded generator (same data, same seed).
    priority = Priority.NORMAL
    deadline = None

    @classmethod
    def execution_id(cls) -> str:
        return str(uuid.UUID(int=cls.__random__.getrandbits(128), version=4))

    @classmethod
    def request(cls) -> str:
        return f"{cls.__faker__.catch_phrase()}: {cls.__faker__.sentence(nb_words=10)}"

    @classmethod
    def model(cls) -> str | None:
        return cls.__random__.choice((None, *MODELS))

    @classmethod
    def status(cls) -> ExecutionStatus:
        return ExecutionStatus.SUCCEEDED

    @classmethod
    def version(cls) -> int:
        return 1


def reseed(seed: int) -> None:
    """Every factory draws from one generator seeded with `seed` (the same data for the same seed)."""
    ModelFactory.seed_random(seed)


# ------------------------------------------------------------------------------------- builders
@dataclass(frozen=True)
class Project:
    project_id: str
    owner: str
    members: tuple[str, ...]


def users(count: int) -> list[str]:
    return [f"user-{n:05d}" for n in range(count)]


def projects(count: int, principals: list[str], rng: random.Random) -> list[Project]:
    """Each project has an owner and 0-3 members, drawn from `principals`."""
    built = []
    for n in range(count):
        owner = principals[n % len(principals)]
        others = [p for p in rng.sample(principals, min(4, len(principals))) if p != owner][:3]
        built.append(Project(f"project-{n:05d}", owner, tuple(others[: rng.randint(0, len(others))])))
    return built


def finished_execution(
    project: Project,
    principal: str,
    created_at: datetime,
    *,
    agents: tuple[str, ...] = AGENTS[:3],
    failed_agent: str | None = None,
) -> tuple[Execution, list[AgentResult]]:
    """An execution the workflow finished: one level per agent, each task's result, usage summed; with
    `failed_agent`, that task FAILED, the ones after it SKIPPED and the execution FAILED."""
    execution_id = ExecutionFactory.execution_id()
    results: list[AgentResult] = []
    tasks: dict[str, TaskState] = {}
    failed = False
    for level, agent in enumerate(agents):
        task_id = f"t{level + 1}-{agent}"
        if failed:
            tasks[task_id] = TaskState(agent=agent, level=level, status=TaskStatus.SKIPPED)
            continue
        status = TaskStatus.FAILED if agent == failed_agent else TaskStatus.SUCCEEDED
        result = AgentResultFactory.build(
            task_id=task_id,
            agent=agent,
            status=status,
            error=f"{agent} agent: the model's answer was not valid JSON after 3 attempts"
            if failed_agent == agent
            else None,
            attempts=3 if status is TaskStatus.FAILED else 1,
        )
        results.append(result)
        tasks[task_id] = TaskState(
            agent=agent,
            level=level,
            status=status,
            attempts=result.attempts,
            usage=result.usage,
            model=result.model,
        )
        failed = status is TaskStatus.FAILED
    execution = ExecutionFactory.build(
        execution_id=execution_id,
        project_id=project.project_id,
        principal=principal,
        status=ExecutionStatus.FAILED if failed else ExecutionStatus.SUCCEEDED,
        created_at=created_at,
        updated_at=created_at + timedelta(seconds=sum(r.duration_ms for r in results) / 1000 + 2),
        correlation_id=execution_id,
        tasks=tasks,
        levels=[[task_id] for task_id in tasks],
        usage=Usage.total(r.usage for r in results),
        error=next((r.error for r in results if r.error), None),
    )
    return execution, results


# ------------------------------------------------------------------------------------ scenarios
@dataclass
class Dataset:
    """What a seed or a scenario put in the table (ids the caller can use)."""

    users: list[str] = field(default_factory=list)
    projects: list[Project] = field(default_factory=list)
    executions: list[tuple[Execution, list[AgentResult]]] = field(default_factory=list)

    @property
    def failed(self) -> list[Execution]:
        return [e for e, _ in self.executions if e.status is ExecutionStatus.FAILED]


def scenario_five_agent_workflow(seed: int = 1) -> Dataset:
    """One project, one execution through all five agents."""
    reseed(seed)
    project = Project("project-five-agents", "user-00000", ())
    start = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    return Dataset(
        ["user-00000"], [project], [finished_execution(project, project.owner, start, agents=AGENTS)]
    )


def scenario_users_by_executions(users_count: int = 10, per_user: int = 20, seed: int = 1) -> Dataset:
    """`users_count` users, each owning a project with `per_user` finished executions."""
    reseed(seed)
    principals = users(users_count)
    built = [Project(f"project-{p}", p, ()) for p in principals]
    start = datetime(2026, 11, 1, tzinfo=UTC)
    executions = [
        finished_execution(project, project.owner, start + timedelta(minutes=10 * n))
        for project in built
        for n in range(per_user)
    ]
    return Dataset(principals, built, executions)


def scenario_failures(count: int = 50, seed: int = 1) -> Dataset:
    """`count` executions that failed at a random agent (what error analytics and retries are tested on)."""
    reseed(seed)
    rng = random.Random(seed)
    project = Project("project-failures", "user-00000", ())
    start = datetime(2026, 11, 1, tzinfo=UTC)
    executions = [
        finished_execution(
            project, project.owner, start + timedelta(minutes=n), failed_agent=rng.choice(AGENTS[:3])
        )
        for n in range(count)
    ]
    return Dataset(["user-00000"], [project], executions)


SCENARIOS: dict[str, Callable[[], Dataset]] = {
    "five-agent-workflow": scenario_five_agent_workflow,
    "10-users-x-20-executions": scenario_users_by_executions,
    "50-failures": scenario_failures,
}


def at_scale(
    users_count: int,
    projects_count: int,
    executions_count: int,
    seed: int = 1,
    *,
    failure_share: float = 0.05,
) -> Dataset:
    """Every execution by its project's owner or a member, spread over 90 days; ~5 % failed."""
    reseed(seed)
    rng = random.Random(seed)
    principals = users(users_count)
    built = projects(projects_count, principals, rng)
    end = datetime(2026, 11, 28, tzinfo=UTC)
    dataset = Dataset(principals, built)
    dataset.executions = list(_executions(executions_count, built, end, rng, failure_share))
    return dataset


def _executions(
    count: int, built: list[Project], end: datetime, rng: random.Random, failure_share: float
) -> Iterator[tuple[Execution, list[AgentResult]]]:
    for _ in range(count):
        project = rng.choice(built)
        principal = rng.choice((project.owner, *project.members))
        created = end - timedelta(seconds=rng.randint(3_600, 90 * 86_400))
        failed_agent = rng.choice(AGENTS[:3]) if rng.random() < failure_share else None
        yield finished_execution(project, principal, created, failed_agent=failed_agent)


# ------------------------------------------------------------------------------------ loading
@dataclass
class Timings:
    projects_s: float = 0.0
    executions_s: float = 0.0
    items: int = 0


def load(dataset: Dataset) -> Timings:
    """Write `dataset` through the domain's write paths (in the current AWS environment: the local
    runtime's or a deployed table named by TABLE_NAME)."""
    from tdev import container
    from tdev.security.services import projects as project_owners
    from tdev.security.tokens import Identity

    timings = Timings()
    started = time.perf_counter()
    owners = project_owners()
    for project in dataset.projects:
        owners.claim(project.project_id, project.owner)
        for member in project.members:
            owners.add_member(project.project_id, member, by=Identity(project.owner, ("developer",)))
    timings.projects_s = time.perf_counter() - started
    started = time.perf_counter()
    timings.items = container.executions().import_history(dataset.executions)
    timings.executions_s = time.perf_counter() - started
    return timings


# ------------------------------------------------------------------------------ snapshots
def snapshot(dataset: Dataset, path: Path) -> None:
    """The dataset as JSON (load it again with `restore`): a fixed dataset for tests and benchmarks."""
    payload = {
        "users": dataset.users,
        "projects": [[p.project_id, p.owner, list(p.members)] for p in dataset.projects],
        "executions": [
            [e.model_dump(mode="json"), [r.model_dump(mode="json") for r in results]]
            for e, results in dataset.executions
        ],
    }
    path.write_text(json.dumps(payload))


def restore(path: Path) -> Dataset:
    payload = json.loads(path.read_text())
    return Dataset(
        list(payload["users"]),
        [Project(pid, owner, tuple(members)) for pid, owner, members in payload["projects"]],
        [
            (Execution.model_validate(e), [AgentResult.model_validate(r) for r in results])
            for e, results in payload["executions"]
        ],
    )
