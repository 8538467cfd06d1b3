"""Budgets of chat sessions, through the local runtime's API: `budget_usd` on POST /v1/sessions (validated,
defaulted, shown by GET /v1/sessions/{id}), and every model call of a chat turn reserved from the session's
budget and its user's and project's month first (tdev.data.budgets). A turn whose call would go over any of
them is not made: 402 naming the budget with its figures, nothing stored, the session still readable."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from tdev.llm.offline import OfflineModel
from tdev.models import to_micro_usd
from tdev.settings import get_settings

MODEL = "offline:tdev-offline-1"
USER, PROJECT = "dana", "todo"
TEXT = "Design a REST API for todo items"


@pytest.fixture(autouse=True)
def _as_dana(runtime: Any) -> None:
    runtime.as_principal(USER)  # the owner of the sessions these tests open


@pytest.fixture
def priced(monkeypatch: pytest.MonkeyPatch) -> None:
    """The offline model at a mid-size model's prices (it is free otherwise), each call capped at 256
    output tokens: a call's worst case is a few thousandths of a dollar."""
    monkeypatch.setenv("TDEV_MODEL_PRICES", '{"offline:tdev-offline-1": [0.003, 0.015]}')
    monkeypatch.setenv("TDEV_MAX_OUTPUT_TOKENS", "256")


def _open(runtime: Any, **body: Any) -> dict[str, Any]:
    status, view = runtime.api("POST", "/v1/sessions", {"user_id": USER, "project_id": PROJECT, **body})
    assert status == 201, view
    return dict(view)


def _chat(runtime: Any, session_id: str, text: str = TEXT) -> tuple[int, Any]:
    return runtime.api("POST", f"/v1/sessions/{session_id}/messages", {"text": text})


def _reservations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """What each model call reserved (micro-USD), recorded around the real ledger's `reserve`."""
    from tdev.data.budgets import BudgetLedger

    seen: list[int] = []
    original = BudgetLedger.reserve

    def reserve(self: BudgetLedger, micro_usd: int, *, model: str, tokens: int = 0) -> None:
        seen.append(micro_usd)
        original(self, micro_usd, model=model, tokens=tokens)

    monkeypatch.setattr(BudgetLedger, "reserve", reserve)
    return seen


# --------------------------------------------------------------------------- the budget of a session
def test_a_session_keeps_its_budget_and_shows_it_like_a_request(runtime: Any) -> None:
    opened = _open(runtime, budget_usd=0.000001)  # the smallest budget there is, kept exactly

    assert opened["budget"] == {"budget_usd": 0.000001, "spent_usd": 0.0, "reserved_usd": 0.0}
    status, view = runtime.api("GET", f"/v1/sessions/{opened['session_id']}")
    assert status == 200 and view["budget"] == opened["budget"]
    # without one: the deployment's default budget, the same setting a request's default comes from
    default = _open(runtime)
    assert default["budget"]["budget_usd"] == get_settings().default_budget_usd


@pytest.mark.parametrize("budget", [0, -1, 1e-200, 1_000.01, 1e9, "lots", [1], None])
def test_a_session_budget_that_is_not_a_positive_bounded_amount_is_a_400_naming_it(
    runtime: Any, budget: Any
) -> None:
    status, body = runtime.api(
        "POST", "/v1/sessions", {"user_id": USER, "project_id": PROJECT, "budget_usd": budget}
    )

    if budget is None:  # null: the deployment's default
        assert status == 201, body
        assert body["budget"]["budget_usd"] == get_settings().default_budget_usd
        return
    assert status == 400, body
    assert body["error"] == "ValidationError" and body["field"] == "budget_usd"


