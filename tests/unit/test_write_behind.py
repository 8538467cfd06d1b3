"""Write-behind (tdev.write_behind) on the tests' real Redis (a three-master cluster by default).

A "container" is a WriteBehind instance; a crash is a container dropped without its flush. The table is a
dict that counts each run id once (as AgentRepository.record_run does), or the application's table in moto.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import redis
from moto import mock_aws
from redis.cluster import key_slot

from tdev import cache, container, write_behind
from tdev.write_behind import Record, WriteBehind, sqs_dead_letter
from tests.conftest import moto_table


@pytest.fixture(autouse=True)
def _no_queue_from_another_test() -> Iterator[None]:
    write_behind.reset()  # the process's list of queues to flush: each test's own
    yield
    write_behind.reset()


class Table:
    """The source of truth: run counters, each run id counted once; `failing` makes every write fail."""

    def __init__(self) -> None:
        self.runs: dict[str, int] = {}
        self.seen: set[str] = set()
        self.writes = 0
        self.failing = False
        self._lock = threading.Lock()

    def apply(self, record: Record) -> None:
        with self._lock:
            self.writes += 1
            if self.failing:
                raise OSError("table unavailable")
            if record["run_id"] in self.seen:
                return
            self.seen.add(record["run_id"])
            self.runs[record["agent"]] = self.runs.get(record["agent"], 0) + 1


def _run(i: int, agent: str = "CodeAgent") -> Record:
    return {"agent": agent, "run_id": f"e-{i}#t#SUCCEEDED", "succeeded": True, "duration_ms": 10}


def _queue(table: Table, **options: Any) -> WriteBehind:
    options.setdefault("backoff_seconds", 0.0)
    return WriteBehind("agent-runs", table.apply, redis=cache.redis_client, **options)


def test_keys_share_one_slot(redis_url: str) -> None:
    queue = _queue(Table())
    assert key_slot(queue.pending_key.encode()) == key_slot(queue.lock_key.encode())


def test_a_submit_is_buffered_in_redis_and_applied_by_the_flush(redis_url: str) -> None:
    table = Table()
    queue = _queue(table)
    for i in range(3):
        assert queue.submit(_run(i)) is True
    assert table.writes == 0  # acknowledged, not yet written
    assert cache.redis_client().llen(queue.pending_key) == 3

    report = queue.flush()

    assert (report.applied, report.dead_lettered, report.kept) == (3, 0, 0)
    assert table.runs == {"CodeAgent": 3}
    assert cache.redis_client().llen(queue.pending_key) == 0


def test_a_crash_before_the_flush_loses_nothing_acknowledged(redis_url: str) -> None:
    table = Table()
    crashed = _queue(table, batch_size=4)
    for i in range(10):
        crashed.submit(_run(i))
    del crashed  # the container is reclaimed before its end-of-invocation flush

    survivor = _queue(table, batch_size=4)  # another container, its own invocation's flush
    report = survivor.flush()

    assert report.applied == 10 and table.runs == {"CodeAgent": 10}


def test_a_crash_during_a_flush_loses_nothing_and_counts_nothing_twice(redis_url: str) -> None:
    table = Table()
    queue = _queue(table, batch_size=5, lock_lease_ms=200)
    for i in range(5):
        queue.submit(_run(i))
    # A flusher applies two records and dies: its lease stays, the list is not trimmed.
    client = cache.redis_client()
    client.set(queue.lock_key, "dead-flusher", px=200)
    for raw in client.lrange(queue.pending_key, 0, 1):
        table.apply(json.loads(raw))

    assert _queue(table).flush().applied == 0  # the lease is still held: nothing applied twice meanwhile
    client.pexpire(queue.lock_key, 1)  # the lease ends
    client.delete(queue.lock_key)
    report = _queue(table).flush()

    assert report.applied == 5 and report.kept == 0
    assert table.runs == {"CodeAgent": 5}  # the two applied before the crash counted once


def test_reaching_the_threshold_flushes_at_once(redis_url: str) -> None:
    table = Table()
    queue = _queue(table, flush_threshold=3)
    queue.submit(_run(1))
    queue.submit(_run(2))
    assert table.writes == 0
    queue.submit(_run(3))
    assert table.runs == {"CodeAgent": 3}


def test_a_record_that_fails_every_retry_is_dead_lettered_to_sqs(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        from tdev import aws

        aws.reset_clients()
        url = boto3.client("sqs").create_queue(QueueName="tdev-write-behind-dlq")["QueueUrl"]
        table = Table()
        queue = _queue(table, dead_letter=sqs_dead_letter(url, "agent-runs"), retries=3)
        queue.submit(_run(1))
        table.failing = True

        report = queue.flush()

        assert (report.applied, report.dead_lettered, report.kept) == (0, 1, 0)
        assert table.writes == 3  # retried, then dead-lettered
        (message,) = boto3.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        body = json.loads(message["Body"])
        assert body["queue"] == "agent-runs" and body["record"] == _run(1)
        assert "table unavailable" in body["error"]
        aws.reset_clients()


def test_a_record_that_cannot_be_dead_lettered_stays_buffered(redis_url: str) -> None:
    table = Table()

    def unreachable(record: Record, error: str) -> None:
        raise OSError("sqs unreachable")

    queue = _queue(table, dead_letter=unreachable)
    queue.submit(_run(1))
    queue.submit(_run(2))
    table.failing = True

    report = queue.flush()

    assert (report.applied, report.dead_lettered, report.kept) == (0, 0, 2)
    table.failing = False
    assert queue.flush().applied == 2 and table.runs == {"CodeAgent": 2}


def test_redis_down_writes_straight_to_the_table(caplog: pytest.LogCaptureFixture) -> None:
    def down() -> Any:
        raise redis.exceptions.ConnectionError("connection refused")

    table = Table()
    queue = WriteBehind("agent-runs", table.apply, redis=down, backoff_seconds=0.0)

    assert queue.submit(_run(1)) is False
    assert table.runs == {"CodeAgent": 1} and queue.direct_writes == 1
    table.failing = True
    with pytest.raises(OSError, match="table unavailable"):  # stored nowhere: not acknowledged
        queue.submit(_run(2))
    assert queue.flush().applied == 0  # nothing to drain, and no error


def test_flush_all_flushes_what_this_process_buffered(redis_url: str) -> None:
    table = Table()
    queue = _queue(table)
    queue.submit(_run(1))
    write_behind.flush_all()
    assert table.runs == {"CodeAgent": 1}


@pytest.fixture
def stored(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Iterator[str]:
    with moto_table(monkeypatch, "tdev-write-behind", REDIS_URL=redis_url):
        yield "tdev-write-behind"


def test_agent_run_statistics_are_written_behind_to_the_table(stored: str) -> None:
    runs = container.run_statistics()
    used = {"cpu_ms": 4, "memory_permille": 100}  # what each run measured, for the resource-based routing
    for i in range(3):
        runs.submit({**_run(i, agent="TestAgent"), **used})
    runs.submit({**_run(0, agent="TestAgent"), **used})  # a retried step: counted once
    assert container.agents().stats("TestAgent")["runs"] == 0

    write_behind.flush_all()

    assert container.agents().stats("TestAgent") == {
        "runs": 3,
        "successes": 3,
        "failures": 0,
        "total_duration_ms": 30,
        "cpu_ms": 12,
        "memory_permille": 300,
    }
