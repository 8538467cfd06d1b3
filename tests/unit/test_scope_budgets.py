"""User and project budgets (tdev.data.budgets): every model call reserves its worst case from the request,
its user and its project in one transaction. The promise, also when several requests of one user race: the
user's month never commits more than its cap, so what it spends exceeds the cap by at most one call's
reserved worst case (here: not at all, since no call spends more than it reserved)."""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

import pytest

from tdev import container
from tdev.data import budgets
from tdev.data.budgets import cap_of, ledger_for, period_of, read_scope, read_state, set_cap
from tdev.errors import BudgetExceeded, UserSuspended
from tdev.models import Execution, ExecutionStatus, to_micro_usd, utc_now
from tdev.settings import get_settings

MODEL = "offline:tdev-offline-1"


def store_execution(principal: str, project_id: str, budget_usd: float | None = 1.0) -> str:
    execution_id = str(uuid.uuid4())
    now = utc_now()
    container.executions().create(
        Execution(
            execution_id=execution_id,
            request="Design and implement a REST API for todo items",
            project_id=project_id,
            principal=principal,
            status=ExecutionStatus.RUNNING,
            created_at=now,
            updated_at=now,
            correlation_id=execution_id,
            budget_usd=budget_usd,
        ),
        idempotency_key=None,
        request_hash="h",
    )
    return execution_id


def table() -> str:
    return get_settings().table_name


def books(scope: Any, scope_id: str) -> budgets.ScopeBooks:
    return read_scope(table(), cap_of(table(), scope, scope_id, period_of(utc_now())))


def test_two_requests_of_one_user_racing_never_commit_more_than_the_users_cap(runtime: Any) -> None:
    # Given a user whose monthly cap is 0.02 USD, and two of its requests each allowed 1 USD on their own
    user, cap = f"racer-{uuid.uuid4().hex[:6]}", 0.02
    set_cap(table(), "user", user, budget_usd=cap, budget_tokens=None, reason="test", by="root")
    executions = [store_execution(user, "race-a"), store_execution(user, "race-b")]
    ledgers = [ledger_for(container.executions().get(e)) for e in executions]
    lock = threading.Lock()
    made: list[tuple[int, int]] = []
    refusals: list[str] = []
    worst = 0

    def task(seed: int) -> None:
        nonlocal worst
        rnd = random.Random(seed)
        ledger = ledgers[seed % 2]  # six tasks of each request
        while True:
            reserved = rnd.randint(50, 900)
            try:
                ledger.reserve(reserved, model=MODEL, tokens=reserved)
            except BudgetExceeded as exc:
                with lock:
                    refusals.append(str(exc))
                return
            time.sleep(rnd.random() / 200)  # the call in flight while the others reserve
            spent = rnd.randint(0, reserved)
            ledger.settle(reserved, spent, reserved_tokens=reserved, spent_tokens=spent)
            with lock:
                made.append((reserved, spent))
                worst = max(worst, reserved)

    # When twelve tasks reserve and settle concurrently until they are refused
    threads = [threading.Thread(target=task, args=(seed,)) for seed in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)

    # Then every task was stopped by the user's cap, and the user's month holds exactly what was spent
    assert len(refusals) == 12 and all(r.startswith(f"user {user}: ") for r in refusals)
    user_books = books("user", user)
    spent = sum(s for _, s in made)
    assert user_books.reserved_micro_usd == 0 and user_books.spent_micro_usd == spent
    assert user_books.spent_tokens == spent and user_books.reserved_tokens == 0
    # the promise: within the cap plus one call's reserved worst case (calls never spend beyond theirs)
    assert spent <= to_micro_usd(cap) + worst
    assert spent <= to_micro_usd(cap)
    # each request's own books and each project's agree with the user's
    per_execution = [read_state(table(), e).spent_micro_usd for e in executions]
    assert sum(per_execution) == spent and all(p > 0 for p in per_execution)
    assert books("project", "race-a").spent_micro_usd + books("project", "race-b").spent_micro_usd == spent
    print(f"user cap {cap} USD: {len(made)} calls spent {spent / 1e6:.6f} USD across two requests")