# ------------------------------------------------------------------------------ turns held to it
def test_a_turn_within_the_budget_spends_from_the_session_the_user_and_the_project(
    runtime: Any, priced: None
) -> None:
    session = _open(runtime, budget_usd=1.0)
    before = {
        scope: runtime.as_principal("root", ("admin",)).api("GET", path)[1]["spent_usd"]
        for scope, path in (
            ("user", f"/v1/users/{USER}/budget"),
            ("project", f"/v1/projects/{PROJECT}/budget"),
        )
    }
    runtime.as_principal(USER)

    status, answer = _chat(runtime, session["session_id"])

    assert status == 200, answer
    cost = answer["usage"]["cost_usd"]
    assert cost > 0
    view = runtime.api("GET", f"/v1/sessions/{session['session_id']}")[1]
    assert view["budget"]["spent_usd"] == pytest.approx(cost, abs=2e-6)  # micro-USD books, rounded up
    assert view["budget"]["reserved_usd"] == 0.0  # settled
    admin = runtime.as_principal("root", ("admin",))
    for scope, path in (("user", f"/v1/users/{USER}/budget"), ("project", f"/v1/projects/{PROJECT}/budget")):
        status, books = admin.api("GET", path)
        assert status == 200, books
        assert books["spent_usd"] - before[scope] == pytest.approx(view["budget"]["spent_usd"]), scope
        assert books["reserved_usd"] == 0.0


