"""The alerting rules, from configuration (tdev.settings: TDEV_ALERT_*), validated when read."""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from datetime import datetime

from tdev.alerts.model import Severity
from tdev.errors import ConfigurationError
from tdev.settings import get_settings

CHANNELS = ("email", "sms", "slack", "webhook", "pagerduty")


@dataclass(frozen=True)
class AlertPolicy:
    routing: dict[Severity, tuple[str, ...]]  # the first notification's channels, per severity
    escalation_levels: tuple[tuple[str, ...], ...]  # levels 2.. of an escalation, their channels
    muted: tuple[str, ...]  # glob patterns of alert keys never notified
    maintenance: tuple[tuple[datetime, datetime], ...]  # windows in which nothing is notified
    wait_seconds: int
    group_window_seconds: int

    @property
    def max_levels(self) -> int:
        return 1 + len(self.escalation_levels)

    def channels_for(self, severity: Severity, level: int) -> tuple[str, ...]:
        if level <= 1:
            return self.routing.get(severity, ())
        return self.escalation_levels[min(level, self.max_levels) - 2]

    def suppressed_because(self, key: str, now: datetime) -> str | None:
        for pattern in self.muted:
            if fnmatch.fnmatchcase(key, pattern):
                return f"muted by {pattern}"
        for start, end in self.maintenance:
            if start <= now < end:
                return f"maintenance window {start.isoformat()} - {end.isoformat()}"
        return None


def _channels(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(c, str) and c in CHANNELS for c in value):
        raise ConfigurationError(f"{where}: a list of channels from {list(CHANNELS)}")
    return tuple(value)


def current_policy() -> AlertPolicy:
    settings = get_settings()
    try:
        routing_raw = json.loads(settings.alert_routing)
        levels_raw = json.loads(settings.alert_escalation_levels)
        windows_raw = json.loads(settings.alert_maintenance)
    except ValueError as exc:
        raise ConfigurationError(f"alerting configuration is not JSON: {exc}") from exc
    if not isinstance(routing_raw, dict) or set(routing_raw) - set(Severity):
        raise ConfigurationError("TDEV_ALERT_ROUTING: an object of severities to channel lists")
    routing = {Severity(s): _channels(c, f"TDEV_ALERT_ROUTING.{s}") for s, c in routing_raw.items()}
    if not isinstance(levels_raw, list):
        raise ConfigurationError("TDEV_ALERT_ESCALATION_LEVELS: a list of channel lists")
    levels = tuple(_channels(c, f"TDEV_ALERT_ESCALATION_LEVELS[{i}]") for i, c in enumerate(levels_raw))
    windows: list[tuple[datetime, datetime]] = []
    if not isinstance(windows_raw, list):
        raise ConfigurationError("TDEV_ALERT_MAINTENANCE: a list of [start, end] ISO times")
    for i, window in enumerate(windows_raw):
        try:
            start, end = (datetime.fromisoformat(str(t)) for t in window)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"TDEV_ALERT_MAINTENANCE[{i}]: [start, end] ISO times with offset"
            ) from None
        if start.tzinfo is None or end.tzinfo is None or end <= start:
            raise ConfigurationError(f"TDEV_ALERT_MAINTENANCE[{i}]: aware times, end after start")
        windows.append((start, end))
    muted = tuple(p.strip() for p in settings.alert_muted.split(",") if p.strip())
    return AlertPolicy(
        routing=routing,
        escalation_levels=levels,
        muted=muted,
        maintenance=tuple(windows),
        wait_seconds=settings.alert_escalation_wait_seconds,
        group_window_seconds=settings.alert_group_window_seconds,
    )
