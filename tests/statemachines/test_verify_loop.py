"""The verify loop through the real ASL (moto's interpreter), with the real sandbox and workspace tools.

A scripted model (the offline model with a bug injected into the code agent's first answers) proves the
loop: the first test run fails, the code agent gets the failures and fixes the code, the second run
passes. Always-broken code runs into the iteration budget and ends the request FAILED. REST API and
library requests produce projects whose tests pass, served back as artifacts.
"""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from unittest import mock

import pytest

from tdev.llm.offline import OfflineModel, read_brief
from tdev.llm.offline_projects import Project
from tdev.llm.offline_tools import read_turn

pytestmark = pytest.mark.slow

BUDGET = 2  # test runs per request in these tests
CSV_REQUEST = "Build a CLI that converts CSV to JSON, with tests"
BUG = ('return lowered == "true"', 'return lowered == "false"')  # booleans come out inverted


@dataclass
class ScriptedCoder(OfflineModel):
    """The offline model, except that the code agent's first `broken_runs` answers carry a bug."""

    broken_runs: ClassVar[int] = 1
    code_runs: ClassVar[list[bool]] = []  # one entry per code agent run: was its code broken?

    def complete(self, messages: Sequence[Any], tools: Sequence[str] = ()) -> dict[str, Any]:
        if read_brief(messages).role == "CodeAgent" and tools and read_turn(messages).round == 0:
            ScriptedCoder.code_runs.append(len(ScriptedCoder.code_runs) < ScriptedCoder.broken_runs)
        return super().complete(messages, tools)

    def project_for(self, brief: Any) -> Project:
        project = super().project_for(brief)
        if brief.role == "CodeAgent" and ScriptedCoder.code_runs and ScriptedCoder.code_runs[-1]:
            core = f"{project.name}/__init__.py"
            assert BUG[0] in project.sources[core]
            project.sources[core] = project.sources[core].replace(*BUG)
        return project


@pytest.fixture(scope="module")
def rt(redis_server: str) -> Iterator[Any]:
    from tdev_cli.runtime import LocalRuntime

    with (
        mock.patch("tdev.llm.catalog.OfflineModel", ScriptedCoder),
        LocalRuntime(redis_url=redis_server, max_verify_iterations=BUDGET) as runtime,
    ):
        yield runtime


def scripted(broken_runs: int) -> None:
    ScriptedCoder.broken_runs = broken_runs
    ScriptedCoder.code_runs = []


def test_a_failing_test_goes_back_to_the_code_agent_and_the_fix_makes_it_pass(rt: Any) -> None:
    # Given a model whose first code has a bug
    scripted(broken_runs=1)

    # When the request runs through the workflow
    view = rt.run(CSV_REQUEST, timeout=300)

    # Then the first test run failed on the bug, the code agent fixed it, and the second run passed
    assert rt.workflow_status(view["execution_id"]) == "SUCCEEDED"
    assert view["status"] == "SUCCEEDED"
    assert ScriptedCoder.code_runs == [True, False]
    first, second = view["verify"]
    assert (first["iteration"], first["outcome"], second["iteration"], second["outcome"]) == (
        1,
        "failed",
        2,
        "passed",
    )
    assert (
        first["tests"]["failed"] >= 1 and second["tests"]["failed"] == 0 and second["tests"]["passed"] >= 10
    )
    assert any("infer_types" in f["test"] or "parse_value" in f["test"] for f in first["failures"])
    # And each iteration says what changed and what the work cost
    assert "tests/test_csv_to_json.py" in first["files_changed"] and first["fixed_by"] is None
    assert second["files_changed"] == ["csv_to_json/__init__.py"]
    assert second["fixed_by"] == "offline:tdev-offline-1" and second["usage"]["output_tokens"] > 0
    assert "netns" in first["isolation"] or "socket-guard" in first["isolation"]
    # And the fix's tokens count in the request's total
    tasks_total = sum(t["usage"]["output_tokens"] for t in view["tasks"].values())
    assert view["usage"]["output_tokens"] == tasks_total + second["usage"]["output_tokens"]


def test_code_that_stays_broken_spends_the_budget_and_fails_the_request(rt: Any) -> None:
    # Given a model that never gets the code right
    scripted(broken_runs=99)

    # When the request runs
    view = rt.run(CSV_REQUEST, timeout=300)

    # Then the loop stopped after BUDGET test runs, and the request ended FAILED saying why
    assert rt.workflow_status(view["execution_id"]) == "FAILED"
    assert view["status"] == "FAILED"
    assert [(i["iteration"], i["outcome"]) for i in view["verify"]] == [(1, "failed"), (2, "failed")]
    assert ScriptedCoder.code_runs == [True, True]  # the plan's code agent and one fix
    assert "VerifyBudgetSpent" in view["error"] and f"after {BUDGET} verify iterations" in view["error"]


@pytest.mark.parametrize(
    ("request_text", "package", "module"),
    [
        (
            "Build a REST API for todo items with endpoints to create, list and delete todos, with tests",
            "todo_api",
            "app.py",
        ),
        ("Build a Python library that parses dates, with tests", "date_parser", "__init__.py"),
    ],
)
def test_rest_api_and_library_requests_produce_passing_projects_served_as_artifacts(
    rt: Any, request_text: str, package: str, module: str
) -> None:
    scripted(broken_runs=0)

    view = rt.run(request_text, timeout=300)

    assert view["status"] == "SUCCEEDED"
    last = view["verify"][-1]
    assert last["outcome"] == "passed" and last["tests"]["passed"] >= 5 and last["tests"]["failed"] == 0
    execution_id = view["execution_id"]
    status, listing = rt.api("GET", f"/v1/executions/{execution_id}/artifacts")
    assert status == 200
    paths = {f["path"] for f in listing["files"]}
    assert {f"{package}/{module}", f"tests/test_{package}.py", "pyproject.toml"} <= paths
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in listing["files"])
    status, one = rt.api("GET", f"/v1/executions/{execution_id}/artifacts/{package}/{module}")
    assert status == 200 and one["path"] == f"{package}/{module}" and one["content"].startswith('"""')
    response = rt.http(
        "GET", f"/v1/executions/{execution_id}/artifacts.zip", {"Authorization": f"Bearer {rt.token()}"}, None
    )
    assert response["statusCode"] == 200 and response["isBase64Encoded"]
    names = zipfile.ZipFile(io.BytesIO(base64.b64decode(response["body"]))).namelist()
    assert sorted(names) == sorted(f"project/{p}" for p in paths)
    if package == "todo_api":  # the endpoints the request named, and no others
        assert "ENABLED = {" in one["content"] and "'update'" not in one["content"]
