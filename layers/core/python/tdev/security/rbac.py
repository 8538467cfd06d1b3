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
from functools import lru_cache
from typing import Annotated, Any, Literal

import re2
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    StrictBool,
    StrictInt,
    TypeAdapter,
    field_validator,
)
from pydantic import ValidationError as PydanticValidationError

from tdev import aws, caching
from tdev.caching import Freshness, TieredCache
from tdev.data import schema
from tdev.data.codec import from_item
from tdev.errors import ValidationError
from tdev.observability import logger

Effect = Literal["allow", "deny"]
CONDITION_KINDS = frozenset(
    {"time_window", "source_ip", "attribute_equals", "attribute_contains", "attribute_regex"}
)
MAX_REGEX_LENGTH = 256
# Globs of resources and actions: fnmatch patterns over a closed alphabet (no character classes).
GLOB_PATTERN = r"^[A-Za-z0-9_.:@/*?#=+${}-]{1,200}$"
NAME_PATTERN = r"^[A-Za-z0-9@._:-]{1,128}$"
ATTRIBUTE_KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
Scalar = Annotated[str, Field(max_length=256)] | StrictInt | StrictBool


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeWindowSpec(_Closed):
    """UTC hours: start 0-23 inclusive, end 0-24 exclusive (end < start wraps past midnight); days 0-6."""

    start_hour: Annotated[StrictInt, Field(ge=0, le=23)] = 0
    end_hour: Annotated[StrictInt, Field(ge=0, le=24)] = 24
    days: Annotated[list[Annotated[StrictInt, Field(ge=0, le=6)]], Field(max_length=7)] | None = None


class TimeWindowCondition(_Closed):
    kind: Literal["time_window"]
    key: Literal[""] = ""
    value: TimeWindowSpec = Field(default_factory=TimeWindowSpec)


