"""`tdev models` (every provider and model: capabilities, context, prices, latency tier) and `tdev route`
(which model the router picks for a task, and why)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(commands: Any) -> None:
    models = commands.add_parser("models", help="list the model providers and models, with prices")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.add_argument("--provider", help="only this provider")
    models.set_defaults(func=models_command)

    route = commands.add_parser("route", help="ask the model router which model suits a task, and why")
    route.add_argument("--task", default="general", help="task type: code, reasoning, analysis, chat, ...")
    route.add_argument("--context", type=int, default=4_000, help="tokens of input the task needs")
    route.add_argument("--output", type=int, default=1_000, help="tokens of output expected")
    route.add_argument("--language", default="en")
    route.add_argument("--max-cost", type=float, help="the most one call may cost, USD")
    route.add_argument("--latency", help="the slowest acceptable latency tier: fast, standard, slow")
    route.add_argument("--capability", action="append", default=[], help="tools, vision, json, streaming")
    route.add_argument("--provider", action="append", default=[], help="only these providers (repeatable)")
    route.add_argument("--json", action="store_true", help="print JSON")
    route.set_defaults(func=route_command)


def models_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from tdev.llm.listing import catalog

    data = catalog(args.provider)
    if not data["providers"]:
        print(f"unknown provider {args.provider!r}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    table = Table(title=f"{len(data['providers'])} providers; prices {data['prices_as_of']}")
    for column in ("model", "context", "$/1k in", "$/1k out", "latency", "capabilities"):
        table.add_column(column, justify="right" if column in ("context", "$/1k in", "$/1k out") else "left")
    for p in data["providers"]:
        table.add_section()
        table.add_row(f"[bold]{p['name']}[/bold] ({p['kind']}, {p['credentials']})", "", "", "", "", "")
        for m in p["models"]:
            table.add_row(
                "  " + m["name"],
                f"{m['context_window']:,}",
                _price(m["price_per_1k_input_usd"]),
                _price(m["price_per_1k_output_usd"]),
                m["latency_tier"],
                ", ".join(m["capabilities"]),
            )
    console.print(table)
    return EXIT_OK


def _price(value: float | None) -> str:
    return "—" if value is None else f"{value:.6f}"


def route_command(args: argparse.Namespace) -> int:
    from tdev.errors import TDevError
    from tdev.llm.router import Criteria, live_health, route

    try:
        criteria = Criteria(
            task_type=args.task,
            context_tokens=args.context,
            expected_output_tokens=args.output,
            language=args.language,
            max_cost_usd=args.max_cost,
            latency_tier=args.latency,
            capabilities=frozenset(args.capability),
            providers=frozenset(args.provider) if args.provider else None,
        )
        decision = route(criteria, health=live_health(_guards()))
    except TDevError as exc:
        print(f"{exc.field or 'error'}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(decision.as_dict(), indent=2))
        return EXIT_OK
    print(f"chosen: {decision.model}")
    print(f"why: {decision.reasoning}")
    for scored in decision.ranking[1:6]:
        print(f"  then {scored.model}: {scored.score:.3f}")
    return EXIT_OK


def _guards() -> Any:
    """Live health when REDIS_URL points at the shared Redis; neutral health otherwise."""
    import os

    if not os.environ.get("REDIS_URL"):
        return None
    from tdev.llm.fallback import shared_guards

    return shared_guards()
