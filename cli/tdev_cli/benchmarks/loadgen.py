"""An open-loop HTTP load generator with coordinated-omission-corrected latency (HDR histograms).

Run as its own process: `python -m tdev_cli.benchmarks.loadgen --url URL --schedule 5:10,20:5 ...`
prints one JSON document. Requests are sent at fixed intended times (rate r: one every 1/r seconds)
whether or not earlier ones have answered (open loop), and each latency is measured from its intended
send time, not from when it was actually sent: a stalled server or a saturated generator shows up in
the percentiles instead of silently lowering the rate (coordinated omission). Service time (from the
actual send) is recorded beside it. Only loopback URLs are accepted; request count and time are bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9, 100.0)


def parse_schedule(text: str) -> list[tuple[float, float]]:
    """'5:10,20:5' -> [(5 req/s, 10 s), (20 req/s, 5 s)]."""
    phases = []
    for part in text.split(","):
        rate, _, seconds = part.partition(":")
        phases.append((float(rate), float(seconds)))
        if phases[-1][0] <= 0 or phases[-1][1] <= 0:
            raise ValueError(f"a phase needs a positive rate and duration, got {part!r}")
    return phases


def _histogram() -> Any:
    from hdrh.histogram import HdrHistogram

    return HdrHistogram(1, 120_000_000, 3)  # 1 us .. 120 s, 3 significant digits


def _percentiles(histogram: Any) -> dict[str, float]:
    if histogram.get_total_count() == 0:
        return {}
    figures = {f"p{p:g}": histogram.get_value_at_percentile(p) / 1000 for p in PERCENTILES}
    figures["mean"] = histogram.get_mean_value() / 1000
    return figures  # milliseconds


@dataclass
class Phase:
    rate: float
    seconds: float
    latency: Any = field(default_factory=_histogram)  # from the intended send time (corrected)
    service: Any = field(default_factory=_histogram)  # from the actual send time (uncorrected)
    sent: int = 0
    ok: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    last_completion: float = 0.0

    def summary(self, started: float) -> dict[str, Any]:
        done = self.ok + self.errors
        return {
            "rate": self.rate,
            "seconds": self.seconds,
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "error_rate": self.errors / done if done else 0.0,
            "error_kinds": self.error_kinds,
            "latency_ms": _percentiles(self.latency),
            "service_ms": _percentiles(self.service),
        }


async def drive(
    url: str,
    schedule: list[tuple[float, float]],
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: str | None = None,
    timeout: float = 30.0,
    max_requests: int = 100_000,
    max_in_flight: int = 256,
) -> dict[str, Any]:
    import httpx

    host = urlparse(url).hostname or ""
    if host not in LOOPBACK:
        raise ValueError(f"the load generator only targets loopback addresses, not {host!r}")
    total = sum(int(rate * seconds) for rate, seconds in schedule)
    if total > max_requests:
        raise ValueError(f"the schedule sends {total} requests, more than --max-requests {max_requests}")
    phases = [Phase(rate, seconds) for rate, seconds in schedule]
    overall, overall_service = _histogram(), _histogram()
    timeline: dict[int, dict[str, Any]] = {}
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        started = time.perf_counter()

        async def one(phase: Phase, intended: float) -> None:
            sent_at = time.perf_counter()
            kind = None
            try:
                response = await client.request(method, url, headers=headers, content=body)
                if response.status_code >= 400:
                    kind = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                kind = type(exc).__name__
            done = time.perf_counter()
            latency_us = max(1, int((done - intended) * 1e6))
            service_us = max(1, int((done - sent_at) * 1e6))
            second = int(intended - started)
            slot = timeline.setdefault(
                second, {"second": second, "intended": 0, "ok": 0, "errors": 0, "max_ms": 0.0}
            )
            slot["intended"] += 1
            slot["max_ms"] = max(slot["max_ms"], latency_us / 1000)
            completed = timeline.setdefault(
                int(done - started),
                {"second": int(done - started), "intended": 0, "ok": 0, "errors": 0, "max_ms": 0.0},
            )
            completed.setdefault("completed", 0)
            completed["completed"] += 1
            if kind is None:
                phase.ok += 1
                slot["ok"] += 1
                phase.latency.record_value(latency_us)
                phase.service.record_value(service_us)
                overall.record_value(latency_us)
                overall_service.record_value(service_us)
            else:
                phase.errors += 1
                slot["errors"] += 1
                phase.error_kinds[kind] = phase.error_kinds.get(kind, 0) + 1
            phase.last_completion = done - started

        tasks = []
        offset = 0.0
        lag_max = 0.0
        for phase in phases:
            count = int(phase.rate * phase.seconds)
            for i in range(count):
                intended = started + offset + i / phase.rate
                delay = intended - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    lag_max = max(lag_max, -delay)
                tasks.append(asyncio.create_task(one(phase, intended)))
                phase.sent += 1
            offset += phase.seconds
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    ok = sum(p.ok for p in phases)
    errors = sum(p.errors for p in phases)
    return {
        "url": url,
        "method": method,
        "sent": len(tasks),
        "ok": ok,
        "errors": errors,
        "error_rate": errors / len(tasks) if tasks else 0.0,
        "elapsed_s": elapsed,
        "throughput_ok_per_s": ok / elapsed if elapsed else 0.0,
        "generator_max_lag_ms": lag_max * 1000,
        "latency_ms": _percentiles(overall),
        "service_ms": _percentiles(overall_service),
        "phases": [p.summary(started) for p in phases],
        "timeline": [timeline[s] for s in sorted(timeline)],
        "latency_distribution_ms": [
            [item.value_iterated_to / 1000, item.count_added_in_this_iter_step]
            for item in overall.get_recorded_iterator()
        ]
        if overall.get_total_count()
        else [],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loadgen", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--schedule", required=True, help="rate:seconds[,rate:seconds...]")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--header", action="append", default=[], help="Name: value (repeatable)")
    parser.add_argument("--body", help="request body (sent as is)")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--max-in-flight", type=int, default=256)
    args = parser.parse_args(argv)
    try:
        schedule = parse_schedule(args.schedule)
        headers = dict(h.split(":", 1) for h in args.header)
    except ValueError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 2
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    try:
        result = asyncio.run(
            drive(
                args.url,
                schedule,
                method=args.method,
                headers=headers,
                body=args.body,
                timeout=args.timeout,
                max_requests=args.max_requests,
                max_in_flight=args.max_in_flight,
            )
        )
    except ValueError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
