"""`tdev chaos`: a small run holds its numbers, a seed replays its faults, and the measurement catches
each planted bug (a run_agent that reports success without storing, a broken consumer dedup, a lost
task activity), a throttle that does not apply the write, and every dead letter."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from tdev_cli.chaos import ChaosInjector, FaultPlan, run_chaos

SUMMARY = re.compile(
    r"^requests=(\d+) terminal=(\d+) lost=(\d+) duplicated_effects=(\d+) dead_lettered=(\d+) "
    r"recovered=(\d+) dead_letters_left=(\d+) orphaned=(\d+) stuck=(\d+)$"
)
QUIET = {"before": 0.0, "after": 0.0, "hard": 0.0, "duplicate": 0.0, "aws_error": 0.0}


def test_a_small_chaos_run_loses_and_duplicates_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    from tdev_cli.main import main

    code = main(["chaos", "--faults", "4", "--seed", "11", "--per-runtime", "4"])
    lines = capsys.readouterr().out.strip().splitlines()
    match = SUMMARY.match(lines[-1])
    assert match, lines[-1]
    requests, terminal, lost, duplicated, _dead, _recovered, left, orphaned, stuck = map(int, match.groups())
    assert (requests, terminal, lost, duplicated, left, orphaned, stuck) == (4, 4, 0, 0, 0, 0, 0), lines
    assert code == 0
    assert any(line.startswith("injected: ") and "=" in line for line in lines)


def test_a_fault_is_decided_by_the_seed_and_the_step_never_by_the_order_steps_run_in() -> None:
    steps = [f"run_agent|chaos-3-r{i}|design|1" for i in range(400)]
    first, second = FaultPlan(seed=3), FaultPlan(seed=3)
    hits_first = {s for s in steps if first.roll(0.1, "x", s)}
    hits_second = {s for s in reversed(steps) if second.roll(0.1, "x", s)}
    assert hits_first == hits_second and 10 < len(hits_first) < 80
    assert first.fingerprint() == second.fingerprint()
    assert {s for s in steps if FaultPlan(seed=4).roll(0.1, "x", s)} != hits_first


def test_a_seed_replays_its_run_the_same_faults_at_the_same_steps_and_the_same_summary() -> None:
    runs = []
    for _ in range(2):
        plan = FaultPlan(seed=2)
        report = run_chaos(3, seed=2, per_runtime=3, plan=plan)
        runs.append((sorted(plan.hits), report.summary(), report.statuses, report.injected))
    (hits, summary, statuses, injected), second = runs
    assert len(hits) >= 5, hits  # faults did hit: the comparison below is about something
    assert hits == second[0], sorted(set(hits) ^ set(second[0]))
    assert (summary, statuses, injected) == second[1:]


def test_one_group_replayed_alone_meets_the_faults_it_met_in_the_whole_run() -> None:
    """`tdev chaos --group K`: a failure in group K of a long run is replayed in one group's time."""
    whole, alone = FaultPlan(seed=5), FaultPlan(seed=5)
    lines: list[str] = []
    run_chaos(2, seed=5, per_runtime=1, plan=whole, progress=lines.append)
    report = run_chaos(2, seed=5, per_runtime=1, plan=alone, groups={1})
    of_r1 = re.compile(r"chaos-5-r1(?!\d)")
    in_whole = sorted(h for h in whole.hits if of_r1.search(h))
    assert len(in_whole) >= 3, whole.hits  # faults did hit the group: the comparison is about something
    assert sorted(alone.hits) == in_whole, sorted(set(alone.hits) ^ set(in_whole))
    assert report.requests == 1
    assert [line.split(" (")[0] for line in lines] == ["group 0/1", "group 1/1"], lines
    assert "(r1-r1)" in lines[1] and "so far: requests=2 " in lines[1], lines


