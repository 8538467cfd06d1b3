"""The configuration compliance report: who changed what, unapproved changes to protected keys, and the
platform's secrets past their rotation age.

- Changes: every audited version of each scope (tdev.data.config_audit), newest first, and per author the
  number of changes and the keys they touched.
- Unapproved changes to protected keys (`PROTECTED_KEYS`): audited versions that changed one without an
  approver (a rollback restores a layer without a second admin), and Parameter Store values of protected
  keys that differ from the audited head: written around the API, never audited nor approved.
- Secrets: each platform secret (the API signing secret, the model providers' keys) with the date of its
  last rotation or change, its age, its rotation schedule; overdue when older than its schedule allows
  (schedule + 1 day of grace) or, unscheduled, older than MAX_UNSCHEDULED_AGE_DAYS.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tdev import aws
from tdev.config.model import PROTECTED_KEYS
from tdev.config.parameters import CONFIG, FLAGS
from tdev.data.config_audit import ConfigAudit

MAX_UNSCHEDULED_AGE_DAYS = 90
GRACE_DAYS = 1


def _changes(audit: ConfigAudit, limit: int) -> list[dict[str, Any]]:
    versions = []
    for scope in (CONFIG, FLAGS):
        for record in audit.history(scope, limit=limit):
            versions.append(
                {
                    "scope": scope,
                    "version": record["version"],
                    "kind": record.get("kind", "set"),
                    "author": record["author"],
                    "approved_by": record.get("approved_by"),
                    "reason": record.get("reason", ""),
                    "keys": sorted(record.get("changed") or {}),
                    "created_at": record.get("created_at", ""),
                }
            )
    return sorted(versions, key=lambda v: v["created_at"], reverse=True)


def _by_author(changes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    authors: dict[str, dict[str, Any]] = {}
    for change in changes:
        if change["kind"] == "snapshot":
            continue
        entry = authors.setdefault(change["author"], {"changes": 0, "keys": set()})
        entry["changes"] += 1
        entry["keys"] |= {f"{change['scope']}/{key}" for key in change["keys"]}
    return {a: {"changes": e["changes"], "keys": sorted(e["keys"])} for a, e in sorted(authors.items())}


def _unapproved(
    audit: ConfigAudit, changes: list[dict[str, Any]], stored: dict[str, str]
) -> list[dict[str, Any]]:
    found = [
        {
            "source": "audit",
            "version": c["version"],
            "kind": c["kind"],
            "author": c["author"],
            "keys": sorted(set(c["keys"]) & PROTECTED_KEYS),
            "created_at": c["created_at"],
        }
        for c in changes
        if c["scope"] == CONFIG and c["approved_by"] is None and set(c["keys"]) & PROTECTED_KEYS
    ]
    head = audit.head(CONFIG)
    audited = audit.version(CONFIG, head)["layer"] if head else {}
    for key in sorted(PROTECTED_KEYS):
        if stored.get(key) != audited.get(key):
            found.append(
                {
                    "source": "parameter_store",
                    "keys": [key],
                    "stored": stored.get(key),
                    "audited": audited.get(key),
                    "note": "changed outside the audited API (no author, no approval)",
                }
            )
    return found


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def secret_status(secret_id: str, *, now: datetime) -> dict[str, Any]:
    """One secret's rotation state (DescribeSecret: dates and rules only, never the value)."""
    try:
        described = aws.client("secretsmanager").describe_secret(SecretId=secret_id)
    except Exception as exc:  # a missing or unreadable secret is itself a finding
        return {"secret": secret_id, "overdue": True, "error": type(exc).__name__}
    rotated = _when(described.get("LastRotatedDate"))
    changed = _when(described.get("LastChangedDate")) or _when(described.get("CreatedDate"))
    last = max((d for d in (rotated, changed) if d is not None), default=None)
    schedule = (
        described.get("RotationRules", {}).get("AutomaticallyAfterDays")
        if described.get("RotationEnabled")
        else None
    )
    allowed = int(schedule) + GRACE_DAYS if schedule else MAX_UNSCHEDULED_AGE_DAYS
    age_days = round((now - last).total_seconds() / 86_400, 1) if last else None
    return {
        "secret": secret_id,
        "rotation_enabled": bool(described.get("RotationEnabled")),
        "rotation_days": int(schedule) if schedule else None,
        "last_rotated_or_changed": last.isoformat(timespec="seconds") if last else None,
        "age_days": age_days,
        "max_age_days": allowed,
        "overdue": age_days is None or age_days > allowed,
    }


def report(
    audit: ConfigAudit,
    stored: dict[str, str],
    secret_ids: list[str],
    *,
    limit: int = 100,
    now: datetime | None = None,
) -> dict[str, Any]:
    moment = now or datetime.now(UTC)
    changes = _changes(audit, limit)
    unapproved = _unapproved(audit, changes, stored)
    secrets = [secret_status(s, now=moment) for s in secret_ids]
    overdue = [s["secret"] for s in secrets if s["overdue"]]
    return {
        "generated_at": moment.isoformat(timespec="seconds"),
        "compliant": not unapproved and not overdue,
        "changes": changes,
        "by_author": _by_author(changes),
        "unapproved_protected_changes": unapproved,
        "secrets": secrets,
        "secrets_overdue": overdue,
    }
