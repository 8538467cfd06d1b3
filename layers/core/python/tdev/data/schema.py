"""The single table's shape, in one place: indexes, stream, and one key builder per entity.

The CDK data stack and the local runtime both build the table from these definitions, so the
deployed table and the emulated one cannot drift apart. Repositories build keys only through the
functions below (docs/data-model.md lists every access pattern and the test that exercises it).

Entities (PK / SK):
    USER        USER#<id>                    PROFILE
    PROJECT     PROJECT#<id>                 PROJECT
    AGENT       AGENT#<name>                 SPEC | STATS | VERSION#<version> | RUN#<run id>
                AGENTS                       CATALOG  (the built-in catalog's fingerprint last upserted)
    SESSION     SESSION#<id>                 SESSION
    EXECUTION   EXECUTION#<id>               EXECUTION | PLAN | TASK#<task> | COMPENSATION#<task>
                                             | VERIFY#<n, 4 digits> | FIX#<n, 4 digits>  (the verify loop)
    TASK        EXECUTION#<id>               TASK#<task_id>   (in its execution's partition)
    LOCK        LOCK#<name>                  LOCK
    OUTBOX      OUTBOX#<partition key>       EVENT#<event id>  (an execution's: its history)
    PROGRESS    PROGRESS#<execution id>      HEAD | SEQ#<n, 10 digits>  (live progress: the bus's events
                                             in arrival order, numbered 1, 2, ... for resuming streams)
    CONNECTION  CONNECTION#<connection id>   CONNECTION | SUBSCRIPTION#<execution id>  (a WebSocket client:
                                             who connected, and each execution it follows with the last
                                             event id sent to it; TTL; subscriptions listed on GSI4 under
                                             LOOKUP#SUBSCRIBERS#<execution id>)
    ROLE        ROLE#<name>                  ROLE             (custom roles; ROLES / REVISION bumps on change)
    APIKEY      APIKEY#<key id>              APIKEY
    REVOKED     REVOKED#<jti>                REVOKED
    PRINCIPAL   PRINCIPAL#<id>               STATUS | MEMBER#<project> | SUSPENSION
    BUDGET      BUDGET#<USER|PROJECT>#<id>   CAP | PERIOD#<yyyy-mm>  (an admin's cap override; a calendar
                                             month's books, UTC: spent + reserved USD and tokens)
    MEMBER      PROJECT#<id>                 OWNER | MEMBER#<principal>
    AUDIT       AUDIT#<principal>            <iso time>#<id>  (newest first by querying backwards)
    CONFIG      CONFIG#<scope>               HEAD | VERSION#<n, 8 digits> | CHANGE#<id>
                (scope: config | flags; one partition per scope: its head counter, every version with
                 who/what/why/checksum and the whole layer it produced, and protected changes awaiting
                 approval)
    ERROR       ERROR#<signature>            SIGNATURE | BUCKET#<window start, epoch s> | RESOLUTION#<iso>
                (error analytics, tdev.incidents: one group per signature, its counts per window with a
                 TTL, and every resolution; listed on GSI1 under ERRORS by last_seen)
    ALERT       ALERT#<id>                   ALERT   (listed on GSI1: ALERTS -> <created_at>#<id>)
                ALERTKEY#<key>               GROUP   (the open 1 h group of a key: its alert id, window end)
Indexes:
    GSI1  by status      STATUS#<status> -> <created_at>#<id>     (and AGENT -> <name>)
          listings       ROLE -> <name>; APIKEY -> <created_at>#<id>; REVOKED -> <expires_at>#<jti>;
                         DISABLED -> <principal>   (security items an admin lists without a scan)
                         ERRORS -> <last_seen>#<signature>   (error groups, most recent last)
    GSI2  by project     PROJECT#<id>    -> <ENTITY>#<created_at>#<id>   (time-ordered)
    GSI3  by user        USER#<id>       -> <ENTITY>#<created_at>#<id>   (time-ordered)
    GSI4  sparse lookup  LOOKUP#<kind>#<value> -> <ENTITY>   (only items that have a lookup carry it)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PARTITION_KEY = "PK"
SORT_KEY = "SK"
TTL_ATTRIBUTE = "expires_at"
VERSION_ATTRIBUTE = "version"
# The outbox publisher reads new items from the table's stream.
STREAM_VIEW_TYPE = "NEW_IMAGE"


@dataclass(frozen=True)
class GlobalIndex:
    name: str
    partition_key: str
    sort_key: str
    purpose: str


GLOBAL_INDEXES: tuple[GlobalIndex, ...] = (
    GlobalIndex(
        "GSI1", "GSI1PK", "GSI1SK", "by status: STATUS#<status> -> <created_at>#<id>; agents: AGENT -> name"
    ),
    GlobalIndex(
        "GSI2", "GSI2PK", "GSI2SK", "by project, time-ordered: PROJECT#<id> -> <ENTITY>#<created_at>#<id>"
    ),
    GlobalIndex("GSI3", "GSI3PK", "GSI3SK", "by user, time-ordered: USER#<id> -> <ENTITY>#<created_at>#<id>"),
    GlobalIndex("GSI4", "GSI4PK", "GSI4SK", "sparse lookups: LOOKUP#<kind>#<value> -> <ENTITY>"),
)


def index(name: str) -> GlobalIndex:
    for candidate in GLOBAL_INDEXES:
        if candidate.name == name:
            return candidate
    raise KeyError(name)


def key_attributes() -> list[str]:
    """Every attribute used in a key schema (all strings)."""
    names = [PARTITION_KEY, SORT_KEY]
    for gsi in GLOBAL_INDEXES:
        names += [gsi.partition_key, gsi.sort_key]
    return names


def create_table_kwargs(table_name: str) -> dict[str, object]:
    """`CreateTable` arguments for the emulated table (same keys, indexes and stream as deployed)."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": "S"} for n in key_attributes()],
        "KeySchema": [
            {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": gsi.name,
                "KeySchema": [
                    {"AttributeName": gsi.partition_key, "KeyType": "HASH"},
                    {"AttributeName": gsi.sort_key, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
            for gsi in GLOBAL_INDEXES
        ],
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": STREAM_VIEW_TYPE},
    }


# ------------------------------------------------------------------------------------ key builders
def user_key(user_id: str) -> dict[str, str]:
    return {"PK": f"USER#{user_id}", "SK": "PROFILE"}


def user_email_lookup(email: str) -> dict[str, str]:
    return {"GSI4PK": f"LOOKUP#EMAIL#{email.strip().lower()}", "GSI4SK": "USER"}


def project_key(project_id: str) -> dict[str, str]:
    return {"PK": f"PROJECT#{project_id}", "SK": "PROJECT"}


def agent_key(name: str, sort: str = "SPEC") -> dict[str, str]:
    return {"PK": f"AGENT#{name}", "SK": sort}


def agent_version_key(name: str, version: str) -> dict[str, str]:
    """One immutable version of an agent's spec (`name@version`)."""
    return agent_key(name, f"VERSION#{version}")


def agent_catalog_key() -> dict[str, str]:
    """The fingerprint of the built-in catalog last upserted (agent names end in `Agent`: no clash)."""
    return {"PK": "AGENTS", "SK": "CATALOG"}


def session_key(session_id: str) -> dict[str, str]:
    return {"PK": f"SESSION#{session_id}", "SK": "SESSION"}


def session_meta_key(session_id: str) -> dict[str, str]:
    """A chat session's item (tdev.sessions.repository): its status, counters and its budget's books."""
    return {"PK": f"SESSION#{session_id}", "SK": "META"}


def execution_key(execution_id: str) -> dict[str, str]:
    return {"PK": f"EXECUTION#{execution_id}", "SK": "EXECUTION"}


def task_key(execution_id: str, task_id: str) -> dict[str, str]:
    return {"PK": f"EXECUTION#{execution_id}", "SK": f"TASK#{task_id}"}


def verify_key(execution_id: str, iteration: int) -> dict[str, str]:
    return {"PK": f"EXECUTION#{execution_id}", "SK": f"VERIFY#{iteration:04d}"}


def fix_key(execution_id: str, iteration: int) -> dict[str, str]:
    return {"PK": f"EXECUTION#{execution_id}", "SK": f"FIX#{iteration:04d}"}


def lock_key(name: str) -> dict[str, str]:
    return {"PK": f"LOCK#{name}", "SK": "LOCK"}


def outbox_key(partition_key: str, event_id: str) -> dict[str, str]:
    return {"PK": f"OUTBOX#{partition_key}", "SK": f"EVENT#{event_id}"}


def progress_head_key(execution_id: str) -> dict[str, str]:
    return {"PK": f"PROGRESS#{execution_id}", "SK": "HEAD"}


def progress_event_key(execution_id: str, sequence: int) -> dict[str, str]:
    return {"PK": f"PROGRESS#{execution_id}", "SK": f"SEQ#{sequence:010d}"}


def connection_key(connection_id: str) -> dict[str, str]:
    return {"PK": f"CONNECTION#{connection_id}", "SK": "CONNECTION"}


def subscription_key(connection_id: str, execution_id: str) -> dict[str, str]:
    return {"PK": f"CONNECTION#{connection_id}", "SK": f"SUBSCRIPTION#{execution_id}"}


def subscribers_lookup(execution_id: str, connection_id: str) -> dict[str, str]:
    """GSI4: the connections that follow an execution (one Query by the pusher)."""
    return {"GSI4PK": f"LOOKUP#SUBSCRIBERS#{execution_id}", "GSI4SK": f"CONNECTION#{connection_id}"}


def by_status(status: str, created_at: str, item_id: str) -> dict[str, str]:
    return {"GSI1PK": f"STATUS#{status}", "GSI1SK": f"{created_at}#{item_id}"}


def by_project(project_id: str, entity: str, created_at: str, item_id: str) -> dict[str, str]:
    return {"GSI2PK": f"PROJECT#{project_id}", "GSI2SK": f"{entity}#{created_at}#{item_id}"}


def by_user(user_id: str, entity: str, created_at: str, item_id: str) -> dict[str, str]:
    return {"GSI3PK": f"USER#{user_id}", "GSI3SK": f"{entity}#{created_at}#{item_id}"}


def lookup(kind: str, value: str, entity: str) -> dict[str, str]:
    return {"GSI4PK": f"LOOKUP#{kind}#{value}", "GSI4SK": entity}


def entity_item(
    entity: str, key: dict[str, str], *indexes: dict[str, str], **attributes: Any
) -> dict[str, Any]:
    """One item: its key, its index attributes (only those given: GSIs stay sparse) and its data."""
    item: dict[str, Any] = {**key, "entity": entity}
    for attrs in indexes:
        item.update(attrs)
    item.update(attributes)
    return item


# ------------------------------------------------------------------------------ security entities
def role_key(name: str) -> dict[str, str]:
    return {"PK": f"ROLE#{name}", "SK": "ROLE"}


def roles_revision_key() -> dict[str, str]:
    """One counter bumped on every role change: containers re-read roles when it moves (a GetItem)."""
    return {"PK": "ROLES", "SK": "REVISION"}


def api_key_key(key_id: str) -> dict[str, str]:
    return {"PK": f"APIKEY#{key_id}", "SK": "APIKEY"}


def revoked_token_key(jti: str) -> dict[str, str]:
    return {"PK": f"REVOKED#{jti}", "SK": "REVOKED"}


def principal_status_key(principal: str) -> dict[str, str]:
    return {"PK": f"PRINCIPAL#{principal}", "SK": "STATUS"}


def principal_suspension_key(principal: str) -> dict[str, str]:
    """A suspended user (tdev.data.budgets): new work refused, work in flight stopped."""
    return {"PK": f"PRINCIPAL#{principal}", "SK": "SUSPENSION"}


def budget_partition(scope: str, scope_id: str) -> str:
    """A user's or a project's budget (scope `user` or `project`)."""
    return f"BUDGET#{scope.upper()}#{scope_id}"


def budget_cap_key(scope: str, scope_id: str) -> dict[str, str]:
    return {"PK": budget_partition(scope, scope_id), "SK": "CAP"}


def budget_period_key(scope: str, scope_id: str, period: str) -> dict[str, str]:
    return {"PK": budget_partition(scope, scope_id), "SK": f"PERIOD#{period}"}


def project_owner_key(project_id: str) -> dict[str, str]:
    return {"PK": f"PROJECT#{project_id}", "SK": "OWNER"}


def project_member_key(project_id: str, principal: str) -> dict[str, str]:
    return {"PK": f"PROJECT#{project_id}", "SK": f"MEMBER#{principal}"}


def audit_partition(principal: str) -> str:
    return f"AUDIT#{principal}"


LISTING_KINDS = ("ROLE", "APIKEY", "REVOKED", "DISABLED")
TIME_DIGITS = 12  # epoch seconds, zero-padded so listings sort by time


def listed(kind: str, sort: str) -> dict[str, str]:
    """GSI1 attributes that list a security item under its kind (queried, never scanned)."""
    if kind not in LISTING_KINDS:
        raise ValueError(f"unknown listing {kind}")
    return {"GSI1PK": kind, "GSI1SK": sort}


# ------------------------------------------------------------------------- configuration audit
CONFIG_VERSION_DIGITS = 8


def config_partition(scope: str) -> str:
    return f"CONFIG#{scope}"


def config_head_key(scope: str) -> dict[str, str]:
    """The scope's latest version number (a conditional update makes versions gap-free and unique)."""
    return {"PK": config_partition(scope), "SK": "HEAD"}


def config_version_key(scope: str, version: int) -> dict[str, str]:
    return {"PK": config_partition(scope), "SK": f"VERSION#{version:0{CONFIG_VERSION_DIGITS}d}"}


def config_change_key(scope: str, change_id: str) -> dict[str, str]:
    """A change to a protected key, waiting for an approver other than its author."""
    return {"PK": config_partition(scope), "SK": f"CHANGE#{change_id}"}


# ------------------------------------------------------------------------------ error analytics
ERRORS_LISTING = "ERRORS"


def error_partition(signature: str) -> str:
    return f"ERROR#{signature}"


def error_signature_key(signature: str) -> dict[str, str]:
    """One error group: counts, first/last seen, redacted sample, status, MTTR (tdev.incidents)."""
    return {"PK": error_partition(signature), "SK": "SIGNATURE"}


def error_bucket_key(signature: str, window_start: int) -> dict[str, str]:
    """The group's count in one window (epoch seconds, zero-padded so buckets sort by time)."""
    return {"PK": error_partition(signature), "SK": f"BUCKET#{window_start:0{TIME_DIGITS}d}"}


def error_resolution_key(signature: str, at: str) -> dict[str, str]:
    """One resolution of the group (who, when, why, MTTR): its audit trail."""
    return {"PK": error_partition(signature), "SK": f"RESOLUTION#{at}"}


def errors_listed(last_seen: str, signature: str) -> dict[str, str]:
    """GSI1 attributes that list an error group by its last occurrence (queried, never scanned)."""
    return {"GSI1PK": ERRORS_LISTING, "GSI1SK": f"{last_seen}#{signature}"}


# ---------------------------------------------------------------------------------------- alerting
ALERT_LISTING = "ALERTS"


def alert_key(alert_id: str) -> dict[str, str]:
    return {"PK": f"ALERT#{alert_id}", "SK": "ALERT"}


def alert_group_key(key: str) -> dict[str, str]:
    """The open group of an alert key: repeats within its window count on the same alert."""
    return {"PK": f"ALERTKEY#{key}", "SK": "GROUP"}


def alert_listed(created_at: str, alert_id: str) -> dict[str, str]:
    return {"GSI1PK": ALERT_LISTING, "GSI1SK": f"{created_at}#{alert_id}"}
