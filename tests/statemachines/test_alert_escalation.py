"""Alerting end to end on the local runtime: events on the local bus -> the intake (suppression, grouping,
routing) -> the escalation state machine run by moto's interpreter of the real ASL file -> notifications at
the local sink on 127.0.0.1 -> `POST /v1/alerts/{id}/ack` stops it ACKNOWLEDGED. Also: the acknowledged-early
path, a failing channel ending FAILED, every level notified ending EXHAUSTED."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tdev.alerts.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER, forget_secret
from tdev.errors import NotFoundError
from tdev.settings import get_settings

REPO = Path(__file__).resolve().parents[2]
OPERATOR = f"alert-operator-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def backend(redis_server: str) -> Iterator[Any]:
    from tdev_cli.runtime import LocalRuntime

    with LocalRuntime(
        redis_url=redis_server,
        alert_wait_seconds=2,
        alert_retry_interval_seconds=1,
        alert_max_notify_retries=1,
    ) as runtime:
        yield runtime


@pytest.fixture
def rt(backend: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The backend as an operator; settings changed by a test are re-read, and restored after it."""
    backend.as_principal(OPERATOR, ("operator",))
    get_settings.cache_clear()
    yield backend
    monkeypatch.undo()
    get_settings.cache_clear()
    forget_secret()


def spike(signature: str, count: int = 10) -> dict[str, Any]:
    return {
        "signature": signature,
        "type": "KeyError",
        "message": "'levels'",
        "count": count,
        "window_seconds": 300,
        "first_seen": "2026-11-30T01:55:00Z",
        "last_seen": "2026-11-30T02:00:00Z",
        "severity": "high",
    }


def execution_of(rt: Any, alert_id: str) -> dict[str, Any]:
    arn = rt.escalation_arn.replace(":stateMachine:", ":execution:") + f":alert-{alert_id}"
    return dict(boto3.client("stepfunctions", region_name="us-east-1").describe_execution(executionArn=arn))


