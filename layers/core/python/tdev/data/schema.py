"""The single table's shape, in one place.

The CDK data stack and the local runtime both build the table from these definitions, so the
deployed table and the emulated one cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

PARTITION_KEY = "PK"
SORT_KEY = "SK"
TTL_ATTRIBUTE = "expires_at"


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
        "GSI2", "GSI2PK", "GSI2SK", "by project, time-ordered: PROJECT#<id> -> EXECUTION#<created_at>"
    ),
)


def key_attributes() -> list[str]:
    """Every attribute used in a key schema (all strings)."""
    names = [PARTITION_KEY, SORT_KEY]
    for index in GLOBAL_INDEXES:
        names += [index.partition_key, index.sort_key]
    return names


def create_table_kwargs(table_name: str) -> dict[str, object]:
    """`CreateTable` arguments for the emulated table (on-demand, same keys and indexes as deployed)."""
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
                "IndexName": index.name,
                "KeySchema": [
                    {"AttributeName": index.partition_key, "KeyType": "HASH"},
                    {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
            for index in GLOBAL_INDEXES
        ],
    }
