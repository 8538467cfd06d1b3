"""`tdev run --budget` and `tdev cancel` as a user runs them: the budget status, its exit code and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdev_cli.main import EXIT_BUDGET_EXCEEDED, EXIT_USAGE, main

pytestmark = pytest.mark.slow

REQUEST = "Design and implement a REST API for todo items, with unit tests and a security review"


def test_a_run_over_its_budget_ends_budget_exceeded_with_its_own_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The offline model at a mid-size model's prices, each call held to 1,024 output tokens
    monkeypatch.setenv("TDEV_MODEL_PRICES", '{"offline:tdev-offline-1": [0.003, 0.015]}')
    monkeypatch.setenv("TDEV_MAX_OUTPUT_TOKENS", "1024")

    code = main(["run", REQUEST, "--budget", "0.05", "--log-dir", str(tmp_path)])

    out = capsys.readouterr().out
    assert code == EXIT_BUDGET_EXCEEDED == 4
    assert "status: BUDGET_EXCEEDED" in out and "budget: $0.050000" in out
    assert "stopped: the request's budget of $0.05 would have been exceeded by its next model call" in out
    assert "BudgetExceeded" in out  # the error line says which call did not fit


def test_a_budget_that_is_not_positive_is_a_clear_message_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "Write unit tests for the parser", "--budget", "0", "--log-dir", str(tmp_path)])

    out = capsys.readouterr().out
    assert code == EXIT_USAGE and "budget_usd" in out and "Traceback" not in out


def test_cancel_without_a_local_backend_says_how_to_start_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    code = main(["cancel", "0b9e4c1e-5f7a-4d43-9a55-3f1d8c2a7e10"])

    out = capsys.readouterr().out
    assert code == EXIT_USAGE and "tdev session backend" in out
