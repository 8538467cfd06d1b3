"""The typed client (tdev_cli.client) and `tdev login` / `tdev run --profile`: its retry rules, errors,
signing and pagination against a scripted transport, its route list against the API's OpenAPI document,
and a whole request end to end against `tdev serve`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tdev.security.signing import string_to_sign
from tdev_cli.client import ROUTES, ApiError, Client
from tests.e2e.serving import TDEV, serve_env, serving

pytestmark = pytest.mark.slow


class Script:
    """An httpx transport answering from a list of (status, body, headers); records every request."""

    def __init__(self, *answers: tuple[int, Any, dict[str, str]]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body, headers = self.answers.pop(0)
        return httpx.Response(status, json=body, headers=headers)


def client(script: Script, sleeps: list[float], **options: Any) -> Client:
    return Client(
        "http://127.0.0.1:9/prod",
        token="t0k",
        transport=httpx.MockTransport(script),
        sleep=sleeps.append,
        **options,
    )


ACCEPTED = {"execution_id": "e1", "status": "PENDING", "status_url": "/v1/executions/e1"}


def test_a_submission_is_retried_with_the_same_idempotency_key_honouring_retry_after() -> None:
    script = Script(
        (503, {"error": "unavailable", "message": "try later"}, {"Retry-After": "3"}), (202, ACCEPTED, {})
    )
    sleeps: list[float] = []
    accepted = client(script, sleeps).submit("build a thing", project_id="p1")
    assert accepted.execution_id == "e1"
    assert sleeps == [3.0]
    keys = {r.headers["Idempotency-Key"] for r in script.requests}
    assert len(script.requests) == 2 and len(keys) == 1
    assert json.loads(script.requests[0].content) == {"request": "build a thing", "project_id": "p1"}
    assert script.requests[0].url.path == "/prod/v1/requests"
    assert script.requests[0].headers["Authorization"] == "Bearer t0k"


def test_a_plain_post_is_retried_on_429_only_and_errors_carry_the_apis_body() -> None:
    sleeps: list[float] = []
    script = Script(
        (429, {"error": "rate_limited", "message": "slow down"}, {"Retry-After": "1"}), (200, {}, {})
    )
    client(script, sleeps).send_message("s1", role="user", content="hi")
    assert len(script.requests) == 2 and sleeps == [1.0]

    script = Script((500, {"error": "internal", "message": "boom"}, {"x-amzn-RequestId": "req-1"}))
    with pytest.raises(ApiError) as raised:
        client(script, sleeps).send_message("s1", role="user", content="hi")
    assert len(script.requests) == 1  # not repeated: the message may have been stored
    assert (raised.value.status, raised.value.error, raised.value.request_id) == (500, "internal", "req-1")

    body = {"error": "validation_error", "message": "bad id", "field": "execution_id"}
    script = Script((404, body, {}))
    with pytest.raises(ApiError) as raised:
        client(script, sleeps).execution("nope")
    assert (raised.value.status, raised.value.field, raised.value.body) == (404, "execution_id", body)


def test_reads_give_up_after_max_retries_with_growing_backoff() -> None:
    sleeps: list[float] = []
    script = Script(*[(502, {"error": "bad_gateway", "message": ""}, {})] * 4)
    with pytest.raises(ApiError):
        client(script, sleeps, max_retries=3, backoff_seconds=1.0).health()
    assert len(script.requests) == 4 and len(sleeps) == 3
    assert all(0.5 * 2**n <= s <= 2**n for n, s in enumerate(sleeps))


def test_path_parameters_cannot_add_segments_and_pages_follow_the_cursor() -> None:
    sleeps: list[float] = []
    script = Script(
        (200, {"entries": [1, 2], "next": "2026-11-29T10:00:00+00:00#0123abcd"}, {}),
        (200, {"entries": [3], "next": None}, {}),
    )
    api = client(script, sleeps)
    assert list(api.audit_entries("alice/../admin", page_size=2)) == [1, 2, 3]
    first, second = script.requests
    assert first.url.raw_path.startswith(b"/prod/v1/audit/alice%2F..%2Fadmin?")
    assert second.url.params["before"] == "2026-11-29T10:00:00+00:00#0123abcd"


def test_an_api_key_that_requires_signing_is_signed_over_the_route_not_the_stage() -> None:
    import hashlib
    import hmac

    script = Script((202, ACCEPTED, {}))
    api = Client(
        "http://127.0.0.1:9/prod",
        api_key="k3y",
        signing_secret="s3cret",
        transport=httpx.MockTransport(script),
    )
    api.submit("x")
    [request] = script.requests
    headers = request.headers
    expected = hmac.new(
        b"s3cret",
        string_to_sign(
            "POST", "/v1/requests", headers["X-Tdev-Timestamp"], headers["X-Tdev-Nonce"], request.content
        ),
        hashlib.sha256,
    ).hexdigest()
    assert headers["X-Api-Key"] == "k3y" and headers["X-Tdev-Signature"] == expected


def test_credentials_never_go_over_plain_http_to_another_host() -> None:
    with pytest.raises(ValueError, match="https"):
        Client("http://api.example.com/prod", token="t")
    with pytest.raises(ValueError, match="http"):
        Client("ftp://127.0.0.1/x")


def test_the_client_calls_every_route_the_api_document_lists() -> None:
    os.environ.setdefault("TABLE_NAME", "unused-for-the-schema")
    from functions.api.handler import app

    document = json.loads(app.get_openapi_json_schema(title="t", version="0"))
    listed = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    assert listed == set(ROUTES), {
        "missing from the client": listed - ROUTES,
        "not in the API": ROUTES - listed,
    }


# ------------------------------------------------------------------------------ against tdev serve
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, dict[str, str]]]:
    cwd = tmp_path_factory.mktemp("client")
    env = serve_env(XDG_CONFIG_HOME=str(cwd / "config"))
    with serving(cwd, env) as url:
        yield url, cwd, env


def _tdev(
    cwd: Path, env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TDEV, *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_login_then_run_against_tdev_serve(served: tuple[str, Path, dict[str, str]]) -> None:
    url, cwd, env = served
    token = _tdev(cwd, env, "token", "--user", "carol", "--role", "developer").stdout.strip()
    refused = _tdev(cwd, env, "login", "--api", url, "--token-stdin", stdin="not-a-jwt\n")
    assert refused.returncode == 1 and "refused the credentials: 401" in refused.stderr
    login = _tdev(cwd, env, "login", "--api", url, "--token-stdin", "--profile", "local", stdin=token + "\n")
    assert login.returncode == 0, login.stderr
    assert f"logged in to {url}" in login.stdout and "profile 'local'" in login.stdout
    stored = cwd / "config" / "tdev" / "credentials.json"
    assert (
        stat.S_IMODE(stored.stat().st_mode) == 0o600 and stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    )
    assert json.loads(stored.read_text())["local"] == {"api": url, "token": token}

    run = _tdev(
        cwd, env, "run", "Design and implement a REST API for todo items", "--profile", "local", "--json"
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    view = json.loads(run.stdout)
    assert view["status"] == "SUCCEEDED" and view["results"]

    unknown = _tdev(cwd, env, "run", "x", "--profile", "nobody")
    assert unknown.returncode == 2 and "no profile 'nobody'" in unknown.stdout


def test_the_client_follows_a_request_on_tdev_serve(served: tuple[str, Path, dict[str, str]]) -> None:
    url, cwd, env = served
    token = _tdev(cwd, env, "token", "--user", "dave", "--role", "developer").stdout.strip()
    with Client(url, token=token) as api:
        assert api.health()["status"] == "ok"
        assert {a.name for a in api.agents()}
        accepted = api.submit("Design and implement a REST API for todo items", project_id="dave-todo")
        views = list(api.follow(accepted.execution_id, poll_seconds=0.2, timeout=300))
        assert views[-1].status.value == "SUCCEEDED"
        assert len({(v.status, v.progress) for v in views}) >= 2  # it saw progress, not just the end
        assert api.artifacts(accepted.execution_id)
        history = api.history(accepted.execution_id)  # the outbox's facts replay to the same state
        assert history["complete"] and history["events"][0]["type"] == "ExecutionAccepted"
        assert history["events"][-1]["type"] == "RequestCompleted"
        assert history["replayed"] == {
            "status": "SUCCEEDED",
            "tasks": {task_id: state.status.value for task_id, state in views[-1].tasks.items()},
        }
        with pytest.raises(ApiError) as raised:
            api.execution("00000000-0000-4000-8000-000000000000")
        assert raised.value.status == 404 and raised.value.field == "execution_id"
