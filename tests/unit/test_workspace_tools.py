"""Workspaces, the agents' workspace tools and the test sandbox: confinement, limits and isolation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tdev.agents.tools import WorkspaceTools
from tdev.llm.offline_projects import plan_project, project_kind, requested_operations
from tdev.sandbox import Limits, run_tests
from tdev.workspace import MAX_FILE_BYTES, WorkspaceError, changed_files, clean_path
from tdev.workspace.local import LocalWorkspace
from tdev.workspace.s3 import S3Workspace

ALL_TOOLS = ["list_files", "read_file", "write_file", "patch_file", "search_text", "run_tests"]


@pytest.mark.parametrize(
    "path",
    ["", "/etc/passwd", "../x", "a/../../x", "a\\b", "C:/x", ".hidden", "a/.git/config", "a\x00b", "x" * 300],
)
def test_paths_outside_or_odd_are_refused(path: str) -> None:
    with pytest.raises(WorkspaceError):
        clean_path(path)


def test_paths_are_normalised() -> None:
    assert clean_path("./src//app.py") == "src/app.py"


def test_local_workspace_refuses_symlinks_out_and_oversized_files(tmp_path: Path) -> None:
    workspace = LocalWorkspace(tmp_path / "ws", "exec-1")
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    os.symlink(outside, workspace.root / "link.txt")
    os.symlink(tmp_path, workspace.root / "linkdir")

    with pytest.raises(WorkspaceError, match="symlink"):
        workspace.read("link.txt")
    with pytest.raises(WorkspaceError, match="symlink"):
        workspace.write("linkdir/new.txt", "x")
    with pytest.raises(WorkspaceError, match="file limit"):
        workspace.write("big.txt", b"0" * (MAX_FILE_BYTES + 1))
    assert outside.read_text() == "secret" and not (tmp_path / "new.txt").exists()
    assert [f.path for f in workspace.files()] == []  # links are not files of the project


def encrypted_bucket(s3: Any, name: str) -> str:
    """A bucket encrypted by default as the stack makes the workspace bucket (SSE-KMS, bucket key).

    Returns its key's ARN."""
    from tdev_cli.runtime import encrypt_by_default

    key = boto3.client("kms", region_name="us-east-1").create_key(Description="workspace key")["KeyMetadata"]
    s3.create_bucket(Bucket=name)
    encrypt_by_default(s3, name, key["Arn"])
    return str(key["Arn"])


def test_s3_workspace_keeps_files_under_the_execution_prefix_encrypted() -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        key = encrypted_bucket(s3, "tdev-ws")
        workspace = S3Workspace("tdev-ws", "exec-2")
        info = workspace.write("pkg/mod.py", "x = 1\n")
        before = workspace.hashes()
        workspace.write("pkg/mod.py", "x = 2\n")

        head = s3.head_object(Bucket="tdev-ws", Key="workspaces/exec-2/pkg/mod.py")
        # the bucket's default key (the one the workspace functions are granted), not a key the code names
        assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == key
        assert [f.as_dict() for f in workspace.files()] == [
            {"path": "pkg/mod.py", "size": 6, "sha256": workspace.files()[0].sha256}
        ]
        assert info.sha256 != workspace.files()[0].sha256
        assert changed_files(before, workspace.hashes()) == ["pkg/mod.py"]
        assert workspace.read_text("pkg/mod.py") == "x = 2\n"


def test_tools_write_read_patch_search_and_report_refusals_to_the_model(tmp_path: Path) -> None:
    tools = WorkspaceTools(LocalWorkspace(tmp_path, "exec-3"), ALL_TOOLS)

    assert tools.write_file("calc.py", "def add(a, b):\n    return a - b\n").startswith("wrote calc.py")
    assert tools.patch_file("calc.py", "a - b", "a + b") == "patched calc.py (32 bytes)"
    assert "occurs 0 times" in tools.patch_file("calc.py", "nothing", "x")
    assert tools.read_file("calc.py").splitlines()[2] == "   2|     return a + b"
    assert tools.search_text("return", "*.py") == "calc.py:2: return a + b"
    assert tools.write_file("../escape.py", "x").startswith("error: path")
    assert tools.read_file("missing.py").startswith("error: no file")
    assert tools.list_files() == "calc.py\t32"
    assert tools.changed == ["calc.py"]


def test_read_only_roles_get_no_write_tools(tmp_path: Path) -> None:
    tools = WorkspaceTools(LocalWorkspace(tmp_path, "exec-4"), ["list_files", "read_file", "search_text"])
    assert set(tools.functions) == {"list_files", "read_file", "search_text"}
    with pytest.raises(ValueError, match="unknown workspace tools"):
        WorkspaceTools(LocalWorkspace(tmp_path, "exec-5"), ["rm_rf"])


