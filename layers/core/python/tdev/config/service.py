"""Changing the configuration and the flags: validated, audited, approved, rolled back.

Every change is written to its store, the configuration to Parameter Store and the flags to AppConfig (a
hosted configuration version holding every flag, then a deployment: tdev.config.flag_store), which running
functions poll, and recorded as a version in the audit trail (tdev.data.config_audit): who, what (each key
from -> to), why, the approver, the whole layer and its checksum. A change to a protected key
(`PROTECTED_KEYS`) is held until an admin other than its author approves it. A rollback first records the
current layer as a snapshot version, then restores the chosen version's layer as a new version.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from tdev import resets
from tdev.config import flag_store, live
from tdev.config.flags import FlagSet, FlagSpec, dump
from tdev.config.model import (
    KEYS,
    PROTECTED_KEYS,
    Configuration,
    ConfigValidationError,
    encode,
    validate,
)
from tdev.config.parameters import CONFIG, FLAGS
from tdev.data.config_audit import ConfigAudit, checksum
from tdev.errors import AuthorizationError, ConflictError, ValidationError
from tdev.settings import get_settings

SCOPES = (CONFIG, FLAGS)


def _diff(before: dict[str, str], after: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {
        key: {"from": before.get(key), "to": after.get(key)}
        for key in sorted({*before, *after})
        if before.get(key) != after.get(key)
    }


def check_config_layer(layer: dict[str, str]) -> Configuration:
    """The configuration `layer` would produce over defaults and environment; every error listed."""
    return validate(live.merge(layer))


def check_flags_layer(layer: dict[str, str]) -> None:
    details: list[dict[str, object]] = []
    for name, document in sorted(layer.items()):
        try:
            FlagSpec.model_validate_json(document)
        except PydanticValidationError as exc:
            details += [
                {"field": ".".join([name, *(str(p) for p in err["loc"])]), "message": err["msg"]}
                for err in exc.errors()
            ]
    if details:
        raise ConfigValidationError(details)


class ConfigService:
    def __init__(self, audit: ConfigAudit) -> None:
        self.audit = audit

    # ------------------------------------------------------------------------------------ reading
    def layer(self, scope: str) -> dict[str, str]:
        return dict(live.stored(scope, force=True))

    def _base(self, scope: str) -> dict[str, str]:
        """What a change applies to. The flags: the audit's head version, which every change records before
        it deploys (AppConfig's data plane may lag a change another API container made by up to one
        polling interval, and a change on a stale base would undo it); before the first change, the
        deployed document (the stack's defaults)."""
        if scope == FLAGS:
            head = self.audit.head(FLAGS)
            if head:
                return dict(self.audit.version(FLAGS, head)["layer"])
        return self.layer(scope)

    def show(self) -> dict[str, Any]:
        """The effective configuration, where each value comes from, and the audited version."""
        stored = self.layer(CONFIG)
        from_environment = live.environment_keys()
        effective = check_config_layer(stored).model_dump(mode="json")
        return {
            "version": self.audit.head(CONFIG),
            "poll_seconds": get_settings().config_poll_seconds,
            "values": effective,
            "sources": {
                key: "parameter_store"
                if key in stored
                else ("environment" if key in from_environment else "default")
                for key in KEYS
            },
            "protected": sorted(PROTECTED_KEYS),
        }

    def flags(self, user: str | None = None, segments: tuple[str, ...] = ()) -> dict[str, Any]:
        flag_set = FlagSet(self.layer(FLAGS))
        listed: dict[str, Any] = {}
        for name in flag_set.names():
            spec = flag_set.spec(name)
            entry: dict[str, Any] = {
                "spec": spec.model_dump(mode="json", exclude_defaults=True) if spec else None
            }
            if user is not None:
                value, why = flag_set.explain(name, user, segments)
                entry |= {"value": value, "reason": why, "variant": flag_set.variant(name, user, segments)}
            listed[name] = entry
        return {"version": self.audit.head(FLAGS), "flags": listed}

    def history(self, scope: str, limit: int = 50) -> list[dict[str, Any]]:
        return self.audit.history(scope, limit=limit)

    def compliance(self, limit: int = 100) -> dict[str, Any]:
        """Who changed what, unapproved changes to protected keys, secrets past their rotation age."""
        from tdev.config.compliance import report
        from tdev.environment import provider_secrets

        settings = get_settings()
        secret_ids = [
            *([settings.api_signing_secret] if settings.api_signing_secret else []),
            *sorted(provider_secrets().values()),
        ]
        return report(self.audit, self.layer(CONFIG), secret_ids, limit=limit)

    # ---------------------------------------------------------------------------------- changing
    def set_value(self, key: str, value: Any, *, author: str, reason: str) -> dict[str, Any]:
        if key not in KEYS:
            raise ValidationError(f"unknown configuration key {key!r}", field="key")
        return self._change(CONFIG, {key: encode(key, value)}, author=author, reason=reason)

    def set_flag(self, name: str, spec: FlagSpec, *, author: str, reason: str) -> dict[str, Any]:
        return self._change(FLAGS, {name: dump(spec)}, author=author, reason=reason)

    def _change(self, scope: str, change: dict[str, str], *, author: str, reason: str) -> dict[str, Any]:
        before = self._base(scope)
        after = {**before, **change}
        self._check(scope, after)
        if scope == CONFIG and set(change) & PROTECTED_KEYS:
            pending = self.audit.propose(scope, change, author=author, reason=reason)
            return {
                "status": "pending_approval",
                **pending,
                "protected": sorted(set(change) & PROTECTED_KEYS),
            }
        return {"status": "applied", **self._apply(scope, before, after, author=author, reason=reason)}

    def approve(self, scope: str, change_id: str, *, approver: str) -> dict[str, Any]:
        pending = self.audit.pending(scope, change_id)
        if pending["author"] == approver:
            raise AuthorizationError(
                f"{approver} wrote change {change_id}: a protected change needs another admin's approval"
            )
        before = self._base(scope)
        after = {**before, **pending["change"]}
        self._check(scope, after)  # still valid over what changed since it was proposed
        applied = self._apply(
            scope, before, after, author=pending["author"], reason=pending["reason"], approved_by=approver
        )
        self.audit.close(scope, change_id)
        return {"status": "applied", **applied}

    def rollback(self, scope: str, version: int, *, author: str, reason: str) -> dict[str, Any]:
        target = self.audit.version(scope, version)
        if checksum(target["layer"]) != target["checksum"]:
            raise ConflictError(
                f"{scope} version {version} fails its checksum: not restored", field="version"
            )
        before = self._base(scope)
        self._check(scope, target["layer"])
        head = self.audit.head(scope)
        snapshot = self.audit.record(
            scope,
            layer=before,
            changed={},
            author=author,
            reason=f"snapshot before rollback to version {version}",
            kind="snapshot",
            expected_head=head,
        )
        applied = self._apply(
            scope,
            before,
            dict(target["layer"]),
            author=author,
            reason=reason or f"rollback to version {version}",
            kind="rollback",
            expected_head=snapshot["version"],
        )
        return {"status": "applied", "snapshot_version": snapshot["version"], **applied}

    @staticmethod
    def _check(scope: str, layer: dict[str, str]) -> None:
        if scope == CONFIG:
            check_config_layer(layer)
        else:
            check_flags_layer(layer)

    def _apply(
        self,
        scope: str,
        before: dict[str, str],
        after: dict[str, str],
        *,
        author: str,
        reason: str,
        approved_by: str | None = None,
        kind: str = "set",
        expected_head: int | None = None,
    ) -> dict[str, Any]:
        # The version first: if another writer got there, nothing is written to the store.
        record = self.audit.record(
            scope,
            layer=after,
            changed=_diff(before, after),
            author=author,
            reason=reason,
            approved_by=approved_by,
            kind=kind,
            expected_head=expected_head,
        )
        if scope == CONFIG:
            live.layer().write(after, before)
        else:
            flag_store.write(after, description=f"flags version {record['version']} by {author}: {reason}")
        return {k: record[k] for k in ("version", "checksum", "changed", "author", "approved_by")}


def validate_layer(scope: str, layer: dict[str, str]) -> dict[str, Any]:
    """Check a candidate layer without writing it: raises ConfigValidationError naming every bad key."""
    if scope not in SCOPES:
        raise ValidationError(f"unknown scope {scope!r}", field="scope")
    ConfigService._check(scope, layer)
    return {"valid": True, "scope": scope, "keys": sorted(layer)}


@lru_cache(maxsize=1)
def service() -> ConfigService:
    return ConfigService(ConfigAudit(get_settings().table_name))


@resets.on_reset
def reset() -> None:
    service.cache_clear()
