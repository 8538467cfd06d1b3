"""Agent Squad's `ChatStorage` on the single table: one item per message, never a whole history.

Agent Squad's own DynamoDbChatStorage keeps a conversation in one item and rewrites it on every
message (read, append, put). A long conversation then meets DynamoDB's 400 KB item limit, and two
writers of the same conversation lose each other's messages (last put wins). Here:

- every message is its own item, written with a conditional put (`attribute_not_exists(PK)`) under a
  key nobody else can produce (time in microseconds + a random suffix): no read-modify-write, so
  concurrent writers never overwrite each other and a 1000-turn conversation is 2000 small items;
- `PK = CHAT#<user>#<session>`, `SK = MSG#<agent>#<time>#<rand>` serves one agent's history, newest
  first with a `Limit` (the window); `GSI1PK = CHAT#<user>#<session>`, `GSI1SK = <time>#<rand>` serves
  the whole session's history across agents (what the classifier reads), also windowed;
- the content is envelope-encrypted like request texts (`tdev.data.fields`, bound to the item's key);
  messages stored in clear before that are still read as they are;
- every item carries `expires_at` (DynamoDB TTL), so abandoned conversations disappear by themselves;
- Agent Squad's storages drop a message whose role repeats the previous one (Bedrock wants turns to
  alternate). Dropping on write loses messages under concurrency, so repeats are kept and merged into
  one turn on read instead.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

from agent_squad.storage import ChatStorage
from agent_squad.types import ConversationMessage, ParticipantRole, TimestampedMessage
from boto3.dynamodb.conditions import Key

from tdev import aws
from tdev.data.fields import FieldSealer
from tdev.errors import ValidationError

DEFAULT_TTL_SECONDS = 30 * 86_400
DEFAULT_WINDOW = 100
# DynamoDB's item limit is 400 KB; a message is refused well before it (keys and attributes included).
MAX_MESSAGE_BYTES = 350_000


def conversation_key(user_id: str, session_id: str) -> str:
    return f"CHAT#{user_id}#{session_id}"


def _role(message: ConversationMessage | TimestampedMessage) -> str:
    return str(getattr(message.role, "value", message.role))


class TableChatStorage(ChatStorage):
    """Chat history for Agent Squad, one DynamoDB item per message (see the module docstring)."""

    def __init__(
        self,
        table_name: str,
        *,
        ttl_seconds: int | None = DEFAULT_TTL_SECONDS,
        all_chats_window: int = DEFAULT_WINDOW,
        table: Any = None,
        sealer: FieldSealer | None = None,
    ) -> None:
        super().__init__()
        self.table_name = table_name
        self._sealer = sealer
        self.ttl_seconds = ttl_seconds
        self.all_chats_window = all_chats_window
        self._table = table

    @property
    def table(self) -> Any:
        return self._table if self._table is not None else aws.table(self.table_name)

    @property
    def sealer(self) -> FieldSealer:
        if self._sealer is None:
            from tdev import container

            self._sealer = container.sealer()
        return self._sealer

    # ------------------------------------------------------------------------------------- writes
    def _item(
        self, user_id: str, session_id: str, agent_id: str, message: ConversationMessage | TimestampedMessage
    ) -> dict[str, Any]:
        micros = time.time_ns() // 1000
        timestamp_ms = int(getattr(message, "timestamp", 0) or micros // 1000)
        suffix = os.urandom(4).hex()
        content = json.dumps(message.content, separators=(",", ":"))
        item: dict[str, Any] = {
            "PK": conversation_key(user_id, session_id),
            "SK": f"MSG#{agent_id}#{micros:017d}#{suffix}",
            "GSI1PK": conversation_key(user_id, session_id),
            "GSI1SK": f"{micros:017d}#{suffix}",
            "entity": "ChatMessage",
            "agent_id": agent_id,
            "role": _role(message),
            "content": content,
            "timestamp": timestamp_ms,
        }
        if self.ttl_seconds:
            item["expires_at"] = int(time.time()) + self.ttl_seconds
        if len(content.encode()) > MAX_MESSAGE_BYTES:
            raise ValidationError(
                f"a chat message may hold at most {MAX_MESSAGE_BYTES} bytes of content", field="content"
            )
        item["content"] = self.sealer.seal(content, item, "content")
        return item

    def put_message(
        self, user_id: str, session_id: str, agent_id: str, message: ConversationMessage | TimestampedMessage
    ) -> None:
        """Write one message as its own item; the condition makes an overwrite impossible."""
        self.table.put_item(
            Item=self._item(user_id, session_id, agent_id, message),
            ConditionExpression="attribute_not_exists(PK)",
        )

    async def save_chat_message(
        self,
        user_id: str,
        session_id: str,
        agent_id: str,
        new_message: ConversationMessage | TimestampedMessage,
        max_history_size: int | None = None,
    ) -> list[ConversationMessage]:
        self.put_message(user_id, session_id, agent_id, new_message)
        return await self.fetch_chat(user_id, session_id, agent_id, max_history_size)

    async def save_chat_messages(
        self,
        user_id: str,
        session_id: str,
        agent_id: str,
        new_messages: list[ConversationMessage] | list[TimestampedMessage],
        max_history_size: int | None = None,
    ) -> list[ConversationMessage]:
        for message in new_messages:
            self.put_message(user_id, session_id, agent_id, message)
        return await self.fetch_chat(user_id, session_id, agent_id, max_history_size)

    # -------------------------------------------------------------------------------------- reads
    def _query(self, limit: int | None, **kwargs: Any) -> list[dict[str, Any]]:
        """Newest first, up to `limit` items (all when None), following pagination."""
        items: list[dict[str, Any]] = []
        while True:
            page_kwargs = dict(kwargs, ScanIndexForward=False)
            if limit is not None:
                page_kwargs["Limit"] = limit - len(items)
            response = self.table.query(**page_kwargs)
            items.extend(response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if not start or (limit is not None and len(items) >= limit):
                return items
            kwargs["ExclusiveStartKey"] = start

    def message_items(
        self, user_id: str, session_id: str, agent_id: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Items oldest first, content opened: one agent's (by the table's key) or the session's (by GSI1)."""
        pk = conversation_key(user_id, session_id)
        if agent_id is None:
            items = self._query(limit, IndexName="GSI1", KeyConditionExpression=Key("GSI1PK").eq(pk))
        else:
            items = self._query(
                limit,
                KeyConditionExpression=Key("PK").eq(pk) & Key("SK").begins_with(f"MSG#{agent_id}#"),
            )
        for item in items:
            item["content"] = self.sealer.open(str(item["content"]), item, "content")  # clear stays clear
        return list(reversed(items))

    async def fetch_chat(
        self, user_id: str, session_id: str, agent_id: str, max_history_size: int | None = None
    ) -> list[ConversationMessage]:
        items = self.message_items(user_id, session_id, agent_id, limit=max_history_size)
        messages = _merge_repeats([_message(item) for item in items])
        return self.trim_conversation(messages, max_history_size)

    async def fetch_all_chats(self, user_id: str, session_id: str) -> list[ConversationMessage]:
        """The session's latest messages across agents; assistant turns prefixed `[agent]`."""
        items = self.message_items(user_id, session_id, limit=self.all_chats_window)
        messages = []
        for item in items:
            message = _message(item)
            if message.role == ParticipantRole.ASSISTANT.value and message.content:
                text = message.content[0].get("text", "") if isinstance(message.content[0], dict) else ""
                message = ConversationMessage(
                    role=message.role, content=[{"text": f"[{item['agent_id']}] {text}"}]
                )
            messages.append(message)
        return _merge_repeats(messages)


def _message(item: dict[str, Any]) -> ConversationMessage:
    return ConversationMessage(role=str(item["role"]), content=json.loads(str(item["content"])))


def _merge_repeats(messages: Sequence[ConversationMessage]) -> list[ConversationMessage]:
    """Consecutive messages of one role become one turn (their contents concatenated, none dropped)."""
    merged: list[ConversationMessage] = []
    for message in messages:
        if merged and merged[-1].role == message.role:
            merged[-1] = ConversationMessage(
                role=message.role, content=list(merged[-1].content or []) + list(message.content or [])
            )
        else:
            merged.append(message)
    return merged
