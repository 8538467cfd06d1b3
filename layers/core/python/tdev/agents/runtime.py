"""Run one agent task: build an Agno agent from its spec, give it the task's prompt, account for the call.

Lambda is stateless, so the agent has no database, memory or history: everything it needs is in the
prompt (the request, its task, the upstream results), and everything it produces is returned to the
caller, who stores it in DynamoDB. Failures leave here as exactly two kinds, the names the state machine
acts on: TransientError (retried with backoff) and AgentError (caught, never retried).
"""

from __future__ import annotations

import os
import re
import time
import types
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

os.environ.setdefault("AGNO_TELEMETRY", "false")

from agno.agent import Agent
from agno.models.base import Model
from agno.run.base import RunStatus
from agno.tools import Toolkit

from tdev.agents.pool import AgentPool, configured
from tdev.agents.tools import MAX_TOOL_CALLS
from tdev.errors import AgentError, BudgetExceeded, ExecutionCancelled, TransientError
from tdev.llm.catalog import classify_provider_error, cost_usd, provider_error_reason, resolve_model
from tdev.llm.metering import meter_model, stop_check_hook
from tdev.models import AgentResult, AgentSpec, AgentTask, TaskStatus, Usage
from tdev.settings import configured_max_output_tokens

WORKSPACE_INSTRUCTION = (
    "You work on the project's files through your workspace tools: paths are relative to the project "
    "root. Write complete files with write_file (or small edits with patch_file), read before you judge, "
    "run the tests with run_tests when you have it, and end with a short summary of what you did."
)
MAX_UPSTREAM_CHARS = 6_000  # per upstream result: keeps a prompt of a wide level within a model's context
MAX_EXISTING_LISTED = 100  # paths of a base project named in the prompt (list_files has the rest)


# ------------------------------------------------------------------------------------ agno session
def _install_session_metrics_skip() -> None:
    """After every run Agno folds the run's metrics into its session's (to save with the session row).
    Our agents have no db, so nothing ever stores that row: skip the work for them (about a fifth of the
    layer's overhead per model call in `tdev bench llm`). Agents with a db keep Agno's behaviour."""
    import agno.agent._run as agno_run

    original = agno_run.update_session_metrics
    if getattr(original, "tdev_skips_unstored", False):
        return

    def update_session_metrics(agent: Agent, session: Any, run_response: Any) -> None:
        if agent.db is None:
            return
        original(agent, session=session, run_response=run_response)

    update_session_metrics.tdev_skips_unstored = True  # type: ignore[attr-defined]
    agno_run.update_session_metrics = update_session_metrics


_install_session_metrics_skip()


# ------------------------------------------------------------------------------------------- agent
def build_agent(
    spec: AgentSpec, model_name: str, *, model: Model | None = None, tools: Sequence[Toolkit] = ()
) -> Agent:
    """An Agno agent for `spec`, without db or memory: state lives in DynamoDB, not in the agent.

    `model` is an already-resolved model (tests inject one with a stubbed client); otherwise `model_name`
    is resolved. The first instruction names the role, which the offline model reads to pick a template.
    `tools` (the execution's workspace tools) go through Agno's tool calling, whatever the model.
    """
    instructions = [f"Role: {spec.name}", spec.role, *spec.instructions]
    if tools:
        instructions.append(WORKSPACE_INSTRUCTION)
    return Agent(
        model=model if model is not None else resolve_model(model_name),
        name=spec.name,
        description=spec.description,
        instructions=instructions,
        tools=list(tools),
        tool_call_limit=MAX_TOOL_CALLS if tools else None,
        tool_hooks=[stop_check_hook] if tools else None,  # a cancelled execution runs no further tool step
        telemetry=False,
    )


# -------------------------------------------------------------------------------------------- pool
@lru_cache(maxsize=1)
def agent_pool() -> AgentPool:
    """This container's agent pool (tdev.agents.pool), sized by TDEV_AGENT_POOL_*, building with
    `build_agent`."""
    return AgentPool(configured(), build=build_agent)


