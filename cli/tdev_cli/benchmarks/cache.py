"""The read cache (tdev.caching), with and without it, side by side in one run on the local runtime.

Setup (not measured): the local runtime (moto + a real redis-server), one request run to completion, so
the execution polled has a real partition (the execution, its plan, every task result).

1. Polling: N clients (threads) each send P `GET /v1/executions/{id}` through the local API Gateway path
   (authorizer, then the API function), `interval` apart, while a writer changes the execution every
   `write_every` seconds (a task status, as a running request's progress does; each write invalidates
   the cached view in its own code path). Once with the cache switched off in the process
   (`tdev.caching.set_enabled(False)`: every read goes to DynamoDB), once with it on, same inputs.
   Measured: DynamoDB read units (AwsMeter, by DynamoDB's sizing rules), partition Queries, calls, and
   the client-observed latency p50/p99 of each GET. The local runtime runs one handler at a time (one
   process for every "container"), so latencies include waiting for that turn, on both sides alike.
2. Stampede: the cached view is invalidated, then 200 threads read it at once; backend loads are the
   partition Queries DynamoDB received (without the cache: one per reader).
Hit rate: the executions cache's counters during the polling with the cache (L1 + L2 + waited) / lookups.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from tdev_cli.benchmarks.common import fmt, summary
from tdev_cli.benchmarks.meter import AwsMeter

NAME = "cache"
DESCRIPTION = (
    "GET /v1/executions/{id} polled by N clients while the execution changes, with and without the read "
    "cache in one run: DynamoDB read units, p50/p99 latency, hit rate; and 200 concurrent misses on one "
    "key (backend loads)."
)
CLIENTS, POLLS, INTERVAL, WRITE_EVERY = 4, 25, 0.05, 0.5
QUICK = (2, 8, 0.05, 0.5)
STAMPEDE_READERS = 200


class PartitionQueries:
    """Counts the Queries of execution partitions (the view's backend loads) while installed."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def installed(self) -> Any:
        from tdev.data.executions import ExecutionRepository

        original = ExecutionRepository._query_partition

        def counted(repository: ExecutionRepository, execution_id: str) -> list[dict[str, Any]]:
            with self._lock:
                self.count += 1
            return original(repository, execution_id)

        ExecutionRepository._query_partition = counted  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            ExecutionRepository._query_partition = original  # type: ignore[method-assign]


_partition = PartitionQueries()


def _queries(meter: AwsMeter) -> int:
    return _partition.count


def _poll(
    rt: Any,
    meter: AwsMeter,
    execution_id: str,
    task_id: str,
    clients: int,
    polls: int,
    interval: float,
    write_every: float,
) -> dict[str, Any]:
    from tdev import container
    from tdev.models import TaskStatus

    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()
    writes = 0

    def client() -> None:
        for _ in range(polls):
            started = time.perf_counter()
            status, _ = rt.api("GET", f"/v1/executions/{execution_id}")
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                if status != 200:
                    failures.append(status)
            time.sleep(interval)

    def writer() -> None:
        nonlocal writes
        statuses = (TaskStatus.RUNNING, TaskStatus.SUCCEEDED)
        while not stop.wait(write_every):
            container.executions().set_task_status(execution_id, task_id, statuses[writes % 2])
            writes += 1

    before = (
        meter.read_units,
        _queries(meter),
        sum(meter.calls.values()),
        int(meter.calls[("dynamodb", "Query")]),
    )
    threads = [threading.Thread(target=client) for _ in range(clients)]
    progress = threading.Thread(target=writer)
    started = time.perf_counter()
    progress.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    progress.join()
    seconds = time.perf_counter() - started
    requests = len(latencies)
    read_units = meter.read_units - before[0]
    return {
        "requests": requests,
        "non_200": len(failures),
        "writes": writes,
        "seconds": round(seconds, 2),
        "read_units": round(read_units, 1),
        "read_units_per_request": round(read_units / requests, 3) if requests else None,
        "partition_queries": _queries(meter) - before[1],
        "dynamodb_queries": int(meter.calls[("dynamodb", "Query")]) - before[3],
        "aws_calls": sum(meter.calls.values()) - before[2],
        "latency_ms": summary(latencies),
    }


def _stampede(meter: AwsMeter, execution_id: str) -> int:
    """200 readers of one invalidated view at once; the partition Queries DynamoDB received."""
    from tdev import container
    from tdev.data.execution_cache import execution_changed

    execution_changed(execution_id)
    start = threading.Barrier(STAMPEDE_READERS)
    errors: list[BaseException] = []

    def read() -> None:
        start.wait()
        try:
            container.executions().view(execution_id)
        except BaseException as exc:  # counted, reported: a benchmark states what failed
            errors.append(exc)

    before = _queries(meter)
    threads = [threading.Thread(target=read) for _ in range(STAMPEDE_READERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} stampede readers failed: {errors[0]!r}")
    return _queries(meter) - before


def run(quick: bool = False) -> dict[str, Any]:
    from tdev import caching
    from tdev_cli.function_logs import functions_output
    from tdev_cli.runtime import ACCOUNT, REGION, LocalRuntime

    clients, polls, interval, write_every = QUICK if quick else (CLIENTS, POLLS, INTERVAL, WRITE_EVERY)
    meter = AwsMeter(ACCOUNT, REGION)
    sides: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(functions_output(".tdev/logs", "bench-cache"))
        stack.enter_context(meter.installed())
        stack.enter_context(_partition.installed())
        try:
            with meter.pause():
                rt = stack.enter_context(LocalRuntime())
                view = rt.run("Design and implement a REST API for todo items, with unit tests")
            execution_id, task_id = str(view["execution_id"]), str(view["levels"][0][0])
            for side, enabled in (("without cache", False), ("with cache", True)):
                caching.set_enabled(enabled)
                executions = caching.named("executions")
                counts_before = dict(executions.counts)
                sides[side] = _poll(rt, meter, execution_id, task_id, clients, polls, interval, write_every)
                counted = {k: executions.counts[k] - counts_before[k] for k in executions.counts}
                served = counted["hits_l1"] + counted["hits_l2"] + counted["waited"]
                lookups = served + counted["misses"] + counted["bypassed"]
                sides[side]["hit_rate"] = round(served / lookups, 4) if enabled and lookups else None
                sides[side]["cache_counts"] = counted if enabled else {}
                sides[side]["stampede_backend_loads"] = _stampede(meter, execution_id)
        finally:
            caching.set_enabled(True)
    off, on = sides["without cache"], sides["with cache"]
    saved = 1 - on["read_units"] / off["read_units"] if off["read_units"] else 0.0
    inputs = (
        f"{clients} clients x {polls} polls, {interval * 1000:.0f} ms apart, a write every "
        f"{write_every * 1000:.0f} ms"
    )
    columns = ["", "requests", "DynamoDB RRU", "RRU/request", "partition Queries", "p50 ms", "p99 ms",
               "hit rate", f"stampede: {STAMPEDE_READERS} misses -> backend loads"]  # fmt: skip
    rows = [
        [
            side,
            result["requests"],
            result["read_units"],
            result["read_units_per_request"],
            result["partition_queries"],
            round(result["latency_ms"].get("median", 0.0), 1),
            round(result["latency_ms"].get("p99", 0.0), 1),
            "-" if result["hit_rate"] is None else f"{result['hit_rate']:.1%}",
            result["stampede_backend_loads"],
        ]
        for side, result in sides.items()
    ]
    headline = (
        f"cache: GET /v1/executions/{{id}} ({inputs}): DynamoDB read units {fmt(off['read_units'])} -> "
        f"{fmt(on['read_units'])} ({saved:.0%} fewer), p50 {fmt(off['latency_ms']['median'])} -> "
        f"{fmt(on['latency_ms']['median'])} ms, p99 {fmt(off['latency_ms']['p99'])} -> "
        f"{fmt(on['latency_ms']['p99'])} ms, hit rate {on['hit_rate']:.1%}; "
        f"{STAMPEDE_READERS} concurrent misses -> {off['stampede_backend_loads']} backend loads without, "
        f"{on['stampede_backend_loads']} with"
    )
    return {
        "name": NAME,
        "headline": headline,
        "figures": {
            "inputs": {
                "clients": clients,
                "polls_per_client": polls,
                "interval_seconds": interval,
                "write_every_seconds": write_every,
                "stampede_readers": STAMPEDE_READERS,
            },
            **{side.replace(" ", "_"): result for side, result in sides.items()},
            "read_units_saved": round(saved, 4),
        },
        "tables": [{"title": f"GET /v1/executions/{{id}}: {inputs}", "columns": columns, "rows": rows}],
        "notes": [
            "Read units by DynamoDB's sizing rules on the emulated table (strongly consistent reads); the "
            "rest of each request's reads (authorizer, visibility) are included on both sides.",
            "Latency is client-observed through the local runtime, which runs one handler at a time.",
        ],
    }