def test_a_refusal_by_the_user_reserves_nothing_anywhere(runtime: Any) -> None:
    user = f"thrifty-{uuid.uuid4().hex[:6]}"
    set_cap(table(), "user", user, budget_usd=0.001, budget_tokens=None, reason="test", by="root")
    execution_id = store_execution(user, "thrifty-project")
    ledger = ledger_for(container.executions().get(execution_id))
    ledger.reserve(600, model=MODEL)

    with pytest.raises(BudgetExceeded) as refused:
        ledger.reserve(600, model=MODEL)  # 600 + 600 > 1000 micro-USD

    assert refused.value.field == "user_id" and "left of the user's 0.001 USD budget" in refused.value.message
    # the transaction was all or nothing: neither the request nor the project holds the refused 600
    assert read_state(table(), execution_id).reserved_micro_usd == 600
    assert books("project", "thrifty-project").reserved_micro_usd == 600
    ledger.settle(600, 100)
    assert books("user", user).committed_micro_usd == 100
    ledger.reserve(600, model=MODEL)  # what the settlement released can be reserved again


def test_a_projects_token_cap_stops_calls_of_every_user_in_it(runtime: Any) -> None:
    project = f"tokens-{uuid.uuid4().hex[:6]}"
    set_cap(table(), "project", project, budget_usd=None, budget_tokens=1_000, reason="test", by="root")
    first = ledger_for(container.executions().get(store_execution("alice", project)))
    second = ledger_for(container.executions().get(store_execution("bob", project)))
    first.reserve(0, model=MODEL, tokens=600)

    with pytest.raises(BudgetExceeded) as refused:
        second.reserve(0, model=MODEL, tokens=600)

    assert refused.value.field == "project_id" and "1000-token budget" in refused.value.message
    first.settle(0, 0, reserved_tokens=600, spent_tokens=300)
    second.reserve(0, model=MODEL, tokens=600)  # 300 + 600 fits
    assert books("project", project).committed_tokens == 900


def test_admission_refuses_a_suspended_user_and_a_spent_month(runtime: Any) -> None:
    user = f"admitted-{uuid.uuid4().hex[:6]}"
    budgets.check_admission(table(), user, "default", utc_now())  # nothing against it yet

    budgets.suspend(table(), user, reason="test", by="root")
    with pytest.raises(UserSuspended):
        budgets.check_admission(table(), user, "default", utc_now())
    assert budgets.unsuspend(table(), user, reason="test", by="root") is True

    set_cap(table(), "user", user, budget_usd=0.000_5, budget_tokens=None, reason="test", by="root")
    ledger = ledger_for(container.executions().get(store_execution(user, "default")))
    ledger.reserve(500, model=MODEL)
    ledger.settle(500, 500)
    with pytest.raises(BudgetExceeded) as refused:
        budgets.check_admission(table(), user, "default", utc_now())
    assert refused.value.status_code == 402 and refused.value.field == "user_id"


def test_the_period_is_the_calendar_month_in_utc() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    assert period_of(datetime(2026, 11, 30, 23, 59, tzinfo=UTC)) == "2026-11"
    # 23:30 on 30 November at UTC-2 is already December in UTC
    assert period_of(datetime(2026, 11, 30, 23, 30, tzinfo=timezone(timedelta(hours=-2)))) == "2026-12"
    assert budgets.period_bounds("2026-12") == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )


def test_a_transaction_conflict_on_a_shared_month_is_tried_again_then_transient(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from botocore.exceptions import ClientError

    from tdev.errors import TransientError

    def cancelled(*codes: str) -> ClientError:
        return ClientError(
            {
                "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                "CancellationReasons": [{"Code": c} for c in codes],
            },
            "TransactWriteItems",
        )

    attempts: list[int] = []

    def conflicted_twice(actions: Any) -> None:
        attempts.append(1)
        if len(attempts) <= 2:
            raise cancelled("None", "TransactionConflict", "None")

    monkeypatch.setattr(budgets, "transact_write", conflicted_twice)
    budgets._transact([{"Update": {}}])
    assert len(attempts) == 3  # two conflicts, then it went through

    def always_conflicted(actions: Any) -> None:
        raise cancelled("None", "TransactionConflict")

    monkeypatch.setattr(budgets, "transact_write", always_conflicted)
    monkeypatch.setattr(budgets.time, "sleep", lambda _: None)
    with pytest.raises(TransientError):
        budgets._transact([{"Update": {}}])

    def refused(actions: Any) -> None:  # a refused condition is not retried here: the caller reads it
        raise cancelled("None", "ConditionalCheckFailed")

    monkeypatch.setattr(budgets, "transact_write", refused)
    with pytest.raises(ClientError):
        budgets._transact([{"Update": {}}])
