"""Admin migrations (never on a request path; the only place besides tests that may scan the table).

    python -m tdev_cli.migrations security-listings --table <table name>

`security-listings` gives roles, API keys, revocations and disabled principals stored before they were
listed on GSI1 their listing attributes, so the request paths that now Query those listings see them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import boto3

from tdev.data import schema

# (kind, filter on SK, the listing's sort value of an item)
LISTINGS: tuple[tuple[str, str, Callable[[dict[str, Any]], str]], ...] = (
    ("ROLE", "ROLE", lambda i: str(i["name"])),
    ("APIKEY", "APIKEY", lambda i: f"{int(i['created_at']):0{schema.TIME_DIGITS}d}#{i['key_id']}"),
    ("REVOKED", "REVOKED", lambda i: f"{int(i['expires_at']):0{schema.TIME_DIGITS}d}#{i['jti']}"),
    ("DISABLED", "STATUS", lambda i: str(i["PK"]).removeprefix("PRINCIPAL#")),
)


def backfill_security_listings(table: Any) -> dict[str, int]:
    """Add GSI1 listing attributes to security items that lack them; returns how many per kind."""
    counts = {kind: 0 for kind, _, _ in LISTINGS}
    scan: dict[str, Any] = {"FilterExpression": "attribute_not_exists(GSI1PK)"}
    while True:
        page = table.scan(**scan)
        for item in page.get("Items", []):
            for kind, sort_key, sort_value in LISTINGS:
                if item.get("SK") != sort_key or (kind == "DISABLED" and item.get("status") != "disabled"):
                    continue
                listing = schema.listed(kind, sort_value(item))
                table.update_item(
                    Key={"PK": item["PK"], "SK": item["SK"]},
                    UpdateExpression="SET GSI1PK = :pk, GSI1SK = :sk",
                    ExpressionAttributeValues={":pk": listing["GSI1PK"], ":sk": listing["GSI1SK"]},
                )
                counts[kind] += 1
        if "LastEvaluatedKey" not in page:
            return counts
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tdev_cli.migrations", description=__doc__)
    parser.add_argument("migration", choices=["security-listings"])
    parser.add_argument("--table", required=True, help="the single table's name")
    args = parser.parse_args(argv)
    counts = backfill_security_listings(boto3.resource("dynamodb").Table(args.table))
    print(", ".join(f"{kind}: {count}" for kind, count in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
