"""The RBAC decision matrix: built-in and custom roles, inheritance (with a cycle), conditions, wildcards,
deny-overrides, ownership and default deny — one parametrized row per decision."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tdev.security.rbac import BUILTIN_ROLES, AccessRequest, Condition, Permission, PolicyEngine, Role

MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
MONDAY_22 = datetime(2026, 11, 23, 22, 0, tzinfo=UTC)
SUNDAY_10 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

CUSTOM = {
    # Inheritance cycle: a → b → a; each still contributes its own permissions exactly once.
    "cycle-a": Role("cycle-a", (Permission("a-read-docs", "doc/*", "read"),), inherits=("cycle-b",)),
    "cycle-b": Role("cycle-b", (Permission("b-write-docs", "doc/*", "write"),), inherits=("cycle-a",)),
    "self-loop": Role("self-loop", (Permission("loop-ping", "ping", "call"),), inherits=("self-loop",)),
    # Working hours on weekdays only.
    "office": Role(
        "office",
        (
            Permission(
                "office-deploy",
                "deploy/*",
                "run",
                conditions=(
                    Condition(
                        "time_window", value={"start_hour": 9, "end_hour": 17, "days": [0, 1, 2, 3, 4]}
                    ),
                ),
            ),
        ),
    ),
    "night": Role(
        "night",
        (
            Permission(
                "night-batch",
                "batch/*",
                "run",
                conditions=(Condition("time_window", value={"start_hour": 20, "end_hour": 6}),),
            ),
        ),
    ),
    "vpn": Role(
        "vpn",
        (
            Permission(
                "vpn-admin",
                "infra/*",
                "*",
                conditions=(Condition("source_ip", value=["10.0.0.0/8", "192.168.1.0/24"]),),
            ),
        ),
    ),
    "tagged": Role(
        "tagged",
        (
            Permission(
                "tag-equals", "report/*", "read", conditions=(Condition("attribute_equals", "team", "blue"),)
            ),
            Permission(
                "tag-contains",
                "report/*",
                "share",
                conditions=(Condition("attribute_contains", "labels", "public"),),
            ),
            Permission(
                "tag-regex",
                "report/*",
                "export",
                conditions=(Condition("attribute_regex", "format", r"csv|json"),),
            ),
        ),
    ),
    # A developer who may not delete anything, even their own projects: deny wins over the inherited allow.
    "careful-developer": Role(
        "careful-developer",
        (Permission("no-deletes", "*", "delete", effect="deny"),),
        inherits=("developer",),
    ),
    "deny-secrets": Role("deny-secrets", (Permission("deny-secret-read", "secret/*", "*", effect="deny"),)),
    "unknown-parent": Role(
        "unknown-parent", (Permission("u-read", "x/*", "read"),), inherits=("does-not-exist",)
    ),
}
ENGINE = PolicyEngine({**BUILTIN_ROLES, **CUSTOM})

# (roles, resource, action, attributes, source ip, time, allowed, policy ids that decided)
Row = tuple[tuple[str, ...], str, str, dict[str, Any], str | None, datetime, bool, tuple[str, ...]]
ROWS: list[Row] = []


def row(
    roles: tuple[str, ...],
    resource: str,
    action: str,
    allowed: bool,
    ids: tuple[str, ...] = (),
    *,
    attrs: dict[str, Any] | None = None,
    ip: str | None = "127.0.0.1",
    at: datetime = MONDAY_10,
) -> None:
    ROWS.append((roles, resource, action, attrs or {}, ip, at, allowed, ids))


# admin: everything, everywhere
for resource, action in [
    ("request/new", "create"),
    ("project/p1", "delete"),
    ("security/apikey/new", "create"),
    ("security/token/*", "revoke"),
    ("execution/e1", "read"),
    ("anything", "whatever"),
    ("security/role/*", "update"),
    ("agent/catalog", "list"),
]:
    row(("admin",), resource, action, True, ("admin-all",))
# viewer: read and list, nothing else; never security resources
for resource in ("execution/e1", "agent/catalog", "project/p1", "request/r1", "doc/readme"):
    row(("viewer",), resource, "read", True, ("viewer-read",))
    row(("viewer",), resource, "list", True, ("viewer-list",))
for resource, action in [
    ("request/new", "create"),
    ("project/p1", "update"),
    ("project/p1", "delete"),
    ("agent/a1", "execute"),
    ("project/default", "execute"),
    ("execution/e1", "cancel"),
]:
    row(("viewer",), resource, action, False)
for resource, action in [
    ("security/apikey/*", "list"),
    ("security/audit/*", "read"),
    ("security/token/*", "revoke"),
]:
    row(("viewer",), resource, action, False, ("viewer-no-security",))
# developer: inherits viewer; submits; owns projects; runs and monitors agents
row(("developer",), "request/new", "create", True, ("developer-submit",))
row(("developer",), "execution/e1", "read", True, ("viewer-read",))
row(("developer",), "agent/catalog", "list", True, ("viewer-list",))
row(("developer",), "agent/code", "execute", True, ("developer-agents-execute",))
row(("developer",), "agent/code", "monitor", True, ("developer-agents-monitor",))
row(("developer",), "agent/code", "delete", False)
row(("developer",), "project/new-one", "create", True, ("developer-project-create",))
row(("developer",), "project/default", "execute", True, ("developer-shared-project",))
for action in ("read", "update", "delete", "execute"):
    row(
        ("developer",),
        "project/mine",
        action,
        True,
        ("developer-own-projects",) if action != "read" else ("viewer-read", "developer-own-projects"),
        attrs={"owner": "alice"},
    )
for action in ("update", "delete", "execute"):
    row(("developer",), "project/theirs", action, False, attrs={"owner": "bob"})
    row(("developer",), "project/unowned", action, False)
row(("developer",), "project/theirs", "read", True, ("viewer-read",), attrs={"owner": "bob"})
for resource, action in [
    ("security/apikey/new", "create"),
    ("security/token/*", "revoke"),
    ("security/principal/*", "disable"),
    ("security/role/*", "update"),
]:
    row(("developer",), resource, action, False, ("viewer-no-security",))
# deny overrides: an explicit deny anywhere in the expanded roles wins
row(("careful-developer",), "project/mine", "delete", False, ("no-deletes",), attrs={"owner": "alice"})
row(
    ("careful-developer",),
    "project/mine",
    "update",
    True,
    ("developer-own-projects",),
    attrs={"owner": "alice"},
)
row(("careful-developer",), "request/new", "create", True, ("developer-submit",))
row(("admin", "deny-secrets"), "secret/db", "read", False, ("deny-secret-read",))
row(("admin", "deny-secrets"), "secret/db", "rotate", False, ("deny-secret-read",))
row(("admin", "deny-secrets"), "public/db", "read", True, ("admin-all",))
row(("viewer", "deny-secrets"), "secret/x", "list", False, ("deny-secret-read",))
row(("deny-secrets",), "other/x", "read", False)
# inheritance cycles terminate and still grant each role's permissions
row(("cycle-a",), "doc/1", "read", True, ("a-read-docs",))
row(("cycle-a",), "doc/1", "write", True, ("b-write-docs",))
row(("cycle-b",), "doc/1", "read", True, ("a-read-docs",))
row(("cycle-b",), "doc/1", "delete", False)
row(("self-loop",), "ping", "call", True, ("loop-ping",))
row(("self-loop",), "pong", "call", False)
row(("unknown-parent",), "x/1", "read", True, ("u-read",))
row(("unknown-parent",), "y/1", "read", False)
# time windows
row(("office",), "deploy/api", "run", True, ("office-deploy",), at=MONDAY_10)
row(("office",), "deploy/api", "run", False, at=MONDAY_22)
row(("office",), "deploy/api", "run", False, at=SUNDAY_10)
row(("office",), "deploy/api", "run", False, at=datetime(2026, 11, 23, 17, 0, tzinfo=UTC))
row(("office",), "deploy/api", "run", True, ("office-deploy",), at=datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
row(("night",), "batch/nightly", "run", True, ("night-batch",), at=MONDAY_22)
row(("night",), "batch/nightly", "run", True, ("night-batch",), at=datetime(2026, 11, 23, 3, 0, tzinfo=UTC))
row(("night",), "batch/nightly", "run", False, at=MONDAY_10)
# source IP
row(("vpn",), "infra/db", "restart", True, ("vpn-admin",), ip="10.1.2.3")
row(("vpn",), "infra/db", "restart", True, ("vpn-admin",), ip="192.168.1.77")
row(("vpn",), "infra/db", "restart", False, ip="192.168.2.1")
row(("vpn",), "infra/db", "restart", False, ip="203.0.113.9")
row(("vpn",), "infra/db", "restart", False, ip=None)
row(("vpn",), "infra/db", "restart", False, ip="not-an-ip")
# attribute conditions
row(("tagged",), "report/q3", "read", True, ("tag-equals",), attrs={"team": "blue"})
row(("tagged",), "report/q3", "read", False, attrs={"team": "red"})
row(("tagged",), "report/q3", "read", False)
row(("tagged",), "report/q3", "share", True, ("tag-contains",), attrs={"labels": ["internal", "public"]})
row(("tagged",), "report/q3", "share", True, ("tag-contains",), attrs={"labels": "public-beta"})
row(("tagged",), "report/q3", "share", False, attrs={"labels": ["internal"]})
row(("tagged",), "report/q3", "export", True, ("tag-regex",), attrs={"format": "csv"})
row(("tagged",), "report/q3", "export", True, ("tag-regex",), attrs={"format": "json"})
row(("tagged",), "report/q3", "export", False, attrs={"format": "csvx"})
row(("tagged",), "report/q3", "export", False, attrs={"format": "pdf"})
# wildcards are globs on the whole name
row(("developer",), "requestx/new", "create", False)
row(("developer",), "agent", "execute", False)
row(("developer",), "agent/", "execute", True, ("developer-agents-execute",))
row(("viewer",), "anything/at/all", "read", True, ("viewer-read",))
row(("viewer",), "anything/at/all", "reads", False)
# default deny: no roles, unknown roles
for roles in ((), ("ghost",), ("Admin",)):
    for resource, action in [("agent/catalog", "list"), ("execution/e1", "read"), ("request/new", "create")]:
        row(roles, resource, action, False)
# multiple roles union
row(("viewer", "office"), "deploy/api", "run", True, ("office-deploy",))
row(("viewer", "tagged"), "report/q3", "read", True, ("viewer-read", "tag-equals"), attrs={"team": "blue"})


def test_the_matrix_has_at_least_100_cases() -> None:
    assert len(ROWS) >= 100


@pytest.mark.parametrize(("roles", "resource", "action", "attrs", "ip", "at", "allowed", "ids"), ROWS)
def test_decision(
    roles: tuple[str, ...],
    resource: str,
    action: str,
    attrs: dict[str, Any],
    ip: str | None,
    at: datetime,
    allowed: bool,
    ids: tuple[str, ...],
) -> None:
    decision = ENGINE.decide(
        AccessRequest(
            principal="alice",
            roles=roles,
            resource=resource,
            action=action,
            attributes=attrs,
            source_ip=ip,
            now=at,
        )
    )
    assert decision.allowed is allowed, decision
    if ids:
        assert set(decision.policy_ids) == set(ids), decision
    if not allowed and not ids:
        assert decision.reason == "no permission matches (default deny)"


def test_roles_round_trip_through_their_table_item() -> None:
    for role in CUSTOM.values():
        assert Role.from_dict(role.to_item()) == role


def test_an_unknown_condition_kind_is_refused() -> None:
    from tdev.errors import ValidationError

    with pytest.raises(ValidationError):
        Role.from_dict(
            {
                "name": "x",
                "permissions": [
                    {"id": "p", "resource": "*", "action": "*", "conditions": [{"kind": "moon_phase"}]}
                ],
            }
        )
