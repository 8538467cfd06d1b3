"""`/v1/errors` on a running local backend: admins only, validated (400 naming the field), the sample events
served, and end to end: a burst of errors through real failure paths (the API's unexpected-error handler,
the workflow's task failure recorder) is one grouped signature whose spike shows in `GET /v1/errors`, whose
ErrorSpikeDetected event reaches the bus, and whose MTTR shows after `POST .../resolve`."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.conftest import load_event

ADMIN = f"errors-admin-{uuid.uuid4().hex[:8]}"
SAMPLE_SIGNATURE = "5e3a9c0d1b2f4a67"  # the sample events' signature


@pytest.fixture(scope="module")
def backend(redis_server: str) -> Iterator[Any]:
    from tdev_cli.runtime import LocalRuntime

    with LocalRuntime(redis_url=redis_server) as runtime:
        yield runtime


@pytest.fixture
def rt(backend: Any) -> Any:
    return backend.as_principal(ADMIN, ("admin",))


def _error_events_queue() -> str:
    """A queue behind a rule for the error analytics' events (the contract the alerting consumes)."""
    from tdev_cli.runtime import EVENT_BUS

    sqs, events = boto3.client("sqs"), boto3.client("events")
    url = sqs.create_queue(QueueName=f"errors-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = f"errors-{uuid.uuid4().hex[:6]}"
    events.put_rule(
        Name=rule, EventBusName=EVENT_BUS, EventPattern=json.dumps({"source": ["t-developer.errors"]})
    )
    events.put_targets(Rule=rule, EventBusName=EVENT_BUS, Targets=[{"Id": "capture", "Arn": arn}])
    return url


def _received(url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    out: list[dict[str, Any]] = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return out


def test_each_sample_event_is_served(rt: Any) -> None:
    from tdev import container

    container.errors().occur(
        signature=SAMPLE_SIGNATURE,
        error_type="KeyError",
        message="<str>",
        frame="tdev/data/executions.py:get",
        sample="'p-1a2b'",
        source="sample",
        now=time.time(),
        window_seconds=300,
    )
    for name in ("api_list_errors", "api_get_error", "api_resolve_error"):
        response = rt.invoke("api", load_event(name))
        assert response["statusCode"] == 200, (name, response["body"])
        body = json.loads(response["body"])
        if name == "api_list_errors":
            assert SAMPLE_SIGNATURE in [g["signature"] for g in body["errors"]]
        if name == "api_get_error":
            assert body["count"] >= 1 and body["counts"] and body["status"] == "open"
        if name == "api_resolve_error":
            assert body["status"] == "resolved" and body["resolved_by"] == "sample-admin"
            assert body["mttr_seconds"] >= 0


CALLS = [
    ("GET", "/v1/errors", None),
    ("GET", f"/v1/errors/{SAMPLE_SIGNATURE}", None),
    ("POST", f"/v1/errors/{SAMPLE_SIGNATURE}/resolve", {"reason": "not mine to resolve"}),
]


def test_only_admins_read_or_resolve_errors(rt: Any) -> None:
    for roles in (("developer",), ("viewer",)):
        rt.as_principal(f"someone-{roles[0]}", roles)
        for method, path, body in CALLS:
            status, answer = rt.api(method, path, body)
            assert status == 403, (roles, method, path, answer)
    rt.as_principal(ADMIN, ("admin",))


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("GET", "/v1/errors/not-a-signature", None, 400, "signature"),
        ("GET", "/v1/errors?status=sleeping", None, 400, "status"),
        ("GET", "/v1/errors?limit=0", None, 400, "limit"),
        ("GET", "/v1/errors?since=yesterday", None, 400, "since"),
        ("GET", "/v1/errors?cursor=bm90LW91cnM", None, 400, "cursor"),
        ("POST", "/v1/errors/0123456789abcdef/resolve", {"reason": "x"}, 400, "reason"),
        ("POST", "/v1/errors/0123456789abcdef/resolve", {"reason": "ok then", "extra": 1}, 400, "extra"),
        ("POST", "/v1/errors/0123456789abcdef/resolve", {"reason": "nothing here"}, 404, "signature"),
        ("GET", "/v1/errors/0123456789abcdef", None, 404, "signature"),
    ],
)
def test_invalid_calls_are_refused_naming_the_field(
    rt: Any, method: str, path: str, body: Any, status: int, field: str
) -> None:
    answer_status, answer = rt.api(method, path, body)
    assert answer_status == status, answer
    assert answer["field"] == field, answer


