"""A generated-input fuzz of the whole API: schemathesis reads the OpenAPI document the API generates
(`tdev openapi` prints the same one) and generates, with a fixed seed, calls that fit it and calls that do
not, for every route; each goes through API Gateway's steps (authorizer → API function) on the local
runtime as an admin, so bodies reach the deepest validation. No answer may be a 5xx.

Accepted requests start a one-state stand-in workflow: this test is about the API's edge, and a thousand
real workflows would measure the planner instead (the workflow has its own suites).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.core import NotSet  # noqa: E402
from schemathesis.generation.modes import GenerationMode  # noqa: E402

from tdev.version import __version__  # noqa: E402

pytestmark = pytest.mark.slow

SEED = 20261129
EXAMPLES_PER_MODE = 18  # per route and kind (valid, invalid, hostile): 22 routes x 3 x 18 = 1,188 at most

# Hostile bytes no schema describes, on every route: bodies that are not JSON, too deep, huge numbers,
# odd media types, long and non-ASCII header values, junk query strings.
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
HOSTILE = st.fixed_dictionaries(
    {
        "body": st.one_of(
            st.none(),
            _JSON.map(json.dumps),
            st.text(max_size=200),
            st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
            st.integers(1, 6000).map(lambda n: "[" * n + "]" * n),
            st.integers(1, 6000).map(lambda n: '{"a":' * n + "1" + "}" * n),
            st.integers(1, 6000).map(lambda n: '{"request": ' + "9" * n + "}"),
        ),
        "content_type": st.sampled_from(
            [
                None,
                "application/json",
                "application/json; charset=utf-8",
                "text/plain",
                "multipart/form-data",
                "multipart/form-data; boundary=x",
                "application/x-www-form-urlencoded",
                "Application/JSON",
                "*/*",
            ]
        ),
        "query": st.dictionaries(st.text(max_size=12), st.text(max_size=24), max_size=3),
        "headers": st.dictionaries(
            st.sampled_from(["X-Correlation-Id", "Idempotency-Key", "X-Tdev-Timestamp", "Origin", "Accept"]),
            st.text(max_size=300),
            max_size=3,
        ),
        "segment": st.text(min_size=1, max_size=60),
    }
)
ADMIN = "fuzz-admin"


@pytest.fixture(scope="module")
def fuzzed(
    redis_server: str, tmp_path_factory: pytest.TempPathFactory, forget_local_auth_failures: Any
) -> Iterator[Any]:
    from tdev.settings import get_settings
    from tdev_cli.runtime import ACCOUNT, REGION, STATE_MACHINE, LocalRuntime

    # The limiters still run, they just never say no; the failed-authentication buckets of 127.0.0.1 are
    # emptied before and after, so the fuzz neither inherits nor leaves spent budget on the shared Redis.
    relaxed = {
        "TDEV_RATE_LIMIT_STRICT": "1000000/900",
        "TDEV_AUTH_FAILURE_LIMIT_SOURCE": "1000000/600",
        "TDEV_AUTH_FAILURE_LIMIT_KEY": "1000000/600",
        # A rerun meets the sessions its first attempt opened: the per-user cap, at its most, must not stop it
        "TDEV_MAX_SESSIONS_PER_USER": "1000",
        "TDEV_MAX_SESSIONS_GLOBAL": "100000",
    }
    saved = {name: os.environ.get(name) for name in relaxed}
    os.environ.update(relaxed)
    get_settings.cache_clear()
    forget_local_auth_failures(redis_server)
    try:
        with LocalRuntime(
            redis_url=redis_server, keys_dir=tmp_path_factory.mktemp("keys"), rate_limit_default="1000000/900"
        ) as rt:
            import boto3

            boto3.client("stepfunctions", region_name=REGION).update_state_machine(
                stateMachineArn=f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{STATE_MACHINE}",
                definition=json.dumps(
                    {"StartAt": "Accepted", "States": {"Accepted": {"Type": "Pass", "End": True}}}
                ),
            )
            yield rt
    finally:
        forget_local_auth_failures(redis_server)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()


def _send(rt: Any, token: str, case: Any) -> dict[str, Any]:
    path = case.formatted_path
    if case.query:
        path = f"{path}?{urlencode(case.query, doseq=True)}"
    headers = {str(k): str(v) for k, v in (case.headers or {}).items()}
    headers["Authorization"] = f"Bearer {token}"
    body: str | None = None
    if not isinstance(case.body, NotSet):
        if isinstance(case.body, bytes):
            body = case.body.decode("utf-8", "replace")
        elif isinstance(case.body, str) and case.media_type != "application/json":
            body = case.body
        else:
            body = json.dumps(case.body)
        headers.setdefault("Content-Type", case.media_type or "application/json")
    return rt.http(case.method.upper(), path, headers, body)


def _fuzz(strategy: Any, check: Any) -> None:
    """`check` on up to EXAMPLES_PER_MODE cases drawn from `strategy`, reproducibly (fixed seed, no database).
    A route with nothing to get wrong (no parameter, no body) has no invalid case: that is not a failure."""

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        database=None,
        deadline=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        check(case)

    try:
        run()
    except Unsatisfiable:
        return


def test_generated_calls_on_every_route_never_answer_5xx(fuzzed: Any) -> None:
    from functions.api.handler import app

    document = json.loads(app.get_openapi_json_schema(title="T-Developer Core API", version=__version__))
    operations = [result.ok() for result in schemathesis.openapi.from_dict(document).get_all_operations()]
    token = fuzzed.token(ADMIN, ("admin",), ttl_seconds=3600)
    # Real ids for the routes that read one, so generated calls also reach sessions and executions that exist.
    status, session = fuzzed.api("POST", "/v1/sessions", {}, headers={"Authorization": f"Bearer {token}"})
    assert status == 201, f"the fuzz could not open its session: {status} {session}"
    execution_id = fuzzed.submit("Design and implement a REST API for todo items")
    known = {"session_id": session["session_id"], "execution_id": execution_id}

    calls: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    server_errors: list[str] = []

    def _count(route: str, sent: str, response: dict[str, Any]) -> None:
        status = int(response["statusCode"])
        calls[route] += 1
        statuses[status] += 1
        if status >= 500:
            server_errors.append(f"{status} {sent[:200]}: {response['body'][:200]}")

    def _check(route: str, case: Any) -> None:
        _count(route, f"{case.method} {case.formatted_path}", _send(fuzzed, token, case))

    def _check_hostile(route: str, hostile: dict[str, Any]) -> None:
        method, path = route.split(" ", 1)
        for name in re.findall(r"{(\w+)}", path):
            path = path.replace(f"{{{name}}}", known.get(name) or quote(hostile["segment"], safe=""))
        if hostile["query"]:
            path = f"{path}?{urlencode(hostile['query'])}"
        headers = {k: v.encode("utf-8", "replace").decode("latin-1") for k, v in hostile["headers"].items()}
        headers["Authorization"] = f"Bearer {token}"
        if hostile["content_type"] is not None:
            headers["Content-Type"] = hostile["content_type"]
        response = fuzzed.http(method, path, headers, hostile["body"])
        _count(route, f"{method} {path}", response)

    started = time.monotonic()
    for operation in operations:
        route = f"{operation.method.upper()} {operation.path}"
        ids = {p.name: known[p.name] for p in operation.path_parameters if p.name in known}
        strategies = [operation.as_strategy(generation_mode=mode) for mode in GenerationMode]
        if ids:  # half of the valid calls on an id that exists
            strategies[0] = (
                operation.as_strategy(GenerationMode.POSITIVE, path_parameters=ids) | strategies[0]
            )
        for strategy in strategies:
            _fuzz(strategy, lambda case, route=route: _check(route, case))
        _fuzz(HOSTILE, lambda hostile, route=route: _check_hostile(route, hostile))
    elapsed = time.monotonic() - started
    total = sum(calls.values())
    print(
        f"\nfuzz: {total} calls over {len(calls)} routes, seed {SEED}, {len(server_errors)} 5xx, "
        f"{elapsed:.1f} s; statuses {dict(sorted(statuses.items()))}"
    )
    assert not server_errors, "\n".join(server_errors[:20])
    assert {f"{op.method.upper()} {op.path}" for op in operations} == set(calls)
    assert total >= 1000
