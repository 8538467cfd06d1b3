"""`tdev serve` and `tdev token` as a new user runs them: a real HTTP server on 127.0.0.1, tokens from the
local issuer, revocation reaching the running server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

TDEV = [sys.executable, "-m", "tdev_cli.main"]
REQUEST = json.dumps({"request": "Design and implement a REST API for todo items"}).encode()


def call(
    url: str, method: str = "GET", body: bytes | None = None, token: str | None = None
) -> tuple[int, Any, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers


def tdev(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TDEV, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    cwd = tmp_path_factory.mktemp("serve")
    env = {**os.environ, "TDEV_RATE_LIMIT_DEFAULT": "8/900", "TDEV_MAX_BODY_BYTES": "4096"}
    env.pop("REDIS_URL", None)
    process = subprocess.Popen(
        [*TDEV, "serve", "--port", "0"],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    state = cwd / ".tdev" / "serve.json"
    deadline = time.monotonic() + 90
    while not state.exists():
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "tdev serve did not start"
        time.sleep(0.2)
    url = json.loads(state.read_text())["url"]
    yield url, cwd
    process.terminate()
    assert process.wait(timeout=30) == 0
    assert not state.exists()  # the server removes its state file when it stops


def token(cwd: Path, user: str, role: str, *extra: str) -> str:
    result = tdev(cwd, "token", "--user", user, "--role", role, *extra)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and result.stdout.count(".") == 2  # only the token
    return result.stdout.strip()


def test_the_new_user_story(server: tuple[str, Path]) -> None:
    url, cwd = server
    assert (cwd / ".tdev" / "keys" / "jwks.json").exists()  # keys generated on first use
    status, body, headers = call(f"{url}/health")
    assert (status, body["status"], headers["X-Frame-Options"]) == (200, "ok", "DENY")
    assert call(f"{url}/v1/requests", "POST", REQUEST)[0] == 401
    viewer = token(cwd, "victor", "viewer")
    assert call(f"{url}/v1/requests", "POST", REQUEST, viewer)[0] == 403
    developer = token(cwd, "alice", "developer")
    status, accepted, _ = call(f"{url}/v1/requests", "POST", REQUEST, developer)
    assert status == 202 and accepted["status"] == "PENDING"
    assert call(f"{url}/v1/executions/{accepted['execution_id']}", token=developer)[0] == 200
    header, payload, _signature = developer.split(".")
    assert call(f"{url}/v1/agents", token=f"{header}.{payload}.")[0] == 401  # forged: no signature
    assert call(f"{url}/v1/agents", token="not-a-token")[0] == 401


def test_revocation_reaches_the_running_server(server: tuple[str, Path]) -> None:
    url, cwd = server
    bob = token(cwd, "bob", "viewer")
    assert call(f"{url}/v1/agents", token=bob)[0] == 200
    result = tdev(cwd, "token", "revoke", bob)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["revoked"] is True
    status, body, _ = call(f"{url}/v1/agents", token=bob)
    assert (status, body["error"]) == (401, "Unauthorized")


def test_the_limit_plus_one_request_is_429_with_retry_after(server: tuple[str, Path]) -> None:
    url, cwd = server
    carol = token(cwd, "carol", "viewer")
    statuses = [call(f"{url}/v1/agents", token=carol)[0] for _ in range(8)]
    status, body, headers = call(f"{url}/v1/agents", token=carol)
    assert statuses == [200] * 8 and status == 429 and body["error"] == "RateLimited"
    assert 0 < int(headers["Retry-After"]) <= 900


def test_an_oversized_body_is_413_before_it_is_read(server: tuple[str, Path]) -> None:
    url, cwd = server
    status, body, _ = call(f"{url}/v1/requests", "POST", b"x" * 5000, token(cwd, "dave", "developer"))
    assert (status, body["error"]) == (413, "PayloadTooLarge")


def test_token_command_refuses_bad_input(tmp_path: Path) -> None:
    assert tdev(tmp_path, "token", "--role", "viewer").returncode == 2
    assert tdev(tmp_path, "token", "--user", "a b", "--role", "viewer").returncode == 2
    assert tdev(tmp_path, "token", "--user", "a", "--role", "viewer", "--ttl", "999999").returncode == 2
    result = tdev(tmp_path, "token", "revoke", "abcdefgh12345678")
    assert result.returncode == 2 and "no running server" in result.stderr
    assert tdev(tmp_path, "serve", "--host", "0.0.0.0").returncode == 2
