"""Platform cost of one standard request, from every AWS call it makes in the local runtime.

One request (5 agent tasks over 4 levels) goes through the local runtime with an AwsMeter on every
boto3 client, Lambda invocations timed at the handler, Step Functions state transitions taken from the
execution history, EventBridge events from the bus, Redis commands from INFO commandstats. Prices come
from aws_prices.json (us-east-1, dated); model tokens are priced separately at Bedrock's prices for the
configured model, to give the platform's share of the whole.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tdev_cli.benchmarks.common import fmt
from tdev_cli.benchmarks.meter import AwsMeter

NAME = "cost"
DESCRIPTION = (
    "One standard request through the local runtime, every AWS call counted (botocore hooks on every "
    "client), priced at public us-east-1 prices (aws_prices.json, dated). Model tokens are excluded from "
    "the platform cost and priced separately at Bedrock's prices for the configured model."
)
STANDARD_REQUEST = "Design and implement a REST API for todo items, with unit tests and a security review"
PRICES_FILE = Path(__file__).with_name("aws_prices.json")


def prices() -> dict[str, Any]:
    return dict(json.loads(PRICES_FILE.read_text()))


def _memory_by_function(environment: str) -> tuple[dict[str, int], str]:
    """Configured memory per function, from stacks/settings.py (run_agent gets the agents' memory)."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # as the Makefile does
    from stacks.settings import DEFAULT_MODEL, ENVIRONMENTS

    settings = ENVIRONMENTS[environment]
    from tdev_cli.runtime import FUNCTIONS, MESSAGING_FUNCTIONS

    # Every function but the agents runs at the default size (stacks/constructs: TdevFunction).
    memory = {name: settings.lambda_memory_mb for name in (*FUNCTIONS, *MESSAGING_FUNCTIONS, "authorizer")}
    memory["run_agent"] = settings.agent_memory_mb
    return memory, settings.default_model or DEFAULT_MODEL


def _redis_commands(client: Any) -> Counter[str]:
    """Commands the server ran, summed over every node (ElastiCache Serverless and the tests' Redis are a
    cluster; a single node is a cluster of one)."""
    nodes = [n.redis_connection for n in client.get_nodes()] if hasattr(client, "get_nodes") else [client]
    total: Counter[str] = Counter()
    for node in nodes:
        stats = node.info("commandstats")
        total.update({name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()})
    return total


def _wait(runtime: Any, execution_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while runtime.workflow_status(execution_id) == "RUNNING":
        if time.monotonic() > deadline:
            raise TimeoutError(f"the request did not finish in {timeout:.0f} s")
        time.sleep(0.05)


def measure_request(
    request: str = STANDARD_REQUEST, timeout: float = 300.0, *, warm_up: bool = True
) -> dict[str, Any]:
    """Run `request` once with everything metered; the raw counts."""
    import boto3

    from tdev import aws, container
    from tdev_cli.function_logs import functions_output
    from tdev_cli.runtime import ACCOUNT, REGION, STATE_MACHINE, LocalRuntime

    meter = AwsMeter(ACCOUNT, REGION)
    durations: list[tuple[str, float]] = []
    main_thread = threading.get_ident()
    with contextlib.ExitStack() as stack:
        stack.enter_context(functions_output(".tdev/logs", "bench-cost"))
        stack.enter_context(meter.installed())
        with meter.pause():  # set-up (tables, keys, functions) and a warm-up request are not counted
            runtime = stack.enter_context(LocalRuntime())
            aws.reset_clients()
            container.reset()
            if warm_up:  # the first request pays the functions' imports (cold starts): not steady state
                _wait(runtime, runtime.submit(request), timeout)
                runtime.drain_messaging()
                runtime.published_events()  # drained: only this request's events are counted below
        invoke = runtime.invoke

        def timed_invoke(function: str, event: dict[str, Any], **beside: Any) -> Any:
            counted = meter._counting()
            with runtime._invocation_lock:  # handler bodies take turns here; time the body, not the wait
                started = time.perf_counter()
                try:
                    return invoke(function, event, **beside)
                finally:
                    if counted:
                        durations.append((function, (time.perf_counter() - started) * 1000))

        runtime.invoke = timed_invoke  # type: ignore[method-assign]
        assert runtime.redis_url
        from tdev.cache import connect

        # One client for both snapshots: its handshake (HELLO, CLIENT SETINFO) precedes "before".
        redis_probe = stack.enter_context(connect(runtime.redis_url))
        with meter.ignored():
            redis_before = _redis_commands(redis_probe)
        execution_id = runtime.submit(request)  # counted: API call, execution record, StartExecution
        with meter.ignored():  # the benchmark's own polling is not part of the request
            _wait(runtime, execution_id, timeout)
        # counted: the outbox publisher puts the request's events (accepted, each task, the outcome) on the
        # bus and the consumers apply them, as the stream and queue mappings do in AWS
        runtime.drain_messaging()
        status, view = runtime.api("GET", f"/v1/executions/{execution_id}")  # counted: the client's one read
        with meter.ignored():
            redis_after = _redis_commands(redis_probe)
            arn = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{STATE_MACHINE}:{execution_id}"
            history = boto3.client("stepfunctions", region_name=REGION).get_execution_history(
                executionArn=arn, maxResults=1000
            )["events"]
            published = runtime.published_events()
    assert threading.get_ident() == main_thread
    redis_delta = redis_after - redis_before
    redis_delta["info"] -= 1  # the INFO that took the "before" figure is counted in "after"
    redis_delta = +redis_delta
    return {
        "status": view.get("status") if status == 200 else f"HTTP {status}",
        "view": view,
        "calls": {f"{s}.{o}": n for (s, o), n in sorted(meter.calls.items())},
        "calls_by_service": meter.by_service(),
        "errors": dict(meter.errors),
        "dynamodb_write_units": meter.write_units,
        "dynamodb_index_write_units": meter.index_write_units,
        "dynamodb_read_units": meter.read_units,
        "dynamodb_bytes_written": meter.bytes_written,
        "eventbridge_entries_put": meter.event_entries,
        "eventbridge_events_delivered": len(published),
        "state_transitions": sum(1 for e in history if e["type"].endswith("StateEntered")),
        "lambda_invocations": Counter(name for name, _ in durations),
        "lambda_durations_ms": durations,
        "redis_commands": dict(redis_delta),
        "sqs_requests": meter.count("sqs"),
        "kms_requests": meter.count("kms"),
        "s3_puts": sum(
            meter.count("s3", op) for op in ("PutObject", "CopyObject", "ListObjectsV2", "UploadPart")
        ),
        "s3_gets": sum(meter.count("s3", op) for op in ("GetObject", "HeadObject")),
    }


def price(measured: dict[str, Any], environment: str = "prod") -> dict[str, Any]:
    """Dollars per request, per item, at aws_prices.json's prices and the environment's memory sizes."""
    p = prices()
    memory, model = _memory_by_function(environment)
    gb_seconds = sum(
        math.ceil(ms) / 1000 * memory[name] / 1024 for name, ms in measured["lambda_durations_ms"]
    )
    invocations = sum(measured["lambda_invocations"].values())
    api_requests = measured["lambda_invocations"].get("api", 0)
    redis_commands = sum(measured["redis_commands"].values())
    events = max(measured["eventbridge_entries_put"], measured["eventbridge_events_delivered"])
    items = {
        "step_functions_transitions": measured["state_transitions"]
        * p["stepfunctions_standard_state_transition"],
        "lambda_requests": invocations * p["lambda_request"],
        "lambda_duration": gb_seconds * p["lambda_gb_second_arm64"],
        "api_gateway": api_requests * p["api_gateway_rest_request"],
        "dynamodb_writes": measured["dynamodb_write_units"] * p["dynamodb_on_demand_write_request_unit"],
        "dynamodb_index_writes": measured.get("dynamodb_index_write_units", 0.0)
        * p["dynamodb_on_demand_write_request_unit"],
        "dynamodb_reads": measured["dynamodb_read_units"] * p["dynamodb_on_demand_read_request_unit"],
        "eventbridge": events * p["eventbridge_custom_event"],
        "sqs": measured["sqs_requests"] * p["sqs_standard_request"],
        "kms": measured["kms_requests"] * p["kms_request"],
        "s3": measured["s3_puts"] * p["s3_put_request"] + measured["s3_gets"] * p["s3_get_request"],
        "redis": redis_commands * p["elasticache_serverless_redis_ecpu"],
    }
    from tdev.llm.catalog import cost_usd

    tasks = measured["view"].get("tasks", {}).values()
    input_tokens = sum(t["usage"]["input_tokens"] for t in tasks if t.get("usage"))
    output_tokens = sum(t["usage"]["output_tokens"] for t in tasks if t.get("usage"))
    model_cost = cost_usd(model, input_tokens, output_tokens)
    platform = sum(items.values())
    return {
        "environment": environment,
        "model": model,
        "lambda_gb_seconds": gb_seconds,
        "items_usd": items,
        "platform_usd_per_request": platform,
        "platform_usd_per_1000": platform * 1000,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "model_usd_per_request": model_cost,
        "platform_share_of_model": platform / model_cost if model_cost else None,
        "prices_as_of": p["as_of"],
    }


def run(quick: bool = False, environment: str = "prod") -> dict[str, Any]:
    measured = measure_request(warm_up=not quick)
    if measured["status"] not in ("SUCCEEDED", "DEGRADED"):
        raise RuntimeError(f"the standard request ended {measured['status']}")
    priced = price(measured, environment)
    tasks = measured["view"].get("tasks", {})
    levels = measured["view"].get("levels", [])
    share = priced["platform_share_of_model"]
    share_text = f"{share * 100:.1f}% of the model cost" if share is not None else "model cost unknown"
    items = priced["items_usd"]
    memory, _ = _memory_by_function(environment)
    lambda_rows = [
        [name, count, sum(ms for n, ms in measured["lambda_durations_ms"] if n == name), memory[name]]
        for name, count in sorted(measured["lambda_invocations"].items())
    ]
    figures = {
        **{k: v for k, v in measured.items() if k not in ("view", "lambda_durations_ms")},
        "tasks": len(tasks),
        "levels": len(levels),
        "priced": priced,
    }
    return {
        "name": NAME,
        "headline": (
            f"cost: ${priced['platform_usd_per_1000']:.4f} platform per 1,000 requests ({len(tasks)} tasks, "
            f"{len(levels)} levels; {fmt(priced['input_tokens'] + priced['output_tokens'], 0)} tokens) = "
            f"{share_text} on {priced['model']} (prices {priced['prices_as_of']})"
        ),
        "figures": figures,
        "tables": [
            {
                "title": "Platform cost per 1,000 requests (USD)",
                "columns": ["item", "USD / 1,000"],
                "rows": [[k, v * 1000] for k, v in sorted(items.items(), key=lambda kv: -kv[1])]
                + [
                    ["total", priced["platform_usd_per_1000"]],
                    ["model (excluded)", priced["model_usd_per_request"] * 1000],
                ],
            },
            {
                "title": "AWS calls in one request",
                "columns": ["service.operation", "calls"],
                "rows": [[k, v] for k, v in measured["calls"].items()],
            },
            {
                "title": "Lambda invocations in one request",
                "columns": ["function", "invocations", "total ms (local)", "memory MB"],
                "rows": lambda_rows,
            },
        ],
        "charts": [
            {
                "title": "Platform cost per 1,000 requests by item",
                "kind": "bar",
                "x_label": "item",
                "y_label": "USD",
                "series": {"USD": [[k, v * 1000] for k, v in sorted(items.items(), key=lambda kv: -kv[1])]},
            }
        ],
        "notes": [
            "DynamoDB units are computed from item sizes by the DynamoDB rules (moto's "
            "ReturnConsumedCapacity is a constant): writes ceil(max(before, after) / 1 KB), "
            "reads ceil(size / 4 KB), half when "
            "eventually consistent, double in transactions. Global secondary index writes apart "
            "(dynamodb_index_writes), from the table's index definitions: 1 per entry added, removed or "
            "changed, 2 when an entry's key changes, ceil((projected bytes + 100) / 1 KB) each.",
            "Lambda durations are this machine's, with the offline model: with Bedrock, run_agent is billed "
            "while it waits for the model, so its duration (and cost) grows with the model's latency.",
            "Steady state: a first request (not counted) pays the functions' imports; --quick skips it.",
            "The benchmark's own polling of the workflow is not counted; the client's one final GET is.",
            f"Memory sizes from stacks/settings.py environment '{environment}'; prices from "
            f"{PRICES_FILE.name} ({priced['prices_as_of']}, us-east-1). Not included: CloudWatch "
            "Logs/metrics/X-Ray, NAT/VPC, data transfer, ElastiCache storage, free tiers.",
        ],
    }
