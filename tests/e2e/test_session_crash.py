"""A session as a user lives it, across processes: open, chat, remember, a request, a crash, recovery.

Three kinds of process, as in a deployment: the backend (the emulated AWS + Redis, and the sweeper on
a schedule), short-lived commands (`tdev session ...`, `tdev run --session`), and a chat worker that
holds the session and beats. The worker is killed with SIGKILL mid-session; the sweeper notices the
lapsed heartbeat, restores the latest valid checkpoint and recreates the agents; a new process then
finds the history and the memory intact and carries on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

TDEV = str(Path(sys.executable).parent / "tdev")


@pytest.fixture
def backend(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    env = {**os.environ, "TDEV_HEARTBEAT_SECONDS": "1", "REDIS_URL": redis_url}
    process = subprocess.Popen(
        [TDEV, "session", "backend", "--sweep-every", "1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    state = tmp_path / ".tdev" / "backend.json"
    deadline = time.monotonic() + 120
    while not state.exists():
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        assert time.monotonic() < deadline, "the backend did not start"
        time.sleep(0.2)
    try:
        yield {"cwd": tmp_path, "env": env, "state": state}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def tdev(backend: dict[str, Any], *args: str) -> str:
    done = subprocess.run(
        [TDEV, *args], cwd=backend["cwd"], env=backend["env"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"tdev {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done.stdout


def show(backend: dict[str, Any], session_id: str) -> dict[str, Any]:
    return dict(json.loads(tdev(backend, "session", "show", session_id, "--json")))


def test_a_killed_worker_is_recovered_with_history_and_memory_intact(backend: dict[str, Any]) -> None:
    sid = tdev(backend, "session", "open", "--user", "ann", "--project", "todo").strip()
    assert sid.startswith("ses-")
    tdev(backend, "session", "remember", sid, "the service listens on port 8080", "--importance", "0.6")
    run = tdev(backend, "run", "--session", sid, "Implement the todo API with unit tests")
    assert run.rstrip().endswith("status: SUCCEEDED")

    worker = subprocess.Popen(
        [TDEV, "session", "chat", sid],
        cwd=backend["cwd"],
        env=backend["env"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdin is not None and worker.stdout is not None
    answers = []
    for text in ("Design a REST API for todo items", "write unit tests for it"):
        worker.stdin.write(text + "\n")
        worker.stdin.flush()
        line = worker.stdout.readline()
        while not line.startswith("["):
            line = worker.stdout.readline()
        answers.append(line)
    assert answers[0].startswith("[DesignAgent]") and answers[1].startswith("[TestAgent]")
    before = show(backend, sid)
    assert before["status"] == "active" and before["heartbeat_alive"]

    worker.send_signal(signal.SIGKILL)  # mid-session: it was waiting for the next message
    worker.wait(timeout=10)

    deadline = time.monotonic() + 60
    view = show(backend, sid)
    while not str(view.get("reason") or "").startswith("recovered from"):
        assert time.monotonic() < deadline, f"not recovered: {view['status']} {view.get('reason')}"
        time.sleep(1)
        view = show(backend, sid)
    assert view["status"] == "active"
    assert view["checkpoint_list"][0]["kind"] == "recovery"
    # History: both turns, from the table; nothing acknowledged before the crash was lost.
    history = [(m["role"], m["text"].split("\n")[0]) for m in view["history"]]
    assert history[0] == ("user", "Design a REST API for todo items")
    assert history[2] == ("user", "write unit tests for it")
    assert len(history) == 4 and view["messages"] == 2 and view["requests"] == 1
    # Memory: the note and both turns came back from the checkpoint into a new process's workspace.
    assert view["memory_items"] == 3 and view["context_entries"] == 5

    # A new worker carries on, and the memory from before the crash is what it retrieves.
    from tdev_cli.session_cmd import BackendClient

    with BackendClient.connect(backend["state"]) as client:
        status, answer = client.api("POST", f"/v1/sessions/{sid}/messages", {"text": "which port is used?"})
    assert status == 200
    assert any("8080" in c for c in answer["context_used"])
    assert show(backend, sid)["messages"] == 3
