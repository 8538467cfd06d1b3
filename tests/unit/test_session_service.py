"""Sessions through the API and the sweeper: lifecycle, chat turns, requests, recovery, expiry."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest

from tdev.sessions.lifecycle import SessionStatus
from tdev.sessions.service import MAX_RECOVERY_ATTEMPTS, service
from tdev_cli.runtime import CHECKPOINT_BUCKET


@pytest.fixture(autouse=True)
def _as_dana(runtime: Any) -> None:
    runtime.as_principal("dana")  # the owner of the sessions these tests open


def _open(runtime: Any, **body: Any) -> str:
    status, view = runtime.api("POST", "/v1/sessions", {"user_id": "dana", "project_id": "todo", **body})
    assert status == 201, view
    return str(view["session_id"])


def test_lifecycle_through_the_api_with_illegal_moves_refused(runtime: Any) -> None:
    sid = _open(runtime, agents=["DesignAgent", "CodeAgent"])
    assert runtime.api("POST", f"/v1/sessions/{sid}/resume")[0] == 409  # active cannot resume
    status, paused = runtime.api("POST", f"/v1/sessions/{sid}/pause")
    assert status == 200 and paused["status"] == "paused"
    status, body = runtime.api("POST", f"/v1/sessions/{sid}/messages", {"text": "design a todo API"})
    assert status == 409 and body["field"] == "session_id" and "paused" in body["message"]
    assert runtime.api("POST", f"/v1/sessions/{sid}/pause")[0] == 409
    status, resumed = runtime.api("POST", f"/v1/sessions/{sid}/resume")
    assert status == 200 and resumed["status"] == "active"
    status, done = runtime.api("POST", f"/v1/sessions/{sid}/terminate")
    assert status == 200 and done["status"] == "completed"
    status, body = runtime.api("POST", f"/v1/sessions/{sid}/terminate")
    assert status == 409 and "from completed" in body["message"]
    status, view = runtime.api("GET", f"/v1/sessions/{sid}")
    assert view["status"] == "completed" and not view["heartbeat_alive"]
    kinds = [c["kind"] for c in view["checkpoint_list"]]
    assert kinds.count("auto") >= 2 and "manual" in kinds  # open, pause (auto) and terminate (manual)
    assert service().limits.open_count("dana") == 0


def test_only_the_owner_acts_on_a_session(runtime: Any) -> None:
    sid = _open(runtime)
    runtime.as_principal("erin")
    status, body = runtime.api("POST", f"/v1/sessions/{sid}/pause")
    assert status == 403 and "not its owner" in body["message"]
    assert runtime.api("GET", f"/v1/sessions/{sid}")[0] == 403
    assert runtime.api("POST", "/v1/sessions", {"user_id": "dana", "project_id": "todo"})[0] == 403
    runtime.as_principal("viewer-vic", ("viewer",))
    assert runtime.api("POST", "/v1/sessions", {"project_id": "todo"})[0] == 403  # viewers may not open
    runtime.as_principal("root", ("admin",))
    assert runtime.api("POST", f"/v1/sessions/{sid}/pause")[0] == 200  # admins may


def test_bad_input_names_the_field(runtime: Any) -> None:
    status, body = runtime.api("POST", "/v1/sessions", {"user_id": "dana", "agents": []})
    assert status == 400 and body["field"] == "agents"
    status, body = runtime.api("POST", "/v1/sessions", {"idle_timeout_seconds": 5})
    assert status == 400 and body["field"] == "idle_timeout_seconds"
    status, body = runtime.api("POST", "/v1/sessions", {"agents": ["NoSuchAgent"]})
    assert status == 400 and body["field"] == "agents"
    assert runtime.api("GET", "/v1/sessions/ses-0123")[0] == 404
    assert runtime.api("GET", "/v1/sessions/not-a-session")[0] == 400
    sid = _open(runtime)
    status, body = runtime.api("POST", f"/v1/sessions/{sid}/messages", {"text": ""})
    assert status == 400 and body["field"] == "text"


def test_chat_turns_and_requests_in_one_session(runtime: Any) -> None:
    sid = _open(runtime, agents=["DesignAgent", "CodeAgent", "TestAgent"])
    status, first = runtime.api(
        "POST", f"/v1/sessions/{sid}/messages", {"text": "Design a REST API for todo items"}
    )
    assert status == 200 and first["agent"] == "DesignAgent" and "Design" in first["answer"]
    status, second = runtime.api("POST", f"/v1/sessions/{sid}/messages", {"text": "write unit tests for it"})
    assert status == 200 and second["agent"] == "TestAgent"
    assert any("todo" in c.lower() for c in second["context_used"])  # earlier turns retrieved as context
    status, follow_up = runtime.api("POST", f"/v1/sessions/{sid}/messages", {"text": "yes, go on"})
    assert status == 200 and follow_up["agent"] == "TestAgent"  # the classifier follows the conversation
    status, accepted = runtime.api(
        "POST", "/v1/requests", {"request": "Implement the todo API with unit tests", "session_id": sid}
    )
    assert status == 202
    runtime.wait(accepted["execution_id"], timeout=120)
    view = runtime.api("GET", f"/v1/sessions/{sid}")[1]
    assert view["messages"] == 3 and view["requests"] == 1
    assert view["request_ids"] == [accepted["execution_id"]]
    history = runtime_history(sid)
    assert [m["role"] for m in history] == ["user", "assistant"] * 3
    # A request cannot join a session that is not active.
    runtime.api("POST", f"/v1/sessions/{sid}/pause")
    status, body = runtime.api("POST", "/v1/requests", {"request": "Implement more", "session_id": sid})
    assert status == 409 and body["field"] == "session_id"


def runtime_history(session_id: str) -> list[dict[str, Any]]:
    svc = service()
    user = svc.repo.get(session_id).user_id
    return svc.chats.message_items(user, session_id)


def test_sweeper_recovers_a_session_whose_heartbeat_lapsed(runtime: Any) -> None:
    sid = _open(runtime, agents=["CodeAgent"])
    runtime.api("POST", f"/v1/sessions/{sid}/memory", {"content": "the port is 8080", "importance": 0.5})
    runtime.api("POST", f"/v1/sessions/{sid}/checkpoints", {"kind": "manual"})
    svc = service()
    svc.heartbeats.stop(sid)  # the worker died: no more beats
    svc.forget_workspace(sid)  # and its in-process memory is gone
    summary = runtime.invoke("session_sweeper", {"time": "2026-11-22T03:00:00Z"})
    assert summary["recovered"] == [sid]
    view = runtime.api("GET", f"/v1/sessions/{sid}")[1]
    assert (
        view["status"] == "active" and view["heartbeat_alive"] and view["reason"].startswith("recovered from")
    )
    assert view["checkpoint_list"][0]["kind"] == "recovery"
    space = svc.workspace(sid)
    assert any("8080" in e.text for e in space.context.entries)


def test_recovery_gives_up_after_three_attempts_with_backoff(runtime: Any) -> None:
    sid = _open(runtime, agents=["CodeAgent"])
    svc = service()
    s3 = boto3.client("s3")
    for checkpoint in svc.checkpoints.list_for(sid):  # every checkpoint is corrupt
        s3.put_object(Bucket=CHECKPOINT_BUCKET, Key=checkpoint.s3_key, Body=b"corrupt")
    svc.heartbeats.stop(sid)
    svc.forget_workspace(sid)
    now = time.time()
    assert svc.sweep(now=now)["retrying"] == [sid]
    first = svc.repo.get(sid)
    assert first.status is SessionStatus.RESUMING and first.recovery_attempts == 1
    assert first.next_recovery_at == pytest.approx(now + 30, abs=1)
    assert svc.sweep(now=now + 10)["retrying"] == [sid]  # backing off: no attempt yet
    assert svc.repo.get(sid).recovery_attempts == 1
    assert svc.sweep(now=now + 31)["retrying"] == [sid]
    second = svc.repo.get(sid)
    assert second.recovery_attempts == 2 and second.next_recovery_at == pytest.approx(now + 31 + 60, abs=1)
    assert svc.sweep(now=now + 92)["failed"] == [sid]
    failed = svc.repo.get(sid)
    assert failed.status is SessionStatus.FAILED and failed.recovery_attempts == MAX_RECOVERY_ATTEMPTS
    assert "recovery attempt 3 failed" in (failed.reason or "") and "checksum mismatch" in (
        failed.reason or ""
    )
    assert svc.limits.open_count("dana") == 0  # its slot is free again


def test_sweeper_closes_idle_and_expired_sessions(runtime: Any) -> None:
    idle = _open(runtime, idle_timeout_seconds=60)
    expired = _open(runtime, max_duration_seconds=120, idle_timeout_seconds=3600)
    live = _open(runtime)
    svc = service()
    summary = svc.sweep(now=time.time() + 90)
    assert summary["idle"] == [idle] and summary["expired"] == []
    summary = svc.sweep(now=time.time() + 150)
    assert summary["expired"] == [expired]
    assert svc.repo.get(idle).reason == "idle timeout"
    assert svc.repo.get(expired).reason == "maximum session duration reached"
    assert svc.repo.get(live).status is SessionStatus.ACTIVE
    assert svc.repo.open_sessions() == [live]
