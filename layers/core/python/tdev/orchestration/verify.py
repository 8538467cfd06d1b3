"""The verify loop's steps: run the project's tests in the sandbox, and let the code agent fix failures.

The state machine alternates them ("Run the project's tests" -> "Ask the code agent to fix the failing
tests" -> ...) until the tests pass or the iteration budget is spent. Every test run is recorded (files
changed since the previous run, test counts, the tokens and cost of the work it tested, trimmed output),
so `GET /v1/executions/{id}` and `tdev run` show the loop as it goes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from tdev import container
from tdev.agents.tools import WorkspaceTools, format_report
from tdev.errors import NotFoundError
from tdev.models import AgentSpec, FixRun, TestCounts, Usage, VerifyIteration
from tdev.observability import logger, metrics, tracer
from tdev.sandbox import TestReport
from tdev.workspace import Workspace, changed_files, open_workspace

FIXING_AGENT = "CodeAgent"
# Outcomes the code agent can do something about; passed, no_tests and unsupported end the loop.
FIXABLE = frozenset({"failed", "timeout", "error"})


def text_files(workspace: Workspace) -> dict[str, str]:
    files: dict[str, str] = {}
    for path, content in workspace.snapshot().items():
        try:
            files[path] = content.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return files


def agent_tools(spec: AgentSpec, execution_id: str) -> WorkspaceTools | None:
    """The workspace tools the spec names, on the execution's workspace (None: the agent has none)."""
    return WorkspaceTools(open_workspace(execution_id), spec.tools) if spec.tools else None


def _verify_loop_on(execution_id: str) -> bool:
    """The `verify_loop` flag for the execution's submitter (tdev.config.flags; on unless turned off)."""
    from tdev.config import flags

    return flags.enabled("verify_loop", container.executions().get(execution_id).principal)


@tracer.capture_method
def run_project_tests(execution_id: str, iteration: int) -> dict[str, Any]:
    """Verify iteration `iteration + 1`: test the workspace in the sandbox and record what happened."""
    from tdev.sandbox.client import run_project_tests as sandboxed

    number = iteration + 1
    if not _verify_loop_on(execution_id):
        logger.info("verify loop off (flag verify_loop): the project is not tested")
        return {"iteration": number, "outcome": "disabled", "needs_fix": False}
    records = container.verify_records()
    workspace = open_workspace(execution_id)
    report: TestReport = sandboxed(text_files(workspace))
    previous = [r for r in records.iterations(execution_id) if r.iteration < number]
    hashes = workspace.hashes()
    fixed_by: str | None = None
    if number == 1:  # the run tests what the agents of the plan wrote (over the base they started from)
        execution = container.executions().get(execution_id)
        usage = Usage.total(t.usage for t in execution.tasks.values())
        changed = changed_files(execution.base.sha256 if execution.base else {}, hashes)
    else:
        changed = changed_files(previous[-1].file_hashes if previous else {}, hashes)
        fix = next((f for f in records.fixes(execution_id) if f.iteration == number), None)
        usage, fixed_by = (fix.usage, fix.model) if fix else (Usage(), None)
    record = VerifyIteration(
        iteration=number,
        outcome=report.outcome,
        tests=TestCounts(
            passed=report.passed, failed=report.failed, errors=report.errors, skipped=report.skipped
        ),
        files_changed=changed,
        usage=usage,
        fixed_by=fixed_by,
        duration_ms=report.duration_ms,
        failures=report.failures,
        output=report.output,
        isolation=report.isolation,
    )
    record.file_hashes = hashes
    records.save_iteration(execution_id, record)
    metrics.add_metric(name="VerifyIterations", unit=MetricUnit.Count, value=1)
    logger.info(
        "project tested",
        extra={
            "iteration": number,
            "outcome": report.outcome,
            "passed": report.passed,
            "failed": report.failed,
        },
    )
    return {"iteration": number, "outcome": report.outcome, "needs_fix": report.outcome in FIXABLE}


def compose_fix_prompt(
    request: str, record: VerifyIteration, files: list[str], existing_files: Sequence[str] = ()
) -> str:
    """The code agent's brief for a fix: the request, the failing run (trimmed) and the project's files
    (and, on a request with a base, which of them the workspace started with)."""
    from tdev.agents.runtime import _embed, existing_project_section

    report = TestReport(
        outcome=record.outcome,
        passed=record.tests.passed,
        failed=record.tests.failed,
        errors=record.tests.errors,
        output=record.output,
        failures=record.failures,
        isolation=record.isolation,
    )
    failures = format_report(report)
    if record.outcome == "failed" and not record.failures:
        failures += "\n" + record.output[-1500:]
    return "\n\n".join(
        [
            f"<request>\n{_embed(request)}\n</request>",
            f'<task id="fix-{record.iteration + 1}" agent="{FIXING_AGENT}" intent="fix">\n'
            "The project's tests fail. Read the failing tests and the code they exercise, fix the code "
            "(change a test only when it contradicts the request), and keep what works.\n</task>",
            f'<test-failures iteration="{record.iteration}">\n{_embed(failures)}\n</test-failures>',
            "Files in the workspace:\n" + "\n".join(f"- {f}" for f in files[:200]),
            *([existing_project_section(existing_files)] if existing_files else []),
            "Fix the code with your workspace tools, then summarise what you changed.",
        ]
    )


@tracer.capture_method
def fix_failing_tests(execution_id: str, iteration: int) -> dict[str, Any]:
    """The code agent fixes what verify iteration `iteration` found; recorded for iteration + 1."""
    from tdev.agents.chain import run_chain
    from tdev.data.budgets import ledger_for
    from tdev.llm.fallback import model_chain, model_guards
    from tdev.llm.metering import metered

    records = container.verify_records()
    record = next((r for r in records.iterations(execution_id) if r.iteration == iteration), None)
    if record is None:
        raise NotFoundError(
            f"execution {execution_id} has no verify iteration {iteration}", field="iteration"
        )
    execution = container.executions().get(execution_id)
    spec = container.agents().get(FIXING_AGENT)
    workspace = open_workspace(execution_id)
    tools = WorkspaceTools(workspace, spec.tools or ["list_files", "read_file", "write_file", "patch_file"])
    prompt = compose_fix_prompt(
        execution.request,
        record,
        [f.path for f in workspace.files()],
        existing_files=execution.base.files if execution.base else (),
    )
    # The model calls' outcomes are read when the fix ends, after its record's write (model_guards).
    with model_guards() as guards:
        with metered(ledger_for(execution)):  # the fixes spend from the request's budget too
            chained = run_chain(spec, model_chain(execution, spec), prompt, guards=guards, tools=[tools])
        fix = FixRun(
            iteration=iteration + 1,
            model=chained.run.model,
            usage=chained.run.usage,
            files_changed=tools.changed,
            summary=chained.run.output[:2000],
        )
        records.save_fix(execution_id, fix)
    logger.info("code fixed", extra={"iteration": iteration, "files_changed": tools.changed})
    return {"iteration": iteration, "files_changed": len(tools.changed)}


def fixes_usage(execution_id: str) -> Usage:
    return Usage.total(f.usage for f in container.verify_records().fixes(execution_id))
