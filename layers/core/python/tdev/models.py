"""Domain models shared by the API, the workflow functions and the local runtime.

Everything that crosses a boundary (API body, Step Functions payload, DynamoDB item) is one of these
pydantic models, so validation errors name the offending field and the OpenAPI schema is generated
from the same definitions the code runs on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

MAX_REQUEST_CHARS = 20_000
# A base archive travels base64-encoded in the JSON body, which is bounded at 1 MiB before parsing
# (tdev.security.inputs): 512 KiB of zip is 699,052 base64 characters, leaving room for the rest.
MAX_ARCHIVE_BYTES = 512 * 1024
MAX_ARCHIVE_BASE64_CHARS = 4 * -(-MAX_ARCHIVE_BYTES // 3)
EXECUTION_ID_PATTERN = r"^[A-Za-z0-9-]{1,80}$"
MAX_BUDGET_USD = 1_000.0  # per request or chat session; a larger figure is a typo, not a budget
# The smallest USD budget anywhere: a millionth of a dollar, about one token of the cheapest model. Below it
# a figure is noise, and below 1e-130 DynamoDB cannot store it at all (its numbers underflow).
MIN_BUDGET_USD = 0.000001

ModelName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, pattern=r"^[a-z0-9][a-z0-9_-]*:[A-Za-z0-9._:/@+-]+$", max_length=200
    ),
]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Priority(StrEnum):
    """A request's priority (spec 1.3: CRITICAL=1 ... LOW=4; tdev.orchestration.admission ranks them)."""

    CRITICAL = "CRITICAL"
    HIGH = "HIGH"
    NORMAL = "NORMAL"
    LOW = "LOW"


class SessionStatus(StrEnum):
    """A chat session's status (its transitions: tdev.sessions.lifecycle)."""

    ACTIVE = "active"
    PAUSED = "paused"
    RESUMING = "resuming"
    TERMINATING = "terminating"
    COMPLETED = "completed"
    FAILED = "failed"  # recovery gave up (3 attempts); the reason is recorded


class ExecutionStatus(StrEnum):
    PENDING = "PENDING"
    PLANNING = "PLANNING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    DEGRADED = "DEGRADED"  # succeeded, but a task behind a soft dependency failed
    FAILED = "FAILED"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"  # stopped before a model call that could have overspent its budget
    CANCELLED = "CANCELLED"  # stopped on request (POST /v1/executions/{id}/cancel)

    @property
    def terminal(self) -> bool:
        return self in {
            ExecutionStatus.SUCCEEDED,
            ExecutionStatus.DEGRADED,
            ExecutionStatus.FAILED,
            ExecutionStatus.BUDGET_EXCEEDED,
            ExecutionStatus.CANCELLED,
        }


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    COMPENSATED = "COMPENSATED"


class DependencyKind(StrEnum):
    HARD = "hard"  # the dependent cannot run without this task's result
    SOFT = "soft"  # the dependent runs anyway; the failure is only a warning


class FailurePolicy(StrEnum):
    FAIL = "fail"  # a failure stops the request (some dependent needs it, or it is a deliverable)
    CONTINUE = "continue"  # every dependent only soft-depends on it: the request continues, degraded


