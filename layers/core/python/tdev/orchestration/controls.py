"""Spending controls an admin holds: user and project budgets per month, and suspending a user.

The books and the items are `tdev.data.budgets`; stopping an execution is the execution's own kill switch
(`tdev.orchestration.workflow.cancel_execution`: the cancel flag agents check before each model call and
tool step, StopExecution, CANCELLED recorded with the spend), applied here to every open execution of the
suspended user, so suspending stops work in flight as a cancel does.
"""

from __future__ import annotations

from typing import Any

from tdev.data import budgets
from tdev.data.budgets import ScopeKind, micro_to_usd
from tdev.errors import ConflictError
from tdev.models import ExecutionStatus, ScopeBudgetIn, ScopeBudgetView, utc_now
from tdev.observability import logger
from tdev.settings import get_settings


def budget_view(scope: ScopeKind, scope_id: str) -> ScopeBudgetView:
    """The scope's cap for this month and what it spent and holds reserved."""
    table_name = get_settings().table_name
    period = budgets.period_of(utc_now())
    cap = budgets.cap_of(table_name, scope, scope_id, period)
    books = budgets.read_scope(table_name, cap)
    start, end = budgets.period_bounds(period)
    return ScopeBudgetView(
        scope=scope,
        id=scope_id,
        period=period,
        period_start=start,
        period_end=end,
        budget_usd=cap.budget_usd,
        budget_tokens=cap.budget_tokens,
        source=cap.source,
        spent_usd=micro_to_usd(books.spent_micro_usd),
        reserved_usd=micro_to_usd(books.reserved_micro_usd),
        left_usd=micro_to_usd(max(0, cap.cap_micro_usd - books.committed_micro_usd)),
        spent_tokens=books.spent_tokens,
        reserved_tokens=books.reserved_tokens,
        override=budgets.cap_record(table_name, scope, scope_id),
    )


def set_budget(scope: ScopeKind, scope_id: str, change: ScopeBudgetIn, *, by: str) -> ScopeBudgetView:
    """An admin's monthly cap for a user or a project (recorded with who and why; the next task reads it)."""
    budgets.set_cap(
        get_settings().table_name,
        scope,
        scope_id,
        budget_usd=change.budget_usd,
        budget_tokens=change.budget_tokens,
        reason=change.reason,
        by=by,
    )
    return budget_view(scope, scope_id)


def suspend_user(user_id: str, *, reason: str, by: str) -> dict[str, Any]:
    """Refuse the user's new requests and sessions from now on, then stop each of its open executions
    (the kill switch of each). Safe to repeat: executions already stopped are not stopped twice."""
    record = budgets.suspend(get_settings().table_name, user_id, reason=reason, by=by)
    cancelled = _stop_open_executions(user_id, f"{by} (user {user_id} suspended: {reason})")
    logger.warning("user's work stopped", extra={"principal": user_id, "cancelled_executions": cancelled})
    return {"user_id": user_id, "suspended": True, **record, "cancelled_executions": cancelled}


def unsuspend_user(user_id: str, *, reason: str, by: str) -> dict[str, Any]:
    was = budgets.unsuspend(get_settings().table_name, user_id, reason=reason, by=by)
    return {"user_id": user_id, "suspended": False, "was_suspended": was, "reason": reason, "by": by}


def suspension(user_id: str) -> dict[str, Any] | None:
    return budgets.suspension_of(get_settings().table_name, user_id)


def _stop_open_executions(user_id: str, by: str) -> list[str]:
    from tdev import container
    from tdev.orchestration.workflow import cancel_execution

    cancelled: list[str] = []
    for execution_id in container.executions().open_ids_of(user_id):
        try:
            if cancel_execution(execution_id, by=by) == ExecutionStatus.CANCELLED:
                cancelled.append(execution_id)
        except ConflictError:  # it ended on its own meanwhile: nothing to stop
            continue
    return cancelled