def wait_until_ended(rt: Any, alert_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        execution = execution_of(rt, alert_id)
        if execution["status"] != "RUNNING":
            return execution
        time.sleep(0.2)
    raise AssertionError(f"the escalation of {alert_id} still runs after {timeout} s")


def webhook_levels(rt: Any, alert_id: str) -> list[int]:
    return [r["body"]["level"] for r in rt.alert_sink.on("/webhook") if r["body"]["alert_id"] == alert_id]


def wait_for_level(rt: Any, alert_id: str, level: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while level not in webhook_levels(rt, alert_id):
        assert time.monotonic() < deadline, f"level {level} never notified: {webhook_levels(rt, alert_id)}"
        time.sleep(0.05)


def secret(rt: Any) -> dict[str, str]:
    from tdev_cli.runtime import ALERT_SECRET

    client = boto3.client("secretsmanager", region_name="us-east-1")
    return dict(json.loads(client.get_secret_value(SecretId=ALERT_SECRET)["SecretString"]))


def test_a_burst_makes_one_grouped_alert_that_escalates_until_acknowledged(rt: Any) -> None:
    signature = f"KeyError:burst-{uuid.uuid4().hex[:8]}"
    burst = 7
    for _ in range(burst):
        rt.publish("t-developer.errors", "ErrorSpikeDetected", spike(signature))
    outcomes = rt.deliver_alerts()

    assert [o["outcome"] for o in outcomes] == ["escalating"] + ["grouped"] * (burst - 1)
    alert_id = outcomes[0]["alert_id"]
    assert {o["alert_id"] for o in outcomes} == {alert_id}
    status, listing = rt.api("GET", "/v1/alerts?severity=high&limit=100")
    assert status == 200, listing
    mine = [a for a in listing["alerts"] if a["key"] == f"error:{signature}"]
    assert len(mine) == 1 and mine[0]["count"] == burst and mine[0]["id"] == alert_id
    executions = boto3.client("stepfunctions", region_name="us-east-1").list_executions(
        stateMachineArn=rt.escalation_arn
    )["executions"]
    assert [e["name"] for e in executions].count(f"alert-{alert_id}") == 1

    wait_for_level(rt, alert_id, 2)  # level 1, a 2 s wait, nobody acknowledged: level 2
    status, acknowledged = rt.api("POST", f"/v1/alerts/{alert_id}/ack")
    assert status == 200, acknowledged
    assert acknowledged["acknowledged_by"] == OPERATOR and acknowledged["status"] == "ACKNOWLEDGED"

    execution = wait_until_ended(rt, alert_id)
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"])["status"] == "ACKNOWLEDGED"
    assert webhook_levels(rt, alert_id) == [1, 2]  # nothing after the acknowledgement
    status, listing = rt.api("GET", "/v1/alerts?status=ACKNOWLEDGED&limit=100")
    assert alert_id in [a["id"] for a in listing["alerts"]]
    # Each webhook notification is signed: HMAC-SHA256 over "<timestamp>.<body>" with the secret's key.
    key = secret(rt)["webhook_signing_key"].encode()
    for received in (r for r in rt.alert_sink.on("/webhook") if r["body"]["alert_id"] == alert_id):
        headers = {k.lower(): v for k, v in received["headers"].items()}
        signed = headers[TIMESTAMP_HEADER.lower()].encode() + b"." + received["raw"]
        assert (
            headers[SIGNATURE_HEADER.lower()] == "sha256=" + hmac.new(key, signed, hashlib.sha256).hexdigest()
        )
    # Level 2 paged PagerDuty (Events v2 trigger); the acknowledgement told it too.
    paged = [r["body"] for r in rt.alert_sink.on("/pagerduty") if r["body"]["dedup_key"] == alert_id]
    assert [p["event_action"] for p in paged] == ["trigger", "acknowledge"]
    assert (
        paged[0]["payload"]["severity"] == "error"
        and paged[0]["payload"]["custom_details"]["grouped_events"] == burst
    )


def test_acknowledged_early_stops_before_the_second_level(rt: Any) -> None:
    rt.publish("t-developer.errors", "ErrorSpikeDetected", spike(f"early-{uuid.uuid4().hex[:8]}"))
    (outcome,) = rt.deliver_alerts()
    alert_id = outcome["alert_id"]
    wait_for_level(rt, alert_id, 1)
    assert rt.api("POST", f"/v1/alerts/{alert_id}/ack")[0] == 200
    assert rt.api("POST", f"/v1/alerts/{alert_id}/ack")[0] == 200  # again: the same answer

    execution = wait_until_ended(rt, alert_id)
    assert (execution["status"], json.loads(execution["output"])["status"]) == ("SUCCEEDED", "ACKNOWLEDGED")
    assert webhook_levels(rt, alert_id) == [1]


def test_a_level_no_channel_takes_ends_failed_and_recorded(rt: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from tdev_cli.runtime import ALERT_SECRET

    broken = {**secret(rt), "webhook_url": f"{rt.alert_sink.url}/fail/webhook"}
    client = boto3.client("secretsmanager", region_name="us-east-1")
    original = secret(rt)
    client.put_secret_value(SecretId=ALERT_SECRET, SecretString=json.dumps(broken))
    forget_secret()
    monkeypatch.setenv("TDEV_ALERT_ROUTING", json.dumps({"high": ["webhook"]}))
    get_settings.cache_clear()
    try:
        rt.publish("t-developer.errors", "ErrorSpikeDetected", spike(f"broken-{uuid.uuid4().hex[:8]}"))
        (outcome,) = rt.deliver_alerts()
        execution = wait_until_ended(rt, outcome["alert_id"])
    finally:
        client.put_secret_value(SecretId=ALERT_SECRET, SecretString=json.dumps(original))
    assert (execution["status"], execution.get("error")) == ("FAILED", "AlertDeliveryFailed")
    status, listing = rt.api("GET", "/v1/alerts?status=FAILED&limit=100")
    assert status == 200
    (alert,) = [a for a in listing["alerts"] if a["id"] == outcome["alert_id"]]
    assert alert["escalation_status"] == "FAILED" and "answered 500" in alert["escalation_error"]
    # Two attempts of level 1 (the ASL's Retry), each one refused by the endpoint.
    assert [n["ok"] for n in alert["notifications"]] == [False, False]


def test_nobody_acknowledging_ends_exhausted_after_the_last_level(
    rt: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TDEV_ALERT_ESCALATION_WAIT", "0")
    monkeypatch.setenv("TDEV_ALERT_ROUTING", json.dumps({"high": ["webhook"]}))
    monkeypatch.setenv("TDEV_ALERT_ESCALATION_LEVELS", json.dumps([["webhook"], ["webhook", "slack"]]))
    get_settings.cache_clear()
    rt.publish("t-developer.errors", "ErrorSpikeDetected", spike(f"unanswered-{uuid.uuid4().hex[:8]}"))
    (outcome,) = rt.deliver_alerts()
    execution = wait_until_ended(rt, outcome["alert_id"])
    assert (execution["status"], json.loads(execution["output"])["status"]) == ("SUCCEEDED", "EXHAUSTED")
    assert webhook_levels(rt, outcome["alert_id"]) == [1, 2, 3]


def test_medium_alerts_notify_once_and_muted_keys_and_maintenance_windows_suppress(
    rt: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    signature = f"new-{uuid.uuid4().hex[:8]}"
    rt.publish("t-developer.errors", "ErrorSignatureNew", {**spike(signature), "severity": "medium"})
    (outcome,) = rt.deliver_alerts()
    assert outcome["outcome"] == "notified" and outcome["delivered"] == ["slack", "email"]
    assert [r for r in rt.alert_sink.on("/slack") if signature in r["body"]["text"]]

    monkeypatch.setenv("TDEV_ALERT_MUTED", "error:muted-*")
    get_settings.cache_clear()
    rt.publish("t-developer.errors", "ErrorSpikeDetected", spike("muted-flaky-test"))
    (muted,) = rt.deliver_alerts()
    assert muted["outcome"] == "suppressed" and muted["reason"] == "muted by error:muted-*"

    monkeypatch.setenv(
        "TDEV_ALERT_MAINTENANCE", json.dumps([["2000-01-01T00:00:00+00:00", "2999-01-01T00:00:00+00:00"]])
    )
    get_settings.cache_clear()
    rt.publish("t-developer.errors", "ErrorSpikeDetected", spike(f"maintenance-{uuid.uuid4().hex[:8]}"))
    (during,) = rt.deliver_alerts()
    assert during["outcome"] == "suppressed" and during["reason"].startswith("maintenance window")


def test_cloudwatch_alarms_of_the_platform_reach_the_intake(rt: Any) -> None:
    event = json.loads((REPO / "events" / "alert_intake_alarm.json").read_text())
    name = f"tdev-local-api-Latency-{uuid.uuid4().hex[:6]}"
    event["detail"]["alarmName"] = name
    rt.publish(event["source"], event["detail-type"], event["detail"], bus="default")
    rt.publish(
        event["source"],
        event["detail-type"],
        {**event["detail"], "alarmName": "someone-elses-alarm"},
        bus="default",
    )
    (outcome,) = rt.deliver_alerts()  # the other account's alarm matched no rule
    assert outcome["outcome"] == "escalating" and outcome["key"] == f"alarm:{name}"
    assert rt.api("POST", f"/v1/alerts/{outcome['alert_id']}/ack")[0] == 200
    back_to_ok = {**event["detail"], "alarmName": name, "state": {"value": "OK", "reason": "fine"}}
    rt.publish(event["source"], event["detail-type"], back_to_ok, bus="default")
    assert rt.deliver_alerts()[0]["outcome"] == "ignored"
    wait_until_ended(rt, outcome["alert_id"])


def test_sample_events_are_served(rt: Any) -> None:
    for name in ("alert_intake", "alert_intake_alarm"):
        event = json.loads((REPO / "events" / f"{name}.json").read_text())
        event["detail"] = {
            **event["detail"],
            **(
                {"signature": f"sample-{uuid.uuid4().hex}"}
                if name == "alert_intake"
                else {"alarmName": f"tdev-local-sample-{uuid.uuid4().hex[:6]}"}
            ),
        }
        answer = rt.invoke("alert_intake", event)
        assert answer["outcome"] == "escalating", answer
        rt.api("POST", f"/v1/alerts/{answer['alert_id']}/ack")
        wait_until_ended(rt, answer["alert_id"])
    rejected = rt.invoke(
        "alert_intake",
        {**json.loads((REPO / "events" / "alert_intake.json").read_text()), "detail": {"type": "x"}},
    )
    assert rejected == {
        "outcome": "rejected",
        "field": "detail.signature",
        "reason": "an error event needs its signature",
    }
    listed = rt.invoke("api", json.loads((REPO / "events" / "api_list_alerts.json").read_text()))
    assert listed["statusCode"] == 200, listed["body"]
    missing = rt.invoke("api", json.loads((REPO / "events" / "api_ack_alert.json").read_text()))
    assert missing["statusCode"] == 404 and json.loads(missing["body"])["field"] == "alert_id"
    sample_step = json.loads((REPO / "events" / "alert_escalation.json").read_text())
    with pytest.raises(NotFoundError):  # the sample's alert was never raised here
        rt.invoke("alert_escalation", sample_step)
    step = rt.invoke("alert_escalation", {**sample_step, "alert_id": answer["alert_id"]})
    assert step == {"alert_id": answer["alert_id"], "level": 1, "delivered": [], "acknowledged": True}


def test_routes_validate_and_need_an_operator(rt: Any) -> None:
    status, body = rt.api("GET", "/v1/alerts?severity=urgent")
    assert status == 400 and body["field"] == "severity", body
    status, body = rt.api("POST", "/v1/alerts/not-an-id!/ack")
    assert status in (400, 404)
    for roles in (("developer",), ("viewer",)):
        rt.as_principal(f"not-an-operator-{roles[0]}", roles)
        assert rt.api("GET", "/v1/alerts")[0] == 403
        assert rt.api("POST", "/v1/alerts/0123456789abcdef0123/ack")[0] == 403


def test_an_injected_error_burst_is_one_alert_that_escalates_until_acknowledged_and_an_mttr(
    rt: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole chain, from a real bug: a burst of failing API calls -> error analytics (one signature, a
    spike) -> its events through the outbox and the bus -> the intake: the new signature's medium alert,
    then the spike, which escalates that same alert (not a second one) -> levels at the local sink until
    acknowledged -> the signature resolved with its MTTR."""
    from tdev.data.agents import AgentRepository
    from tdev.incidents.recorder import SPIKE_FLOOR, WINDOW_SECONDS

    def broken_catalog(self: Any) -> Any:
        raise RuntimeError(f"escalation catalog shard {uuid.uuid4().int % 89} lost for {uuid.uuid4()}")

    if WINDOW_SECONDS - time.time() % WINDOW_SECONDS < 60:  # the burst must land in one window
        time.sleep(WINDOW_SECONDS - time.time() % WINDOW_SECONDS + 0.5)
    with monkeypatch.context() as patched:
        patched.setattr(AgentRepository, "list", broken_catalog)
        for _ in range(SPIKE_FLOOR + 1):
            assert rt.api("GET", "/v1/agents")[0] == 500
    rt.drain_messaging()  # outbox -> bus -> the alert rule's queue
    outcomes = rt.deliver_alerts()
    admin = f"alert-admin-{uuid.uuid4().hex[:8]}"
    rt.as_principal(admin, ("admin",))
    groups = [
        g
        for g in rt.api("GET", "/v1/errors?status=open")[1]["errors"]
        if "escalation catalog" in g["message"]
    ]
    assert len(groups) == 1 and groups[0]["spiking"] is True, groups
    signature = groups[0]["signature"]
    ours = [o for o in outcomes if o.get("key") == f"error:{signature}"]
    assert [o["outcome"] for o in ours] == ["notified", "escalating"], outcomes
    assert ours[0]["alert_id"] == ours[1]["alert_id"]  # one alert, raised to high by the spike
    alert_id = ours[0]["alert_id"]

    wait_for_level(rt, alert_id, 2)  # level 1, a 2 s wait, nobody acknowledged: level 2
    rt.as_principal(OPERATOR, ("operator",))
    status, acknowledged = rt.api("POST", f"/v1/alerts/{alert_id}/ack")
    assert status == 200 and acknowledged["status"] == "ACKNOWLEDGED", acknowledged
    execution = wait_until_ended(rt, alert_id)
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"])["status"] == "ACKNOWLEDGED"

    rt.as_principal(admin, ("admin",))
    time.sleep(1.1)
    status, resolved = rt.api("POST", f"/v1/errors/{signature}/resolve", {"reason": "shard map rebuilt"})
    assert status == 200 and resolved["mttr_seconds"] >= 1, resolved