# --------------------------------------------------------------------------------------------- API
class RequestIn(BaseModel):
    """Body of `POST /v1/requests`."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    request: str = Field(
        min_length=3, max_length=MAX_REQUEST_CHARS, description="What to build, in plain words."
    )
    project_id: str = Field(
        default="default", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
    )
    model: ModelName | None = Field(
        default=None,
        description="Model for every agent, as provider:model-id (default: each agent's own, else the "
        "deployment's).",
    )
    fallback_models: list[ModelName] = Field(
        default_factory=list,
        max_length=5,
        description="Models tried in order when the model fails transiently (throttling, timeout, 5xx).",
    )
    session_id: str | None = Field(
        default=None,
        pattern=r"^ses-[a-f0-9]{1,40}$",
        description="An open session to attach the request to (POST /v1/sessions).",
    )
    base_execution_id: str | None = Field(
        default=None,
        pattern=EXECUTION_ID_PATTERN,
        description="Start from the project an earlier SUCCEEDED (or DEGRADED) execution of the same project "
        "wrote: the new workspace begins as a copy of its files.",
    )
    base_archive: str | None = Field(
        default=None,
        min_length=4,
        max_length=MAX_ARCHIVE_BASE64_CHARS,
        # The base64 alphabet only: also bounds the body in bytes (escaped non-ASCII text of the same length
        # could pass Lambda's 6 MB request limit before the API's own 1 MiB bound is ever checked).
        pattern=r"^[A-Za-z0-9+/]*={0,2}$",
        description="Start from an uploaded project: a zip archive, base64-encoded (at most "
        f"{MAX_ARCHIVE_BYTES // 1024} KiB zipped; relative paths only, no symlinks; a top-level project/ "
        "folder, as in the artifacts zip, is dropped).",
    )

    budget_usd: float | None = Field(
        default=None,
        ge=MIN_BUDGET_USD,
        le=MAX_BUDGET_USD,
        allow_inf_nan=False,
        description="The most this request may spend on models, in USD (default: the deployment's "
        "TDEV_DEFAULT_BUDGET_USD). Each model call reserves its worst case first; a call that would go over "
        "is not made and the request ends BUDGET_EXCEEDED.",
    )

    priority: Priority = Field(
        default=Priority.NORMAL,
        description="When agents or models are at capacity, waiting tasks are admitted by priority, aged "
        "(a wait of 300 s is worth one level) and boosted two levels within 300 s of the deadline.",
    )
    deadline: AwareDatetime | None = Field(
        default=None,
        description="When the request should be done (ISO 8601 with a time zone; in the future, at most 7 "
        "days away).",
    )

    @field_validator("base_archive")
    @classmethod
    def _one_base(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("base_execution_id"):
            raise ValueError("give base_execution_id or base_archive, not both")
        return value


class ProjectBase(BaseModel):
    """What an execution's workspace started from (absent: an empty workspace)."""

    source: Literal["execution", "archive"]
    execution_id: str | None = Field(default=None, description="The execution whose files were copied.")
    files: list[str] = Field(default_factory=list, description="The paths the workspace started with.")
    sha256: dict[str, str] = Field(
        default_factory=dict,
        description="Each starting file's SHA-256 (the verify loop's first iteration says what changed).",
    )


class RequestAccepted(BaseModel):
    execution_id: str
    status: ExecutionStatus
    status_url: str


class ErrorBody(BaseModel):
    error: str
    message: str
    field: str | None = None
    details: list[dict[str, object]] = Field(default_factory=list)


# ------------------------------------------------------------------------------------------- agents
# The workspace tools an agent may be given (tdev.agents.tools), each confined to the execution's workspace.
WorkspaceToolName = Literal["list_files", "read_file", "write_file", "patch_file", "search_text", "run_tests"]


# Bounded vocabulary items of an agent spec: short phrases, not prose.
AgentPhrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
AgentInstruction = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
AGENT_NAME = r"^[A-Z][A-Za-z0-9]{0,58}Agent$"
SEMVER = r"^(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})$"


