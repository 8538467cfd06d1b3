"""`tdev serve` and `tdev token` as a new user runs them: a real HTTP server on 127.0.0.1, tokens from the
local issuer, revocation reaching the running server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.e2e.serving import TDEV, TREE, serve_env, serving

pytestmark = pytest.mark.slow

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
    return subprocess.run(
        [*TDEV, *args],
        cwd=cwd,
        env={**os.environ, **TREE},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    cwd = tmp_path_factory.mktemp("serve")
    with serving(cwd, serve_env(TDEV_RATE_LIMIT_DEFAULT="8/900", TDEV_MAX_BODY_BYTES="4096")) as url:
        yield url, cwd


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


# ----------------------------------------------------------------- the HTTP front under hostile input
SECURITY_HEADERS = ("strict-transport-security", "x-content-type-options", "content-security-policy")


def exchange(url: str, data: bytes) -> list[tuple[int, dict[str, str], Any]]:
    """Send raw bytes on one connection, close our side, and parse every response the server sends back."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=60) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    responses = []
    while received:
        head, separator, rest = received.partition(b"\r\n\r\n")
        assert separator, received[:300]
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", "0"))
        body, received = rest[:length], rest[length:]
        responses.append((int(status_line.split()[1]), headers, json.loads(body) if body else None))
    return responses


def refused(url: str, data: bytes) -> tuple[int, dict[str, str], Any]:
    """The single JSON answer, with the security headers, to a request the server must refuse."""
    responses = exchange(url, data)
    assert len(responses) == 1, responses
    status, headers, body = responses[0]
    assert headers["content-type"] == "application/json" and all(h in headers for h in SECURITY_HEADERS)
    return status, headers, body


@pytest.mark.parametrize("value", ["\u00b2".encode("latin-1"), "\u0661\u0662".encode(), b"12abc", b"-1"])
def test_a_non_ascii_or_non_numeric_content_length_is_400(server: tuple[str, Path], value: bytes) -> None:
    url, _ = server
    request = b"POST /v1/requests HTTP/1.1\r\nHost: x\r\nContent-Length: " + value + b"\r\n\r\n{}"
    status, _, body = refused(url, request)
    assert (status, body["field"]) == (400, "Content-Length")


def test_query_strings_reach_the_handler(server: tuple[str, Path]) -> None:
    url, cwd = server
    viewer = token(cwd, "quentin", "viewer")
    status, body, _ = call(f"{url}/v1/models?provider=bedrock", token=viewer)
    assert status == 200 and [p["name"] for p in body["providers"]] == ["bedrock"]


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /health HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(120)) + b"\r\n", 431),
        (b"GET /health HTTP/1.1\r\nX-Long: " + b"v" * 70_000 + b"\r\n\r\n", 431),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"NOT A REQUEST LINE\r\n\r\n", 400),
        (b"GET /health HTTP/7.0\r\n\r\n", 505),
        (b"GET http://evil.example/health HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"TRACE /health HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"BREW /health HTTP/1.1\r\nHost: x\r\n\r\n", 501),
        (b"POST /v1/requests HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n", 413),
        (b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 401),
    ],
    ids=[
        "431-headers",
        "431-line",
        "414",
        "400",
        "505",
        "400-absolute",
        "405-head",
        "405-trace",
        "501",
        "413",
        "401",
    ],
)
def test_the_servers_own_error_pages_are_json_with_the_security_headers(
    server: tuple[str, Path], request_bytes: bytes, status: int
) -> None:
    url, _ = server
    answered, headers, body = refused(url, request_bytes)
    head = request_bytes.startswith(b"HEAD ")  # an answer to HEAD has headers only
    assert answered == status and (body is None if head else body["error"] and body["message"])
    if status == 405:
        assert "GET" in headers["allow"]


def test_an_unknown_route_is_a_json_404_with_the_security_headers(server: tuple[str, Path]) -> None:
    url, cwd = server
    status, body, headers = call(f"{url}/v1/nowhere", token=token(cwd, "nora", "viewer"))
    assert (status, body["error"]) == (404, "NotFound") and headers["X-Content-Type-Options"] == "nosniff"


def _chunked(body: bytes, sizes: tuple[int, ...]) -> bytes:
    out, start = b"", 0
    for size in sizes:
        out += b"%x\r\n" % size + body[start : start + size] + b"\r\n"
        start += size
    return out + b"0\r\nX-Trailer: ignored\r\n\r\n"


def test_a_chunked_body_is_read_as_one_body_not_as_a_second_request(server: tuple[str, Path]) -> None:
    url, cwd = server
    developer = token(cwd, "chuck", "developer")
    body = REQUEST
    request = (
        b"POST /v1/requests HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {developer}\r\n".encode()
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + _chunked(body, (10, 20, len(body) - 30))
        + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"  # pipelined: must be the second request
    )
    responses = exchange(url, request)
    assert [status for status, _, _ in responses] == [202, 200]
    assert responses[0][2]["status"] == "PENDING" and responses[1][2]["status"] == "ok"


@pytest.mark.parametrize(
    ("framing", "status"),
    [
        (b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 400),  # smuggling shape
        (b"Transfer-Encoding: gzip, chunked\r\n", 501),
        (b"Transfer-Encoding: chunked\r\n", 400),  # the chunk size below is not hex
    ],
)
def test_ambiguous_or_unsupported_framing_is_refused_and_the_connection_closed(
    server: tuple[str, Path], framing: bytes, status: int
) -> None:
    url, _ = server
    request = (
        b"POST /v1/requests HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\nzz\r\nGET /health HTTP/1.1\r\n\r\n"
    )
    answered, headers, body = refused(url, request)  # one answer: nothing after it is read as a request
    assert answered == status and headers["connection"] == "close" and body["field"]