def test_the_wait_for_a_group_lasts_while_its_workflows_keep_ending_not_a_fixed_time() -> None:
    """Four workflows ending 0.3 s apart outlast a 0.5 s timeout together, never each: all are waited for
    (a fixed deadline made a slow machine's late workflows "never terminal")."""
    import time

    from tdev_cli.chaos import _wait

    started = time.monotonic()

    class _Workflows:
        def workflow_status(self, execution_id: str) -> str:
            ends_at = 0.3 * (int(execution_id) + 1)
            return "SUCCEEDED" if time.monotonic() - started >= ends_at else "RUNNING"

    _wait(_Workflows(), ["0", "1", "2", "3"], timeout=0.5)
    assert time.monotonic() - started >= 1.2
    started = time.monotonic() + 60  # nothing ends any more: the wait gives up after the timeout
    _wait(_Workflows(), ["0"], timeout=0.5)
    assert time.monotonic() - started < -58


class _Runtime:
    """What the injector wraps: an invoke and a fault hook."""

    fault_hook: Any = None

    def invoke(self, name: str, event: dict[str, Any]) -> Any:
        return None


@pytest.mark.parametrize(("applied", "counter"), [(0.0, None), (1.0, 1)])
def test_an_injected_throttle_applies_the_write_only_when_it_says_so(
    applied: float, counter: int | None
) -> None:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="t",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        )
        injector = ChaosInjector(
            _Runtime(), FaultPlan(seed=1, **{**QUIET, "aws_error": 1.0, "aws_applied": applied})
        )
        injector.install()
        try:
            client = boto3.client(
                "dynamodb",
                region_name="us-east-1",
                config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
            )
            injector.current.steps.append(["a handler", Counter()])  # as inside a function's invocation
            with pytest.raises(ClientError):
                client.update_item(
                    TableName="t",
                    Key={"id": {"S": "k"}},
                    UpdateExpression="ADD n :one",
                    ExpressionAttributeValues={":one": {"N": "1"}},
                )
            injector.current.steps.pop()
        finally:
            injector.uninstall()
        item = ddb.get_item(TableName="t", Key={"id": {"S": "k"}}).get("Item")
        assert (int(item["n"]["N"]) if item else None) == counter


def test_every_dead_letter_is_read_even_past_ten_in_one_fifo_group(runtime: Any) -> None:
    from tdev.messaging import queues as q
    from tdev_cli.chaos import _read_dead_letters

    sqs = boto3.client("sqs", region_name="us-east-1")
    url = runtime.messaging.queue_urls[q.AGENT_EXECUTION.dlq_name]
    for i in range(15):
        sqs.send_message(
            QueueUrl=url,
            MessageBody=json.dumps({"eventId": f"e{i}", "executionId": "x", "taskId": f"t{i}"}),
            MessageGroupId="task-activity",
            MessageDeduplicationId=f"e{i}",
        )
    bodies = _read_dead_letters(runtime)[q.AGENT_EXECUTION.dlq_name]
    assert sorted(b["eventId"] for b in bodies) == sorted(f"e{i}" for i in range(15))


def test_the_tool_catches_a_retried_run_agent_that_reports_success_without_storing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tdev.models import AgentResult, TaskStatus
    from tdev.orchestration import workflow

    original = workflow.run_task
    calls: list[str] = []

    def run_or_pretend(execution_id: str, task_id: str, attempt: int = 0) -> AgentResult:
        calls.append(task_id)
        if len(calls) % 2 == 0:  # every other task: "succeeded", nothing run, nothing stored
            return AgentResult(task_id=task_id, agent="Pretend", model="none", status=TaskStatus.SUCCEEDED)
        return original(execution_id, task_id, attempt)

    monkeypatch.setattr(workflow, "run_task", run_or_pretend)
    report = run_chaos(2, seed=1, per_runtime=2, plan=FaultPlan(seed=1, **QUIET))
    assert report.lost >= 1 and not report.holds, report.problems
    assert any("has no stored result" in p for p in report.problems), report.problems