class AgentSpec(BaseModel):
    """An agent as the registry stores it; instantiated lazily by `run_agent`.

    Every field is bounded (an operator registers specs through `PUT /v1/agents/{name}`): `tools` and the
    model's provider are closed sets, the lists and texts have maximum sizes. `name@version` (`ref`) names
    one immutable version; `max_concurrent` caps the runs in flight at once (tdev.orchestration.capacity).
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=AGENT_NAME)
    version: str = Field(
        default="1.0.0", pattern=SEMVER, description="MAJOR.MINOR.PATCH; a version is immutable"
    )
    role: str = Field(min_length=1, max_length=100)
    description: str = Field(min_length=1, max_length=1000)
    capabilities: list[AgentPhrase] = Field(min_length=1, max_length=20)
    keywords: list[AgentPhrase] = Field(
        default_factory=list, max_length=60, description="Words that route a request to this agent."
    )
    instructions: list[AgentInstruction] = Field(default_factory=list, max_length=20)
    model: ModelName | None = None
    fallback_models: list[ModelName] = Field(default_factory=list, max_length=5)
    max_concurrent: int = Field(default=10, ge=1, le=1000)
    timeout_seconds: int = Field(default=300, ge=1, le=900)
    tools: list[WorkspaceToolName] = Field(
        default_factory=list,
        max_length=6,
        description="Workspace tools the agent works with (none: it only answers).",
    )

    @property
    def ref(self) -> str:
        """`name@version`: the one version of this agent a run used."""
        return f"{self.name}@{self.version}"


# --------------------------------------------------------------------------------------------- plan
class Dependency(BaseModel):
    task_id: str
    kind: DependencyKind = DependencyKind.HARD


class AgentTask(BaseModel):
    task_id: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")
    agent: str
    intent: str
    description: str
    depends_on: list[Dependency] = Field(default_factory=list)
    on_failure: FailurePolicy = FailurePolicy.FAIL
    timeout_seconds: int = Field(default=300, ge=1, le=900)


class Decision(BaseModel):
    """Why an agent was chosen for an intent (rules + keyword/semantic score + history)."""

    intent: str
    agent: str
    confidence: float = Field(ge=0.0, le=1.0)
    reasoning: str
    alternatives: list[tuple[str, float]] = Field(default_factory=list)


class Plan(BaseModel):
    tasks: list[AgentTask] = Field(min_length=1)
    levels: list[list[str]] = Field(
        description="Task ids grouped in topological levels; a level runs in parallel."
    )
    decisions: list[Decision] = Field(default_factory=list)

    def task(self, task_id: str) -> AgentTask:
        for task in self.tasks:
            if task.task_id == task_id:
                return task
        raise KeyError(task_id)


# ---------------------------------------------------------------------------------------- execution
class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @classmethod
    def total(cls, usages: Iterable[Usage]) -> Usage:
        return sum(usages, cls())

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 8),
        )


def to_micro_usd(usd: float) -> int:
    """USD → whole micro-USD, rounded up: budgets keep integer books, a cost is never under-counted."""
    return max(0, math.ceil(round(usd * 1_000_000, 6)))


class ModelHop(BaseModel):
    """One model tried for a task: which, how it went (succeeded, transient, failed, breaker_open, ...)."""

    model: str
    outcome: str
    reason: str = ""
    duration_ms: int = 0


class AgentResult(BaseModel):
    task_id: str
    agent: str
    model: str
    status: TaskStatus
    output: str = ""
    usage: Usage = Field(default_factory=Usage)
    duration_ms: int = 0
    attempts: int = 1
    error: str | None = None
    hops: list[ModelHop] = Field(default_factory=list, description="The models tried, in order.")
    files_changed: list[str] = Field(default_factory=list, description="Workspace files the agent wrote.")


class TestCounts(BaseModel):
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0


class VerifyIteration(BaseModel):
    """One turn of the verify loop: the project's tests run in the sandbox (after the agents or a fix)."""

    iteration: int = Field(ge=1)
    outcome: str = Field(description="passed, failed, no_tests, timeout, unsupported or error")
    tests: TestCounts = Field(default_factory=TestCounts)
    files_changed: list[str] = Field(default_factory=list, description="Since the previous iteration.")
    usage: Usage = Field(default_factory=Usage, description="The agent work this iteration tested.")
    fixed_by: str | None = Field(default=None, description="The model that fixed the code before this run.")
    duration_ms: int = 0
    failures: list[dict[str, str]] = Field(default_factory=list)
    output: str = Field(default="", description="The end of the test output (trimmed).")
    isolation: list[str] = Field(default_factory=list, description="How the sandbox isolated the run.")
    file_hashes: dict[str, str] = Field(default_factory=dict, exclude=True)


class FixRun(BaseModel):
    """What the code agent did between two verify iterations."""

    iteration: int = Field(ge=2, description="The verify iteration that tests this fix.")
    model: str
    usage: Usage = Field(default_factory=Usage)
    files_changed: list[str] = Field(default_factory=list)
    summary: str = ""


class TaskState(BaseModel):
    """Per-task progress kept on the execution item (small: outputs live on TASK items)."""

    agent: str
    level: int
    status: TaskStatus = TaskStatus.PENDING
    attempts: int = 0
    usage: Usage = Field(default_factory=Usage)
    error: str | None = None
    model: str | None = Field(default=None, description="The model that answered (after any fallback).")


class Execution(BaseModel):
    execution_id: str
    request: str
    project_id: str
    principal: str
    model: str | None = Field(default=None, description="The requested model; None: each agent's own.")
    fallback_models: list[str] = Field(default_factory=list)
    status: ExecutionStatus
    created_at: datetime
    updated_at: datetime
    correlation_id: str
    tasks: dict[str, TaskState] = Field(default_factory=dict)
    levels: list[list[str]] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    error: str | None = None
    compensations: list[str] = Field(default_factory=list)
    # Set when the failure path itself failed for good: the request is FAILED, its compensation incomplete.
    compensation_error: str | None = None
    base: ProjectBase | None = None
    # The request's budget (USD; None: no cap) and its ledger, in micro-USD so the conditional updates that
    # reserve and settle model calls add whole numbers (tdev.data.budgets).
    budget_usd: float | None = None
    reserved_micro_usd: int = 0
    spent_micro_usd: int = 0
    cancel_requested_at: str | None = None
    priority: Priority = Priority.NORMAL
    deadline: datetime | None = None
    version: int = 0

    @field_validator("created_at", "updated_at", mode="before")
    @classmethod
    def _parse_time(cls, value: object) -> object:
        return datetime.fromisoformat(value) if isinstance(value, str) else value

    @property
    def progress(self) -> float:
        if not self.tasks:
            return 0.0
        done = sum(1 for t in self.tasks.values() if t.status not in {TaskStatus.PENDING, TaskStatus.RUNNING})
        return round(done / len(self.tasks), 4)


