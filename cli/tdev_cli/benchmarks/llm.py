"""LLM layer benchmark: the layer's overhead per call, and router decisions per second.

Overhead: the same stubbed Bedrock Converse response (botocore Stubber, no network) is fetched N times by
calling the boto3 client directly, and N times through the layer (`run_chain`: Agno agent, error
classification, cost, hops, metrics; once without and once with the shared Redis breakers, rate counters
and history). The ratio layer/direct is measured in one run, on this machine, so it is comparable only
within that run. Router: decisions per second over the whole model table, with neutral health and with
live health read from Redis.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

NAME = "llm"
MODEL = "bedrock:amazon.nova-lite-v1:0"
RESPONSE = {
    "output": {"message": {"role": "assistant", "content": [{"text": "def add(a, b):\n    return a + b\n"}]}},
    "stopReason": "end_turn",
    "usage": {"inputTokens": 120, "outputTokens": 16, "totalTokens": 136},
    "metrics": {"latencyMs": 1},
}


def _client() -> tuple[Any, Any]:
    import boto3
    from botocore.stub import Stubber

    client = boto3.client(
        "bedrock-runtime", region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench"
    )
    return client, Stubber(client)


def _per_call_us(calls: int, call: Callable[[], Any], prepare: Callable[[int], None]) -> float:
    prepare(calls)
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Powertools prints EMF metrics and JSON logs for every call: not part of a benchmark's output."""
    saved = os.environ.get("POWERTOOLS_METRICS_DISABLED")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)
        if saved is None:
            os.environ.pop("POWERTOOLS_METRICS_DISABLED", None)
        else:
            os.environ["POWERTOOLS_METRICS_DISABLED"] = saved


@contextlib.contextmanager
def _redis() -> Iterator[Any]:
    """REDIS_URL's Redis (`?cluster=true` for a cluster), else a private one-node redis-server."""
    from tdev.cache import connect

    url = os.environ.get("REDIS_URL")
    if url:
        yield connect(url, decode_responses=True)
        return
    from tdev_cli.redis_server import RedisServer

    with RedisServer() as server:
        yield connect(server.url, decode_responses=True)


class _RoundTrips:
    """Counts, on every redis-py connection, the requests sent and the round trips they took: a round trip
    starts when a request goes out while no reply is outstanding (a request sent while another's reply is
    still on its way, a pipelined one, shares that round trip)."""

    def __init__(self) -> None:
        self.requests = self.round_trips = self.outstanding = 0

    @contextlib.contextmanager
    def counting(self) -> Iterator[_RoundTrips]:
        from redis.connection import AbstractConnection

        send, read = AbstractConnection.send_command, AbstractConnection.read_response

        def counted_send(connection: Any, *args: Any, **kwargs: Any) -> Any:
            if self.outstanding == 0:
                self.round_trips += 1
            self.requests += 1
            self.outstanding += 1
            return send(connection, *args, **kwargs)

        def counted_read(connection: Any, *args: Any, **kwargs: Any) -> Any:
            self.outstanding = max(self.outstanding - 1, 0)
            return read(connection, *args, **kwargs)

        AbstractConnection.send_command = counted_send  # type: ignore[method-assign,assignment]
        AbstractConnection.read_response = counted_read  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            AbstractConnection.send_command = send  # type: ignore[method-assign]
            AbstractConnection.read_response = read  # type: ignore[method-assign]


def _commands_served(client: Any) -> int:
    """Commands the Redis has executed so far (INFO commandstats, summed over a cluster's masters)."""
    primaries = getattr(client, "PRIMARIES", None)  # a RedisCluster: one INFO per master
    stats = client.info("commandstats", target_nodes=primaries) if primaries else client.info("commandstats")
    nodes = list(stats.values()) if primaries else [stats]
    return sum(
        int(value["calls"])
        for node in nodes
        for name, value in node.items()
        if name.startswith("cmdstat_") and name not in {"cmdstat_info", "cmdstat_ping"}
    )


