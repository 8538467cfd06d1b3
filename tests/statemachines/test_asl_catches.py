"""Every Task state of every state machine has a Catch that ends in a recorded terminal status.

The walk reads each `statemachines/*.asl.json`: for every Task (at any depth, in Map item processors and
Parallel branches) there must be a Catch on `States.ALL`, and every path from its target must reach a
step that records a terminal status (`RECORDING_FUNCTIONS`: a task's failure, the saga, the failed
saga), or a Fail state inside a Map/Parallel whose own Catch does, or a Fail the reconciler records
(`RECONCILED_FAILURES`). A Task without such a Catch can leave an execution PENDING or RUNNING for ever.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from statemachines.alert_escalation import ESCALATION_TUNING, RECORDING_ACTION, UNRECORDED_FAILURE
from statemachines.request_workflow import (
    RECONCILED_FAILURES,
    RECORDING_FUNCTIONS,
    WORKFLOW_TUNING,
    function_arn_placeholder,
)

STATEMACHINES = Path(__file__).resolve().parents[2] / "statemachines"
ASL_FILES = sorted(STATEMACHINES.glob("*.asl.json"))
RECORDERS = {"${" + function_arn_placeholder(name) + "}" for name in RECORDING_FUNCTIONS}


def load(path: Path) -> dict[str, Any]:
    # Placeholders for numbers are unquoted in the files: any number makes them JSON.
    text = path.read_text()
    for name in (*WORKFLOW_TUNING, *ESCALATION_TUNING):
        text = text.replace("${" + name + "}", "1")
    return dict(json.loads(text))


def is_recorder(state: dict[str, Any]) -> bool:
    parameters = state.get("Parameters") or {}
    if state.get("Type") != "Task":
        return False
    # The alert escalation records its end through its step function's `record` action.
    escalation_recorder = parameters.get("FunctionName") == "${AlertEscalationFunctionArn}" and (
        (parameters.get("Payload") or {}).get("action") == RECORDING_ACTION
    )
    return parameters.get("FunctionName") in RECORDERS or escalation_recorder


def catch_all(state: dict[str, Any]) -> str | None:
    for catcher in state.get("Catch", []):
        if "States.ALL" in catcher["ErrorEquals"]:
            return str(catcher["Next"])
    return None


def nested(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The state machines inside a Map or Parallel state."""
    inner = [state[k] for k in ("ItemProcessor", "Iterator") if k in state]
    return inner + list(state.get("Branches", []))


class Walk:
    def __init__(self, definition: dict[str, Any]) -> None:
        self.problems: list[str] = []
        self.tasks = 0
        self._check(definition, enclosing_recorded=False, where="")

    def _check(self, machine: dict[str, Any], *, enclosing_recorded: bool, where: str) -> None:
        states: dict[str, dict[str, Any]] = machine["States"]
        for name, state in states.items():
            path = f"{where}{name}"
            if state["Type"] == "Task":
                self.tasks += 1
                target = catch_all(state)
                if target is None:
                    self.problems.append(f"{path}: Task without a Catch on States.ALL")
                elif not self._ends_recorded(states, target, enclosing_recorded, set()):
                    self.problems.append(f"{path}: its Catch ({target}) does not end in a recorded status")
            for inner in nested(state):
                # A Fail inside fails this Map/Parallel: its own Catch handles it, else the enclosing one.
                target = catch_all(state)
                recorded = (
                    self._ends_recorded(states, target, enclosing_recorded, set())
                    if target is not None
                    else enclosing_recorded
                )
                self._check(inner, enclosing_recorded=recorded, where=f"{path} / ")

    def _ends_recorded(
        self, states: dict[str, dict[str, Any]], name: str, enclosing_recorded: bool, seen: set[str]
    ) -> bool:
        if name in seen:  # a loop that never records
            return False
        seen = seen | {name}
        state = states[name]
        kind = state["Type"]
        if kind == "Task":
            return is_recorder(state)
        if kind == "Fail":
            # The escalation's last resort: its recording step failed (statemachines/alert_escalation.py).
            return enclosing_recorded or state.get("Error") in (*RECONCILED_FAILURES, UNRECORDED_FAILURE)
        if kind == "Succeed":
            return False
        if kind == "Choice":
            targets = [c["Next"] for c in state["Choices"]] + (
                [state["Default"]] if "Default" in state else []
            )
            return bool(targets) and all(
                self._ends_recorded(states, t, enclosing_recorded, seen) for t in targets
            )
        if "Next" in state:  # Pass, Wait, Map, Parallel: what comes after them
            return self._ends_recorded(states, state["Next"], enclosing_recorded, seen)
        return False


@pytest.mark.parametrize("path", ASL_FILES, ids=lambda p: p.name)
def test_every_task_state_has_a_catch_that_ends_in_a_recorded_status(path: Path) -> None:
    walk = Walk(load(path))

    assert walk.tasks > 0
    assert walk.problems == []


def test_there_is_a_state_machine_to_walk() -> None:
    assert {"request_workflow.asl.json", "alert_escalation.asl.json"} <= {p.name for p in ASL_FILES}


def test_the_walk_fails_on_a_task_without_a_catch_and_on_a_catch_that_records_nothing() -> None:
    definition = load(STATEMACHINES / "request_workflow.asl.json")
    # the compensation without its Catch: a failed saga would leave the execution open (the old bug)
    broken = json.loads(json.dumps(definition))
    del broken["States"]["Record the failure and compensate"]["Catch"]
    assert Walk(broken).problems == ["Record the failure and compensate: Task without a Catch on States.ALL"]
    # a Catch that just ends the workflow, recording nothing
    silent = json.loads(json.dumps(definition))
    silent["States"]["Aggregate the results"]["Catch"][0]["Next"] = "Request finished"
    assert Walk(silent).problems == [
        "Aggregate the results: its Catch (Request finished) does not end in a recorded status"
    ]
    # a nested Task whose Fail is not caught by its Map
    uncaught = json.loads(json.dumps(definition))
    del uncaught["States"]["Run the levels one after another"]["Catch"]
    assert any("Record the task failure" in p for p in Walk(uncaught).problems)