def pre_warm_at_cold_start() -> int:
    """With TDEV_AGENT_POOL_PRE_WARM, `min_size` agents of each built-in agent on the default model."""
    from tdev.agents.catalog import DEFAULT_AGENTS
    from tdev.settings import get_settings

    pool = agent_pool()
    if not pool.config.pre_warm:
        return 0
    return pool.pre_warm(DEFAULT_AGENTS, get_settings().default_model, resolve_model)


# ------------------------------------------------------------------------------------------ prompt
_OUR_TAGS = re.compile(r"<(/?)(request|task|upstream|existing-project)\b", re.IGNORECASE)


def _embed(text: str) -> str:
    """Text from users or other agents cannot open or close our prompt sections (no tag injection)."""
    return _OUR_TAGS.sub(lambda m: f"&lt;{m.group(1)}{m.group(2)}", text.strip())


def existing_project_section(files: Sequence[str]) -> str:
    """The <existing-project> section: the base's paths (bounded) and how to treat them."""
    shown = list(files)[:MAX_EXISTING_LISTED]
    more = len(files) - len(shown)
    return (
        f'<existing-project files="{len(files)}">\n'
        + "\n".join(_embed(path) for path in shown)
        + (f"\n[and {more} more: list_files shows them all]" if more > 0 else "")
        + "\n</existing-project>\nThe workspace starts from this existing project: read a file before "
        "changing it, keep what the request does not ask to change, and keep its tests passing (they run "
        "with yours)."
    )


def _attribute(value: str) -> str:
    return " ".join(value.replace('"', "'").split())


def compose_prompt(
    request: str,
    task: AgentTask,
    upstream: Sequence[AgentResult],
    *,
    max_chars_per_upstream: int = MAX_UPSTREAM_CHARS,
    existing_files: Sequence[str] = (),
) -> str:
    """The request, this task, and what upstream tasks produced (each bounded; failures shown as failures).

    `existing_files`: the project the workspace started from (a request with a base), listed so the agent
    reads before it changes and keeps what the request does not ask to change.

    Sections are XML-style tags, which models follow well and the offline model parses.
    """
    kinds = {dependency.task_id: dependency.kind.value for dependency in task.depends_on}
    parts = [
        f"<request>\n{_embed(request)}\n</request>",
        f'<task id="{task.task_id}" agent="{_attribute(task.agent)}" intent="{_attribute(task.intent)}">\n'
        f"{_embed(task.description)}\n</task>",
    ]
    if existing_files:
        parts.append(existing_project_section(existing_files))
    for result in upstream:
        kind = kinds.get(result.task_id, "context")
        opening = (
            f'<upstream task_id="{result.task_id}" agent="{_attribute(result.agent)}" '
            f'status="{result.status.value}" dependency="{kind}">'
        )
        if result.status is TaskStatus.SUCCEEDED:
            output = result.output.strip()
            body = _embed(output[:max_chars_per_upstream])
            if len(output) > max_chars_per_upstream:
                shown = f"{max_chars_per_upstream:,} of {len(output):,}"
                body += f"\n[truncated: only the first {shown} characters are shown]"
        elif result.status is TaskStatus.FAILED:
            reason = _embed(result.error or "no error message was recorded")
            body = f"This upstream task failed: {reason}"
            if kind == "soft":
                body += "\nIt is a soft dependency: carry on without its result and say what is missing."
        else:
            body = f"This upstream task did not produce a result (status {result.status.value})."
        parts.append(f"{opening}\n{body}\n</upstream>")
    if not upstream:
        parts.append("There are no upstream results: this task starts from the request alone.")
    parts.append("Do the task above for the request. Answer with the deliverable itself.")
    return "\n\n".join(parts)


# --------------------------------------------------------------------------------------------- run
@dataclass
class AgentRun:
    """What one successful agent run produced and cost."""

    output: str
    usage: Usage
    model: str
    duration_ms: int


