"""Budgets: every model call reserves its worst case on the execution item first and settles its real cost
after (tdev.data.budgets, tdev.llm.metering). The promise: what a request spends never exceeds its budget
by more than one call's reserved worst case, also when its tasks reserve concurrently."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from agno.tools import Toolkit

from tdev import container
from tdev.data.budgets import ledger_for, read_state, request_cancel
from tdev.errors import BudgetExceeded, ExecutionCancelled
from tdev.llm import offline_tools
from tdev.llm.catalog import cost_usd
from tdev.llm.metering import metered, prompt_tokens_worst_case, worst_case_micro_usd
from tdev.llm.offline import OfflineModel, estimate_tokens
from tdev.models import Execution, ExecutionStatus, to_micro_usd, utc_now

MODEL = "offline:tdev-offline-1"
PRICES = '{"offline:tdev-offline-1": [0.003, 0.015]}'  # USD per 1k tokens in / out, as a mid-size model


def store_execution(budget_usd: float | None) -> str:
    execution_id = str(uuid.uuid4())
    now = utc_now()
    container.executions().create(
        Execution(
            execution_id=execution_id,
            request="Design and implement a REST API for todo items",
            project_id="budgets",
            principal="budget-tester",
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


# ------------------------------------------------------------------------------ the ledger itself
def test_concurrent_reservations_never_commit_more_than_the_budget(runtime: Any) -> None:
    # Given a request with a budget of 0.02 USD and 12 tasks that reserve and settle concurrently
    execution_id = store_execution(0.02)
    ledger = ledger_for(container.executions().get(execution_id))
    lock = threading.Lock()
    settled: list[tuple[int, int]] = []  # (reserved, spent) of every call made
    refused: list[int] = []

    def task(seed: int) -> None:
        rnd = random.Random(seed)
        while True:
            reserved = rnd.randint(50, 900)
            try:
                ledger.reserve(reserved, model=MODEL)
            except BudgetExceeded:
                with lock:
                    refused.append(reserved)
                return
            time.sleep(rnd.random() / 200)  # the call, in flight while the others reserve
            spent = rnd.randint(0, reserved)
            ledger.settle(reserved, spent)
            with lock:
                settled.append((reserved, spent))

    threads = [threading.Thread(target=task, args=(seed,)) for seed in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    # Then every task stopped on the budget, the books add up, and the spend is within the budget
    state = read_state(runtime_table(), execution_id)
    spent = sum(s for _, s in settled)
    assert len(refused) == 12 and len(settled) > 12
    assert state.spent_micro_usd == spent and state.reserved_micro_usd == 0
    assert state.left_micro_usd == 20_000 - spent
    assert spent <= 20_000
    print(f"budget 20000 micro-USD: {len(settled)} calls, spent {spent}, refused {len(refused)}")


def test_a_call_that_costs_more_than_its_reservation_overshoots_by_at_most_that_call(runtime: Any) -> None:
    execution_id = store_execution(0.001)
    ledger = ledger_for(container.executions().get(execution_id))
    ledger.reserve(800, model=MODEL)
    ledger.settle(800, 1_500)  # the provider reported more than the worst case (a bad prompt estimate)
    with pytest.raises(BudgetExceeded) as refused:
        ledger.reserve(1, model=MODEL)
    state = read_state(runtime_table(), execution_id)
    assert state.spent_micro_usd == 1_500 and state.left_micro_usd == -500
    assert state.spent_micro_usd <= 1_000 + 1_500  # budget + that one call
    assert refused.value.field == "budget_usd" and "0.001 USD budget" in refused.value.message


def test_without_a_cap_calls_are_only_counted_and_a_cancel_still_stops_them(runtime: Any) -> None:
    execution_id = store_execution(None)
    ledger = ledger_for(container.executions().get(execution_id))
    # (no cap of its own: the request is held only by its user's and project's monthly budgets, 100 USD)
    ledger.reserve(9 * 10**7, model=MODEL)
    ledger.settle(9 * 10**7, 42)
    assert request_cancel(runtime_table(), execution_id)
    with pytest.raises(ExecutionCancelled):
        ledger.reserve(1, model=MODEL)
    with pytest.raises(ExecutionCancelled):
        ledger.check()
    state = read_state(runtime_table(), execution_id)
    assert (state.spent_micro_usd, state.reserved_micro_usd, state.left_micro_usd) == (42, 0, None)


def runtime_table() -> str:
    from tdev.settings import get_settings

    return get_settings().table_name


# -------------------------------------------------------------- a deliberately looping agent
class Ping(Toolkit):
    def __init__(self) -> None:
        super().__init__(name="workspace", tools=[self.list_files])
        self.calls = 0

    def list_files(self) -> str:
        """List the project's files."""
        self.calls += 1
        return "the workspace is empty"


