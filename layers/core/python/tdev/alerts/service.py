"""Alerting's operations: what the intake function, the escalation's steps and the API routes call."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from tdev import aws
from tdev.alerts import channels
from tdev.alerts.model import AlertStatus, Severity, signal_from_event
from tdev.alerts.policy import AlertPolicy, current_policy
from tdev.data.alerts import AlertRepository
from tdev.data.store import Page
from tdev.errors import AlertDeliveryFailed, ConfigurationError, NotFoundError, ValidationError
from tdev.observability import logger
from tdev.settings import get_settings

TERMINAL = frozenset({AlertStatus.ACKNOWLEDGED, AlertStatus.EXHAUSTED, AlertStatus.FAILED})


def repository() -> AlertRepository:
    return AlertRepository(get_settings().table_name)


def _now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------------------------------- intake
def intake(event: dict[str, Any], *, policy: AlertPolicy | None = None) -> dict[str, Any]:
    """One EventBridge event -> suppressed, ignored, a new alert (notified or escalating) or a repeat
    counted on the open alert of its key (no new notification)."""
    policy = policy or current_policy()
    signal = signal_from_event(event)
    if signal is None:
        return {"outcome": "ignored", "reason": "the alarm left the ALARM state"}
    now = _now()
    reason = policy.suppressed_because(signal.key, now)
    if reason:
        logger.info("alert suppressed", extra={"alert_key": signal.key, "reason": reason})
        return {"outcome": "suppressed", "key": signal.key, "reason": reason}
    stamp = now.isoformat()
    candidate = {
        "id": uuid.uuid4().hex[:20],
        **signal.model_dump(mode="json"),
        "count": 1,
        "status": (AlertStatus.ESCALATING if signal.severity.escalates else AlertStatus.OPEN).value,
        "created_at": stamp,
        "first_seen": stamp,
        "last_seen": stamp,
        "escalation_level": 0,
    }
    alert, created = repository().open_or_group(
        candidate, now_epoch=int(now.timestamp()), window_seconds=policy.group_window_seconds
    )
    # A repeat is only counted, unless it is a spike after the signature's first (medium) alert: then the
    # open alert takes its severity and escalates below, once (a conditional update), not swallowed.
    if not created and not (
        signal.severity.escalates
        and not Severity(str(alert["severity"])).escalates
        and repository().raise_to_escalation(
            alert["id"],
            signal.severity.value,
            open_status=AlertStatus.OPEN.value,
            escalating=AlertStatus.ESCALATING.value,
        )
    ):
        return {"outcome": "grouped", "alert_id": alert["id"], "key": alert["key"], "count": alert["count"]}
    if signal.severity.escalates:
        execution_arn = start_escalation(alert["id"], policy)
        repository().update(alert["id"], escalation_arn=execution_arn)
        return {
            "outcome": "escalating",
            "alert_id": alert["id"],
            "key": alert["key"],
            "count": alert["count"],
        }
    entries = _notify(alert, policy.channels_for(signal.severity, 1), 1)
    return {
        "outcome": "notified",
        "alert_id": alert["id"],
        "key": alert["key"],
        "count": 1,
        "delivered": [e["channel"] for e in entries if e["ok"]],
    }


def start_escalation(alert_id: str, policy: AlertPolicy) -> str:
    """One execution per alert (named by the alert: a retried intake cannot start a second one)."""
    arn = get_settings().alert_escalation_arn
    if not arn:
        raise ConfigurationError("TDEV_ALERT_ESCALATION_ARN is not set: high alerts cannot escalate")
    payload = {"alert_id": alert_id, "level": 1, "wait_seconds": policy.wait_seconds}
    try:
        started = aws.client("stepfunctions").start_execution(
            stateMachineArn=arn, name=f"alert-{alert_id}", input=json.dumps(payload)
        )
        return str(started["executionArn"])
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ExecutionAlreadyExists":
            raise
        return f"{arn.replace(':stateMachine:', ':execution:')}:alert-{alert_id}"


def _notify(alert: dict[str, Any], names: tuple[str, ...], level: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for name in names:
        entry: dict[str, Any] = {"level": level, "channel": name, "at": _now().isoformat(), "ok": True}
        try:
            channels.deliver(name, alert, level)
        except channels.DeliveryError as exc:
            entry.update(ok=False, error=str(exc)[:300])
            logger.warning("alert channel failed", extra={"channel": name, "alert_id": alert["id"]})
        entries.append(entry)
    repository().record_notifications(alert["id"], level, entries)
    return entries


# ------------------------------------------------------------------------------- escalation steps
def notify_level(alert_id: str, level: int, *, policy: AlertPolicy | None = None) -> dict[str, Any]:
    """Escalation step: notify one level's channels; AlertDeliveryFailed when none took it."""
    policy = policy or current_policy()
    alert = repository().get(alert_id)
    if alert.get("acknowledged_at"):
        return {"alert_id": alert_id, "level": level, "delivered": [], "acknowledged": True}
    names = policy.channels_for(Severity(alert["severity"]), level)
    entries = _notify(alert, names, level)
    delivered = [e["channel"] for e in entries if e["ok"]]
    if not delivered:
        raise AlertDeliveryFailed(
            f"alert {alert_id} level {level}: no channel took it ("
            + "; ".join(f"{e['channel']}: {e.get('error')}" for e in entries)
            + ")"
        )
    return {"alert_id": alert_id, "level": level, "delivered": delivered, "acknowledged": False}


