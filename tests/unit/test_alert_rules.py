"""Alerting without AWS: the events that raise alerts, the rules from configuration (routing, muting,
maintenance windows, escalation levels) and the channels' payloads and destination checks."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tdev.alerts import channels
from tdev.alerts.model import Severity, alarms_rule_pattern, signal_from_event
from tdev.alerts.policy import current_policy
from tdev.errors import ConfigurationError, ValidationError
from tdev.settings import get_settings

EVENTS = Path(__file__).resolve().parents[2] / "events"


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TABLE_NAME", "tdev-test")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_error_events_become_alerts_keyed_by_signature() -> None:
    event = json.loads((EVENTS / "alert_intake.json").read_text())
    signal = signal_from_event(event)
    assert signal is not None
    assert signal.key == "error:KeyError:missing-key-in-plan:orchestration/workflow.py:212"
    assert signal.severity is Severity.HIGH and signal.detail["count"] == 42
    new = {**event, "detail-type": "ErrorSignatureNew", "detail": {**event["detail"], "severity": None}}
    assert signal_from_event(new).severity is Severity.MEDIUM  # type: ignore[union-attr]


def test_alarm_events_raise_on_alarm_only_and_unknown_events_name_the_field() -> None:
    event = json.loads((EVENTS / "alert_intake_alarm.json").read_text())
    signal = signal_from_event(event)
    assert signal is not None and signal.key == "alarm:tdev-local-api-LatencyP99"
    assert signal_from_event({**event, "detail": {**event["detail"], "state": {"value": "OK"}}}) is None
    with pytest.raises(ValidationError) as refused:
        signal_from_event({"source": "someone", "detail-type": "x", "detail": {}})
    assert refused.value.field == "source"
    with pytest.raises(ValidationError) as refused:
        signal_from_event({**event, "detail": {"state": {"value": "ALARM"}}})
    assert refused.value.field == "detail.alarmName"
    assert alarms_rule_pattern("tdev-dev")["detail"] == {"alarmName": [{"wildcard": "*tdev-dev-*"}]}


def test_policy_routes_by_severity_escalates_by_level_and_suppresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TDEV_ALERT_MUTED", "error:flaky-*, alarm:*Canary*")
    monkeypatch.setenv(
        "TDEV_ALERT_MAINTENANCE", json.dumps([["2030-01-01T00:00:00+00:00", "2030-01-01T02:00:00+00:00"]])
    )
    policy = current_policy()
    assert policy.channels_for(Severity.HIGH, 1) == ("webhook", "slack")
    assert policy.channels_for(Severity.HIGH, 2) == ("webhook", "pagerduty")
    assert policy.max_levels == 3
    now = datetime(2029, 12, 31, tzinfo=UTC)
    assert policy.suppressed_because("error:flaky-test", now) == "muted by error:flaky-*"
    assert policy.suppressed_because("alarm:tdev-dev-CanaryLatency", now) == "muted by alarm:*Canary*"
    assert policy.suppressed_because("error:real", now) is None
    assert policy.suppressed_because("error:real", datetime(2030, 1, 1, 1, tzinfo=UTC)).startswith(
        "maintenance"
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TDEV_ALERT_ROUTING", '{"high": ["carrier-pigeon"]}'),
        ("TDEV_ALERT_ROUTING", '{"urgent": ["email"]}'),
        ("TDEV_ALERT_ESCALATION_LEVELS", '{"not": "a list"}'),
        ("TDEV_ALERT_MAINTENANCE", '[["2030-01-01T02:00:00+00:00", "2030-01-01T01:00:00+00:00"]]'),
        ("TDEV_ALERT_MAINTENANCE", '[["2030-01-01T00:00:00", "2030-01-01T01:00:00"]]'),
    ],
)
def test_invalid_rules_are_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        current_policy()


ALERT = {
    "id": "0123456789abcdef0123",
    "key": "error:sig",
    "severity": "critical",
    "title": "ErrorSpikeDetected: KeyError",
    "source": "t-developer.errors",
    "detail": {"signature": "sig"},
    "count": 5,
}


def test_pagerduty_events_follow_the_events_v2_shape() -> None:
    secret = {"pagerduty_routing_key": "R" * 32}
    trigger = channels.pagerduty_event(ALERT, "trigger", secret)
    assert trigger == {
        "routing_key": "R" * 32,
        "event_action": "trigger",
        "dedup_key": ALERT["id"],
        "payload": {
            "summary": ALERT["title"],
            "source": "t-developer.errors",
            "severity": "critical",
            "component": "error:sig",
            "custom_details": {"grouped_events": 5, "detail": {"signature": "sig"}},
        },
    }
    assert channels.pagerduty_event(ALERT, "acknowledge", secret) == {
        "routing_key": "R" * 32,
        "event_action": "acknowledge",
        "dedup_key": ALERT["id"],
    }
    with pytest.raises(channels.DeliveryError, match="pagerduty_routing_key"):
        channels.pagerduty_event(ALERT, "trigger", {})


def test_webhook_signatures_are_hmac_sha256_over_timestamp_and_body() -> None:
    body = b'{"a":1}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert channels.sign("k", "1700000000", body) == f"sha256={expected}"


@pytest.mark.parametrize(
    ("url", "deployed", "refused"),
    [
        ("http://127.0.0.1:9/hook", False, None),
        ("http://10.0.0.8/hook", False, "loopback"),
        ("https://127.0.0.1/hook", True, "private or reserved"),
        ("https://169.254.169.254/latest", True, "private or reserved"),
        ("https://10.1.2.3/hook", True, "private or reserved"),
        ("http://93.184.216.34/hook", True, "https URLs only"),
        ("ftp://127.0.0.1/x", False, "not an http"),
    ],
)
def test_destinations_are_checked_before_any_request(url: str, deployed: bool, refused: str | None) -> None:
    if refused is None:
        channels.check_destination(url, deployed=deployed)
    else:
        with pytest.raises(channels.DeliveryError, match=refused):
            channels.check_destination(url, deployed=deployed)


def test_redirects_are_never_followed() -> None:
    import http.server
    import threading

    from tdev_cli.alert_sink import AlertSink

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(channels.DeliveryError, match="redirect"):
            channels.post_json(f"http://127.0.0.1:{server.server_address[1]}/hook", {"a": 1})
    finally:
        server.shutdown()
        server.server_close()
    sink = AlertSink().start()
    try:
        assert channels.post_json(f"{sink.url}/webhook", {"a": 1}) == 202
        assert sink.on("/webhook")[0]["body"] == {"a": 1}
    finally:
        sink.stop()
