"""Shared fixtures: the embedded local runtime (moto + our handlers dispatched in process)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "events"

os.environ.setdefault("AGNO_TELEMETRY", "false")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")

# The functions' Powertools logger binds its stream when first imported: import it now, while pytest's
# session-wide capture is in place, not inside a test whose captured stream is closed when it ends.
import tdev.observability  # noqa: E402, F401

# Network: pytest-socket (pyproject's addopts) lets tests connect to 127.0.0.1, ::1 and Unix sockets only;
# tests/unit/test_test_automation.py proves any other address fails.

# Flaky tests: `make test` retries a failure once (pytest-rerunfailures). A test that failed, then passed
# on its retry, is listed at the end of the run and in flaky.txt beside the JUnit XML: retried, not hidden.
_RERUN: set[str] = set()
_PASSED: set[str] = set()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.outcome == "rerun":
        _RERUN.add(report.nodeid)
    elif report.when == "call" and report.passed:
        _PASSED.add(report.nodeid)


def flaky_tests() -> list[str]:
    """Tests that failed and then passed on their retry in this run (the controller's view under xdist)."""
    return sorted(_RERUN & _PASSED)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: the controller reports
        return
    flaky = flaky_tests()
    xmlpath = getattr(config.option, "xmlpath", None)
    if xmlpath:
        report = Path(xmlpath).parent / "flaky.txt"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text("".join(f"{nodeid}\n" for nodeid in flaky))
    if flaky:
        terminalreporter.section("flaky: failed, then passed on the retry", sep="=")
        for nodeid in flaky:
            terminalreporter.line(f"FLAKY {nodeid}")


@pytest.fixture(autouse=True, scope="module")
def _forget_the_container_after_each_module() -> Iterator[None]:
    """Each module starts from a clean container: services cached by one module (a gateway key id, a table
    name) must not reach the next one's moto, whichever worker runs it after which module."""
    yield
    from tdev import container

    container.reset()


@contextmanager
def moto_table(monkeypatch: pytest.MonkeyPatch, table: str, **env: str) -> Iterator[str]:
    """The application's table (its real key schema and indexes) in moto, with the environment a function
    gets (`env` adds to it) and a container that starts and ends empty."""
    import boto3
    from moto import mock_aws

    from tdev import container
    from tdev.data.schema import create_table_kwargs

    fake = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for key, value in {**fake, "TABLE_NAME": table, **env}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        container.reset()
        boto3.client("dynamodb").create_table(**create_table_kwargs(table))
        try:
            yield table
        finally:
            container.reset()


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    """One real Redis per test process (xdist worker), on 127.0.0.1, shaped as deployed: ElastiCache
    Serverless speaks the cluster protocol, so by default a local three-master Redis Cluster (a cross-slot
    script fails with CROSSSLOT here as it does there). TDEV_TEST_REDIS=single for one plain node;
    REDIS_URL (with `?cluster=true` for a cluster) is honoured."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    from tdev_cli.redis_server import LocalRedisCluster, RedisServer

    server = RedisServer() if os.environ.get("TDEV_TEST_REDIS") == "single" else LocalRedisCluster()
    with server:
        yield server.url


@pytest.fixture(scope="session")
def single_redis_server() -> Iterator[str]:
    """A plain one-node redis-server (the local runtime's default), for tests that cover both shapes."""
    from tdev_cli.redis_server import RedisServer

    with RedisServer() as server:
        yield server.url


def _fresh_redis(url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from tdev import cache

    client = cache.connect(url)
    client.flushdb()  # a cluster client sends FLUSHDB to every master
    monkeypatch.setenv("REDIS_URL", url)
    if "TABLE_NAME" not in os.environ:
        monkeypatch.setenv("TABLE_NAME", "tdev-test")
    from tdev.settings import get_settings

    get_settings.cache_clear()
    cache.reset()
    yield url
    cache.reset()
    get_settings.cache_clear()
    client.close()


@pytest.fixture
def redis_url(redis_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The shared Redis, emptied for this test, with REDIS_URL set and the cached client dropped."""
    yield from _fresh_redis(redis_server, monkeypatch)


@pytest.fixture(params=["cluster", "single"])
def any_redis_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`redis_url` once on the test Redis (a cluster by default) and once on a plain single node."""
    name = "redis_server" if request.param == "cluster" else "single_redis_server"
    yield from _fresh_redis(request.getfixturevalue(name), monkeypatch)


@pytest.fixture
def runtime(redis_url: str) -> Iterator[Any]:
    from tdev_cli.runtime import LocalRuntime

    with LocalRuntime(redis_url=redis_url) as rt:
        yield rt


LOCAL_SOURCES = ("127.0.0.1", "::1")  # where every test's calls come from (LocalRuntime.http, tdev serve)


def forget_failed_authentications(url: str) -> None:
    """Empty the failed-authentication buckets of the local source addresses on the shared Redis.

    Every test calls from 127.0.0.1 and the Redis lives for the whole session: without this, the failed
    authentications of one module (the attack suite, the fuzz) would count against the next module's
    (100 in 10 min per source, then 429). One key per bucket, so this is cluster-safe."""
    from tdev import cache

    client = cache.connect(url)
    try:
        for source in LOCAL_SOURCES:
            client.delete(f"tdev:ratelimit:authfail:source:{source}")
    finally:
        client.close()


@pytest.fixture(scope="session")
def forget_local_auth_failures() -> Any:
    """`forget_failed_authentications` for fixtures in other test directories (conftest is not importable)."""
    return forget_failed_authentications


@pytest.fixture(scope="module")
def secured(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A LocalRuntime (authorizer → API function) with the spec's rate limit: 100 per 15 min per principal.

    Module-scoped (the security tests share one); tests use their own principals (`user`)."""
    from tdev_cli.runtime import LocalRuntime

    forget_failed_authentications(redis_server)
    with LocalRuntime(
        redis_url=redis_server, keys_dir=tmp_path_factory.mktemp("keys"), rate_limit_default="100/900"
    ) as rt:
        yield rt
        forget_failed_authentications(redis_server)
        # Accepted requests start workflows; let them end here, or their threads would run on into the next
        # module's emulation (moto's backends are process-wide) and announce events there.
        import time

        import boto3

        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        deadline = time.monotonic() + 180
        while sfn.list_executions(stateMachineArn=rt.state_machine_arn, statusFilter="RUNNING")["executions"]:
            assert time.monotonic() < deadline, "workflows started by the security tests did not finish"
            time.sleep(0.5)


@pytest.fixture
def user() -> str:
    """A fresh principal per test: its own rate-limit bucket and project ownership."""
    import uuid

    return f"user-{uuid.uuid4().hex[:8]}"
