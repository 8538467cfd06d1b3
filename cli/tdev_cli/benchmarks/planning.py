"""Supervisor planning throughput: classification + DAG for a fixed corpus of varied requests, no model."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from typing import Any

from tdev_cli.benchmarks.common import fmt, histogram, summary

NAME = "planning"
DESCRIPTION = (
    "The Supervisor (intent classifier + decision engine + DAG builder) planning each request of a fixed "
    "corpus, one after another in one thread, no model calls. Latency per plan; decisions/s counts "
    "every agent decision the plans contain."
)

SUBJECTS = (
    "a REST API for todo items",
    "a payment service that talks to Stripe",
    "the user login and signup flow",
    "a CSV import job for customer records",
    "a GraphQL gateway for the product catalog",
    "an event-driven order pipeline on SQS",
    "a React dashboard for sales metrics",
    "a CLI that backs up Postgres to S3",
    "a rate limiter middleware",
    "the search endpoint with pagination",
    "a websocket chat server",
    "a password reset email flow",
    "an inventory microservice in Go",
    "a data retention policy job",
    "a Terraform module for a VPC",
    "the invoice PDF generator",
    "a feature flag service",
    "an OAuth2 authorization server",
    "a recommendation model API",
    "the admin audit log",
)

PHRASINGS = (
    "Design and implement {s}, with unit tests and a security review",
    "Implement {s}",
    "Write unit tests for {s}",
    "Do a security review of {s}: look for injection and secrets in code",
    "Design the architecture of {s}",
    "Review the code of {s} and suggest improvements",
    "Build {s} and test it",
    "Fix the bug in {s} where requests time out, then add a regression test",
    "Threat-model {s} and audit its dependencies for vulnerabilities",
    "Plan the components and data model for {s}, then code it",
    "Refactor {s} for readability; review it afterwards",
    "Please help with {s}",
)


def corpus() -> list[str]:
    """The fixed corpus: every phrasing for every subject (240 distinct requests, varied intents)."""
    return [phrasing.format(s=subject) for subject, phrasing in itertools.product(SUBJECTS, PHRASINGS)]


def run(quick: bool = False) -> dict[str, Any]:
    from tdev.orchestration.planner import Supervisor

    requests = corpus()
    supervisor = Supervisor()
    for request in requests[:20]:  # warm-up: caches, first-call imports
        supervisor.plan(request)
    passes = 1 if quick else 5
    latencies_us: list[float] = []
    decisions = 0
    tasks_per_plan: Counter[int] = Counter()
    agents: Counter[str] = Counter()
    started = time.perf_counter()
    for _ in range(passes):
        for request in requests:
            t0 = time.perf_counter_ns()
            plan = supervisor.plan(request)
            latencies_us.append((time.perf_counter_ns() - t0) / 1000)
            decisions += len(plan.decisions)
            tasks_per_plan[len(plan.tasks)] += 1
            agents.update(task.agent for task in plan.tasks)
    elapsed = time.perf_counter() - started
    stats = summary(latencies_us)
    plans_per_s = len(latencies_us) / elapsed
    decisions_per_s = decisions / elapsed
    figures = {
        "corpus_requests": len(requests),
        "passes": passes,
        "plans": len(latencies_us),
        "decisions": decisions,
        "plans_per_s": plans_per_s,
        "decisions_per_s": decisions_per_s,
        "latency_us": stats,
        "tasks_per_plan": {str(k): v for k, v in sorted(tasks_per_plan.items())},
        "tasks_by_agent": dict(agents.most_common()),
    }
    return {
        "name": NAME,
        "headline": (
            f"planning: {fmt(decisions_per_s, 0)} decisions/s ({fmt(plans_per_s, 0)} plans/s), "
            f"p50 {fmt(stats['median'])} us, p99 {fmt(stats['p99'])} us over {len(requests)} requests "
            f"x {passes}"
        ),
        "figures": figures,
        "tables": [
            {
                "title": "Plan latency (us)",
                "columns": ["plans", "mean", "p50", "p95", "p99", "max"],
                "rows": [
                    [
                        len(latencies_us),
                        stats["mean"],
                        stats["median"],
                        stats["p95"],
                        stats["p99"],
                        stats["max"],
                    ]
                ],
            }
        ],
        "charts": [
            {
                "title": "Planning latency histogram",
                "kind": "bar",
                "x_label": "latency (us, bin start)",
                "y_label": "plans",
                "series": {"plans": [[f"{x:.0f}", y] for x, y in histogram(latencies_us, 25)]},
            }
        ],
        "notes": ["Single thread, sequential: throughput is 1 / service time here (no queueing)."],
    }
