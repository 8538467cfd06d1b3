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


def test_chat_messages_and_memory_texts_are_sealed_and_old_clear_items_still_read(secured: Any) -> None:
    import asyncio
    import json
    import time

    from agent_squad.types import ConversationMessage

    from tdev.chat.storage import TableChatStorage
    from tdev.memory.hierarchical import LongTermMemory, MemoryItem

    table = aws.table("tdev-local")
    chats = TableChatStorage("tdev-local")
    chats.put_message("u1", "s1", "CodeAgent", ConversationMessage(role="user", content=[{"text": TEXT}]))
    stored = table.query(KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": "CHAT#u1#s1"})
    assert stored["Items"][0]["content"].startswith("tde1:") and "BLUEBIRD" not in repr(stored["Items"])
    # A message stored in clear before encryption was added is still read.
    table.put_item(
        Item={
            "PK": "CHAT#u1#s1",
            "SK": "MSG#CodeAgent#00000000000000001#0000",
            "GSI1PK": "CHAT#u1#s1",
            "GSI1SK": "00000000000000001#0000",
            "agent_id": "CodeAgent",
            "role": "assistant",
            "content": json.dumps([{"text": "old clear reply"}]),
            "timestamp": 1,
        }
    )
    history = asyncio.run(chats.fetch_chat("u1", "s1", "CodeAgent"))
    assert [m.content[0]["text"] for m in history] == ["old clear reply", TEXT]

    memory = LongTermMemory("tdev-local", "s1")
    now = time.time()
    memory.put(MemoryItem("m1", TEXT, 0.9, created_at=now, last_access=now))
    raw = table.get_item(Key={"PK": "MEMORY#s1", "SK": "ITEM#m1"})["Item"]
    assert raw["body"].startswith("tde1:") and "BLUEBIRD" not in raw["body"]
    assert memory.get("m1").content == TEXT  # type: ignore[union-attr]
    table.put_item(
        Item={
            **raw,
            "SK": "ITEM#m0",
            "body": MemoryItem("m0", "clear", 0.9, created_at=now, last_access=now).to_json(),
        }
    )
    assert {m.content for m in memory.all()} == {TEXT, "clear"}
    # The short-term tier (Redis) seals its texts the same way.
    from tdev import cache
    from tdev.memory.hierarchical import ShortTermMemory

    short = ShortTermMemory(cache.redis_client(), "s1")
    short.put(MemoryItem("m3", TEXT, 0.5, created_at=now, last_access=now))
    assert str(cache.redis_client().get(short._key("m3"))).startswith("tde1:")
    assert short.get("m3").content == TEXT  # type: ignore[union-attr]
    assert [m.content for m in short.all()] == [TEXT]
    # A sealed body moved to another item does not open there.
    table.put_item(Item={**raw, "SK": "ITEM#m2"})
    with pytest.raises(DecryptionError):
        memory.get("m2")