def test_the_sandbox_has_no_credentials_no_network_and_a_file_size_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "must-not-leak")
    tests = """
import os, socket


def test_no_credentials():
    assert not [k for k in os.environ if k.startswith("AWS_")]


def test_no_network():
    try:
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    except (PermissionError, OSError):
        return
    raise AssertionError("connected")


def test_file_size_limit():
    try:
        open("big.bin", "wb").write(b"0" * (32 * 1024 * 1024))
    except OSError as exc:
        assert exc.errno == 27  # EFBIG
        return
    raise AssertionError("wrote 32 MB")
"""
    report = run_tests({"tests/test_sandbox.py": tests})

    assert report.summary() == "passed: 3 passed, 0 failed, 0 errors", report.output
    assert {"copy", "scrubbed-env", "socket-guard", "rlimits"} <= set(report.isolation)


def test_runaway_tests_are_stopped_at_the_time_limit() -> None:
    report = run_tests(
        {"tests/test_slow.py": "import time\n\n\ndef test_forever():\n    time.sleep(60)\n"},
        Limits(timeout_seconds=2),
    )

    assert report.outcome == "timeout" and "stopped after 2 s" in report.output


def test_failures_are_reported_with_the_test_and_its_message() -> None:
    report = run_tests(
        {"m.py": "X = 1\n", "tests/test_m.py": "from m import X\n\n\ndef test_x():\n    assert X == 2\n"}
    )

    assert (report.outcome, report.passed, report.failed) == ("failed", 0, 1)
    assert (
        report.failures[0]["test"] == "tests.test_m::test_x"
        and "assert 1 == 2" in report.failures[0]["message"]
    )
    assert "/tmp/" not in report.failures[0]["message"]


def test_non_python_projects_are_not_run() -> None:
    assert run_tests({"index.js": "console.log(1)"}).outcome == "unsupported"


@pytest.mark.parametrize(
    ("request_text", "kind", "name"),
    [
        ("Build a CLI that converts CSV to JSON, with tests", "cli", "csv_to_json"),
        ("A command-line tool for my notes", "cli", "text_stats"),
        ("Design and implement a REST API for todo items", "api", "todo_api"),
        ("Build a REST API with GET /books and POST /books", "api", "book_api"),
        ("Build a Python library that parses dates", "library", "date_parser"),
        ("Write a library for URL slugs", "library", "slugs"),
    ],
)
def test_the_offline_model_picks_and_names_a_project_whose_tests_pass(
    request_text: str, kind: str, name: str
) -> None:
    project = plan_project(request_text)

    assert (project_kind(request_text), project.name) == (kind, name)
    report = run_tests(project.files)
    assert report.outcome == "passed" and report.failed == 0 and report.passed >= 5, report.output


def test_the_api_offers_the_endpoints_the_request_names() -> None:
    assert requested_operations(
        "an API for todos with endpoints to create, list and delete todos", "todo"
    ) == (
        "list",
        "create",
        "delete",
    )
    assert requested_operations("GET /books and POST /books", "book") == ("list", "create")
    assert requested_operations("a REST API for todo items", "todo") == (
        "list",
        "create",
        "get",
        "update",
        "delete",
    )


def test_agents_use_the_tools_through_agnos_tool_calling(tmp_path: Path) -> None:
    """The offline model answers with tool calls; Agno runs them on the workspace and feeds back results."""
    from tdev.agents.catalog import CODE_AGENT, REVIEW_AGENT
    from tdev.agents.runtime import build_agent, run_agent

    workspace = LocalWorkspace(tmp_path, "exec-6")
    request = "<request>\nBuild a Python library that parses dates, with tests\n</request>"
    coder = WorkspaceTools(workspace, CODE_AGENT.tools)

    run = run_agent(CODE_AGENT, "offline:tdev-offline-1", request, tools=[coder])

    assert coder.changed == ["pyproject.toml", "README.md", "date_parser/__init__.py"]
    assert "wrote date_parser/__init__.py" in run.output and run.usage.output_tokens > 0
    reviewer = WorkspaceTools(workspace, REVIEW_AGENT.tools, test_runner=lambda files: run_tests(files))
    assert (
        "write_file"
        not in build_agent(REVIEW_AGENT, "offline:tdev-offline-1", tools=[reviewer]).tools[0].functions
    )
    verdict = run_agent(REVIEW_AGENT, "offline:tdev-offline-1", request, tools=[reviewer]).output
    assert len(reviewer.reports) == 1 and reviewer.reports[0].outcome == "no_tests"  # code only, no tests yet
    assert "> tests no_tests" in verdict and "CHANGES REQUESTED" in verdict
