"""Platform cost of one standard request, from every AWS call it makes in the local runtime.

One request (5 agent tasks over 4 levels) goes through the local runtime with an AwsMeter on every
boto3 client, Lambda invocations timed at the handler, Step Functions state transitions taken from the
execution history, EventBridge events from the bus, Redis commands from INFO commandstats. Prices come
from aws_prices.json (us-east-1, dated).

The model's cost is priced apart, for named model profiles of the catalogue (`PROFILES`), to give the
platform's share of the whole. No real model runs here (no AWS account): the tokens are the benchmark's
stated inputs, not a real model's counts. Input: what every agent run of the request really sends its model
(system instructions, the composed prompt with the upstream results, the tool schemas), captured at the
model call and counted with the product's own estimator (`tdev.llm.limits.estimate_tokens`, ~4 characters
a token); as one call per run (the prompt the task composes) and as the turns the offline model took
(each turn re-sends the conversation). Output: `OUTPUT_TOKENS_PER_RUN`, an assumption. A recorded
real-model run (`load_recording`, format in its doc) is priced beside them when TDEV_BENCH_COST_RECORDING
names one; none is checked in.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from tdev_cli.benchmarks.common import fmt
from tdev_cli.benchmarks.meter import AwsMeter

NAME = "cost"
DESCRIPTION = (
    "One standard request through the local runtime, every AWS call counted (botocore hooks on every "
    "client), priced at public us-east-1 prices (aws_prices.json, dated). Model tokens are excluded from "
    "the platform cost and priced separately for named model profiles (Nova Lite, Claude 3.5 Haiku) at the "
    "catalogue's prices, with the prompt tokens each agent run sends (the product's estimator) and a stated "
    "output-token assumption."
)
# Named model profiles from the catalogue (tdev.llm.models_data), priced at its prices.
PROFILES = {
    "nova-lite": "bedrock:amazon.nova-lite-v1:0",
    "claude-3.5-haiku": "bedrock:anthropic.claude-3-5-haiku-20241022-v1:0",
}
# Assumed output of one agent run: its deliverable (a file or a review), tool-call arguments included.
OUTPUT_TOKENS_PER_RUN = 1_000
RECORDING_VARIABLE = "TDEV_BENCH_COST_RECORDING"
RECORDING_FORMAT = "tdev-model-usage/1"
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


_run_record: ContextVar[dict[str, Any] | None] = ContextVar("bench_cost_agent_run", default=None)


@contextlib.contextmanager
def _prompts_recorded() -> Iterator[list[dict[str, Any]]]:
    """Every agent run (`run_chain` → `run_agent`) in this block, with the estimated input tokens of each of
    its model calls (`prompt_text` of the messages and tool schemas Agno sends, at the metering hook)."""
    import tdev.agents.chain as chain
    import tdev.llm.metering as metering
    from tdev.llm.limits import estimate_tokens

    runs: list[dict[str, Any]] = []
    real_run_agent, real_worst_case = chain.run_agent, metering.prompt_tokens_worst_case

    def run_agent(spec: Any, model_name: str, prompt: str, **options: Any) -> Any:
        record: dict[str, Any] = {"agent": spec.name, "prompt_chars": len(prompt), "calls": []}
        runs.append(record)
        token = _run_record.set(record)
        try:
            return real_run_agent(spec, model_name, prompt, **options)
        finally:
            _run_record.reset(token)

    def worst_case(messages: Any, tools: Any = None) -> int:
        record = _run_record.get()
        if record is not None:
            record["calls"].append(estimate_tokens(metering.prompt_text(messages, tools)))
        return real_worst_case(messages, tools)

    chain.run_agent, metering.prompt_tokens_worst_case = run_agent, worst_case
    try:
        yield runs
    finally:
        chain.run_agent, metering.prompt_tokens_worst_case = real_run_agent, real_worst_case


def load_recording(path: str | Path) -> dict[str, Any]:
    """A recorded real-model run's token counts, to price beside the profiles. The format (JSON):

        {"format": "tdev-model-usage/1", "model": "bedrock:amazon.nova-lite-v1:0",
         "recorded": "2026-12-01", "source": "what was run, where",
         "runs": [{"agent": "CodeAgent", "input_tokens": 2345, "output_tokens": 812}, ...]}

    one entry per agent run of one standard request, tokens as the provider reported them (the sums of a
    run's model calls). No recording is checked in: this repository has never run against a real model.
    """
    data = json.loads(Path(path).read_text())
    if data.get("format") != RECORDING_FORMAT:
        raise ValueError(f"{path}: format must be {RECORDING_FORMAT!r}")
    from tdev.llm.catalog import price_of

    if price_of(str(data.get("model", ""))) is None:
        raise ValueError(f"{path}: model {data.get('model')!r} has no price in the catalogue")
    runs = data.get("runs")
    if not isinstance(runs, list) or not runs:
        raise ValueError(f"{path}: runs must be a non-empty list")
    for i, run in enumerate(runs):
        for key in ("input_tokens", "output_tokens"):
            if not isinstance(run.get(key), int) or run[key] < 0:
                raise ValueError(f"{path}: runs[{i}].{key} must be a non-negative integer")
    return dict(data)


def model_profiles(
    runs: list[dict[str, Any]], recording: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The model cost of one request per profile: the runs' prompt tokens, as one call per run and as the
    offline model's turns, plus OUTPUT_TOKENS_PER_RUN per run; a recording's own counts, if given."""
    from tdev.llm.catalog import cost_usd

    composed = sum(run["calls"][0] for run in runs if run["calls"])
    all_turns = sum(sum(run["calls"]) for run in runs)
    output = OUTPUT_TOKENS_PER_RUN * len(runs)
    profiles = []
    for name, model in PROFILES.items():
        profiles.append(
            {
                "profile": name,
                "model": model,
                "source": "stated inputs",
                "agent_runs": len(runs),
                "input_tokens": composed,
                "input_tokens_as_run": all_turns,
                "output_tokens": output,
                "model_usd_per_request": cost_usd(model, composed, output),
                "model_usd_per_request_as_run": cost_usd(model, all_turns, output),
            }
        )
    if recording is not None:
        model = recording["model"]
        input_tokens = sum(run["input_tokens"] for run in recording["runs"])
        output_tokens = sum(run["output_tokens"] for run in recording["runs"])
        cost = cost_usd(model, input_tokens, output_tokens)
        profiles.append(
            {
                "profile": "recorded",
                "model": model,
                "source": f"recording {recording.get('recorded', '?')}: {recording.get('source', '')}",
                "agent_runs": len(recording["runs"]),
                "input_tokens": input_tokens,
                "input_tokens_as_run": input_tokens,
                "output_tokens": output_tokens,
                "model_usd_per_request": cost,
                "model_usd_per_request_as_run": cost,
            }
        )
    return profiles


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
        agent_runs = stack.enter_context(_prompts_recorded())
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
        "agent_runs": agent_runs,
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
    # What the offline model reported: its own estimates, no real model's counts (kept for reference only).
    offline_input = sum(t["usage"]["input_tokens"] for t in tasks if t.get("usage"))
    offline_output = sum(t["usage"]["output_tokens"] for t in tasks if t.get("usage"))
    recording_path = os.environ.get(RECORDING_VARIABLE)
    recording = load_recording(recording_path) if recording_path else None
    profiles = model_profiles(measured["agent_runs"], recording)
    platform = sum(items.values())
    for profile in profiles:
        model_cost = profile["model_usd_per_request"]
        profile["platform_share_of_model"] = platform / model_cost if model_cost else None
    first = profiles[0]
    return {
        "environment": environment,
        "deployment_default_model": model,
        "lambda_gb_seconds": gb_seconds,
        "items_usd": items,
        "platform_usd_per_request": platform,
        "platform_usd_per_1000": platform * 1000,
        "offline_model_tokens": {"input": offline_input, "output": offline_output},
        "offline_model_usd_at_default": cost_usd(model, offline_input, offline_output),
        "output_tokens_per_run_assumed": OUTPUT_TOKENS_PER_RUN,
        "model_profiles": profiles,
        # the first profile's, for a one-figure summary
        "model": first["model"],
        "input_tokens": first["input_tokens"],
        "output_tokens": first["output_tokens"],
        "model_usd_per_request": first["model_usd_per_request"],
        "platform_share_of_model": first["platform_share_of_model"],
        "prices_as_of": p["as_of"],
    }


def run(quick: bool = False, environment: str = "prod") -> dict[str, Any]:
    measured = measure_request(warm_up=not quick)
    if measured["status"] not in ("SUCCEEDED", "DEGRADED"):
        raise RuntimeError(f"the standard request ended {measured['status']}")
    priced = price(measured, environment)
    tasks = measured["view"].get("tasks", {})
    levels = measured["view"].get("levels", [])
    profiles = priced["model_profiles"]
    shares = "; ".join(
        f"{pr['platform_share_of_model'] * 100:.1f}% of the model cost on profile {pr['profile']} "
        f"({pr['model']}: {fmt(pr['input_tokens'], 0)} input + {fmt(pr['output_tokens'], 0)} output tokens "
        f"= ${pr['model_usd_per_request'] * 1000:.2f}/1,000)"
        for pr in profiles
        if pr["platform_share_of_model"] is not None
    )
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
            f"{len(levels)} levels) = {shares}; input = the prompts the {profiles[0]['agent_runs']} agent "
            f"runs sent (product's estimator), output = {OUTPUT_TOKENS_PER_RUN:,} per run assumed "
            f"(prices {priced['prices_as_of']})"
        ),
        "figures": figures,
        "tables": [
            {
                "title": "Platform cost per 1,000 requests (USD)",
                "columns": ["item", "USD / 1,000"],
                "rows": [[k, v * 1000] for k, v in sorted(items.items(), key=lambda kv: -kv[1])]
                + [["total", priced["platform_usd_per_1000"]]],
            },
            {
                "title": "Model cost per 1,000 requests by profile (excluded from the platform cost)",
                "columns": [
                    "profile",
                    "model",
                    "input tokens (one call per run)",
                    "USD / 1,000",
                    "input tokens (offline model's turns)",
                    "USD / 1,000 (turns)",
                    "output tokens (assumed)",
                ],
                "rows": [
                    [
                        pr["profile"],
                        pr["model"],
                        pr["input_tokens"],
                        pr["model_usd_per_request"] * 1000,
                        pr["input_tokens_as_run"],
                        pr["model_usd_per_request_as_run"] * 1000,
                        pr["output_tokens"],
                    ]
                    for pr in profiles
                ],
            },
            {
                "title": "Prompt tokens each agent run sent (product's estimator, ~4 characters a token)",
                "columns": ["agent", "model calls", "first call", "all calls"],
                "rows": [
                    [
                        run["agent"],
                        len(run["calls"]),
                        run["calls"][0] if run["calls"] else 0,
                        sum(run["calls"]),
                    ]
                    for run in measured["agent_runs"]
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
            "Model cost: no real model runs here and no recorded run is checked in, so the model's tokens "
            "are stated inputs: each agent run's input is what it really sent its model (instructions, "
            "the composed prompt with its upstream results, the tool schemas), captured at the model call, "
            "counted by tdev.llm.limits.estimate_tokens (~4 characters a token, not a provider's tokenizer); "
            "'one call per run' counts each run's first call, 'turns' every call the offline model's tool "
            f"loop made (each re-sends the conversation; a real model's turns differ). Output: "
            f"{OUTPUT_TOKENS_PER_RUN:,} tokens per agent run, assumed. Set {RECORDING_VARIABLE} to a "
            "recording (load_recording's format) to price a real run's counts beside them.",
            "Steady state: a first request (not counted) pays the functions' imports; --quick skips it.",
            "The benchmark's own polling of the workflow is not counted; the client's one final GET is.",
            f"Memory sizes from stacks/settings.py environment '{environment}'; prices from "
            f"{PRICES_FILE.name} ({priced['prices_as_of']}, us-east-1). Not included: CloudWatch "
            "Logs/metrics/X-Ray, NAT/VPC, data transfer, ElastiCache storage, free tiers.",
        ],
    }
