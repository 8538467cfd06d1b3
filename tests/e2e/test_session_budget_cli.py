"""`tdev session open --budget` and a chat turn over it, as a user runs them: the budget is kept, the refused
turn says which budget and exits with the budget's exit code (as `tdev run` does)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tdev_cli import session_cmd
from tdev_cli.main import EXIT_BUDGET_EXCEEDED, EXIT_USAGE, main


class InProcessBackend:
    """What `BackendClient.connect` returns, over the test's runtime instead of a `tdev session backend`
    process (the commands' code path is the same: `api` calls through the authorizer and the API)."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    def __enter__(self) -> InProcessBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def api(self, *args: Any, **kwargs: Any) -> Any:
        return self.runtime.api(*args, **kwargs)


@pytest.fixture
def tdev(runtime: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)  # the commands' logs go to .tdev/logs here
    monkeypatch.setattr(
        session_cmd.BackendClient, "connect", staticmethod(lambda _: InProcessBackend(runtime))
    )
    runtime.as_principal("local-admin", ("admin",))  # as the CLI's client acts on a local backend

    def run(*argv: str) -> int:
        return main(["session", *argv])

    return run


def test_a_session_opened_with_a_budget_refuses_the_turn_that_would_exceed_it(
    tdev: Any, runtime: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TDEV_MODEL_PRICES", '{"offline:tdev-offline-1": [0.003, 0.015]}')
    monkeypatch.setenv("TDEV_MAX_OUTPUT_TOKENS", "256")
    monkeypatch.setattr(session_cmd, "_out", sys.stdout)  # the answers' stream, captured

    assert tdev("open", "--user", "ann", "--project", "todo", "--budget", "0.001") == 0
    session_id = capsys.readouterr().out.strip()
    status, view = runtime.api("GET", f"/v1/sessions/{session_id}")
    assert status == 200 and view["budget"]["budget_usd"] == 0.001

    code = tdev("chat", session_id, "Design a REST API for todo items")

    err = capsys.readouterr().err
    assert code == EXIT_BUDGET_EXCEEDED == 4
    assert f"error 402: session {session_id}: a call to offline:tdev-offline-1 may cost up to" in err
    assert "left of its 0.001 USD budget" in err


def test_a_budget_that_is_not_positive_is_a_clear_message_and_exit_2(
    tdev: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code = tdev("open", "--user", "ann", "--budget", "0")

    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "error 400: budget_usd" in err and "Traceback" not in err
