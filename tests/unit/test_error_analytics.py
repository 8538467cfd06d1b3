"""Error analytics (tdev.incidents): signatures stable across ids, grouping, new and spike announcements
through the outbox, resolve -> MTTR, regression reopens, and one redactor for logs and stored errors."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tdev.incidents import analytics, recorder
from tdev.incidents.signature import Fingerprint, normalise
from tdev.redaction import REDACTED, redact
from tests.conftest import moto_table

T0 = 1_800_000_000.0  # a fixed instant on a window boundary (epoch seconds)


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with moto_table(monkeypatch, "tdev-errors") as name:
        yield name


def outbox(table: str) -> list[dict[str, Any]]:
    items = boto3.resource("dynamodb").Table(table).scan()["Items"]
    return sorted(
        (
            {"detail_type": i["detail_type"], "source": i["source"], "detail": json.loads(i["detail"])}
            for i in items
            if i.get("entity") == "OUTBOX"
        ),
        key=lambda e: (e["detail_type"], e["detail"]["count"]),
    )


def _lookup(execution_id: str) -> None:
    raise KeyError(f"execution {execution_id} not found in partition 'p-{execution_id[:4]}'")


def caught(function: Any, *args: Any) -> BaseException:
    try:
        function(*args)
    except BaseException as exc:
        return exc
    raise AssertionError("did not raise")


# ------------------------------------------------------------------------------------- signatures
def test_the_same_bug_with_different_ids_has_one_signature() -> None:
    one = Fingerprint.of_exception(caught(_lookup, "exec-1a2b3c4d"))
    two = Fingerprint.of_exception(caught(_lookup, "exec-99ff00aa77"))
    assert one.signature == two.signature
    assert one.message == "<str>"  # KeyError's message is the repr of its argument: one quoted value
    assert one.sample != two.sample  # the samples keep the real (redacted) text


def test_a_different_frame_or_type_is_a_different_signature() -> None:
    here = Fingerprint.of("KeyError", "x 1", [("/opt/python/tdev/data/executions.py", "get")])
    there = Fingerprint.of("KeyError", "x 2", [("/opt/python/tdev/data/agents.py", "get")])
    other_type = Fingerprint.of("ValueError", "x 3", [("/opt/python/tdev/data/executions.py", "get")])
    same = Fingerprint.of(
        "KeyError",
        "x 99",
        [("/var/lib/site-packages/boto3/x.py", "call"), ("/opt/python/tdev/data/executions.py", "get")],
    )
    assert len({here.signature, there.signature, other_type.signature}) == 3
    assert here.frame == "tdev/data/executions.py:get"
    # a library frame after ours (innermost) does not change where the error arose in our code
    assert (
        Fingerprint.of(
            "KeyError",
            "x 5",
            [("/opt/python/tdev/data/executions.py", "get"), ("/x/site-packages/boto3/c.py", "f")],
        ).signature
        == here.signature
    )
    assert same.signature == here.signature


def test_messages_normalise_ids_numbers_uuids_hex_quoted_values_and_paths() -> None:
    a = normalise(
        "task t-17 of exec-1a2b failed after 3 tries: 'bob' at /var/task/x/y.py "
        "id 550e8400-e29b-41d4-a716-446655440000 addr 0x7ffe12 hash deadbeefcafe1234"
    )
    b = normalise(
        "task t-23 of exec-ffeedd failed after 12 tries: 'alice' at /tmp/other/z.py "
        "id 123e4567-e89b-12d3-a456-426614174000 addr 0x1 hash 0123456789abcdef"
    )
    assert a == b
    assert "<uuid>" in a and "<path>" in a and "<str>" in a and "<hex>" in a and "<n>" in a and "<id>" in a


def test_the_frame_comes_from_a_lambda_cause_as_from_a_live_traceback() -> None:
    exc = caught(_lookup, "exec-1")
    import traceback

    cause = {
        "errorType": "KeyError",
        "errorMessage": str(exc),
        "stackTrace": traceback.format_list(traceback.extract_tb(exc.__traceback__)),
    }
    from_failure = Fingerprint.of_failure({"Error": "KeyError", "Cause": json.dumps(cause)})
    assert from_failure.signature == Fingerprint.of_exception(exc).signature
    # a platform error without a stack is grouped by its name and message
    timeout = Fingerprint.of_failure(
        {"Error": "States.Timeout", "Cause": "Task timed out after 900.07 seconds"}
    )
    assert timeout.type == "States.Timeout" and timeout.message == "Task timed out after <n> seconds"


# ------------------------------------------------------------------------------------- redaction
SECRETS = {
    "jwt": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "bearer": "Bearer abcdef0123456789abcdef",
    "password": "hunter2-very-secret",
}


def test_secrets_are_redacted_at_any_depth() -> None:
    nested = {
        "request": {
            "headers": [{"Authorization": SECRETS["bearer"]}, {"x-api-key": "k-123456"}],
            "body": {"db": {"password": SECRETS["password"], "max_tokens": 100}},
            "note": f"called with token {SECRETS['jwt']} and key {SECRETS['aws']}",
            "dsn": "postgres://app:pa55word@db.internal/prod",
            "form": "user=bob&password=hunter2-very-secret&next=/home",
        },
        "tuple": ("api_key=sk-abcdefghijklmnopqrstuvwx", {"secret": {"deep": "x"}}),
        "api_key_id": "a1b2c3d4",
        "input_tokens": 42,
    }
    text = json.dumps(redact(nested))
    for secret in (
        *SECRETS.values(),
        "k-123456",
        "pa55word",
        "sk-abcdefghijklmnopqrstuvwx",
        "abcdef0123456789",
    ):
        assert secret not in text, secret
    out = redact(nested)
    assert out["request"]["body"]["db"] == {"password": REDACTED, "max_tokens": 100}  # counts stay
    assert out["api_key_id"] == "a1b2c3d4" and out["input_tokens"] == 42  # identifiers and counts stay
    assert out["tuple"][1] == {"secret": REDACTED}
    assert "user=bob" in out["request"]["form"] and "next=/home" in out["request"]["form"]


def test_the_logger_redacts_with_the_same_redactor() -> None:
    from tdev.observability import logger

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    try:
        logger.info(f"login with {SECRETS['bearer']}", extra={"config": {"password": SECRETS["password"]}})
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert SECRETS["password"] not in line and "abcdef0123456789abcdef" not in line
    assert json.loads(line.strip().splitlines()[-1])["config"] == {"password": REDACTED}


# ------------------------------------------------------------------------------ grouping and events
def _boom(fingerprint_message: str) -> Fingerprint:
    return Fingerprint.of(
        "RuntimeError", fingerprint_message, [("/opt/python/tdev/agents/chain.py", "run_chain")]
    )


def test_occurrences_group_by_signature_and_a_new_signature_is_announced_once(table: str) -> None:
    first = recorder.record(_boom("model call 1 failed for exec-aa11"), source="test", now=T0)
    second = recorder.record(_boom("model call 2 failed for exec-bb22"), source="test", now=T0 + 10)
    other = recorder.record(
        Fingerprint.of("ValueError", "bad", [("/opt/python/tdev/x.py", "f")]), source="test", now=T0 + 20
    )
    assert first is not None and second is not None and other is not None
    assert first.signature == second.signature != other.signature
    assert (first.new, second.new, second.count) == (True, False, 2)
    events = outbox(table)
    assert [e["detail_type"] for e in events] == ["ErrorSignatureNew", "ErrorSignatureNew"]
    detail = next(e["detail"] for e in events if e["detail"]["signature"] == first.signature)
    assert events[0]["source"] == "t-developer.errors"
    assert {
        "signature",
        "type",
        "message",
        "count",
        "window_seconds",
        "first_seen",
        "last_seen",
        "severity",
    } <= set(detail)
    assert detail["severity"] == "medium" and detail["type"] == "RuntimeError"
    group = analytics.show_error(first.signature)
    assert group["count"] == 2 and group["status"] == "open"
    assert group["sample"] == "model call 2 failed for exec-bb22"  # the latest, redacted
    listed = analytics.list_errors()["errors"]
    assert [g["signature"] for g in listed] == [other.signature, first.signature]  # by last_seen


def test_a_burst_over_the_baseline_is_one_spike_event(table: str) -> None:
    # A trickle: one an hour for 6 hours (baseline ~0.08 per window), then a burst of 12 in one window.
    for hour in range(6):
        recorder.record(_boom("flaky"), source="test", now=T0 + hour * 3600)
    burst_start = T0 + 6 * 3600
    results = [recorder.record(_boom("flaky"), source="test", now=burst_start + i) for i in range(12)]
    spikes = [r for r in results if r is not None and r.spike]
    assert len(spikes) == 1 and spikes[0].window_count == recorder.SPIKE_FLOOR
    events = [e for e in outbox(table) if e["detail_type"] == "ErrorSpikeDetected"]
    assert len(events) == 1
    assert events[0]["detail"]["severity"] == "high" and events[0]["detail"]["count"] == recorder.SPIKE_FLOOR
    shown = analytics.show_error(spikes[0].signature)
    assert shown["last_spike"]["count"] == recorder.SPIKE_FLOOR
    assert sum(b["count"] for b in shown["counts"]) >= 12


def test_a_steady_rate_is_no_spike(table: str) -> None:
    # The floor's worth per window for 20 minutes: each window reaches the floor but not 3x its baseline.
    results = [
        recorder.record(_boom("steady"), source="test", now=T0 + w * 300 + i)
        for w in range(4)
        for i in range(recorder.SPIKE_FLOOR)
    ]
    spiking_windows = {r.window_count for r in results if r is not None and r.spike}
    assert spiking_windows == {recorder.SPIKE_FLOOR}  # only the very first window (no baseline yet)
    assert len([e for e in outbox(table) if e["detail_type"] == "ErrorSpikeDetected"]) == 1


def test_resolve_gives_the_mttr_and_a_recurrence_reopens(table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    first = recorder.record(_boom("disk full"), source="test", now=T0)
    assert first is not None
    monkeypatch.setattr(analytics.time, "time", lambda: T0 + 1800)
    resolved = analytics.resolve_error(first.signature, by="ops-alice", reason="freed space")
    assert resolved["status"] == "resolved" and resolved["mttr_seconds"] == 1800
    assert resolved["resolved_by"] == "ops-alice"
    from tdev.errors import ConflictError, NotFoundError

    with pytest.raises(ConflictError):
        analytics.resolve_error(first.signature, by="ops-bob", reason="again")
    with pytest.raises(NotFoundError):
        analytics.resolve_error("0123456789abcdef", by="ops-bob", reason="none")
    again = recorder.record(_boom("disk full"), source="test", now=T0 + 7200)
    assert again is not None and again.regression and again.new
    shown = analytics.show_error(first.signature)
    assert shown["status"] == "open" and shown["regressions"] == 1
    assert shown["episode_started_at"] != shown["first_seen"]
    assert shown["resolutions"][0]["resolved_by"] == "ops-alice"
    assert shown["resolutions"][0]["mttr_seconds"] == 1800
    news = [e for e in outbox(table) if e["detail_type"] == "ErrorSignatureNew"]
    assert [e["detail"]["regression"] for e in news] == [False, True]
    assert [g["signature"] for g in analytics.list_errors(status="resolved")["errors"]] == []
    assert [g["signature"] for g in analytics.list_errors(status="open")["errors"]] == [first.signature]


def test_a_failure_to_record_never_reaches_the_caller(table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The table is not there (ResourceNotFoundException): the recorder logs and answers None.
    monkeypatch.setenv("TABLE_NAME", "no-such-table")
    from tdev import container

    container.reset()
    try:
        assert recorder.record_exception(RuntimeError("x"), source="test") is None
    finally:
        container.reset()


def test_the_task_failure_recorder_leaves_what_run_agent_recorded(table: str) -> None:
    import traceback

    def lambda_handler() -> None:
        raise RuntimeError("agent crashed on exec-1")

    exc = caught(lambda_handler)
    through_handler = {
        "Error": "RuntimeError",
        "Cause": json.dumps(
            {
                "errorType": "RuntimeError",
                "errorMessage": str(exc),
                "stackTrace": traceback.format_list(traceback.extract_tb(exc.__traceback__)),
            }
        ),
    }
    assert recorder.record_task_failure(through_handler) is None  # run_agent's decorator recorded it
    timeout = recorder.record_task_failure({"Error": "States.Timeout", "Cause": "timed out"})
    assert timeout is not None and timeout.new