def check_acknowledged(alert_id: str, level: int, *, policy: AlertPolicy | None = None) -> dict[str, Any]:
    """Escalation step after the wait: stop if acknowledged, else the next level or `exhausted`."""
    policy = policy or current_policy()
    alert = repository().get(alert_id)
    acknowledged = bool(alert.get("acknowledged_at"))
    return {
        "alert_id": alert_id,
        "acknowledged": acknowledged,
        "exhausted": not acknowledged and level >= policy.max_levels,
        "next_level": level + 1,
    }


def record_escalation_end(alert_id: str, status: str, error: str | None = None) -> dict[str, Any]:
    """Escalation's terminal step: ACKNOWLEDGED, EXHAUSTED or FAILED on the alert (an acknowledgement
    that came in meanwhile is kept: it is the truth about the alert)."""
    outcome = AlertStatus(status)
    if outcome not in TERMINAL:
        raise ValidationError(f"{status} is not how an escalation ends", field="status")
    alert = repository().get(alert_id)
    final = AlertStatus.ACKNOWLEDGED if alert.get("acknowledged_at") else outcome
    repository().update(
        alert_id,
        status=final.value,
        escalation_status=final.value,
        escalation_ended_at=_now().isoformat(),
        escalation_error=(error or "")[:1_000] or None,
    )
    return {"alert_id": alert_id, "status": final.value}


# ---------------------------------------------------------------------------------------- the API
def acknowledge(alert_id: str, *, by: str) -> dict[str, Any]:
    """Acknowledge once (again: the same answer). The escalation checks this flag after each wait and
    ends ACKNOWLEDGED; PagerDuty, when it was paged, is told too."""
    alert, newly = repository().acknowledge(alert_id, by=by, at=_now().isoformat())
    if newly and any(n.get("channel") == "pagerduty" and n.get("ok") for n in alert.get("notifications", [])):
        try:
            channels.acknowledge_pagerduty(alert)
        except channels.DeliveryError as exc:
            logger.warning("PagerDuty acknowledge failed", extra={"alert_id": alert_id, "error": str(exc)})
    return alert


def list_alerts(
    *, status: str | None = None, severity: str | None = None, limit: int = 50, cursor: str | None = None
) -> Page:
    if status is not None and status not in AlertStatus.__members__.values():
        raise ValidationError(f"status must be one of {[s.value for s in AlertStatus]}", field="status")
    if severity is not None and severity not in Severity.__members__.values():
        raise ValidationError(f"severity must be one of {[s.value for s in Severity]}", field="severity")
    return repository().list(status=status, severity=severity, limit=limit, cursor=cursor)


def get_alert(alert_id: str) -> dict[str, Any]:
    try:
        return repository().get(alert_id)
    except NotFoundError:
        raise NotFoundError(f"alert {alert_id} not found", field="alert_id") from None
