"""`tdev run ... --output DIR` and `tdev artifacts`, as a user runs them: a project that works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tdev_cli.main import main

pytestmark = pytest.mark.slow


def test_run_writes_a_csv_to_json_project_whose_tests_pass_and_whose_cli_converts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # .tdev/workspaces/ (the kept copy) goes here

    code = main(
        ["run", "Build a CLI that converts CSV to JSON, with tests", "--output", "out", "--log-dir", "logs"]
    )

    out = capsys.readouterr().out
    assert code == 0
    assert "Verify loop (tests run in the sandbox)" in out and "passed" in out
    assert "project: 6 files written to out" in out
    # The generated tests pass with a plain pytest run, outside the platform
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "out"],
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout
    # And the CLI converts a sample CSV to the right JSON
    (tmp_path / "people.csv").write_text('name,age,member\nAda,36,true\n"Lovelace, A",,false\n')
    converted = subprocess.run(
        [sys.executable, "-m", "csv_to_json", "../people.csv", "--infer-types"],
        cwd=tmp_path / "out",
        capture_output=True,
        text=True,
    )
    assert converted.returncode == 0, converted.stderr
    assert json.loads(converted.stdout) == [
        {"name": "Ada", "age": 36, "member": True},
        {"name": "Lovelace, A", "age": None, "member": False},
    ]

    # `tdev artifacts` writes the same project again from the kept copy
    (execution_id,) = [p.name for p in (tmp_path / ".tdev" / "workspaces").iterdir()]
    assert main(["artifacts", execution_id, "--output", "again"]) == 0
    written = sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()
    )
    again = sorted(
        p.relative_to(tmp_path / "again").as_posix() for p in (tmp_path / "again").rglob("*") if p.is_file()
    )
    assert written == again and "csv_to_json/cli.py" in written
    assert main(["artifacts", "no-such-execution", "--output", "x"]) == 1


def test_run_from_an_earlier_execution_keeps_its_project_and_runs_its_tests_with_the_new_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", "Build a CLI that converts CSV to JSON, with tests", "--log-dir", "logs"]) == 0
    (execution_id,) = [p.name for p in (tmp_path / ".tdev" / "workspaces").iterdir()]
    capsys.readouterr()

    # A follow-up request from that execution (each `tdev run` has its own emulation: the kept copy is
    # uploaded as the base archive, after the API's checks: finished well, same project)
    code = main(
        [
            "run",
            "Add a CLI that counts the words in a text file, with tests",
            "--from",
            execution_id,
            "--output",
            "out",
            "--log-dir",
            "logs",
        ]
    )

    out = capsys.readouterr().out
    assert code == 0, out
    assert f"base: execution {execution_id}'s project" in out
    assert (tmp_path / "out" / "csv_to_json" / "cli.py").is_file()
    assert (tmp_path / "out" / "text_stats" / "cli.py").is_file()
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "out"],
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "21 passed" in tests.stdout  # 16 of the base's CSV tests, 5 of the new word counter's

    # Refused: an execution this machine does not know, another project, a hostile archive
    assert main(["run", "Add a CLI, with tests", "--from", "no-such-execution", "--log-dir", "logs"]) == 2
    assert "--from: no execution no-such-execution here" in capsys.readouterr().out
    assert main(["run", "Add a CLI, with tests", "--from", execution_id, "--project", "other"]) == 2
    assert "belongs to project 'default'" in capsys.readouterr().out
    import zipfile

    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as archive:
        archive.writestr("../../escape.py", "print('out')\n")
    assert main(["run", "Add a CLI, with tests", "--from-archive", "evil.zip", "--log-dir", "logs"]) == 2
    refused = capsys.readouterr().out
    assert "base_archive" in refused and "leaves the workspace" in refused