def test_a_turn_over_the_session_budget_is_refused_402_and_the_session_stays_readable(
    runtime: Any, priced: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    reserved = _reservations(monkeypatch)
    session = _open(runtime, budget_usd=0.02)
    sid = session["session_id"]

    # turns until the budget cannot hold one more call's worst case
    answered = 0
    for turn in range(40):
        status, body = _chat(runtime, sid, f"{TEXT}, step {turn}")
        if status != 200:
            break
        answered += 1
    else:
        pytest.fail("the session's budget never refused a turn")

    assert status == 402, body
    assert body["error"] == "BudgetExceeded" and body["field"] == "budget_usd"
    assert body["message"].startswith(f"session {sid}: a call to {MODEL} may cost up to ")
    figures = body["details"][0]
    assert (figures["budget"], figures["id"], figures["budget_usd"]) == ("session", sid, 0.02)
    assert figures["call_worst_case_usd"] > figures["left_usd"]
    assert figures["reserved_usd"] == 0.0
    assert answered >= 1
    # the promise: within the budget plus one call's worst case (here: within it, the calls spend less)
    view = runtime.api("GET", f"/v1/sessions/{sid}")[1]
    spent = view["budget"]["spent_usd"]
    assert spent == figures["spent_usd"] and 0 < to_micro_usd(spent) <= to_micro_usd(0.02) + max(reserved)
    # the refused turn stored nothing and the session is as it was: active, readable, its turns counted
    assert view["status"] == "active" and view["messages"] == answered
    from tdev.sessions.service import service

    assert len(service().chats.message_items(USER, sid)) == 2 * answered
    assert runtime.api("POST", f"/v1/sessions/{sid}/checkpoints", {"kind": "manual"})[0] == 201
    # a turn on a free model still fits (nothing more than its worst case is ever asked)
    monkeypatch.delenv("TDEV_MODEL_PRICES")
    assert _chat(runtime, sid, "and now?")[0] == 200


@pytest.mark.parametrize("scope", ["user", "project"])
def test_the_users_and_the_projects_month_apply_to_chat_turns(runtime: Any, priced: None, scope: str) -> None:
    session = _open(runtime)  # the default budget: plenty for one call
    path = f"/v1/users/{USER}/budget" if scope == "user" else f"/v1/projects/{PROJECT}/budget"
    put = runtime.as_principal("root", ("admin",)).api("PUT", path, {"budget_usd": 0.001, "reason": "tiny"})
    assert put[0] == 200, put

    status, body = runtime.as_principal(USER).api(
        "POST", f"/v1/sessions/{session['session_id']}/messages", {"text": TEXT}
    )

    assert status == 402, body
    assert body["error"] == "BudgetExceeded" and body["field"] == f"{scope}_id"
    figures = body["details"][0]
    assert figures["budget"] == scope and figures["budget_usd"] == 0.001
    assert figures["call_worst_case_usd"] > 0.001
    view = runtime.api("GET", f"/v1/sessions/{session['session_id']}")[1]
    assert view["budget"]["spent_usd"] == 0.0 and view["budget"]["reserved_usd"] == 0.0  # nothing held


def test_a_month_used_up_refuses_the_turn_before_any_model_call(runtime: Any) -> None:
    from tdev.data.budgets import cap_of, period_of, session_ledger
    from tdev.models import utc_now

    session = _open(runtime)
    admin = runtime.as_principal("root", ("admin",))
    assert admin.api("PUT", f"/v1/users/{USER}/budget", {"budget_usd": 0.001, "reason": "tiny"})[0] == 200
    ledger = session_ledger(
        get_settings().table_name,
        session["session_id"],
        user_id=USER,
        project_id=PROJECT,
        capped=True,
        now=utc_now(),
    )
    ledger.reserve(1_000, model=MODEL)  # a turn elsewhere spent the user's whole month
    ledger.settle(1_000, 1_000)
    assert cap_of(get_settings().table_name, "user", USER, period_of(utc_now())).budget_usd == 0.001

    status, body = runtime.as_principal(USER).api(
        "POST", f"/v1/sessions/{session['session_id']}/messages", {"text": TEXT}
    )

    # the free offline model could not be refused by its price: the month is used up, so no turn at all
    assert status == 402 and body["field"] == "user_id", body
    assert body["details"][0]["budget"] == "user" and body["details"][0]["left_usd"] == 0.0
    assert "has used its 0.001 USD budget" in body["message"]


# ------------------------------------------------------------------------------------- concurrency
def test_two_turns_of_one_session_at_once_cannot_both_spend_what_only_one_may(
    runtime: Any, priced: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    reserved = _reservations(monkeypatch)
    # a turn's worst case, measured on a session of its own
    calibration = _open(runtime)
    assert _chat(runtime, calibration["session_id"])[0] == 200
    worst_case = max(reserved)
    # a budget that holds one call's worst case but not two
    budget = round(worst_case * 1.5 / 1_000_000, 6)
    sid = _open(runtime, budget_usd=budget)["session_id"]
    original = OfflineModel.complete

    def slow(self: OfflineModel, messages: Sequence[Any], tools: Sequence[str] = ()) -> dict[str, Any]:
        time.sleep(1.5)  # the call in flight while the other turn reserves
        return original(self, messages, tools)

    monkeypatch.setattr(OfflineModel, "complete", slow)
    # Deployed, each turn runs in its own Lambda container; the local runtime makes handler bodies take
    # turns, so here they run beside each other as they would there.
    monkeypatch.setattr(runtime, "_invocation_lock", contextlib.nullcontext())
    outcomes: list[tuple[int, Any]] = []
    lock = threading.Lock()

    def turn() -> None:
        outcome = _chat(runtime, sid)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=turn) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    statuses = sorted(status for status, _ in outcomes)
    assert statuses == [200, 402], outcomes
    refused = next(body for status, body in outcomes if status == 402)
    assert refused["details"][0]["budget"] == "session"
    # the refusal saw the other turn's reservation (or its settled spend) held against the budget
    held = refused["details"][0]["reserved_usd"] + refused["details"][0]["spent_usd"]
    assert held > 0
    view = runtime.api("GET", f"/v1/sessions/{sid}")[1]
    assert view["budget"]["reserved_usd"] == 0.0
    assert to_micro_usd(view["budget"]["spent_usd"]) <= to_micro_usd(budget)
    assert view["messages"] == 1


# ------------------------------------------------------------------------------------ the kill switch
def test_a_killed_sessions_turn_makes_no_further_model_call(runtime: Any) -> None:
    from tdev.data.budgets import session_ledger
    from tdev.errors import ExecutionCancelled
    from tdev.models import utc_now

    sid = _open(runtime, budget_usd=1.0)["session_id"]
    ledger = session_ledger(
        get_settings().table_name, sid, user_id=USER, project_id=PROJECT, capped=True, now=utc_now()
    )
    ledger.reserve(10, model=MODEL)  # a turn's call in flight ...
    ledger.settle(10, 5)  # ... settled

    assert runtime.api("POST", f"/v1/sessions/{sid}/kill")[0] == 200

    # the turn's next model call (or tool step) is refused: the session's status is in the condition
    with pytest.raises(ExecutionCancelled, match="the session is completed"):
        ledger.reserve(10, model=MODEL)
    with pytest.raises(ExecutionCancelled):
        ledger.check()
    view = runtime.api("GET", f"/v1/sessions/{sid}")[1]
    assert view["status"] == "completed"
    assert view["budget"] == {"budget_usd": 1.0, "spent_usd": 0.000005, "reserved_usd": 0.0}