# Agno's Agent.run catches every exception a model raises and returns RunOutput(status=error) carrying
# only str(exc). The exception itself is what tells throttling from access denied (Bedrock's
# ModelProviderError chains the botocore ClientError), so each model records what it raised here.
_raised_by_model: ContextVar[list[BaseException] | None] = ContextVar("tdev_raised_by_model", default=None)


def _recording_response(self: Model, *args: Any, **kwargs: Any) -> Any:
    """Agno's `Model.response`, recording what it raises for the current run (see `_raised_by_model`)."""
    try:
        return type(self).response(self, *args, **kwargs)
    except Exception as exc:
        sink = _raised_by_model.get()
        if sink is not None:
            sink.append(exc)
        raise


def _record_raised_exceptions(model: Model) -> None:
    """Route this instance's `response` (Agno's public entry point) through `_recording_response`, once.

    A bound method, not a closure: a deep copy of the model rebinds it to the copy. Records go to the
    calling context only, so concurrent runs on a shared model stay apart.
    """
    if getattr(model.response, "__func__", None) is not _recording_response:
        model.response = types.MethodType(_recording_response, model)  # type: ignore[method-assign]


def _failure(spec: AgentSpec, model_name: str, exc: BaseException) -> TransientError | AgentError:
    kind = classify_provider_error(exc)
    error_type = TransientError if kind is TransientError else AgentError
    return error_type(f"{spec.name} on {model_name} failed: {provider_error_reason(exc)}")


def run_agent(
    spec: AgentSpec,
    model_name: str,
    prompt: str,
    *,
    model: Model | None = None,
    tools: Sequence[Toolkit] = (),
) -> AgentRun:
    """Run the agent once (retries belong to the state machine) and return its answer, tokens and cost.

    Raises TransientError when another attempt may succeed (throttling, timeouts, 5xx) and AgentError when it
    cannot (access denied, invalid request, empty answer). `model` is an already-resolved model, if any.
    """
    resolved = model if model is not None else resolve_model(model_name)
    # Each model call reserves its worst case from the request's budget first (when a ledger is in use).
    meter_model(resolved, model_name, configured_max_output_tokens())
    _record_raised_exceptions(resolved)
    raised: list[BaseException] = []
    # A pooled agent (tdev.agents.pool), reset when it goes back: built once per kind in this container.
    with agent_pool().lease(spec, model_name, model=resolved, tools=tools) as agent:
        token = _raised_by_model.set(raised)
        started = time.perf_counter()
        try:
            output = agent.run(prompt)
        except Exception as exc:  # Agno catches model errors itself; this is for failures around the model
            raise _failure(spec, model_name, exc) from exc
        finally:
            _raised_by_model.reset(token)
        duration_ms = int((time.perf_counter() - started) * 1000)
        # (checked inside the lease: the pool counts each failed run by its error's type)
        stop = next((e for e in raised if isinstance(e, BudgetExceeded | ExecutionCancelled)), None)
        if stop is not None:  # the ledger refused a call: the request stops, whatever Agno made of it
            raise stop
        if output.status is not RunStatus.completed:
            # Prefer the exception the model raised; Agno's error text is the fallback when none was recorded.
            cause = (
                raised[-1]
                if raised
                else RuntimeError(str(output.content or f"run ended {output.status.value}"))
            )
            raise _failure(spec, model_name, cause) from cause
        content = output.content if isinstance(output.content, str) else str(output.content or "")
        if not content.strip():
            raise AgentError(f"{spec.name} on {model_name} returned an empty answer")

    input_tokens = output.metrics.input_tokens if output.metrics else 0
    output_tokens = output.metrics.output_tokens if output.metrics else 0
    usage = Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost_usd(model_name, input_tokens, output_tokens),
    )
    return AgentRun(output=content, usage=usage, model=model_name, duration_ms=duration_ms)
