"""TableChatStorage: one item per message, conditional writes, windows, TTL, concurrent writers."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from typing import Any

import boto3
import pytest
from agent_squad.types import ConversationMessage, ParticipantRole
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from tdev.chat.storage import MAX_MESSAGE_BYTES, TableChatStorage, conversation_key
from tdev.errors import ValidationError
from tdev_cli.runtime import TABLE_NAME

ITEM_LIMIT = 400 * 1024


def _msg(role: str, text: str) -> ConversationMessage:
    return ConversationMessage(role=role, content=[{"text": text}])


def _all_items(user: str, session: str) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb").Table(TABLE_NAME)
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"KeyConditionExpression": Key("PK").eq(conversation_key(user, session))}
    while True:
        response = table.query(**kwargs)
        items += response["Items"]
        if "LastEvaluatedKey" not in response:
            # Contents are envelope-encrypted at rest: stored sealed, opened here to check the texts.
            assert all(str(i["content"]).startswith("tde1:") for i in items)
            sealer = TableChatStorage(table_name=TABLE_NAME).sealer
            return [{**i, "content": sealer.open(str(i["content"]), i, "content")} for i in items]
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _item_size(item: dict[str, Any]) -> int:
    return sum(len(k.encode()) + len(str(v).encode()) for k, v in item.items())


def test_thousand_turns_by_two_concurrent_writers_lose_nothing(runtime: Any) -> None:
    storage = TableChatStorage(table_name=TABLE_NAME)
    turns_per_writer = 500  # 2 writers x 500 turns = 1000 turns = 2000 messages

    def writer(name: str) -> None:
        for turn in range(turns_per_writer):
            storage.put_message("u", "s", "CodeAgent", _msg("user", f"{name} question {turn} " + "q" * 200))
            storage.put_message(
                "u", "s", "CodeAgent", _msg("assistant", f"{name} answer {turn} " + "a" * 400)
            )

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("w1", "w2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    items = _all_items("u", "s")
    assert len(items) == 2000
    texts = {json.loads(i["content"])[0]["text"].rsplit(" ", 1)[0] for i in items}
    for name in ("w1", "w2"):
        for turn in range(turns_per_writer):
            assert f"{name} question {turn}" in texts and f"{name} answer {turn}" in texts
    assert max(_item_size(i) for i in items) < 2_000 < ITEM_LIMIT
    assert all(int(i["expires_at"]) > 0 for i in items)

    # Windowed reads: the newest messages only, in order, repeats of a role merged (never dropped).
    window = asyncio.run(storage.fetch_chat("u", "s", "CodeAgent", max_history_size=20))
    assert 0 < len(window) <= 20
    assert all(a.role != b.role for a, b in itertools.pairwise(window))
    everything = asyncio.run(storage.fetch_chat("u", "s", "CodeAgent"))
    assert sum(len(m.content) for m in everything) == 2000


def test_a_key_collision_is_refused_not_overwritten(runtime: Any) -> None:
    storage = TableChatStorage(table_name=TABLE_NAME)
    item = storage._item("u", "s", "CodeAgent", _msg("user", "first"))
    storage.table.put_item(Item=item, ConditionExpression="attribute_not_exists(PK)")
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        storage.table.put_item(
            Item={**item, "content": json.dumps([{"text": "second"}])},
            ConditionExpression="attribute_not_exists(PK)",
        )
    [stored] = _all_items("u", "s")
    assert json.loads(stored["content"]) == [{"text": "first"}]


def test_agent_squad_interface_per_agent_and_across_agents(runtime: Any) -> None:
    storage = TableChatStorage(table_name=TABLE_NAME, all_chats_window=3)
    asyncio.run(storage.save_chat_message("u", "s", "designagent", _msg("user", "design it")))
    asyncio.run(storage.save_chat_message("u", "s", "designagent", _msg("assistant", "a design")))
    saved = asyncio.run(
        storage.save_chat_messages(
            "u", "s", "codeagent", [_msg("user", "code it"), _msg("assistant", "some code")]
        )
    )
    assert [m.content[0]["text"] for m in saved] == ["code it", "some code"]
    design = asyncio.run(storage.fetch_chat("u", "s", "designagent"))
    assert [(m.role, m.content[0]["text"]) for m in design] == [
        ("user", "design it"),
        ("assistant", "a design"),
    ]
    # Across agents, newest 3 (the window), assistant turns prefixed with their agent as Agent Squad does.
    everything = asyncio.run(storage.fetch_all_chats("u", "s"))
    assert [m.content[0]["text"] for m in everything] == [
        "[designagent] a design",
        "code it",
        "[codeagent] some code",
    ]
    assert everything[0].role == ParticipantRole.ASSISTANT.value
    assert asyncio.run(storage.fetch_all_chats("u", "other")) == []


def test_oversized_message_is_refused_with_the_field(runtime: Any) -> None:
    storage = TableChatStorage(table_name=TABLE_NAME)
    with pytest.raises(ValidationError) as error:
        storage.put_message("u", "s", "a", _msg("user", "x" * (MAX_MESSAGE_BYTES + 1)))
    assert error.value.field == "content"


def test_ttl_can_be_disabled(runtime: Any) -> None:
    TableChatStorage(table_name=TABLE_NAME, ttl_seconds=None).put_message("u", "t", "a", _msg("user", "hi"))
    [item] = _all_items("u", "t")
    assert "expires_at" not in item
