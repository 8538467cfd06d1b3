"""The alert, and how the events that raise one become one."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tdev.errors import ValidationError

ERRORS_SOURCE = "t-developer.errors"
ERROR_DETAIL_TYPES = {"ErrorSignatureNew": "medium", "ErrorSpikeDetected": "high"}
ALARM_SOURCE = "aws.cloudwatch"
ALARM_DETAIL_TYPE = "CloudWatch Alarm State Change"
KEY = re.compile(r"^[A-Za-z0-9_.:/#@-]{1,200}$")


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def escalates(self) -> bool:
        return self in (Severity.CRITICAL, Severity.HIGH)


class AlertStatus(StrEnum):
    OPEN = "OPEN"  # notified; no escalation (medium, low)
    ESCALATING = "ESCALATING"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    EXHAUSTED = "EXHAUSTED"  # every level notified, nobody acknowledged
    FAILED = "FAILED"  # a level could not be notified on any channel
    SUPPRESSED = "SUPPRESSED"


class AlertSignal(BaseModel):
    """What an event says, normalised: the alert before it is stored."""

    model_config = ConfigDict(frozen=True)

    key: str = Field(pattern=KEY.pattern)
    severity: Severity
    title: str = Field(min_length=1, max_length=300)
    detail: dict[str, Any] = Field(default_factory=dict)
    source: str = Field(min_length=1, max_length=100)


def _text(value: Any, limit: int) -> str:
    return str(value if value is not None else "")[:limit]


def signal_from_event(
    event: dict[str, Any], *, alarm_severity: Severity = Severity.HIGH
) -> AlertSignal | None:
    """An EventBridge event -> the alert it raises; None for events that raise none (an alarm back to OK).

    Unknown sources or shapes are a ValidationError naming the field (the intake reports and drops them)."""
    source = event.get("source")
    detail_type = event.get("detail-type")
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise ValidationError("the event has no detail object", field="detail")
    if source == ERRORS_SOURCE and detail_type in ERROR_DETAIL_TYPES:
        signature = detail.get("signature")
        if not isinstance(signature, str) or not signature:
            raise ValidationError("an error event needs its signature", field="detail.signature")
        given = detail.get("severity")
        severity = Severity(str(given)) if given in Severity.__members__.values() else None
        key = "error:" + re.sub(r"[^A-Za-z0-9_.:/#@-]", "_", signature)[:190]
        return AlertSignal(
            key=key,
            severity=severity or Severity(ERROR_DETAIL_TYPES[str(detail_type)]),
            title=_text(f"{detail_type}: {detail.get('type', 'Error')}: {detail.get('message', '')}", 300),
            detail={
                k: detail.get(k)
                for k in (
                    "signature",
                    "type",
                    "message",
                    "count",
                    "window_seconds",
                    "first_seen",
                    "last_seen",
                )
                if k in detail
            },
            source=ERRORS_SOURCE,
        )
    if source == ALARM_SOURCE and detail_type == ALARM_DETAIL_TYPE:
        name = detail.get("alarmName")
        state = (detail.get("state") or {}).get("value")
        if not isinstance(name, str) or not name:
            raise ValidationError("an alarm event needs its alarm name", field="detail.alarmName")
        if state != "ALARM":
            return None
        key = "alarm:" + re.sub(r"[^A-Za-z0-9_.:/#@-]", "_", name)[:190]
        return AlertSignal(
            key=key,
            severity=alarm_severity,
            title=_text(f"Alarm {name}: {(detail.get('state') or {}).get('reason', 'in ALARM')}", 300),
            detail={
                "alarm_name": name,
                "state": state,
                "previous_state": (detail.get("previousState") or {}).get("value"),
                "reason": _text((detail.get("state") or {}).get("reason"), 1_000),
            },
            source=ALARM_SOURCE,
        )
    raise ValidationError(f"no alert for events of {source!r} / {detail_type!r}", field="source")


def errors_rule_pattern() -> dict[str, Any]:
    """The bus rule that sends error analytics' alerts to the intake (stack and local runtime alike)."""
    return {"source": [ERRORS_SOURCE], "detail-type": sorted(ERROR_DETAIL_TYPES)}


def alarms_rule_pattern(alarm_prefix: str) -> dict[str, Any]:
    """The default bus's rule for the platform's CloudWatch alarms (their names carry the stacks' prefix:
    every alarm of the deployment reaches the intake without naming each)."""
    return {
        "source": [ALARM_SOURCE],
        "detail-type": [ALARM_DETAIL_TYPE],
        "detail": {"alarmName": [{"wildcard": f"*{alarm_prefix}-*"}]},
    }
