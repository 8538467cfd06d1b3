"""The session sweeper handler with its sample event, and the session routes' sample event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tdev.sessions.lifecycle import SessionStatus
from tdev.sessions.service import service

EVENTS = Path(__file__).resolve().parents[2] / "events"


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / f"{name}.json").read_text()))


def test_session_sweeper_with_its_sample_event(runtime: Any) -> None:
    svc = service()
    crashed = svc.open("eve", "p", ["CodeAgent"])
    svc.heartbeats.stop(crashed.session_id)
    svc.forget_workspace(crashed.session_id)
    healthy = svc.open("eve", "p", ["CodeAgent"])

    summary = runtime.invoke("session_sweeper", load_event("session_sweeper"))

    assert summary["checked"] == 2
    assert summary["recovered"] == [crashed.session_id]
    assert svc.repo.get(crashed.session_id).status is SessionStatus.ACTIVE
    assert svc.repo.get(healthy.session_id).reason is None  # its worker detached cleanly: left alone


def test_session_sweeper_with_nothing_open(runtime: Any) -> None:
    summary = runtime.invoke("session_sweeper", load_event("session_sweeper"))
    assert summary == {"checked": 0, "expired": [], "idle": [], "recovered": [], "retrying": [], "failed": []}


def test_open_session_sample_event(runtime: Any) -> None:
    import json

    response = runtime.invoke("api", load_event("api_post_session"))
    assert response["statusCode"] == 201
    body = json.loads(response["body"])
    assert body["user_id"] == "sample-user" and body["agents"] == ["DesignAgent", "CodeAgent"]
    assert body["budget"] == {"budget_usd": 0.5, "spent_usd": 0.0, "reserved_usd": 0.0}
    headers = response.get("headers") or {k: v[0] for k, v in response["multiValueHeaders"].items()}
    assert headers["Location"] == f"/v1/sessions/{body['session_id']}"