class SourceIpCondition(_Closed):
    kind: Literal["source_ip"]
    key: Literal[""] = ""
    value: Annotated[list[IPvAnyNetwork], Field(min_length=1, max_length=50)]

    @field_validator("value", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class AttributeCondition(_Closed):
    kind: Literal["attribute_equals", "attribute_contains"]
    key: Annotated[str, Field(pattern=ATTRIBUTE_KEY_PATTERN)]
    value: Scalar


class AttributeRegexCondition(_Closed):
    """Regexes run on RE2 (linear time, no backreferences): no pattern can backtrack catastrophically."""

    kind: Literal["attribute_regex"]
    key: Annotated[str, Field(pattern=ATTRIBUTE_KEY_PATTERN)]
    value: Annotated[str, Field(min_length=1, max_length=MAX_REGEX_LENGTH)]

    @field_validator("value")
    @classmethod
    def _compiles(cls, value: str) -> str:
        if value != PRINCIPAL_PLACEHOLDER:
            _regex(value)
        return value


ConditionSpec = Annotated[
    TimeWindowCondition | SourceIpCondition | AttributeCondition | AttributeRegexCondition,
    Field(discriminator="kind"),
]


class PermissionSpec(_Closed):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    resource: Annotated[str, Field(pattern=GLOB_PATTERN)]
    action: Annotated[str, Field(pattern=GLOB_PATTERN)]
    effect: Effect = "allow"
    conditions: Annotated[list[ConditionSpec], Field(max_length=10)] = Field(default_factory=list)


class RoleSpec(_Closed):
    """A role as an admin writes it (PUT /v1/roles/{name}) and as it is stored: every field closed."""

    inherits: Annotated[list[Annotated[str, Field(pattern=NAME_PATTERN)]], Field(max_length=20)] = Field(
        default_factory=list
    )
    permissions: Annotated[list[PermissionSpec], Field(max_length=100)] = Field(default_factory=list)


PRINCIPAL_PLACEHOLDER = "${principal}"
_CONDITION = TypeAdapter(ConditionSpec)


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> Any:
    """A compiled RE2 pattern (bounded length; linear-time matching), or ValueError."""
    if len(pattern) > MAX_REGEX_LENGTH:
        raise ValueError(f"regex longer than {MAX_REGEX_LENGTH} characters")
    try:
        return re2.compile(pattern)
    except re2.error as exc:
        raise ValueError(f"regex does not compile: {exc}") from None


def _field_of(error: PydanticValidationError, prefix: str = "") -> str:
    errors = error.errors()
    first: dict[str, Any] = dict(errors[0]) if errors else {}
    # Discriminated unions add the kind as a path element ("time_window"): it names no field.
    location = [str(p) for p in first.get("loc", ()) if str(p) not in CONDITION_KINDS]
    return ".".join([prefix, *location] if prefix else location) or prefix or "body"


def _message_of(error: PydanticValidationError) -> str:
    errors = error.errors()
    return str(errors[0].get("msg") or "invalid") if errors else "invalid"


@dataclass(frozen=True)
class Condition:
    kind: str
    key: str = ""
    value: Any = None

    def __post_init__(self) -> None:
        if self.kind not in CONDITION_KINDS:
            raise ValidationError(f"unknown condition kind {self.kind!r}", field="conditions.kind")
        try:
            spec = _CONDITION.validate_python({"kind": self.kind, "key": self.key, "value": self.value})
        except PydanticValidationError as exc:
            field = _field_of(exc, "conditions")
            raise ValidationError(f"{field}: {_message_of(exc)}", field=field) from None
        # Normalised: time windows as plain dicts, networks as their canonical strings.
        if isinstance(spec, TimeWindowCondition):
            object.__setattr__(self, "value", spec.value.model_dump(exclude_none=True))
        elif isinstance(spec, SourceIpCondition):
            object.__setattr__(self, "value", [str(n) for n in spec.value])

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
        expected = request.principal if self.value == PRINCIPAL_PLACEHOLDER else self.value
        if actual is None:
            return False
        if self.kind == "attribute_equals":
            return str(actual) == str(expected)
        if self.kind == "attribute_contains":
            return str(expected) in (
                [str(a) for a in actual] if isinstance(actual, list | tuple | set) else str(actual)
            )
        if self.value == PRINCIPAL_PLACEHOLDER:
            return str(actual) == request.principal
        return _regex(str(expected)).fullmatch(str(actual)[:4096]) is not None


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
            **schema.role_key(self.name),
            **schema.listed("ROLE", self.name),
            "name": self.name,
            "inherits": list(self.inherits),
            "permissions": json.dumps([asdict(p) for p in self.permissions]),
        }

    @classmethod
    def from_spec(cls, name: str, spec: RoleSpec) -> Role:
        return cls(
            name=name,
            inherits=tuple(spec.inherits),
            permissions=tuple(
                Permission(
                    id=p.id,
                    resource=p.resource,
                    action=p.action,
                    effect=p.effect,
                    conditions=tuple(Condition(**c.model_dump(mode="json")) for c in p.conditions),
                )
                for p in spec.permissions
            ),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Role:
        """A role from its stored item (or a dict of the same shape), validated as strictly as an admin's
        input; ValidationError names the first bad field."""
        permissions = data.get("permissions", [])
        try:
            if isinstance(permissions, str):
                permissions = json.loads(permissions)
            name = data["name"]
            if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
                raise ValidationError("invalid role name", field="name")
            spec = RoleSpec.model_validate(
                {"inherits": list(data.get("inherits") or []), "permissions": permissions}
            )
        except PydanticValidationError as exc:
            field = _field_of(exc)
            raise ValidationError(f"{field}: {_message_of(exc)}", field=field) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"invalid role definition: {exc}", field="permissions") from None
        return cls.from_spec(name, spec)

    @classmethod
    def denying_everything(cls, name: str) -> Role:
        """A stored role that no longer validates: an explicit deny of everything (fail closed)."""
        return cls(name, permissions=(Permission(f"invalid-role:{name}"[:64], "*", "*", effect="deny"),))


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
MEMBER = Condition("attribute_contains", "members", "${principal}")

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
            # Cancel: the route then needs the execution visible and `execute` on its project.
            Permission("developer-cancel", "execution/*", "cancel"),
            Permission("developer-project-create", "project/*", "create"),
            Permission("developer-own-projects", "project/*", "*", conditions=(OWNER,)),
            Permission("developer-member-submit", "project/*", "execute", conditions=(MEMBER,)),
            Permission("developer-member-read", "project/*", "read", conditions=(MEMBER,)),
            Permission("developer-shared-project", f"project/{SHARED_PROJECT}", "execute"),
            Permission("developer-agents-execute", "agent/*", "execute"),
            Permission("developer-agents-monitor", "agent/*", "monitor"),
            # Sessions: the API lets a developer act only on sessions it opened (ownership checked there).
            Permission("developer-sessions", "session/*", "*"),
        ),
    ),
    # Operators run the platform: a developer's rights, and alerts (list them, acknowledge them).
    "operator": Role(
        "operator",
        inherits=("developer",),
        permissions=(Permission("operator-alerts", "alert/*", "*"),),
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
    """Roles in the single table (`ROLE#<name>`, listed on GSI1 under `ROLE`) over the built-in ones.

    No scans: the stored roles are one Query of their listing. With a read cache (`tdev.caching`, namespace
    `roles`), every container takes that listing from the shared cache, revalidated on each use (one HGET),
    and `put_role` invalidates it strictly: once a role change is acknowledged no container decides with
    the old role (the decision cache is keyed by the roles' generation too). Without one, the listing is
    cached here and every `revision_check_seconds` one GetItem of the roles' revision counter (bumped by
    every change) tells whether it is stale. A stored role that no longer validates denies everything
    (fail closed) instead of failing every request of its holders."""

    CACHE_KEY = "listing"

    def __init__(
        self,
        table_name: str,
        *,
        ttl_seconds: float = 300.0,
        revision_check_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        cache: TieredCache | None = None,
    ) -> None:
        self.table_name, self.ttl, self.revision_check = table_name, ttl_seconds, revision_check_seconds
        self._clock = clock
        self._cache = cache
        self._roles: dict[str, Role] | None = None
        self._listing: str | None = None  # the cached listing self._roles was parsed from
        self._revision: int | None = None
        self._loaded_at = self._checked_at = 0.0
        self._lock = threading.Lock()
        self.generation = 0  # changes whenever the roles in use change (the decision cache's key)

    def put_role(self, role: Role) -> None:
        table = aws.table(self.table_name)
        try:
            table.put_item(Item=role.to_item())
            table.update_item(
                Key=schema.roles_revision_key(),
                UpdateExpression="ADD revision :one",
                ExpressionAttributeValues={":one": 1},
            )
        finally:
            self.invalidate()
            if self._cache is not None:
                self._cache.invalidate(self.CACHE_KEY, strict=True)

    def invalidate(self) -> None:
        with self._lock:
            self._roles = None
            self._listing = None

    def _current_revision(self) -> int:
        item = aws.table(self.table_name).get_item(Key=schema.roles_revision_key()).get("Item")
        return int(item["revision"]) if item else 0

    def _stored(self) -> list[dict[str, Any]]:
        """The stored roles' items (name, inherits, permissions), from their GSI1 listing."""
        items: list[dict[str, Any]] = []
        query: dict[str, Any] = {
            "IndexName": "GSI1",
            "KeyConditionExpression": "GSI1PK = :kind",
            "ExpressionAttributeValues": {":kind": "ROLE"},
        }
        table = aws.table(self.table_name)
        while True:
            page = table.query(**query)
            for item in map(from_item, page.get("Items", [])):  # Decimals become numbers
                items.append(
                    {
                        "name": str(item.get("name", "")),
                        "inherits": [str(r) for r in item.get("inherits") or []],
                        "permissions": item.get("permissions", []),
                    }
                )
            if "LastEvaluatedKey" not in page:
                return items
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    @staticmethod
    def _parse(items: Iterable[Mapping[str, Any]]) -> dict[str, Role]:
        roles = dict(BUILTIN_ROLES)
        for item in items:
            name = str(item.get("name", ""))
            try:
                role = Role.from_dict(item)
            except ValidationError as exc:
                logger.error(
                    "stored role is invalid: it denies everything until an admin rewrites it",
                    extra={"security_event": "invalid_stored_role", "role": name[:128], "field": exc.field},
                )
                role = Role.denying_everything(name)
            roles[role.name] = role
        return roles

    def _load(self) -> dict[str, Role]:
        return self._parse(self._stored())

    def roles(self) -> dict[str, Role]:
        if self._cache is not None and caching.is_enabled():
            return self._cached_roles(self._cache)
        with self._lock:
            now = self._clock()
            if self._roles is not None and now - self._loaded_at <= self.ttl:
                if now - self._checked_at <= self.revision_check:
                    return self._roles
                revision = self._current_revision()
                self._checked_at = now
                if revision == self._revision:
                    return self._roles
            revision = self._current_revision()
            self._roles, self._revision = self._load(), revision
            self.generation += 1
            self._loaded_at = self._checked_at = self._clock()
            return self._roles

    def warm(self) -> int:
        """Cold start: the roles' listing (one key, what every authorization reads) into this container's
        cache and parsed. Returns the keys warmed: 0 without a cache."""
        if self._cache is None or not caching.is_enabled():
            return 0
        self._cached_roles(self._cache)
        return 1

    def _cached_roles(self, cache: TieredCache) -> dict[str, Role]:
        """The listing from the read cache; parsed again only when it is not the one parsed last."""
        listing = cache.get_or_load(
            self.CACHE_KEY,
            lambda: json.dumps(self._stored(), sort_keys=True, default=str),
            freshness=Freshness.WARM,
            encode=_same,
            decode=_same,
        )
        with self._lock:
            if self._roles is None or listing != self._listing:
                self._roles, self._listing = self._parse(json.loads(listing)), listing
                self.generation += 1
            return self._roles


def _same(text: str) -> str:
    return text


AUDIT_PAGE_MAX = 200


class AuditLog:
    """One item per decision: `PK=AUDIT#<principal>, SK=<iso time>#<id>`, kept `retention_days`."""

    def __init__(self, table_name: str, *, retention_days: int = 90) -> None:
        self.table_name, self.retention_days = table_name, retention_days

    def record(self, request: AccessRequest, decision: Decision) -> None:
        now = datetime.now(UTC)
        item = {
            "PK": schema.audit_partition(request.principal),
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

    def page(
        self, principal: str, *, limit: int = 100, before: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Decisions about `principal`, newest first: up to `limit`, older than the cursor `before` (the
        `next` of the previous page). Returns the entries and the next cursor (None on the last page)."""
        limit = max(1, min(limit, AUDIT_PAGE_MAX))
        query: dict[str, Any] = {
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": schema.audit_partition(principal)},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if before:
            query["ExclusiveStartKey"] = {"PK": schema.audit_partition(principal), "SK": before}
        response = aws.table(self.table_name).query(**query)
        items = [dict(i) for i in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        cursor = str(last["SK"]) if last and len(items) == limit else None
        return [
            {k: v for k, v in i.items() if k not in ("PK", "SK")} | {"id": i["SK"]} for i in items
        ], cursor

    def entries(self, principal: str, *, limit: int = 100) -> list[dict[str, Any]]:
        return self.page(principal, limit=limit)[0]


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
                self.store.generation,  # a changed role is never decided from an older decision
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
