"""Role-based access control with conditions: explicit deny wins, anything unmatched is denied.

A role has permissions {id, resource, action, effect, conditions} and may inherit other roles (cycles are
harmless: each role is expanded once). Resources and actions are glob patterns ("project/*", "*").
Conditions: `time_window` (UTC hours and weekdays), `source_ip` (CIDRs), `attribute_equals`,
`attribute_contains`, `attribute_regex` on the request's attributes; the value "${principal}" stands for
the caller, which is how ownership is written ("owner" equals "${principal}").

Built-in roles (SPEC 1.11): admin `*`; developer: own projects CRUD, submit requests, run and monitor
agents, read executions; viewer: read and list. Custom roles and overrides live in the single table
(`PK=ROLE#<name>, SK=ROLE`). Decisions are cached briefly and every decision is audited.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from tdev import aws
from tdev.errors import ValidationError
from tdev.observability import logger

Effect = Literal["allow", "deny"]
CONDITION_KINDS = frozenset(
    {"time_window", "source_ip", "attribute_equals", "attribute_contains", "attribute_regex"}
)


@dataclass(frozen=True)
class Condition:
    kind: str
    key: str = ""
    value: Any = None

    def __post_init__(self) -> None:
        if self.kind not in CONDITION_KINDS:
            raise ValidationError(f"unknown condition kind {self.kind!r}", field="conditions.kind")
        if self.kind == "attribute_regex":
            re.compile(str(self.value))
        if self.kind == "source_ip":
            for cidr in self._list():
                ipaddress.ip_network(cidr, strict=False)

    def _list(self) -> list[Any]:
        return list(self.value) if isinstance(self.value, list | tuple) else [self.value]

    def holds(self, request: AccessRequest) -> bool:
        if self.kind == "time_window":
            spec = dict(self.value or {})
            now = request.now.astimezone(UTC)
            days = spec.get("days")
            if days is not None and now.weekday() not in days:
                return False
            start, end = int(spec.get("start_hour", 0)), int(spec.get("end_hour", 24))
            return start <= now.hour < end if start <= end else (now.hour >= start or now.hour < end)
        if self.kind == "source_ip":
            if not request.source_ip:
                return False
            try:
                address = ipaddress.ip_address(request.source_ip)
            except ValueError:
                return False
            return any(address in ipaddress.ip_network(c, strict=False) for c in self._list())
        actual = request.attributes.get(self.key)
        expected = request.principal if self.value == "${principal}" else self.value
        if actual is None:
            return False
        if self.kind == "attribute_equals":
            return str(actual) == str(expected)
        if self.kind == "attribute_contains":
            return str(expected) in (
                [str(a) for a in actual] if isinstance(actual, list | tuple | set) else str(actual)
            )
        return re.fullmatch(str(expected), str(actual)) is not None


@dataclass(frozen=True)
class Permission:
    id: str
    resource: str
    action: str
    effect: Effect = "allow"
    conditions: tuple[Condition, ...] = ()

    def matches(self, request: AccessRequest) -> bool:
        return (
            fnmatch.fnmatchcase(request.resource, self.resource)
            and fnmatch.fnmatchcase(request.action, self.action)
            and all(c.holds(request) for c in self.conditions)
        )


@dataclass(frozen=True)
class Role:
    name: str
    permissions: tuple[Permission, ...] = ()
    inherits: tuple[str, ...] = ()

    def to_item(self) -> dict[str, Any]:
        return {
            "PK": f"ROLE#{self.name}",
            "SK": "ROLE",
            "name": self.name,
            "inherits": list(self.inherits),
            "permissions": json.dumps([asdict(p) for p in self.permissions]),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Role:
        permissions = data.get("permissions", [])
        if isinstance(permissions, str):
            permissions = json.loads(permissions)
        try:
            return cls(
                name=str(data["name"]),
                inherits=tuple(str(r) for r in data.get("inherits", [])),
                permissions=tuple(
                    Permission(
                        id=str(p["id"]),
                        resource=str(p["resource"]),
                        action=str(p["action"]),
                        effect=p.get("effect", "allow"),
                        conditions=tuple(Condition(**c) for c in p.get("conditions", [])),
                    )
                    for p in permissions
                ),
            )
        except (KeyError, TypeError) as exc:
            raise ValidationError(f"invalid role definition: {exc}", field="permissions") from exc


@dataclass(frozen=True)
class AccessRequest:
    principal: str
    roles: tuple[str, ...]
    resource: str
    action: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    source_ip: str | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    policy_ids: tuple[str, ...] = ()
    cached: bool = False


SHARED_PROJECT = "default"  # the sandbox every developer may submit to; other projects belong to one owner
OWNER = Condition("attribute_equals", "owner", "${principal}")

BUILTIN_ROLES: dict[str, Role] = {
    "viewer": Role(
        "viewer",
        permissions=(
            Permission("viewer-read", "*", "read"),
            Permission("viewer-list", "*", "list"),
            # Keys, tokens, principals, roles and the audit trail are for admins only, even to read.
            Permission("viewer-no-security", "security/*", "*", effect="deny"),
        ),
    ),
    "developer": Role(
        "developer",
        inherits=("viewer",),
        permissions=(
            Permission("developer-submit", "request/*", "create"),
            Permission("developer-project-create", "project/*", "create"),
            Permission("developer-own-projects", "project/*", "*", conditions=(OWNER,)),
            Permission("developer-shared-project", f"project/{SHARED_PROJECT}", "execute"),
            Permission("developer-agents-execute", "agent/*", "execute"),
            Permission("developer-agents-monitor", "agent/*", "monitor"),
            # Sessions: the API lets a developer act only on sessions it opened (ownership checked there).
            Permission("developer-sessions", "session/*", "*"),
        ),
    ),
    "admin": Role("admin", permissions=(Permission("admin-all", "*", "*"),)),
}


class PolicyEngine:
    """Evaluates access requests against a set of roles (no I/O: the store feeds it)."""

    def __init__(self, roles: Mapping[str, Role]) -> None:
        self.roles = dict(roles)

    def expand(self, names: Iterable[str]) -> list[Role]:
        """The roles named and every role they inherit, each once (inheritance cycles terminate)."""
        seen: set[str] = set()
        ordered: list[Role] = []
        pending = list(names)
        while pending:
            name = pending.pop(0)
            if name in seen:
                continue
            seen.add(name)
            role = self.roles.get(name)
            if role is not None:
                ordered.append(role)
                pending.extend(role.inherits)
        return ordered

    def decide(self, request: AccessRequest) -> Decision:
        allows: list[str] = []
        denies: list[str] = []
        for role in self.expand(request.roles):
            for permission in role.permissions:
                if permission.matches(request):
                    (denies if permission.effect == "deny" else allows).append(permission.id)
        if denies:
            return Decision(False, "explicit deny", tuple(denies))
        if allows:
            return Decision(True, "allowed", tuple(allows))
        return Decision(False, "no permission matches (default deny)")

    def has_time_conditions(self, roles: Iterable[str]) -> bool:
        return any(
            c.kind == "time_window" for r in self.expand(roles) for p in r.permissions for c in p.conditions
        )


class PolicyStore:
    """Roles in the single table (`ROLE#<name>`) over the built-in ones, re-read every `ttl_seconds`."""

    def __init__(self, table_name: str, *, ttl_seconds: float = 60.0) -> None:
        self.table_name, self.ttl = table_name, ttl_seconds
        self._roles: dict[str, Role] | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def put_role(self, role: Role) -> None:
        aws.table(self.table_name).put_item(Item=role.to_item())
        self.invalidate()

    def invalidate(self) -> None:
        with self._lock:
            self._roles = None

    def roles(self) -> dict[str, Role]:
        with self._lock:
            if self._roles is None or time.monotonic() - self._loaded_at > self.ttl:
                roles = dict(BUILTIN_ROLES)
                table = aws.table(self.table_name)
                scan: dict[str, Any] = {
                    "FilterExpression": "SK = :sk AND begins_with(PK, :pk)",
                    "ExpressionAttributeValues": {":sk": "ROLE", ":pk": "ROLE#"},
                }
                while True:
                    page = table.scan(**scan)
                    for item in page.get("Items", []):
                        role = Role.from_dict(item)
                        roles[role.name] = role
                    if "LastEvaluatedKey" not in page:
                        break
                    scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]
                self._roles, self._loaded_at = roles, time.monotonic()
            return self._roles


class AuditLog:
    """One item per decision: `PK=AUDIT#<principal>, SK=<iso time>#<id>`, kept `retention_days`."""

    def __init__(self, table_name: str, *, retention_days: int = 90) -> None:
        self.table_name, self.retention_days = table_name, retention_days

    def record(self, request: AccessRequest, decision: Decision) -> None:
        now = datetime.now(UTC)
        item = {
            "PK": f"AUDIT#{request.principal}",
            "SK": f"{now.isoformat()}#{uuid.uuid4().hex[:8]}",
            "principal": request.principal,
            "roles": list(request.roles),
            "resource": request.resource,
            "action": request.action,
            "decision": "allow" if decision.allowed else "deny",
            "reason": decision.reason,
            "policy_ids": list(decision.policy_ids),
            "source_ip": request.source_ip or "",
            "at": now.isoformat(),
            "expires_at": int(now.timestamp()) + self.retention_days * 86_400,
        }
        aws.table(self.table_name).put_item(Item=item)
        # Every decision is in the table; the security event log gets denials (and allows when debugging).
        (logger.debug if decision.allowed else logger.info)(
            "access decision",
            extra={
                "security_event": "access_decision",
                **{k: v for k, v in item.items() if k not in ("PK", "SK")},
            },
        )

    def entries(self, principal: str) -> list[dict[str, Any]]:
        response = aws.table(self.table_name).query(
            KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": f"AUDIT#{principal}"}
        )
        return [dict(i) for i in response.get("Items", [])]


class Authorizer:
    """Decide (with a brief decision cache) and audit every decision, cached or not."""

    def __init__(
        self,
        store: PolicyStore,
        audit: AuditLog,
        *,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.audit, self.cache_seconds, self._clock = store, audit, cache_seconds, clock
        self._cache: dict[str, tuple[float, Decision]] = {}
        self._lock = threading.Lock()

    def decide(self, request: AccessRequest) -> Decision:
        engine = PolicyEngine(self.store.roles())
        cacheable = not engine.has_time_conditions(request.roles)
        key = json.dumps(
            [
                request.principal,
                sorted(request.roles),
                request.resource,
                request.action,
                sorted((k, str(v)) for k, v in request.attributes.items()),
                request.source_ip,
            ]
        )
        decision: Decision | None = None
        if cacheable:
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None and self._clock() - hit[0] <= self.cache_seconds:
                    decision = Decision(hit[1].allowed, hit[1].reason, hit[1].policy_ids, cached=True)
        if decision is None:
            decision = engine.decide(request)
            if cacheable:
                with self._lock:
                    if len(self._cache) > 10_000:
                        self._cache.clear()
                    self._cache[key] = (self._clock(), decision)
        self.audit.record(request, decision)
        return decision