def run(quick: bool = False) -> dict[str, Any]:
    os.environ.setdefault("AGNO_TELEMETRY", "false")
    from agno.models.message import Message

    from tdev.agents.chain import run_chain
    from tdev.llm.catalog import resolve_model
    from tdev.llm.fallback import Guards
    from tdev.llm.router import Criteria, live_health, route
    from tdev.models import AgentSpec

    calls = 30 if quick else 200
    spec = AgentSpec(name="CodeAgent", role="Writes code.", description="d", capabilities=["code"])
    prompt = "Write a function that adds two numbers."
    client, stub = _client()
    stub.activate()

    def queue(n: int) -> None:
        for _ in range(n):
            stub.add_response("converse", RESPONSE)

    def direct() -> Any:
        return client.converse(
            modelId="amazon.nova-lite-v1:0", messages=[{"role": "user", "content": [{"text": prompt}]}]
        )

    def resolve(name: str) -> Any:
        model = resolve_model(name)
        model.client = client  # type: ignore[attr-defined]  # AwsBedrock has one
        return model

    def agno_model() -> Any:
        return resolve(MODEL).response(messages=[Message(role="user", content=prompt)])

    figures: dict[str, Any] = {"calls": calls}
    with _quiet(), _redis() as redis_client:
        guards = Guards.from_redis(redis_client, defers_outcomes=True)  # as a task's guards (model_guards)
        for key in redis_client.scan_iter("tdev:llm:*"):  # a benchmark's own Redis, not a request path
            redis_client.delete(key)
        _per_call_us(5, direct, queue)  # warm-up: imports, botocore loaders
        figures["redis_round_trip_us"] = round(_per_call_us(calls, redis_client.ping, lambda _n: None), 1)
        _per_call_us(5, lambda: run_chain(spec, [MODEL], prompt, resolve=resolve), queue)
        _per_call_us(5, lambda: run_chain(spec, [MODEL], prompt, guards=guards, resolve=resolve), queue)
        figures["direct_client_us"] = round(_per_call_us(calls, direct, queue), 1)
        figures["agno_model_us"] = round(_per_call_us(calls, agno_model, queue), 1)
        figures["layer_us"] = round(
            _per_call_us(calls, lambda: run_chain(spec, [MODEL], prompt, resolve=resolve), queue), 1
        )
        served, trips = _commands_served(redis_client), _RoundTrips()
        with trips.counting():
            figures["layer_with_redis_us"] = round(
                _per_call_us(
                    calls, lambda: run_chain(spec, [MODEL], prompt, guards=guards, resolve=resolve), queue
                ),
                1,
            )
            guards.flush()  # the last call's outcome, read as a task's end reads it (model_guards)
        # Requests the client sent (two scripts per call), the round trips they took (the outcome of a call
        # is sent ahead of its reply, which is read behind the next call's admission: one round trip per
        # call), and the commands the server ran for them (a script's own commands included).
        figures["redis_requests_per_call"] = round(trips.requests / calls, 2)
        figures["redis_round_trips_per_call"] = round(trips.round_trips / calls, 2)
        served = _commands_served(redis_client) - served
        figures["redis_server_commands_per_call"] = round(served / calls, 2)
        criteria = Criteria(task_type="code", context_tokens=20_000, capabilities=frozenset({"tools"}))
        decisions = 50 if quick else 500
        started = time.perf_counter()
        for _ in range(decisions):
            route(criteria)
        figures["router_decisions_per_s"] = round(decisions / (time.perf_counter() - started), 1)
        health = live_health(guards)
        live = 5 if quick else 30
        started = time.perf_counter()
        for _ in range(live):
            route(criteria, health=health)
        figures["router_live_redis_decisions_per_s"] = round(live / (time.perf_counter() - started), 1)
    stub.deactivate()
    figures["overhead_ratio"] = round(figures["layer_us"] / figures["direct_client_us"], 2)
    figures["overhead_ratio_with_redis"] = round(
        figures["layer_with_redis_us"] / figures["direct_client_us"], 2
    )
    figures["overhead_per_call_us"] = round(figures["layer_with_redis_us"] - figures["direct_client_us"], 1)
    # Issue 22's goal: a call through the layer costs at most 2x the direct client plus one Redis round trip.
    figures["goal_us"] = round(2 * figures["direct_client_us"] + figures["redis_round_trip_us"], 1)
    figures["goal_met"] = figures["layer_with_redis_us"] <= figures["goal_us"]
    headline = (
        f"layer {figures['layer_with_redis_us']:.0f} us/call with Redis guards vs "
        f"{figures['direct_client_us']:.0f} us "
        f"direct ({figures['overhead_ratio_with_redis']}x, +{figures['overhead_per_call_us']:.0f} us, "
        f"{figures['redis_round_trips_per_call']:g} Redis round trips/call; goal 2x direct + 1 round trip = "
        f"{figures['goal_us']:.0f} us {'met' if figures['goal_met'] else 'not met'}); "
        f"router {figures['router_decisions_per_s']:.0f} decisions/s"
    )
    return {"name": NAME, "headline": headline, "figures": figures}


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=False), indent=2))
