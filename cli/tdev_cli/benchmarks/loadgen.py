"""An open-loop HTTP load generator with coordinated-omission-corrected latency (HDR histograms).

Run as its own process: `python -m tdev_cli.benchmarks.loadgen --url URL --schedule 5:10,20:5 ...`
prints one JSON document. Requests are sent at fixed intended times (rate r: one every 1/r seconds)
whether or not earlier ones have answered (open loop), and each latency is measured from its intended
send time, not from when it was actually sent: a stalled server or a saturated generator shows up in
the percentiles instead of silently lowering the rate (coordinated omission). Service time (from the
actual send) is recorded beside it. Only loopback URLs are accepted; request count and time are bounded.

The arithmetic, stated once:
- A phase `rate:seconds` sends n = round(rate x seconds) requests, one every 1/rate s, so its window is
  exactly n / rate seconds (n requests over n intervals, not n - 1).
- Throughput = requests completed (answered; timeouts excluded) / elapsed wall time, where the elapsed
  time is the window or, when the server falls behind, until the last answer (whichever is later): a
  server that keeps up shows the offered rate, never more.
- Every request ends as ok, error (HTTP >= 400 or a transport error) or timeout (no answer within
  --timeout seconds in total). All three are in `latency_ms` (a timeout at its measured latency, which
  is at least the timeout) and in `error_rate`; `latency_ok_ms` is the successful ones only.
- With --tokens-file, request i carries `Authorization: Bearer <token i mod N>`: the load is spread over
  N principals so a per-principal rate limit measures the server, not one user's quota.
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
MAX_US = 120_000_000
MAX_TIMEOUT_S = 110.0  # a timeout must fit in the histogram with room for the generator's own lag


def requests_in(rate: float, seconds: float) -> int:
    """How many requests a phase sends: round(rate x seconds), at least one."""
    return max(1, round(rate * seconds))


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

    return HdrHistogram(1, MAX_US, 3)  # 1 us .. 120 s, 3 significant digits


def _percentiles(histogram: Any) -> dict[str, float]:
    if histogram.get_total_count() == 0:
        return {}
    figures = {f"p{p:g}": histogram.get_value_at_percentile(p) / 1000 for p in PERCENTILES}
    figures["mean"] = histogram.get_mean_value() / 1000
    return figures  # milliseconds


@dataclass
class Phase:
    rate: float
    count: int
    start: float = 0.0  # offset of its first intended send from the run's start, seconds
    latency: Any = field(default_factory=_histogram)  # every request, from the intended send (corrected)
    latency_ok: Any = field(default_factory=_histogram)  # successful requests only, corrected
    service: Any = field(default_factory=_histogram)  # every request, from the actual send (uncorrected)
    sent: int = 0
    ok: int = 0
    errors: int = 0  # failures and timeouts
    timeouts: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    last_completion: float = 0.0  # offset from the run's start

    @property
    def window(self) -> float:
        return self.count / self.rate

    def summary(self) -> dict[str, Any]:
        elapsed = max(self.window, self.last_completion - self.start)
        return {
            "rate": self.rate,
            "seconds": self.window,
            **_counts(self.sent, self.ok, self.errors, self.timeouts, elapsed),
            "error_kinds": self.error_kinds,
            "latency_ms": _percentiles(self.latency),
            "latency_ok_ms": _percentiles(self.latency_ok),
            "service_ms": _percentiles(self.service),
        }


def _counts(sent: int, ok: int, errors: int, timeouts: int, elapsed: float) -> dict[str, Any]:
    completed = ok + errors - timeouts  # answered by the server, successfully or not
    return {
        "sent": sent,
        "completed": completed,
        "ok": ok,
        "errors": errors,  # failed answers, transport errors and timeouts
        "timeouts": timeouts,
        "error_rate": errors / (ok + errors) if ok + errors else 0.0,
        "elapsed_s": elapsed,
        "throughput_per_s": completed / elapsed if elapsed else 0.0,
        "throughput_ok_per_s": ok / elapsed if elapsed else 0.0,
    }


def _record(histogram: Any, value_us: int) -> None:
    histogram.record_value(min(MAX_US, max(1, value_us)))


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
    tokens: list[str] | None = None,
) -> dict[str, Any]:
    import httpx

    host = urlparse(url).hostname or ""
    if host not in LOOPBACK:
        raise ValueError(f"the load generator only targets loopback addresses, not {host!r}")
    if not 0 < timeout <= MAX_TIMEOUT_S:
        raise ValueError(f"--timeout must be in (0, {MAX_TIMEOUT_S:g}] seconds, got {timeout:g}")
    total = sum(requests_in(rate, seconds) for rate, seconds in schedule)
    if total > max_requests:
        raise ValueError(f"the schedule sends {total} requests, more than --max-requests {max_requests}")
    phases = [Phase(rate, requests_in(rate, seconds)) for rate, seconds in schedule]
    overall, overall_ok, overall_service = _histogram(), _histogram(), _histogram()
    timeline: dict[int, dict[str, Any]] = {}
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)

    def slot(second: int) -> dict[str, Any]:
        empty = {"second": second, "intended": 0, "ok": 0, "errors": 0, "completed": 0, "max_ms": 0.0}
        return timeline.setdefault(second, empty)

    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        started = time.perf_counter()

        async def one(phase: Phase, intended: float, request_headers: dict[str, str]) -> None:
            sent_at = time.perf_counter()
            kind = None
            try:
                # One deadline for the whole exchange (httpx's own timeouts are per connect/read/write).
                response = await asyncio.wait_for(
                    client.request(method, url, headers=request_headers, content=body), timeout
                )
                if response.status_code >= 400:
                    kind = f"HTTP {response.status_code}"
            except (TimeoutError, httpx.TimeoutException):
                kind = "timeout"
            except httpx.HTTPError as exc:
                kind = type(exc).__name__
            done = time.perf_counter()
            latency_us = int((done - intended) * 1e6)
            service_us = int((done - sent_at) * 1e6)
            by_intent = slot(int(intended - started))
            by_intent["intended"] += 1
            by_intent["max_ms"] = max(by_intent["max_ms"], latency_us / 1000)
            slot(int(done - started))["completed"] += 1
            for histogram, value in ((phase.latency, latency_us), (phase.service, service_us)):
                _record(histogram, value)
            _record(overall, latency_us)
            _record(overall_service, service_us)
            if kind is None:
                phase.ok += 1
                by_intent["ok"] += 1
                _record(phase.latency_ok, latency_us)
                _record(overall_ok, latency_us)
            else:
                phase.errors += 1
                phase.timeouts += kind == "timeout"
                by_intent["errors"] += 1
                phase.error_kinds[kind] = phase.error_kinds.get(kind, 0) + 1
            phase.last_completion = max(phase.last_completion, done - started)

        tasks: list[asyncio.Task[None]] = []
        offset = 0.0
        lag_max = 0.0
        for phase in phases:
            phase.start = offset
            for i in range(phase.count):
                intended = started + offset + i / phase.rate
                delay = intended - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    lag_max = max(lag_max, -delay)
                request_headers = dict(headers or {})
                if tokens:
                    request_headers["Authorization"] = f"Bearer {tokens[len(tasks) % len(tokens)]}"
                tasks.append(asyncio.create_task(one(phase, intended, request_headers)))
                phase.sent += 1
            offset += phase.window
        await asyncio.gather(*tasks)
        # The run lasts its whole schedule (n requests are n intervals) or until the last answer.
        elapsed = max(offset, time.perf_counter() - started)
    return {
        "url": url,
        "method": method,
        "principals": len(tokens) if tokens else None,
        **_counts(
            len(tasks),
            sum(p.ok for p in phases),
            sum(p.errors for p in phases),
            sum(p.timeouts for p in phases),
            elapsed,
        ),
        "timeout_s": timeout,
        "generator_max_lag_ms": lag_max * 1000,
        "latency_ms": _percentiles(overall),
        "latency_ok_ms": _percentiles(overall_ok),
        "service_ms": _percentiles(overall_service),
        "phases": [p.summary() for p in phases],
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
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request, in total")
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--max-in-flight", type=int, default=256)
    parser.add_argument(
        "--tokens-file", help="bearer tokens, one a line: request i uses token i mod N (N principals)"
    )
    args = parser.parse_args(argv)
    try:
        schedule = parse_schedule(args.schedule)
        headers = dict(h.split(":", 1) for h in args.header)
        tokens = None
        if args.tokens_file:
            with open(args.tokens_file, encoding="utf-8") as source:
                tokens = [line.strip() for line in source if line.strip()]
            if not tokens:
                raise ValueError(f"no token in {args.tokens_file}")
    except (ValueError, OSError) as exc:
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
                tokens=tokens,
            )
        )
    except ValueError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
