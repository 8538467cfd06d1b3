"""Load tests of `tdev serve` on 127.0.0.1, driven by the open-loop generator (loadgen) in its own process.

Modes: `rates` (fixed arrival-rate steps), `stress` (double the rate until the error rate or p99 breaks
its threshold), `spike` (base rate, 10x spike, base again: recovery) and `soak` (one rate for a
duration: latency and server memory drift). Everything is bounded in requests and time, loopback only.

The requests are spread over many principals (tokens of the local issuer, as `tdev token` makes them):
the application limits each principal to 100 requests per 15 minutes, so one principal would measure
its own quota, not the server. Each principal serves at most PER_PRINCIPAL requests in a run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tdev.models import ExecutionStatus
from tdev_cli.benchmarks import BenchmarkUnavailable
from tdev_cli.benchmarks.common import fmt
from tdev_cli.benchmarks.loadgen import requests_in

NAME = "load"
DESCRIPTION = (
    "Open-loop load against `tdev serve` on 127.0.0.1 from a separate generator process: fixed arrival "
    "rates, latency from each request's intended send time (coordinated-omission corrected) in an HDR "
    "histogram. POST /v1/requests with a developer token: each accepted request starts a workflow."
)
REQUEST_BODY = json.dumps({"request": "Implement a REST API for todo items with unit tests"})
MAX_REQUESTS = 20_000
TDEV = [sys.executable, "-m", "tdev_cli.main"]
KEYS_DIR = ".tdev/keys"  # the local issuer `tdev token` and `tdev serve` share
PER_PRINCIPAL = 80  # requests per principal per run: under the application's 100 per 15 min
TOKEN_TTL_S = 6 * 3600


class Principals:
    """Fresh principals of the local issuer, minted as a run needs them: a step of n requests gets
    ceil(n / PER_PRINCIPAL) principals of its own, so no principal passes PER_PRINCIPAL in a run and
    the server's per-principal rate limit never throttles the benchmark."""

    def __init__(self, keys_dir: str = KEYS_DIR, role: str = "developer") -> None:
        from tdev.security.issuer import LocalIssuer

        self.issuer = LocalIssuer(keys_dir)
        self.role = role
        self.run_id = uuid.uuid4().hex[:8]
        self.minted = 0

    def tokens(self, requests: int) -> list[str]:
        count = max(1, math.ceil(requests / PER_PRINCIPAL))
        minted = []
        for _ in range(count):
            self.minted += 1
            user = f"bench-{self.run_id}-{self.minted}"
            minted.append(self.issuer.issue(user, [self.role], ttl_seconds=TOKEN_TTL_S)[0])
        return minted


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_generator(
    url: str,
    schedule: list[tuple[float, float]],
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: str | None = None,
    timeout: float = 30.0,
    tokens: list[str] | None = None,
) -> dict[str, Any]:
    """Run loadgen in its own process for `schedule` [(rate, seconds)], return its JSON result.
    With `tokens`, request i is sent as the principal of tokens[i mod N]."""
    command = [
        sys.executable, "-m", "tdev_cli.benchmarks.loadgen", "--url", url, "--method", method,
        "--schedule", ",".join(f"{rate:g}:{seconds:g}" for rate, seconds in schedule),
        "--timeout", str(timeout), "--max-requests", str(MAX_REQUESTS),
    ]  # fmt: skip
    for name, value in (headers or {}).items():
        command += ["--header", f"{name}: {value}"]
    if body is not None:
        command += ["--body", body]
    budget = sum(requests_in(rate, seconds) / rate for rate, seconds in schedule) + timeout + 30
    with tempfile.TemporaryDirectory(prefix="tdev-loadgen-") as folder:
        if tokens:
            token_file = Path(folder) / "tokens"
            token_file.touch(mode=0o600)
            token_file.write_text("\n".join(tokens) + "\n")
            command += ["--tokens-file", str(token_file)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=budget, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed ({done.returncode}): {done.stderr.strip()[-600:]}")
    return dict(json.loads(done.stdout))


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@contextlib.contextmanager
def serve(port: int) -> Iterator[tuple[str, dict[str, str], subprocess.Popen[bytes], Principals]]:
    """`tdev serve --port` in a child process; yields (base URL, headers, process, principals)."""
    probe = subprocess.run([*TDEV, "serve", "--help"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchmarkUnavailable(
            f"`tdev serve` is missing on this branch (the security layer adds it): {reason}"
        )
    try:
        principals = Principals()
        warm_up_token = principals.tokens(1)[0]
    except (OSError, ValueError) as exc:  # unreadable or unwritable keys: nothing to measure with
        raise BenchmarkUnavailable(f"the local issuer cannot mint tokens: {exc}") from exc
    headers = {"Content-Type": "application/json"}
    log = tempfile.NamedTemporaryFile(prefix="tdev-serve-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen([*TDEV, "serve", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"tdev serve exited with {process.returncode}; its log: {log.name}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"tdev serve did not answer /health within 90 s; its log: {log.name}")
            time.sleep(0.5)
        _warm_up(base, {**headers, "Authorization": f"Bearer {warm_up_token}"})
        yield base, headers, process, principals
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _warm_up(base: str, headers: dict[str, str]) -> None:
    """One request through the whole workflow before measuring: the first JWKS read, Redis connection and
    KMS data key are start-up costs, not the latency of a server under load."""
    import httpx

    accepted = httpx.post(f"{base}/v1/requests", headers=headers, content=REQUEST_BODY, timeout=30)
    accepted.raise_for_status()
    execution = f"{base}/v1/executions/{accepted.json()['execution_id']}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = httpx.get(execution, headers=headers, timeout=30).json().get("status")
        if status and ExecutionStatus(status).terminal:
            return
        time.sleep(0.5)
    raise RuntimeError("the warm-up request did not finish within 120 s")


def passes(result: dict[str, Any], p99_ms: float, max_error_rate: float) -> bool:
    p99 = result.get("latency_ms", {}).get("p99")
    return result["error_rate"] <= max_error_rate and p99 is not None and p99 <= p99_ms


@dataclasses.dataclass(frozen=True)
class Target:
    base: str
    headers: dict[str, str]
    principals: Principals

    def submit(self, schedule: list[tuple[float, float]]) -> dict[str, Any]:
        """POST /v1/requests on `schedule`, spread over fresh principals enough for its requests."""
        requests = sum(requests_in(rate, seconds) for rate, seconds in schedule)
        return run_generator(
            f"{self.base}/v1/requests",
            schedule,
            method="POST",
            headers=self.headers,
            body=REQUEST_BODY,
            tokens=self.principals.tokens(requests),
        )


def _step(target: Target, rate: float, seconds: float) -> dict[str, Any]:
    return target.submit([(rate, seconds)])


def _errors(result: dict[str, Any]) -> str:
    text = f"errors {result['error_rate'] * 100:.1f}%"
    return text + (f" ({result['timeouts']} timed out)" if result.get("timeouts") else "")


def run(
    quick: bool = False,
    mode: str = "rates",
    soak_seconds: float | None = None,
    port: int = 0,
    p99_threshold_ms: float = 1000.0,
    max_error_rate: float = 0.01,
) -> dict[str, Any]:
    port = port or free_port()
    with serve(port) as (base, headers, process, principals):
        target = Target(base, headers, principals)
        if mode == "stress":
            return _stress(target, quick, p99_threshold_ms, max_error_rate)
        if mode == "spike":
            return _spike(target, quick, p99_threshold_ms)
        if mode == "soak":
            return _soak(target, process, soak_seconds or (20 if quick else 300), p99_threshold_ms)
        return _rates(target, quick, p99_threshold_ms, max_error_rate)


def recommendations(steps: list[dict[str, Any]], rss_mib: list[list[float]] | None = None) -> list[str]:
    """SPEC 1.18's flags: p95 over 1 s, throughput scaling worse by > 20 %, memory that keeps growing."""
    advice = []
    for step in steps:
        rate = step["phases"][0]["rate"]
        p95 = step.get("latency_ms", {}).get("p95")
        if p95 is not None and p95 > 1000:
            advice.append(
                f"p95 is {p95:,.0f} ms at {rate:g} req/s offered (> 1,000 ms): find the bottleneck first."
            )
            break
    for previous, step in itertools.pairwise(steps):
        before = previous["throughput_ok_per_s"] / previous["phases"][0]["rate"]
        after = step["throughput_ok_per_s"] / step["phases"][0]["rate"]
        if before > 0 and after < before * 0.8:
            advice.append(
                f"scalability degrades by {(1 - after / before) * 100:.0f}% from "
                f"{previous['phases'][0]['rate']:g} to {step['phases'][0]['rate']:g} req/s offered (> 20 %): "
                "the server saturates there."
            )
            break
    if rss_mib and len(rss_mib) >= 4:
        quarter = len(rss_mib) // 4
        early = sum(v for _, v in rss_mib[:quarter]) / quarter
        late = sum(v for _, v in rss_mib[-quarter:]) / quarter
        if late > early * 1.1:
            advice.append(
                f"server memory grew {late - early:,.1f} MiB ({(late / early - 1) * 100:.0f}%) over the "
                "soak: a possible leak; profile it with tracemalloc snapshots."
            )
    return advice


STEP_COLUMNS = [
    "offered/s", "sent", "ok/s", "errors %", "timeouts", "p50 ms", "p99 ms", "p99 ok ms", "p99 service ms"
]  # fmt: skip


def _step_rows(steps: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [s["phases"][0]["rate"], s["sent"], s["throughput_ok_per_s"], s["error_rate"] * 100, s["timeouts"],
         s["latency_ms"].get("p50"), s["latency_ms"].get("p99"), s["latency_ok_ms"].get("p99"),
         s["service_ms"].get("p99")]
        for s in steps
    ]  # fmt: skip


def _steps_result(
    kind: str, steps: list[dict[str, Any]], p99_ms: float, max_error_rate: float, extra: dict[str, Any]
) -> dict[str, Any]:
    good = [s for s in steps if passes(s, p99_ms, max_error_rate)]
    best = max(good, key=lambda s: s["throughput_ok_per_s"]) if good else None
    broke = next((s for s in steps if not passes(s, p99_ms, max_error_rate)), None)
    headline = (
        f"load ({kind}): {fmt(best['throughput_ok_per_s'], 2)} requests/s sustained "
        f"({best['phases'][0]['rate']:g} offered) at p99 "
        f"{fmt(best['latency_ms']['p99'], 0)} ms (< {p99_ms:g} ms, {_errors(best)})"
        if best
        else f"load ({kind}): no rate tried kept p99 under {p99_ms:g} ms with errors <= {max_error_rate:.0%}"
    )
    if broke is not None:
        headline += (
            f"; breaks at {broke['phases'][0]['rate']:g} req/s offered "
            f"(p99 {fmt(broke['latency_ms'].get('p99', 0), 0)} ms, {_errors(broke)})"
        )
    return {
        "name": NAME,
        "headline": headline,
        "figures": {
            "mode": kind,
            "p99_threshold_ms": p99_ms,
            "max_error_rate": max_error_rate,
            "sustained_rps": best["throughput_ok_per_s"] if best else 0.0,
            "breaking_rate": broke["phases"][0]["rate"] if broke else None,
            "steps": [
                {k: v for k, v in s.items() if k not in ("timeline", "latency_distribution_ms")}
                for s in steps
            ],
            **extra,
        },
        "tables": [
            {
                "title": "Arrival-rate steps (latency from intended send time)",
                "columns": STEP_COLUMNS,
                "rows": _step_rows(steps),
            }
        ],
        "charts": [
            {
                "title": "p99 latency by offered rate (corrected vs service time)",
                "kind": "line",
                "x_label": "offered requests/s",
                "y_label": "ms",
                "series": {
                    "p99 (intended)": [[r[0], r[6]] for r in _step_rows(steps)],
                    "p99 (service)": [[r[0], r[8]] for r in _step_rows(steps)],
                },
            },
            {
                "title": "Latency distribution at the highest sustained rate",
                "kind": "bar",
                "x_label": "ms (HDR bucket)",
                "y_label": "requests",
                "series": {
                    "requests": [[f"{v:.0f}", c] for v, c in (best or steps[-1])["latency_distribution_ms"]]
                },
            },
            _throughput_chart(steps[-1]),
        ],
        "recommendations": recommendations(steps),
        "notes": [
            *recommendations(steps),
            "Each accepted POST starts a whole workflow inside the serve process (local runtime, offline "
            "model), so the sustained rate is the local runtime's, not API Gateway's or Lambda's.",
            *COUNTING_NOTES,
        ],
    }


COUNTING_NOTES = [
    "Rate = requests answered / elapsed wall time (the step's window, n requests at 1/rate apart, or "
    "until the last answer if later); ok/s counts the successful ones.",
    "p50/p99 include failed and timed-out requests (a timeout at its measured latency, at least the "
    "timeout); 'p99 ok' is the successful requests only. Errors % counts failures and timeouts.",
    f"Requests are spread over fresh principals of the local issuer, at most {PER_PRINCIPAL} each, so "
    "the per-principal rate limit (100 per 15 min) does not throttle the benchmark.",
]


def _throughput_chart(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": "Throughput over time (completions per second)",
        "kind": "line",
        "x_label": "second",
        "y_label": "requests/s",
        "series": {
            "completed": [[t["second"], t.get("completed", 0)] for t in result["timeline"]],
            "errors (by intended second)": [[t["second"], t["errors"]] for t in result["timeline"]],
        },
    }


def _rates(target: Target, quick: bool, p99_ms: float, max_error_rate: float) -> dict[str, Any]:
    # Each accepted POST runs a whole workflow inside the serve process, so the local runtime saturates
    # below 1 request/s on two cores: the steps start low enough to find a rate it sustains.
    rates, seconds = ((1.0, 2.0), 5.0) if quick else ((0.25, 0.5, 1.0, 2.0), 30.0)
    steps = [_step(target, rate, seconds) for rate in rates]
    return _steps_result("rates", steps, p99_ms, max_error_rate, {"step_seconds": seconds})


def _stress(target: Target, quick: bool, p99_ms: float, max_error_rate: float) -> dict[str, Any]:
    rate, seconds, ceiling = (1.0, 5.0, 4.0) if quick else (0.5, 20.0, 256.0)
    steps = []
    while rate <= ceiling:
        steps.append(_step(target, rate, seconds))
        if not passes(steps[-1], p99_ms, max_error_rate):
            break
        rate *= 2
    return _steps_result("stress", steps, p99_ms, max_error_rate, {"step_seconds": seconds})


def _spike(target: Target, quick: bool, p99_ms: float) -> dict[str, Any]:
    rate, before, spike, after = (1.0, 4.0, 3.0, 6.0) if quick else (1.0, 30.0, 10.0, 60.0)
    schedule = [(rate, before), (rate * 10, spike), (rate, after)]
    result = target.submit(schedule)
    base_p99 = result["phases"][0]["latency_ms"].get("p99") or 0.0
    spike_end = sum(p["seconds"] for p in result["phases"][:2])
    recovered_at = next(
        (
            t["second"]
            for t in result["timeline"]
            if t["second"] >= spike_end and t["intended"] and t["max_ms"] <= max(p99_ms, 1.5 * base_p99)
        ),
        None,
    )
    recovery = (recovered_at - spike_end) if recovered_at is not None else None
    phases = result["phases"]
    headline = (
        f"load (spike): p99 {fmt(phases[0]['latency_ms'].get('p99', 0), 0)} ms before "
        f"({_errors(phases[0])}), {fmt(phases[1]['latency_ms'].get('p99', 0), 0)} ms in a "
        f"{rate * 10:g}/s spike ({_errors(phases[1])}), "
        + (f"recovered {recovery:g} s after it" if recovery is not None else "not recovered by the end")
        + f"; after it {_errors(phases[2])}"
    )
    return {
        "name": NAME,
        "headline": headline,
        "figures": {
            "mode": "spike",
            "schedule": schedule,
            "recovery_seconds": recovery,
            **{k: v for k, v in result.items() if k not in ("timeline", "latency_distribution_ms")},
        },
        "tables": [
            {
                "title": "Spike phases",
                "columns": ["phase", "rate/s", "sent", "ok/s", "errors %", "timeouts", "p50 ms", "p99 ms"],
                "rows": [
                    [
                        name,
                        p["rate"],
                        p["sent"],
                        p["throughput_ok_per_s"],
                        p["error_rate"] * 100,
                        p["timeouts"],
                        p["latency_ms"].get("p50"),
                        p["latency_ms"].get("p99"),
                    ]
                    for name, p in zip(("before", "spike", "after"), phases, strict=True)
                ],
            }
        ],
        "charts": [
            _throughput_chart(result),
            {
                "title": "Worst latency per second (by intended send time)",
                "kind": "line",
                "x_label": "second",
                "y_label": "ms",
                "series": {"max ms": [[t["second"], t["max_ms"]] for t in result["timeline"]]},
            },
        ],
        "notes": [
            "Recovery: first second after the spike whose worst latency is back under the threshold.",
            *COUNTING_NOTES,
        ],
    }


def _soak(target: Target, process: subprocess.Popen[bytes], seconds: float, p99_ms: float) -> dict[str, Any]:
    import threading

    rate = 1.0
    samples: list[list[float]] = []
    stop = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not stop.is_set():
            rss = _rss_mib(process.pid)
            if rss is not None:
                samples.append([time.monotonic() - started, rss])
            stop.wait(max(1.0, seconds / 60))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = target.submit([(rate, seconds)])
    finally:
        stop.set()
        sampler.join(timeout=5)
    timeline = result["timeline"]
    tenth = max(1, len(timeline) // 10)
    first = max((t["max_ms"] for t in timeline[:tenth]), default=0.0)
    last = max((t["max_ms"] for t in timeline[-tenth:]), default=0.0)
    rss_start = samples[0][1] if samples else None
    rss_end = samples[-1][1] if samples else None
    growth = (rss_end - rss_start) if rss_start is not None and rss_end is not None else None
    headline = (
        f"load (soak {seconds:g} s at {rate:g}/s): p99 {fmt(result['latency_ms'].get('p99', 0), 0)} ms, "
        f"{_errors(result)}, "
        f"worst latency first/last tenth {fmt(first, 0)}/{fmt(last, 0)} ms, server RSS "
        + (f"{fmt(rss_start or 0)} -> {fmt(rss_end or 0)} MiB" if growth is not None else "not sampled")
    )
    return {
        "name": NAME,
        "headline": headline,
        "figures": {
            "mode": "soak",
            "seconds": seconds,
            "rate": rate,
            "p99_threshold_ms": p99_ms,
            "rss_start_mib": rss_start,
            "rss_end_mib": rss_end,
            "rss_growth_mib": growth,
            "worst_ms_first_tenth": first,
            "worst_ms_last_tenth": last,
            **{k: v for k, v in result.items() if k not in ("timeline", "latency_distribution_ms")},
        },
        "charts": [
            _throughput_chart(result),
            {
                "title": "Server memory (RSS)",
                "kind": "line",
                "x_label": "second",
                "y_label": "MiB",
                "series": {"RSS MiB": samples},
            },
        ],
        "recommendations": recommendations([result], samples),
        "notes": [
            *recommendations([result], samples),
            f"The server process is sampled every {max(1.0, seconds / 60):g} s from /proc.",
            *COUNTING_NOTES,
        ],
    }
