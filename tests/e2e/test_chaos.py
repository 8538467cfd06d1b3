"""`tdev chaos`: a small run holds its numbers, and the measurement really detects loss and duplication."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tdev_cli.chaos import FaultPlan, run_chaos

SUMMARY = re.compile(
    r"^requests=(\d+) terminal=(\d+) lost=(\d+) duplicated_effects=(\d+) dead_lettered=(\d+)$"
)


def test_a_small_chaos_run_loses_and_duplicates_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    from tdev_cli.main import main

    code = main(["chaos", "--faults", "4", "--seed", "11", "--per-runtime", "4"])
    lines = capsys.readouterr().out.strip().splitlines()
    match = SUMMARY.match(lines[-1])
    assert match, lines[-1]
    requests, terminal, lost, duplicated, _dead = map(int, match.groups())
    assert (requests, terminal, lost, duplicated) == (4, 4, 0, 0), lines
    assert code == 0
    assert any(line.startswith("injected: ") and "=" in line for line in lines)


def test_the_count_of_duplicated_effects_sees_a_consumer_without_idempotency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from functions.notifications_consumer import handler
    from tdev.data.store import transact_write
    from tdev.messaging import consumers

    def apply_without_marker(consumer: str, event_id: str, effect: dict[str, Any]) -> bool:
        transact_write([effect])
        return True

    monkeypatch.setattr(consumers, "apply_once", apply_without_marker)
    monkeypatch.setattr(handler, "notify", consumers.notify)  # and no Powertools idempotency either
    plan = FaultPlan(seed=1, before=0, after=0, hard=0, duplicate=1.0, aws_error=0)
    report = run_chaos(2, seed=1, per_runtime=2, plan=plan)
    assert report.duplicated_effects >= 2 and not report.holds
    assert report.lost == 0 and report.terminal == 2


def test_the_count_of_lost_messages_sees_a_publisher_that_drops_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tdev.messaging.publisher import OutboxPublisher

    original = OutboxPublisher.handle

    def drop_task_events(self: OutboxPublisher, record: dict[str, Any]) -> str | None:
        item = self.outbox_item(record)
        if item is not None and item["detail_type"] == "TaskCompleted":
            return None  # acknowledged, never published
        return original(self, record)

    monkeypatch.setattr(OutboxPublisher, "handle", drop_task_events)
    plan = FaultPlan(seed=1, before=0, after=0, hard=0, duplicate=0, aws_error=0)
    report = run_chaos(1, seed=1, per_runtime=1, plan=plan)
    assert report.lost >= 1 and report.terminal == 1 and not report.holds
