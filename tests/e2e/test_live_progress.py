"""Live progress: the progress log streamed by `tdev serve` as server-sent events, through the typed client
(`Client.events`) and `tdev run --api` (RemoteApi.follow), with resumption from the last event id."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tdev_cli.client import ApiError, Client, RemoteApi
from tests.e2e.serving import TDEV, serve_env, serving

pytestmark = pytest.mark.slow
REQUEST = "Design and implement a REST API for todo items"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, dict[str, str]]]:
    cwd = tmp_path_factory.mktemp("live")
    env = serve_env()
    with serving(cwd, env, start_timeout_s=300) as url:
        yield url, cwd, env


def token_for(served: tuple[str, Path, dict[str, str]], user: str) -> str:
    _, cwd, env = served
    done = subprocess.run(
        [*TDEV, "token", "--user", user, "--role", "developer"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


def read_stream(
    url: str, token: str, execution_id: str, last: int | None, stop_after: int | None
) -> list[int]:
    """The ids a raw SSE connection receives (closing it after `stop_after` events)."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    if last is not None:
        headers["Last-Event-ID"] = str(last)
    ids: list[int] = []
    with httpx.stream("GET", f"{url}/v1/executions/{execution_id}/events", headers=headers, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("id: "):
                ids.append(int(line[4:]))
                if stop_after is not None and len(ids) >= stop_after:
                    break  # the client drops the connection mid-stream
    return ids


def test_the_client_streams_a_request_live_in_order_and_resumes_without_gap_or_duplicate(
    served: tuple[str, Path, dict[str, str]],
) -> None:
    url, _, _ = served
    token = token_for(served, "erin")
    with Client(url, token=token) as api:
        accepted = api.submit(REQUEST, project_id="erin-todo")
        execution_id = accepted.execution_id
        # A connection dropped after two events, then resumed from the last id it received.
        first = read_stream(url, token, execution_id, None, stop_after=2)
        rest = read_stream(url, token, execution_id, first[-1], stop_after=None)
        # The typed client's iterator, from the start: every event once, in order, ending at the outcome.
        events = list(api.events(execution_id, timeout=300))
        view = api.execution(execution_id)
    ids = [e["id"] for e in events]
    assert ids == list(range(1, len(ids) + 1))
    assert first + rest == ids  # no gap, no duplicate across the reconnect
    types = [e["type"] for e in events]
    assert types[0] == "ExecutionAccepted" and types[-1] == "RequestCompleted"
    assert types.count("TaskCompleted") == len(view.tasks) > 0
    assert all(e["data"]["executionId"] == execution_id for e in events)
    assert view.status.value == "SUCCEEDED"


def test_run_against_serve_follows_by_stream(served: tuple[str, Path, dict[str, str]]) -> None:
    url, _, _ = served
    with RemoteApi(Client(url, token=token_for(served, "frank"))) as remote:
        status, body = remote.api("POST", "/v1/requests", {"request": REQUEST, "project_id": "frank-todo"})
        assert status == 202
        views = list(remote.follow(body["execution_id"], timeout=300))
        assert remote.stream_fallbacks == 0
    assert views[-1]["status"] == "SUCCEEDED"
    assert (
        len({(v["status"], v["progress"]) for v in views}) >= 2
    )  # progress as it happened, not only the end


def test_the_stream_is_authenticated_and_membership_checked_as_every_route(
    served: tuple[str, Path, dict[str, str]],
) -> None:
    url, _, _ = served
    with Client(url, token=token_for(served, "grace")) as owner:
        execution_id = owner.submit(REQUEST, project_id="grace-todo").execution_id
    accept = {"Accept": "text/event-stream"}
    anonymous = httpx.get(f"{url}/v1/executions/{execution_id}/events", headers=accept, timeout=30)
    assert anonymous.status_code == 401
    with Client(url, token=token_for(served, "mallory")) as outsider, pytest.raises(ApiError) as raised:
        list(outsider.events(execution_id, timeout=30))
    assert raised.value.status == 404 and raised.value.field == "execution_id"
    bad = httpx.get(
        f"{url}/v1/executions/{execution_id}/events",
        headers={**accept, "Last-Event-ID": "x1"},
        timeout=30,
    )
    assert bad.status_code == 400 and bad.json()["field"] == "Last-Event-ID"
    with Client(url, token=token_for(served, "grace")) as owner:  # the server stops with nothing running
        assert owner.wait(execution_id, poll_seconds=0.5, timeout=300).status.value == "SUCCEEDED"


# ------------------------------------------------------------------------- the client's reconnects
def sse(*events: tuple[int, str], cut: bool = False) -> bytes:
    text = "retry: 1000\n\n" + "".join(
        f"id: {i}\nevent: {t}\ndata: {json.dumps({'id': i, 'type': t, 'data': {}})}\n\n" for i, t in events
    )
    return (text + ('id: 99\nevent: TaskCompleted\ndata: {"id"' if cut else "")).encode()


def test_the_iterator_reconnects_from_the_last_id_after_a_dropped_stream() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        stream = {"Content-Type": "text/event-stream"}
        if len(seen) == 1:  # two events, then the connection drops inside a third
            return httpx.Response(
                200, headers=stream, content=sse((1, "ExecutionAccepted"), (2, "TaskCompleted"), cut=True)
            )
        if len(seen) == 2:  # the server resent 2 (a proxy replayed it): skipped, not repeated
            return httpx.Response(
                200, headers=stream, content=sse((2, "TaskCompleted"), (3, "TaskCompleted"))
            )
        return httpx.Response(200, headers=stream, content=sse((4, "RequestCompleted"), (5, "TaskCompleted")))

    sleeps: list[float] = []
    api = Client("http://127.0.0.1:9", token="t", transport=httpx.MockTransport(answer), sleep=sleeps.append)
    events = list(api.events("e1"))
    assert [e["id"] for e in events] == [1, 2, 3, 4]  # ends at the terminal event
    assert [r.headers["Last-Event-ID"] for r in seen] == ["0", "2", "3"]
    assert seen[1].url.params["after"] == "2"


def test_against_an_api_that_does_not_stream_the_iterator_reads_pages_and_follow_falls_back() -> None:
    pages = [
        {"events": [{"id": 1, "type": "ExecutionAccepted", "data": {}}], "last_id": 1, "terminal": False},
        {"events": [{"id": 2, "type": "RequestFailed", "data": {}}], "last_id": 2, "terminal": True},
    ]

    def paged(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages.pop(0))

    api = Client("http://127.0.0.1:9", token="t", transport=httpx.MockTransport(paged), sleep=lambda _: None)
    assert [e["id"] for e in api.events("e1")] == [1, 2]

    view: dict[str, Any] = {
        "execution_id": "e1",
        "status": "FAILED",
        "request": "x",
        "project_id": "p",
        "created_at": "2026-01-01T00:00:00+00:00",
        "updated_at": "2026-01-01T00:00:00+00:00",
        "progress": 1.0,
        "levels": [],
        "tasks": {},
        "results": [],
        "usage": {},
    }

    def no_stream(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):  # an API deployed before the route existed
            return httpx.Response(403, json={"message": "Missing Authentication Token"})
        return httpx.Response(200, json=view)

    remote = RemoteApi(
        Client(
            "http://127.0.0.1:9", token="t", transport=httpx.MockTransport(no_stream), sleep=lambda _: None
        )
    )
    views = list(remote.follow("e1", timeout=5))
    assert remote.stream_fallbacks == 1 and views[-1]["status"] == "FAILED"