def test_the_tool_catches_a_run_agent_whose_retry_reports_success_without_storing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tdev.errors import TransientError
    from tdev.models import AgentResult, TaskStatus
    from tdev.orchestration import workflow

    calls: Counter[str] = Counter()

    def fail_then_pretend(execution_id: str, task_id: str, attempt: int = 0) -> AgentResult:
        calls[f"{execution_id}|{task_id}"] += 1
        if calls[f"{execution_id}|{task_id}"] == 1:  # the first invocation fails: the workflow retries
            raise TransientError("planted: the first invocation failed before the work")
        # the retry "succeeds" without running the agent or storing a result
        return AgentResult(task_id=task_id, agent="Pretend", model="none", status=TaskStatus.SUCCEEDED)

    monkeypatch.setattr(workflow, "run_task", fail_then_pretend)
    report = run_chaos(1, seed=1, per_runtime=1, plan=FaultPlan(seed=1, **QUIET))
    assert sum(calls.values()) >= 2 and report.statuses.get("SUCCEEDED") == 1, (calls, report.statuses)
    assert report.lost >= 1 and not report.holds, report.problems
    assert any("has no stored result" in p for p in report.problems), report.problems


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
    plan = FaultPlan(seed=1, **{**QUIET, "duplicate": 1.0})
    report = run_chaos(2, seed=1, per_runtime=2, plan=plan)
    assert report.duplicated_effects >= 2 and not report.holds
    assert report.terminal == 2


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
    report = run_chaos(1, seed=1, per_runtime=1, plan=FaultPlan(seed=1, **QUIET))
    assert report.lost >= 1 and report.terminal == 1 and not report.holds
    assert any("activity of task" in p for p in report.problems), report.problems


def test_dead_letters_left_after_the_redrive_fail_the_run_and_are_shown_apart_from_recovered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from functions.notifications_consumer import handler

    def poison(message: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("planted: this consumer never applies a notification")

    monkeypatch.setattr(handler, "notify", poison)
    report = run_chaos(1, seed=1, per_runtime=1, plan=FaultPlan(seed=1, **QUIET))
    assert report.terminal == 1 and report.lost == 0  # the outcome is in a DLQ, not silently gone
    assert report.dead_lettered == 1 and report.recovered == 0 and report.dead_letters_left == 1
    assert not report.holds
    assert report.summary().endswith("dead_lettered=1 recovered=0 dead_letters_left=1 orphaned=0 stuck=0")
    assert any(p.startswith("dead letter left:") for p in report.problems), report.problems


def _lose_the_first_start_of_each_workflow(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The API stores the execution, then its call to StartExecution is lost (no error, no workflow)."""
    from tdev.orchestration import workflow

    original = workflow.start_workflow
    lost: list[str] = []

    def start(execution_id: str, correlation_id: str) -> bool:
        if execution_id not in lost:
            lost.append(execution_id)
            return True
        return original(execution_id, correlation_id)

    monkeypatch.setattr(workflow, "start_workflow", start)
    return lost


def test_the_tool_sees_an_orphaned_execution_when_nothing_reconciles_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lost = _lose_the_first_start_of_each_workflow(monkeypatch)
    report = run_chaos(1, seed=1, per_runtime=1, plan=FaultPlan(seed=1, **QUIET), reconcile=False)
    assert len(lost) == 1 and report.orphaned == 1 and report.stuck == 0 and not report.holds
    assert any("orphaned: PENDING and no workflow" in p for p in report.problems), report.problems


def test_the_reconciler_starts_a_workflow_whose_start_was_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    lost = _lose_the_first_start_of_each_workflow(monkeypatch)
    report = run_chaos(1, seed=1, per_runtime=1, plan=FaultPlan(seed=1, **QUIET))
    assert len(lost) == 1 and report.holds, (report.summary(), report.problems)
    assert report.statuses == {"SUCCEEDED": 1} and report.orphaned == 0


def test_the_tool_sees_an_execution_stuck_behind_a_workflow_without_catches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every step fails for good; with the ASL's Catches removed, nothing records the failure."""
    from statemachines import request_workflow

    original = request_workflow.render_definition

    def without_catches(substitutions: Any) -> str:
        def strip(node: Any) -> Any:
            if isinstance(node, dict):
                return {k: strip(v) for k, v in node.items() if k != "Catch"}
            if isinstance(node, list):
                return [strip(v) for v in node]
            return node

        return json.dumps(strip(json.loads(original(substitutions))))

    monkeypatch.setattr(request_workflow, "render_definition", without_catches)
    report = run_chaos(
        1, seed=1, per_runtime=1, plan=FaultPlan(seed=1, **{**QUIET, "hard": 1.0}), reconcile=False
    )
    assert report.stuck == 1 and report.orphaned == 0 and not report.holds
    assert any("stuck:" in p and "its workflow ended FAILED" in p for p in report.problems), report.problems
