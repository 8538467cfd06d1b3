"""Chat storage growth: our TableChatStorage vs Agent Squad's DynamoDbChatStorage on the same table.

One conversation per store, turn by turn (a turn = a user message and the assistant's reply, each saved
with `save_chat_message` as Agent Squad's orchestrator does), against the local runtime's emulated
table. An AwsMeter counts the calls and the DynamoDB units; bytes written are the sizes of the items
after each write, read from the emulated table. A store that hits DynamoDB's 400 KB item limit stops
there: the turn is reported and later checkpoints are not measured.

Two runs per store: windowed (each save asks for the last HISTORY_WINDOW messages back, as an agent with a
history window uses the store) and untrimmed (each save asks for the whole conversation, as an agent
without a window does), each up to 1,000 turns or the store's first failing turn.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tdev_cli.benchmarks.common import fmt
from tdev_cli.benchmarks.meter import ITEM_LIMIT_BYTES, AwsMeter

NAME = "storage"
DESCRIPTION = (
    "A conversation stored turn by turn by our chat storage and by Agent Squad's DynamoDbChatStorage on the "
    "same emulated table: bytes written per turn, write units, and the turn at which the 400 KB item "
    "limit is hit."
)
CHECKPOINTS = (1, 50, 200, 1000)
HISTORY_WINDOW = 20  # messages an agent reads back per turn (both stores are asked for the same window)
QUICK_CHECKPOINTS = (1, 5, 20)
MODES: dict[str, int | None] = {"windowed": HISTORY_WINDOW, "untrimmed": None}  # history asked back per save

_TOPICS = (
    "the todo API",
    "pagination",
    "auth tokens",
    "the database schema",
    "error handling",
    "rate limits",
)


def message_text(turn: int, role: str) -> str:
    """Deterministic, varied messages: ~300 characters from the user, ~1,500 from the assistant."""
    topic = _TOPICS[turn % len(_TOPICS)]
    if role == "user":
        return (
            f"Turn {turn}: about {topic}, can you change the handler so that it validates input and returns "
            f"a clear error? Keep the tests passing. " * 2
        )[: 260 + turn % 80]
    return (
        f"Here is the change for {topic} (turn {turn}). The handler now validates the body with the model, "
        "returns 400 with the field name on bad input, and the tests cover the new branch. " * 9
    )[: 1400 + (turn * 37) % 200]


def _ours(table_name: str) -> tuple[Any, str | None]:
    try:
        from tdev.chat.storage import TableChatStorage
    except ImportError as exc:
        return None, f"ours: not available ({type(exc).__name__}: {exc})"
    return TableChatStorage(table_name=table_name), None


def converse(
    store: Any,
    meter: AwsMeter,
    turns: int,
    checkpoints: tuple[int, ...],
    user: str,
    window: int | None = HISTORY_WINDOW,
) -> dict[str, Any]:
    """Store `turns` turns, each save asking for `window` messages back (None: all of them); figures per
    turn and at each checkpoint; stops at the item limit."""
    from agent_squad.types import ConversationMessage, ParticipantRole

    per_turn: list[dict[str, float]] = []
    limit_turn: int | None = None
    error: str | None = None

    async def conversation() -> None:
        nonlocal limit_turn, error
        for turn in range(1, turns + 1):
            before = (meter.bytes_written, meter.write_units, meter.read_units, sum(meter.calls.values()))
            try:
                for role in (ParticipantRole.USER.value, ParticipantRole.ASSISTANT.value):
                    message = ConversationMessage(role=role, content=[{"text": message_text(turn, role)}])
                    # As an agent uses it: the window (if any) bounds what each save returns.
                    await store.save_chat_message(
                        user, "session-1", "CodeAgent", message, max_history_size=window
                    )
            except Exception as exc:
                if "size" in str(exc).lower():
                    limit_turn = turn
                else:
                    error = f"{type(exc).__name__}: {exc}"
                return
            per_turn.append(
                {
                    "turn": turn,
                    "bytes": meter.bytes_written - before[0],
                    "wru": meter.write_units - before[1],
                    "rru": meter.read_units - before[2],
                    "calls": sum(meter.calls.values()) - before[3],
                    "largest_item": meter.largest_item,
                }
            )
            if meter.largest_item > ITEM_LIMIT_BYTES and limit_turn is None:
                limit_turn = turn

    asyncio.run(conversation())
    at: dict[str, Any] = {}
    for checkpoint in checkpoints:
        if checkpoint > len(per_turn):
            at[str(checkpoint)] = None
            continue
        upto = per_turn[:checkpoint]
        at[str(checkpoint)] = {
            "bytes_in_turn": upto[-1]["bytes"],
            "bytes_total": sum(t["bytes"] for t in upto),
            "bytes_per_turn_mean": sum(t["bytes"] for t in upto) / checkpoint,
            "write_units_total": sum(t["wru"] for t in upto),
            "read_units_total": sum(t["rru"] for t in upto),
            "calls_total": sum(t["calls"] for t in upto),
            "largest_item_bytes": upto[-1]["largest_item"],
        }
    return {
        "turns_stored": len(per_turn),
        "item_limit_turn": limit_turn,
        "error": error,
        "at": at,
        "per_turn": per_turn,
    }


def run(quick: bool = False) -> dict[str, Any]:
    from agent_squad.storage import DynamoDbChatStorage

    from tdev_cli.function_logs import functions_output
    from tdev_cli.runtime import ACCOUNT, REGION, TABLE_NAME, LocalRuntime

    checkpoints = QUICK_CHECKPOINTS if quick else CHECKPOINTS
    turns = max(checkpoints)
    meter = AwsMeter(ACCOUNT, REGION)
    results: dict[str, dict[str, Any]] = {mode: {} for mode in MODES}
    with contextlib.ExitStack() as stack:
        stack.enter_context(functions_output(".tdev/logs", "bench-storage"))
        stack.enter_context(meter.installed())
        with meter.pause():
            stack.enter_context(LocalRuntime())
            ours, unavailable = _ours(TABLE_NAME)
            squad = DynamoDbChatStorage(table_name=TABLE_NAME, region=REGION)
        stores = {"agent-squad DynamoDbChatStorage": squad}
        if ours is not None:
            stores = {"ours TableChatStorage": ours, **stores}
        for mode, window in MODES.items():
            for index, (name, store) in enumerate(stores.items()):
                meter.bytes_written = meter.largest_item = 0
                meter.write_units = meter.index_write_units = meter.read_units = 0.0
                results[mode][name] = converse(
                    store, meter, turns, checkpoints, user=f"bench-{mode}-{index}", window=window
                )
    mid = str(200 if not quick else checkpoints[-1])

    def in_turn(result: dict[str, Any] | None) -> float | None:
        at = (result or {}).get("at", {}).get(mid)
        return at["bytes_in_turn"] if at else None

    def limit(result: dict[str, Any]) -> str:
        if result["item_limit_turn"]:
            return f"item limit at turn {result['item_limit_turn']}"
        if result["error"]:
            return f"failed at turn {result['turns_stored'] + 1} ({result['error'][:80]})"
        return f"no item limit by turn {turns}"

    def comparison(mode: str) -> str:
        squad_result = results[mode]["agent-squad DynamoDbChatStorage"]
        ours_result = results[mode].get("ours TableChatStorage")
        squad_bytes = in_turn(squad_result)
        squad_text = (
            f"Agent Squad {fmt(squad_bytes, 0)} B written in turn {mid}"
            if squad_bytes is not None
            else f"Agent Squad stopped before turn {mid}"
        ) + f", {limit(squad_result)}"
        if ours_result is None:
            return f"{mode}: {unavailable}; {squad_text}"
        ours_bytes = in_turn(ours_result)
        ratio = (squad_bytes / ours_bytes) if squad_bytes and ours_bytes else None
        ratio_text = f"x{ratio:.1f} bytes at turn {mid} (Agent Squad / ours)" if ratio else "ratio n/a"
        ours_text = f"ours {fmt(ours_bytes or 0, 0)} B in turn {mid}, {limit(ours_result)}"
        return f"{mode}: {ratio_text}; {ours_text}; {squad_text}"

    headline = f"storage: {comparison('windowed')} | {comparison('untrimmed')}"
    rows = []
    for mode, by_store in results.items():
        for name, result in by_store.items():
            for checkpoint in checkpoints:
                at = result["at"][str(checkpoint)]
                rows.append(
                    [mode, name, checkpoint]
                    + (
                        [
                            at["bytes_in_turn"],
                            at["bytes_per_turn_mean"],
                            at["write_units_total"],
                            at["read_units_total"],
                            at["largest_item_bytes"],
                        ]
                        if at
                        else [None, None, None, None, limit(result)]
                    )
                )
    series = {f"{name} ({mode})": r for mode, by_store in results.items() for name, r in by_store.items()}
    charts = [
        {
            "title": "Bytes written per turn",
            "kind": "line",
            "x_label": "turn",
            "y_label": "bytes",
            "series": {
                label: [[t["turn"], t["bytes"]] for t in r["per_turn"]] for label, r in series.items()
            },
        },
        {
            "title": "Cumulative write units",
            "kind": "line",
            "x_label": "turn",
            "y_label": "WRU",
            "series": {label: _cumulative(r["per_turn"], "wru") for label, r in series.items()},
        },
    ]
    figures: dict[str, Any] = {
        "checkpoints": list(checkpoints),
        "history_window": HISTORY_WINDOW,
        "ours": "not available" if ours is None else "TableChatStorage",
    }
    for mode, by_store in results.items():
        figures[mode] = {
            name: {
                **{k: v for k, v in r.items() if k != "per_turn"},
                "bytes_per_turn": [t["bytes"] for t in r["per_turn"]],
            }
            for name, r in by_store.items()
        }
    return {
        "name": NAME,
        "headline": headline,
        "figures": figures,
        "tables": [
            {
                "title": "Conversation growth",
                "columns": [
                    "history asked back",
                    "store",
                    "turns",
                    "bytes in turn",
                    "mean bytes/turn",
                    "total WRU",
                    "total RRU",
                    "largest item B",
                ],
                "rows": rows,
            }
        ],
        "charts": charts,
        "notes": [
            "A turn is two save_chat_message calls (user, then assistant), ~1.8 KB of text.",
            f"windowed: each save asks for the last {HISTORY_WINDOW} messages back; untrimmed: for all "
            "of them (Agent Squad's DynamoDbChatStorage keeps the conversation in one item, trimmed to the "
            "window when one is given; ours stores one item per message and reads the window back).",
            "Write units by the DynamoDB rule ceil(max(size before, size after) / 1 KB) per write; read "
            "units ceil(size / 4 KB), half when eventually consistent (index writes are counted by the cost "
            "benchmark, not here).",
        ]
        + ([unavailable] if unavailable else []),
    }


def _cumulative(per_turn: list[dict[str, float]], key: str) -> list[list[float]]:
    total, points = 0.0, []
    for t in per_turn:
        total += t[key]
        points.append([t["turn"], total])
    return points
