"""The verify loop's handlers and the sandbox function, invoked with their sample events from events/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tdev import container
from tdev.models import Execution, ExecutionStatus, utc_now
from tdev.workspace import open_workspace

# (not imported from conftest: with several test directories, `conftest` may name another one's)
EVENTS = Path(__file__).resolve().parents[2] / "events"
EXECUTION_ID = "0b9e4c1e-5f7a-4d43-9a55-3f1d8c2a7e10"
REQUEST = "Build a CLI that converts CSV to JSON, with tests"


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / f"{name}.json").read_text()))


@pytest.fixture
def broken_project(runtime: Any) -> Any:
    """The sample execution with a project in its workspace whose one test fails."""
    now = utc_now()
    container.executions().create(
        Execution(
            execution_id=EXECUTION_ID,
            request=REQUEST,
            project_id="default",
            principal="sample-user",
            status=ExecutionStatus.RUNNING,
            created_at=now,
            updated_at=now,
            correlation_id="c0ffee00-0000-4000-8000-000000000001",
        ),
        idempotency_key=None,
        request_hash="sample",
    )
    workspace = open_workspace(EXECUTION_ID)
    workspace.write("csv_to_json/__init__.py", "def csv_to_json(text):\n    return '[]'\n")
    workspace.write(
        "tests/test_csv_to_json.py",
        "from csv_to_json import csv_to_json\n\n\n"
        "def test_rows():\n    assert csv_to_json('a\\n1\\n') != '[]'\n",
    )
    return runtime


def test_sandbox_runs_the_files_of_its_event() -> None:
    from functions.sandbox.handler import lambda_handler
    from tdev_cli.runtime import LambdaContext

    report = lambda_handler(load_event("sandbox"), LambdaContext(function_name="sandbox"))

    assert (report["outcome"], report["passed"], report["failed"]) == ("passed", 1, 0)


def test_sandbox_rejects_an_event_with_other_fields() -> None:
    from aws_lambda_powertools.utilities.parser import ValidationError

    from functions.sandbox.handler import lambda_handler
    from tdev_cli.runtime import LambdaContext

    with pytest.raises(ValidationError):
        lambda_handler({**load_event("sandbox"), "table": "x"}, LambdaContext(function_name="sandbox"))


def test_run_project_tests_records_a_failed_iteration(broken_project: Any) -> None:
    answer = broken_project.invoke("run_project_tests", load_event("run_project_tests"))

    assert answer == {"iteration": 1, "outcome": "failed", "needs_fix": True}
    (record,) = container.verify_records().iterations(EXECUTION_ID)
    assert (record.tests.passed, record.tests.failed) == (0, 1)
    assert record.files_changed == ["csv_to_json/__init__.py", "tests/test_csv_to_json.py"]
    assert record.failures[0]["test"].endswith("test_rows")


def test_fix_failing_tests_lets_the_code_agent_rewrite_the_project(broken_project: Any) -> None:
    broken_project.invoke("run_project_tests", load_event("run_project_tests"))

    answer = broken_project.invoke("fix_failing_tests", load_event("fix_failing_tests"))

    assert answer["iteration"] == 1 and answer["files_changed"] >= 3
    (fix,) = container.verify_records().fixes(EXECUTION_ID)
    assert fix.iteration == 2 and "csv_to_json/__init__.py" in fix.files_changed
    again = broken_project.invoke("run_project_tests", {**load_event("run_project_tests"), "iteration": 1})
    assert again == {"iteration": 2, "outcome": "passed", "needs_fix": False}
    view = container.executions().view(EXECUTION_ID)
    assert [(i.iteration, i.outcome) for i in view.verify] == [(1, "failed"), (2, "passed")]
    assert view.verify[1].fixed_by == fix.model and view.verify[1].usage == fix.usage