def _wait_for_a_fresh_window(seconds_needed: float = 60) -> None:
    """The burst must land in one 5-minute window: start it early in one."""
    from tdev.incidents.recorder import WINDOW_SECONDS

    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < seconds_needed:
        time.sleep(left + 0.5)


def test_a_burst_through_the_api_is_one_spiking_signature_with_mttr_after_resolve(
    rt: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tdev.data.agents import AgentRepository
    from tdev.incidents.recorder import SPIKE_FLOOR

    queue = _error_events_queue()

    def broken_catalog(self: Any) -> Any:  # a real bug: every call fails with its own ids in the message
        raise RuntimeError(
            f"catalog shard {uuid.uuid4().int % 97} unavailable for request {uuid.uuid4()} "
            f"(token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.{uuid.uuid4().hex})"
        )

    _wait_for_a_fresh_window()
    monkeypatch.setattr(AgentRepository, "list", broken_catalog)
    burst = SPIKE_FLOOR + 2
    for _ in range(burst):
        status, body = rt.api("GET", "/v1/agents")
        assert status == 500 and body["error"] == "InternalError"  # the caller sees no trace of the bug
    monkeypatch.undo()
    assert rt.api("GET", "/v1/agents")[0] == 200

    status, page = rt.api("GET", "/v1/errors?status=open")
    assert status == 200
    groups = [g for g in page["errors"] if g["type"] == "RuntimeError" and "catalog shard" in g["message"]]
    assert len(groups) == 1, groups  # one signature for every occurrence, ids and numbers normalised
    group = groups[0]
    assert group["count"] == burst and group["spiking"] is True
    assert group["last_spike"]["count"] == SPIKE_FLOOR
    assert group["message"].startswith("catalog shard <n> unavailable for request <uuid>")
    assert "eyJ" not in json.dumps(group)  # the token in the message never reached the table
    # the innermost frame in the project's code (the test's broken method is not project code)
    assert group["frame"] == "functions/api/handler.py:list_agents"

    rt.drain_messaging()  # outbox -> bus
    received = _received(queue)
    kinds = sorted(e["detail-type"] for e in received if e["detail"]["signature"] == group["signature"])
    assert kinds == ["ErrorSignatureNew", "ErrorSpikeDetected"]
    spike = next(e for e in received if e["detail-type"] == "ErrorSpikeDetected")
    assert spike["source"] == "t-developer.errors" and spike["detail"]["severity"] == "high"
    assert spike["detail"]["count"] == SPIKE_FLOOR and spike["detail"]["window_seconds"] == 300

    status, shown = rt.api("GET", f"/v1/errors/{group['signature']}")
    assert status == 200 and sum(b["count"] for b in shown["counts"]) == burst
    assert shown.get("mttr_seconds") is None

    time.sleep(1.1)
    status, resolved = rt.api(
        "POST", f"/v1/errors/{group['signature']}/resolve", {"reason": "catalog shard map rebuilt"}
    )
    assert status == 200, resolved
    assert resolved["status"] == "resolved" and resolved["mttr_seconds"] >= 1
    status, shown = rt.api("GET", f"/v1/errors/{group['signature']}")
    assert (
        shown["mttr_seconds"] == resolved["mttr_seconds"] and shown["resolutions"][0]["resolved_by"] == ADMIN
    )
    assert rt.api("POST", f"/v1/errors/{group['signature']}/resolve", {"reason": "again"})[0] == 409


def test_a_task_that_fails_for_good_is_recorded_by_the_task_failure_recorder(backend: Any) -> None:
    """An injected crash of run_agent (its handler never ran: the fault hook raises first) reaches the
    workflow's Catch; the task failure recorder records it, grouped with its own signature."""
    backend.as_principal(ADMIN, ("admin",))

    def crash(name: str, event: dict[str, Any]) -> None:
        if name == "run_agent":
            raise MemoryError(f"Runtime exited with error: signal: killed (pid {uuid.uuid4().int % 9999})")

    backend.fault_hook = crash
    try:
        view = backend.run("Build a tiny todo API", timeout=240)
    finally:
        backend.fault_hook = None
    assert view["status"] in ("FAILED", "DEGRADED"), view["status"]
    status, page = backend.api("GET", "/v1/errors")
    assert status == 200
    groups = [g for g in page["errors"] if g["type"] == "MemoryError"]
    assert len(groups) == 1 and groups[0]["last_source"] == "record_task_failure"
    assert groups[0]["message"] == "Runtime exited with error: signal: killed (pid <n>)"


def test_tdev_errors_list_show_resolve_against_a_served_backend(
    backend: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tdev errors` as an operator runs it against `tdev serve` (the same HTTP handler, in process)."""
    import threading
    from http.server import ThreadingHTTPServer

    from tdev import container
    from tdev.settings import get_settings
    from tdev_cli.main import main
    from tdev_cli.serve import make_handler

    signature = "c0ffee00c0ffee00"
    container.errors().occur(
        signature=signature,
        error_type="TimeoutError",
        message="model call timed out after <n> s",
        frame="tdev/llm/fallback.py:call",
        sample="model call timed out after 30 s",
        source="cli-test",
        now=time.time() - 90,
        window_seconds=300,
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(backend, get_settings().max_body_bytes))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    common = ["--url", url, "--keys-dir", str(backend.keys_dir)]
    try:
        assert main(["errors", "list", "--status", "open", *common]) == 0
        listed = capsys.readouterr().out
        assert signature in listed and "TimeoutError: model call timed out after <n> s" in listed
        assert main(["errors", "show", signature, *common]) == 0
        shown = capsys.readouterr().out
        assert "where      tdev/llm/fallback.py:call" in shown and "count      1" in shown
        assert (
            main(["errors", "resolve", signature, "--reason", "raised the timeout", *common, "--json"]) == 0
        )
        out = capsys.readouterr().out.splitlines()  # the functions' own log lines come first, in process
        resolved = json.loads("\n".join(out[len(out) - out[::-1].index("{") - 1 :]))
        assert resolved["status"] == "resolved" and resolved["mttr_seconds"] >= 90
        assert main(["errors", "show", signature, *common]) == 0
        assert f"MTTR {resolved['mttr_seconds']} s" in capsys.readouterr().out
        assert main(["errors", "resolve", signature, *common]) == 1  # already resolved: 409
        assert "409" in capsys.readouterr().err
    finally:
        server.shutdown()
        server.server_close()


def test_a_compensation_that_fails_for_good_is_recorded_by_its_recorder(backend: Any) -> None:
    """The saga's last step records the compensation's own error (after Step Functions' retries)."""
    backend.as_principal(ADMIN, ("admin",))

    def broken_saga(name: str, event: dict[str, Any]) -> None:
        if name == "aggregate_results":
            raise RuntimeError("the aggregation is broken")
        if name == "compensate":
            raise LookupError(f"artifact store refuses withdrawal of art-{uuid.uuid4().hex[:10]}")

    backend.fault_hook = broken_saga
    try:
        view = backend.run("Build a tiny notes API", timeout=240)
    finally:
        backend.fault_hook = None
    assert view["status"] == "FAILED" and view["compensation_error"].startswith("LookupError")
    status, page = backend.api("GET", "/v1/errors")
    assert status == 200
    groups = [g for g in page["errors"] if g["type"] == "LookupError"]
    assert len(groups) == 1 and groups[0]["last_source"] == "record_compensation_failure"
    assert groups[0]["count"] == 1 and groups[0]["message"] == "artifact store refuses withdrawal of <id>"
