"""What `tdev run` shows: the plan, live progress per task, each result, totals and the outcome."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from tdev_cli.runtime import LocalRuntime

STATUS_STYLE = {
    "PENDING": "dim",
    "RUNNING": "yellow",
    "SUCCEEDED": "green",
    "FAILED": "red",
    "SKIPPED": "dim",
    "COMPENSATED": "magenta",
    "DEGRADED": "yellow",
    "PLANNING": "dim",
    "BUDGET_EXCEEDED": "red",
    "CANCELLED": "magenta",
}
PREVIEW_LINES = 25


def rejected(console: Console, status: int, body: Any) -> None:
    console.print(f"[red]request rejected (HTTP {status})[/red]")
    if isinstance(body, dict):
        console.print(f"  {body.get('error')}: {escape(str(body.get('message')))}")


def plan_table(view: dict[str, Any]) -> Table:
    plan = view.get("plan") or {}
    tasks = {t["task_id"]: t for t in plan.get("tasks", [])}
    decisions = {d["agent"]: d for d in plan.get("decisions", [])}
    table = Table(title=f"Plan: {len(tasks)} tasks in {len(view['levels'])} levels", title_justify="left")
    for column in ("level", "task", "agent", "depends on", "if it fails", "confidence"):
        table.add_column(column)
    for level, task_ids in enumerate(view["levels"]):
        for task_id in task_ids:
            task = tasks.get(task_id, {})
            deps = ", ".join(
                f"{d['task_id']}" + (" (soft)" if d.get("kind") == "soft" else "")
                for d in task.get("depends_on", [])
            )
            decision = decisions.get(task.get("agent", ""))
            confidence = f"{decision['confidence']:.2f}" if decision else ""
            policy = "request fails" if task.get("on_failure") == "fail" else "continue (degraded)"
            table.add_row(str(level), task_id, task.get("agent", ""), deps or "-", policy, confidence)
    return table


def progress_view(view: dict[str, Any]) -> Group:
    table = Table(title_justify="left")
    for column in ("task", "agent", "status", "model", "attempts", "tokens", "cost $"):
        table.add_column(column, justify="right" if column in ("attempts", "tokens", "cost $") else "left")
    for task_id in [t for level in view.get("levels", []) for t in level]:
        state = view["tasks"][task_id]
        usage = state.get("usage", {})
        status = state["status"]
        table.add_row(
            task_id,
            state["agent"],
            f"[{STATUS_STYLE.get(status, '')}]{status}[/]",
            escape(state.get("model") or ""),
            str(state.get("attempts", 0)),
            str(usage.get("input_tokens", 0) + usage.get("output_tokens", 0)),
            f"{usage.get('cost_usd', 0.0):.6f}",
        )
    progress = float(view.get("progress", 0.0))
    bar = ProgressBar(total=1.0, completed=progress, width=50)
    header = f"execution {view['execution_id']}  [{STATUS_STYLE.get(view['status'], '')}]{view['status']}[/]"
    parts: list[Any] = [header, bar, f"{progress:.0%} of tasks finished", table]
    if view.get("verify"):
        parts.append(verify_table(view["verify"]))
    return Group(*parts)


VERIFY_STYLE = {"passed": "green", "failed": "red", "timeout": "red", "error": "red"}


def verify_table(iterations: list[dict[str, Any]]) -> Table:
    """The verify loop so far: one row per test run in the sandbox."""
    table = Table(title="Verify loop (tests run in the sandbox)", title_justify="left")
    for column in (
        "iteration",
        "outcome",
        "passed",
        "failed",
        "files changed",
        "fixed by",
        "tokens",
        "cost $",
    ):
        table.add_column(
            column, justify="right" if column in ("passed", "failed", "tokens", "cost $") else "left"
        )
    for it in iterations:
        usage, tests = it.get("usage", {}), it.get("tests", {})
        changed = it.get("files_changed", [])
        shown = ", ".join(changed[:3]) + (f" +{len(changed) - 3}" if len(changed) > 3 else "")
        outcome = it["outcome"]
        table.add_row(
            str(it["iteration"]),
            f"[{VERIFY_STYLE.get(outcome, 'dim')}]{outcome}[/]",
            str(tests.get("passed", 0)),
            str(tests.get("failed", 0) + tests.get("errors", 0)),
            escape(shown or "-"),
            escape(it.get("fixed_by") or "-"),
            str(usage.get("input_tokens", 0) + usage.get("output_tokens", 0)),
            f"{usage.get('cost_usd', 0.0):.6f}",
        )
    return table


def results(console: Console, view: dict[str, Any], *, full: bool) -> None:
    for result in view.get("results", []):
        status = result["status"]
        usage = result.get("usage", {})
        title = (
            f"{result['task_id']} · {result['agent']} · [{STATUS_STYLE.get(status, '')}]{status}[/] · "
            f"{result['model']} · {usage.get('input_tokens', 0)}+{usage.get('output_tokens', 0)} tokens · "
            f"${usage.get('cost_usd', 0.0):.6f}"
        )
        text = result.get("output") or result.get("error") or ""
        skipped = [h for h in result.get("hops", []) if h.get("outcome") != "succeeded"]
        if skipped:
            tried = ", ".join(f"{h['model']} ({h['outcome']})" for h in skipped)
            text = f"[fell back from {tried}]\n{text}"
        lines = text.splitlines()
        if not full and len(lines) > PREVIEW_LINES:
            text = "\n".join(lines[:PREVIEW_LINES]) + f"\n… {len(lines) - PREVIEW_LINES} more lines (--full)"
        console.print(Panel(Text(text), title=title, title_align="left"))


def summary(console: Console, view: dict[str, Any], seconds: float) -> None:
    usage = view.get("usage", {})
    status = view["status"]
    total = usage.get("input_tokens", 0) + usage.get("output_tokens", 0)
    console.print(
        f"tokens: {usage.get('input_tokens', 0)} in + {usage.get('output_tokens', 0)} out = "
        f"{total}   cost: ${usage.get('cost_usd', 0.0):.6f}   "
        f"time: {seconds:.1f} s"
    )
    budget = view.get("budget") or {}
    if budget.get("budget_usd") is not None:
        console.print(f"budget: ${budget['budget_usd']:.6f}   spent: ${budget.get('spent_usd', 0.0):.6f}")
    if view.get("error"):
        console.print(f"[red]error: {escape(view['error'])}[/red]")
    if view.get("compensations"):
        console.print(f"compensated: {', '.join(view['compensations'])}")
    console.print(f"status: [{STATUS_STYLE.get(status, 'bold')}]{status}[/]")


def follow(
    console: Console,
    runtime: LocalRuntime,
    execution_id: str,
    *,
    timeout: float,
    full: bool,
    note: Callable[[], str] | None = None,
) -> dict[str, Any]:
    """Show the plan once it exists, then a live progress view until the workflow ends."""
    started = time.monotonic()
    console.print(f"accepted: execution {execution_id}")
    view: dict[str, Any] = {}
    plan_shown = False
    with Live(console=console, auto_refresh=False, transient=False) as live:
        for view in runtime.follow(execution_id, timeout=timeout):
            if not plan_shown and view.get("plan"):
                live.console.print(plan_table(view))
                plan_shown = True
            if view.get("levels"):
                live.update(progress_view(view), refresh=True)
    console.print()
    results(console, view, full=full)
    if note is not None:  # e.g. where the project was written; the status stays the last line
        console.print(note())
    summary(console, view, time.monotonic() - started)
    return view
