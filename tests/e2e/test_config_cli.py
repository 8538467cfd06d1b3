"""`tdev config` and `tdev flags` against a running `tdev serve`, as an operator runs them: every change
validated, audited and (for protected keys) approved by a second admin, and the running server's
behaviour changing without a restart."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.serving import TDEV, TREE, serve_env, serving
from tests.e2e.test_serve import call, token

pytestmark = pytest.mark.slow


def tdev(cwd: Path, *args: str) -> tuple[int, Any, str]:
    result = subprocess.run(
        [*TDEV, *args],
        cwd=cwd,
        env={**os.environ, **TREE},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    try:
        return result.returncode, json.loads(result.stdout), result.stderr
    except ValueError:
        return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    cwd = tmp_path_factory.mktemp("config")
    with serving(cwd, serve_env(), "--config-poll-seconds", "1") as url:
        yield url, cwd


def test_an_operator_changes_approves_and_rolls_back_the_configuration(server: tuple[str, Path]) -> None:
    _, cwd = server
    code, shown, _ = tdev(cwd, "config", "get")
    assert code == 0 and shown["values"]["max_sessions_global"] == 100

    # Invalid: refused, every bad key listed, nothing written
    code, _, err = tdev(
        cwd, "config", "validate", "max_sessions_per_user=0", "default_model=nope", "colour=red"
    )
    assert code == 1 and all(k in err for k in ("max_sessions_per_user", "default_model", "colour"))

    # A protected key waits for a second admin
    code, pending, _ = tdev(cwd, "config", "set", "max_sessions_global", "50", "--reason", "small cluster")
    assert code == 0 and pending["status"] == "pending_approval"
    code, _, err = tdev(cwd, "config", "approve", pending["change_id"])
    assert code == 1 and "403" in err and "another admin" in err  # the author cannot approve it
    code, applied, _ = tdev(cwd, "config", "approve", pending["change_id"], "--as", "second-admin")
    assert code == 0 and (applied["version"], applied["approved_by"]) == (1, "second-admin")

    # A rollback snapshots the current state first, then restores the version's layer exactly
    code, changed, _ = tdev(cwd, "config", "set", "max_sessions_per_user", "2", "--reason", "small box")
    assert code == 0 and changed["version"] == 2
    code, rolled, _ = tdev(cwd, "config", "rollback", "1", "--reason", "undo the box")
    assert code == 0 and (rolled["snapshot_version"], rolled["version"]) == (3, 4)
    values = tdev(cwd, "config", "get")[1]["values"]
    assert (values["max_sessions_per_user"], values["max_sessions_global"]) == (5, 50)

    # History: who, what, why, approver and checksum of every version
    code, history, _ = tdev(cwd, "config", "history")
    assert [v["kind"] for v in history["versions"]] == ["rollback", "snapshot", "set", "set"]
    first = history["versions"][-1]
    assert (first["author"], first["approved_by"], first["reason"]) == (
        "tdev-cli-admin",
        "second-admin",
        "small cluster",
    )
    assert (
        first["changed"] == {"max_sessions_global": {"from": None, "to": "50"}}
        and len(first["checksum"]) == 64
    )

    # Compliance: the protected change was approved, the rollback touched no protected key, the API signing
    # secret is new: compliant (exit 0), with who changed what
    code, report, err = tdev(cwd, "config", "compliance")
    assert code == 0, err
    assert report["compliant"] is True and report["unapproved_protected_changes"] == []
    assert report["by_author"]["tdev-cli-admin"] == {
        "changes": 3,
        "keys": ["config/max_sessions_global", "config/max_sessions_per_user"],
    }
    assert [s["overdue"] for s in report["secrets"]] == [False]


def test_an_operator_sets_and_evaluates_flags(server: tuple[str, Path]) -> None:
    _, cwd = server
    code, listed, _ = tdev(cwd, "flags", "list")
    assert code == 0 and {"verify_loop", "fallback_chain"} <= set(listed["flags"])
    code, _, _ = tdev(
        cwd, "flags", "set", "new_ui", "--on", "--rollout", "0", "--target-user", "alice",
        "--variant", "a=50", "--variant", "b=50", "--reason", "A/B for alice",
    )  # fmt: skip
    assert code == 0
    code, alice, _ = tdev(cwd, "flags", "eval", "new_ui", "--user", "alice")
    assert (alice["value"], alice["reason"], alice["variant"] in ("a", "b")) == (True, "user targeted", True)
    code, bob, _ = tdev(cwd, "flags", "eval", "new_ui", "--user", "bob")
    assert bob["value"] is False and bob["variant"] is None
    code, _, err = tdev(cwd, "flags", "set", "new_ui", "--variant", "a=70", "--reason", "bad weights")
    assert code == 1 and "add up to 100" in err
    code, history, _ = tdev(cwd, "config", "history", "--scope", "flags")
    assert [v["reason"] for v in history["versions"]] == ["A/B for alice"]


def test_the_running_server_enforces_an_approved_rate_limit_without_a_restart(
    server: tuple[str, Path],
) -> None:
    """Last: it leaves the server rate-limited."""
    url, cwd = server
    alice = token(cwd, "alice", "developer")
    assert call(f"{url}/v1/agents", token=alice)[0] == 200
    code, pending, _ = tdev(
        cwd, "config", "set", "rate_limit_default", "3/600", "--reason", "bots", "--as", "ops-1"
    )
    assert code == 0
    code, _, _ = tdev(cwd, "config", "approve", pending["change_id"], "--as", "ops-2")
    assert code == 0
    statuses = [call(f"{url}/v1/agents", token=alice)[0] for _ in range(4)]
    assert statuses[:2] == [200, 200] and statuses[-1] == 429
