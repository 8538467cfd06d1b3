"""Request texts and agent outputs are envelope-encrypted at rest, bound to their item and field."""

from __future__ import annotations

from typing import Any

import pytest

from tdev import aws, container
from tdev.crypto import DecryptionError

pytestmark = pytest.mark.slow

TEXT = "Design and implement a REST API for todo items with a secret codename BLUEBIRD"


def test_request_and_outputs_are_stored_encrypted_and_read_back_in_clear(secured: Any) -> None:
    view = secured.run(TEXT)
    assert view["status"] == "SUCCEEDED" and view["request"] == TEXT
    assert all(r["output"] for r in view["results"])
    items = aws.table("tdev-local").query(
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": f"EXECUTION#{view['execution_id']}"},
    )["Items"]
    head = next(i for i in items if i["SK"] == "EXECUTION")
    plan = next(i for i in items if i["SK"] == "PLAN")
    tasks = [i for i in items if i["SK"].startswith("TASK#")]
    # the plan's task descriptions quote the request: sealed too
    assert head["request"].startswith("tde1:") and plan["plan"].startswith("tde1:")
    assert "BLUEBIRD" not in repr(items)
    assert tasks and all(t["result"]["output"].startswith("tde1:") for t in tasks)
    assert view["plan"] and any("BLUEBIRD" in t["description"] for t in view["plan"]["tasks"])


def test_a_sealed_request_moved_to_another_execution_does_not_open(secured: Any) -> None:
    first, second = secured.submit(TEXT), secured.submit(TEXT + " again")
    secured.wait(first), secured.wait(second)
    table = aws.table("tdev-local")
    stolen = table.get_item(Key={"PK": f"EXECUTION#{first}", "SK": "EXECUTION"})["Item"]["request"]
    table.update_item(
        Key={"PK": f"EXECUTION#{second}", "SK": "EXECUTION"},
        UpdateExpression="SET #r = :r",
        ExpressionAttributeNames={"#r": "request"},
        ExpressionAttributeValues={":r": stolen},
    )
    container.cipher().cache.clear()
    with pytest.raises(DecryptionError):
        container.executions().get(second)
    assert container.executions().get(first).request == TEXT
