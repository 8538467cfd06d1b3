"""`priority` and `deadline` on `POST /v1/requests`: validated (a closed set; a deadline in the future,
at most 7 days away, with a time zone), stored with the execution and shown by `GET /v1/executions/{id}`;
the task's capacity slot is then asked for in that order (tests/unit/test_capacity.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest


def _in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def test_a_request_carries_its_priority_and_deadline(runtime: Any) -> None:
    deadline = _in(3600)
    status, accepted = runtime.api(
        "POST",
        "/v1/requests",
        {"request": "Build a CLI that counts words", "priority": "HIGH", "deadline": deadline},
    )
    assert status == 202, accepted
    status, view = runtime.api("GET", f"/v1/executions/{accepted['execution_id']}")
    assert status == 200
    assert view["priority"] == "HIGH"
    assert datetime.fromisoformat(view["deadline"]) == datetime.fromisoformat(deadline)
    status, plain = runtime.api("POST", "/v1/requests", {"request": "Build a CLI that counts lines"})
    assert runtime.api("GET", f"/v1/executions/{plain['execution_id']}")[1]["priority"] == "NORMAL"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"priority": "URGENT"}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"deadline": "tomorrow"}, "deadline"),
        ({"deadline": "2030-01-01T00:00:00"}, "deadline"),  # no time zone
        ({"deadline": _in(-60)}, "deadline"),  # in the past
        ({"deadline": _in(8 * 86_400)}, "deadline"),  # more than 7 days away
    ],
)
def test_a_bad_priority_or_deadline_is_a_400_naming_it(
    runtime: Any, change: dict[str, Any], field: str
) -> None:
    status, body = runtime.api("POST", "/v1/requests", {"request": "Build a CLI that counts words", **change})
    assert (status, body.get("field")) == (400, field), body
