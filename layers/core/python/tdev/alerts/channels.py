"""The channels an alert goes out on: email and SMS (SNS topics), Slack incoming webhooks, generic webhooks
(JSON POST signed with HMAC-SHA256) and PagerDuty Events v2 (trigger / acknowledge).

URLs and keys come from one Secrets Manager secret (TDEV_ALERT_SECRET_NAME), read once per container.
HTTP goes out with a timeout and never follows a redirect; deployed, only https to public addresses, so a
configured URL cannot reach into the VPC or the metadata service. Locally, only loopback: the local runtime
points the secret at a sink on 127.0.0.1 (tdev_cli.alert_sink) that records what it receives.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
import urllib.error
import urllib.request
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from tdev import aws
from tdev.errors import ConfigurationError
from tdev.settings import get_settings

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
PAGERDUTY_SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}
SIGNATURE_HEADER = "X-TDev-Signature"
TIMESTAMP_HEADER = "X-TDev-Timestamp"


class DeliveryError(Exception):
    """One channel did not take one notification."""


@lru_cache(maxsize=4)
def _secret(name: str) -> dict[str, str]:
    raw = aws.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"]
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ConfigurationError(f"secret {name}: a JSON object of channel settings")
    return {str(k): str(v) for k, v in value.items()}


def channel_settings() -> dict[str, str]:
    name = get_settings().alert_secret_name
    return _secret(name) if name else {}


def forget_secret() -> None:
    _secret.cache_clear()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        raise DeliveryError("the endpoint answered with a redirect; redirects are never followed")


_opener = urllib.request.build_opener(_NoRedirects)


def check_destination(url: str, *, deployed: bool) -> None:
    """Refuse URLs an alert must not go to: deployed, anything but https to public addresses; locally,
    anything but loopback (tests and the local runtime make no calls beyond 127.0.0.1)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise DeliveryError(f"not an http(s) URL: {parts.scheme}://{host}")
    if deployed and parts.scheme != "https":
        raise DeliveryError("deployed, alerts go to https URLs only")
    try:
        addresses = {
            info[4][0] for info in socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
        }
    except OSError as exc:
        raise DeliveryError(f"cannot resolve {host}: {exc}") from None
    for address in addresses:
        ip = ipaddress.ip_address(str(address).split("%")[0])
        if deployed and not ip.is_global:
            raise DeliveryError(f"{host} resolves to a private or reserved address ({ip})")
        if not deployed and not ip.is_loopback:
            raise DeliveryError(f"locally, alerts go to loopback sinks only ({host} is {ip})")


def post_json(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> int:
    settings = get_settings()
    check_destination(url, deployed=settings.environment != "local")
    data = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with _opener.open(request, timeout=settings.alert_http_timeout_seconds) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"{urlsplit(url).hostname} answered {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DeliveryError(f"{urlsplit(url).hostname} unreachable: {exc}") from None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over `<timestamp>.<body>` (what a receiver recomputes)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _required(settings: dict[str, str], name: str, channel: str) -> str:
    value = settings.get(name)
    if not value:
        raise DeliveryError(f"{channel} is not configured ({name} missing from the alert secret)")
    return value


def message(alert: dict[str, Any], level: int) -> dict[str, Any]:
    """The notification every channel renders: what, how bad, how often, which escalation level."""
    return {
        "alert_id": alert["id"],
        "key": alert["key"],
        "severity": alert["severity"],
        "title": alert["title"],
        "detail": alert.get("detail", {}),
        "source": alert["source"],
        "count": alert.get("count", 1),
        "first_seen": alert.get("first_seen"),
        "last_seen": alert.get("last_seen"),
        "level": level,
    }


def deliver(channel: str, alert: dict[str, Any], level: int) -> None:
    """Send one notification on one channel; DeliveryError when it did not go out."""
    note = message(alert, level)
    secret = channel_settings()
    settings = get_settings()
    summary = (
        f"[{alert['severity'].upper()}] {alert['title']} ({alert['key']}, x{note['count']}, level {level})"
    )
    if channel in ("email", "sms"):
        topic = settings.alert_email_topic_arn if channel == "email" else settings.alert_sms_topic_arn
        if not topic:
            raise DeliveryError(f"{channel} is not configured (no topic)")
        body = json.dumps(note, indent=2, default=str) if channel == "email" else summary[:140]
        kwargs: dict[str, Any] = {"TopicArn": topic, "Message": body}
        if channel == "email":
            kwargs["Subject"] = summary[:100]
        try:
            aws.client("sns").publish(**kwargs)
        except Exception as exc:
            raise DeliveryError(f"{channel}: {type(exc).__name__}") from None
    elif channel == "slack":
        post_json(_required(secret, "slack_webhook_url", channel), {"text": summary})
    elif channel == "webhook":
        url = _required(secret, "webhook_url", channel)
        key = _required(secret, "webhook_signing_key", channel)
        timestamp = str(int(time.time()))
        signed = json.dumps(note, separators=(",", ":"), sort_keys=True).encode()  # what post_json sends
        post_json(url, note, {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(key, timestamp, signed)})
    elif channel == "pagerduty":
        post_json(
            secret.get("pagerduty_url") or PAGERDUTY_EVENTS_URL, pagerduty_event(alert, "trigger", secret)
        )
    else:
        raise DeliveryError(f"unknown channel {channel}")


def pagerduty_event(alert: dict[str, Any], action: str, secret: dict[str, str]) -> dict[str, Any]:
    """An Events API v2 event: trigger (with its payload) or acknowledge, deduplicated by the alert id."""
    event: dict[str, Any] = {
        "routing_key": _required(secret, "pagerduty_routing_key", "pagerduty"),
        "event_action": action,
        "dedup_key": alert["id"],
    }
    if action == "trigger":
        event["payload"] = {
            "summary": str(alert["title"])[:1024],
            "source": str(alert["source"]),
            "severity": PAGERDUTY_SEVERITY[str(alert["severity"])],
            "component": str(alert["key"]),
            # How many events this alert grouped, and what the first one said.
            "custom_details": {
                "grouped_events": alert.get("count", 1),
                "detail": dict(alert.get("detail") or {}),
            },
        }
    return event


def acknowledge_pagerduty(alert: dict[str, Any]) -> None:
    secret = channel_settings()
    post_json(
        secret.get("pagerduty_url") or PAGERDUTY_EVENTS_URL, pagerduty_event(alert, "acknowledge", secret)
    )