def looping_complete(delay: float = 0.0) -> Any:
    """An offline model that never finishes: whenever it may call a tool, it calls one more."""

    def complete(self: OfflineModel, messages: Sequence[Any], tools: Sequence[str] = ()) -> dict[str, Any]:
        if delay:
            time.sleep(delay)
        chars = sum(len(m.get_content_string()) for m in messages)
        calls = [offline_tools.call("list_files")] if tools else []
        return {
            "text": "" if calls else "done",
            "tool_calls": calls,
            "usage": {"input_tokens": estimate_tokens(chars), "output_tokens": 40},
        }

    return complete


@pytest.fixture
def looping(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(OfflineModel, "complete", looping_complete())
    monkeypatch.setattr("tdev.agents.runtime.MAX_TOOL_CALLS", 100_000)  # Agno's own limit out of the way
    yield


@pytest.fixture
def priced(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TDEV_MODEL_PRICES", PRICES)
    monkeypatch.setenv("TDEV_MAX_OUTPUT_TOKENS", "256")
    from tdev.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_worst_case_is_the_prompt_on_the_high_side_plus_the_output_cap(priced: None) -> None:
    from agno.models.message import Message

    messages = [Message(role="user", content="x" * 3_000)]
    tokens = prompt_tokens_worst_case(messages)
    assert tokens >= 1_000 > estimate_tokens(3_000)  # more than the usual four characters a token
    assert worst_case_micro_usd(MODEL, tokens, 256) == to_micro_usd(cost_usd(MODEL, tokens, 256))


def test_looping_agents_on_one_budget_are_stopped_within_one_call_of_it(
    runtime: Any, looping: None, priced: None
) -> None:
    from tdev.agents.catalog import DEFAULT_AGENTS
    from tdev.agents.runtime import run_agent

    # Given a 0.05 USD request whose four tasks run agents that never stop calling tools, concurrently
    budget = 0.05
    execution_id = store_execution(budget)
    ledger = ledger_for(container.executions().get(execution_id))
    spec = DEFAULT_AGENTS[0]
    outcomes: list[BaseException | None] = []
    toolkits = [Ping() for _ in range(4)]

    def task(tools: Ping) -> None:
        try:
            with metered(ledger):
                run_agent(spec, MODEL, "Role: DesignAgent\nkeep listing", tools=[tools])
            outcomes.append(None)
        except BaseException as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=task, args=(t,)) for t in toolkits]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    # Then every one of them stopped with BudgetExceeded, and the spend is within the budget plus one call
    assert [type(o).__name__ for o in outcomes] == ["BudgetExceeded"] * 4
    state = read_state(runtime_table(), execution_id)
    one_call = worst_case_micro_usd(MODEL, 10_000, 256)  # more than any prompt of this test reserved
    assert state.reserved_micro_usd == 0
    assert 0 < state.spent_micro_usd <= to_micro_usd(budget) + one_call
    assert sum(t.calls for t in toolkits) > 4  # they did loop before the budget stopped them
    steps = sum(t.calls for t in toolkits)
    print(f"budget {budget} USD: spent {state.spent_micro_usd / 1e6} USD in {steps} tool steps")