class BudgetView(BaseModel):
    """The budget of a request: the cap, what settled model calls spent, what calls in flight reserved."""

    budget_usd: float | None = Field(description="The cap in USD; null: no cap.")
    spent_usd: float = Field(description="What the request's settled model calls cost (their real usage).")
    reserved_usd: float = Field(description="Worst cases reserved by model calls still in flight.")


MAX_SCOPE_BUDGET_USD = 1_000_000.0  # per user or project and month
MAX_SCOPE_BUDGET_TOKENS = 10**12


class ScopeBudgetIn(BaseModel):
    """`PUT /v1/users/{id}/budget`, `PUT /v1/projects/{id}/budget` (admins): a monthly cap override."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    budget_usd: float | None = Field(
        default=None,
        ge=MIN_BUDGET_USD,
        le=MAX_SCOPE_BUDGET_USD,
        allow_inf_nan=False,
        description="USD per calendar month (UTC); null: the configured default.",
    )
    budget_tokens: int | None = Field(
        default=None,
        gt=0,
        le=MAX_SCOPE_BUDGET_TOKENS,
        description="Tokens (in + out) per calendar month; null: the configured default (none: no cap).",
    )
    reason: str = Field(min_length=3, max_length=500, description="Why: kept with the change, and logged.")


class SuspendIn(BaseModel):
    """`POST /v1/users/{id}/suspend` and `/unsuspend` (admins)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: str = Field(
        min_length=3, max_length=500, description="Why: kept with the suspension, and logged."
    )


class ScopeBudgetView(BaseModel):
    """A user's or a project's budget for the current month (UTC) and what its model calls spent and hold."""

    scope: Literal["user", "project"]
    id: str
    period: str = Field(description="The calendar month, UTC (yyyy-mm).")
    period_start: datetime
    period_end: datetime
    budget_usd: float
    budget_tokens: int | None = Field(description="null: tokens are counted, not capped.")
    source: Literal["default", "override"]
    spent_usd: float
    reserved_usd: float
    left_usd: float
    spent_tokens: int
    reserved_tokens: int
    override: dict[str, str | None] | None = Field(
        default=None, description="Who set the override, when and why (null: the configured default)."
    )


class ExecutionView(BaseModel):
    """`GET /v1/executions/{id}`: the execution, its plan and each task's result."""

    execution_id: str
    status: ExecutionStatus
    request: str
    project_id: str
    model: str | None = None
    fallback_models: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    progress: float
    levels: list[list[str]]
    tasks: dict[str, TaskState]
    plan: Plan | None = None
    results: list[AgentResult]
    usage: Usage
    error: str | None = None
    compensations: list[str] = Field(default_factory=list)
    verify: list[VerifyIteration] = Field(
        default_factory=list, description="The verify loop's iterations: tests run, failures fixed."
    )
    compensation_error: str | None = Field(
        default=None,
        description="Why compensating the failed request failed (its compensations are partial).",
    )
    base: ProjectBase | None = Field(
        default=None, description="The existing project the workspace started from, if any."
    )
    budget: BudgetView | None = Field(
        default=None, description="The request's budget and what its model calls spent and hold reserved."
    )
    cancel_requested_at: str | None = Field(
        default=None, description="When cancelling was asked for (POST /v1/executions/{id}/cancel)."
    )
    priority: Priority = Priority.NORMAL
    deadline: datetime | None = None


# ------------------------------------------------------------------ state machine step payloads
class StepEvent(BaseModel):
    """What every workflow step receives from the state machine."""

    execution_id: str = Field(min_length=1, max_length=80)
    correlation_id: str = Field(min_length=1, max_length=200)


class TaskRef(BaseModel):
    task_id: str
    agent: str
    on_failure: FailurePolicy


class RunAgentEvent(StepEvent):
    task: TaskRef
    attempt: int = Field(default=0, ge=0, description="$$.State.RetryCount: 0 on the first try")


class TaskFailureEvent(StepEvent):
    task: TaskRef
    error: dict[str, object] | None = None


class FailureEvent(StepEvent):
    error: dict[str, object] | None = None


class VerifyEvent(StepEvent):
    iteration: int = Field(default=0, ge=0, le=50, description="Verify iterations done so far")


class SandboxEvent(BaseModel):
    """What the sandbox function gets: the project's files (text) and a time limit; nothing else."""

    model_config = ConfigDict(extra="forbid")

    files: dict[str, str] = Field(max_length=200)
    timeout_seconds: int = Field(default=60, ge=1, le=600)


class CompensationFailureEvent(BaseModel):
    """The last step of the failure path: compensation failed for good; record it.

    Deliberately lenient beyond the execution id (no length limit on the correlation id): whatever made the
    other steps reject their input must not stop the failure from being recorded.
    """

    execution_id: str = Field(min_length=1, max_length=80)
    correlation_id: str | None = None
    error: dict[str, object] | None = None
    compensation_error: dict[str, object] | None = None
