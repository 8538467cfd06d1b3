"""`tdev bench <name>|all [--json] [--out DIR] [--quick]`: run benchmarks, print figures, write reports."""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from tdev_cli.benchmarks import BENCHMARKS, BenchmarkUnavailable, get

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def parse_duration(text: str) -> float:
    """'90', '90s', '5m', '1h' -> seconds; ArgumentTypeError otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"a duration like 90s, 5m or 1h is expected, got {text!r}")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def register(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="run benchmarks (figures, not tests) and write JSON, Markdown and HTML reports",
        description="Benchmarks: " + ", ".join(BENCHMARKS) + ". Each prints its headline as its last line.",
    )
    bench.add_argument("benchmark", choices=[*BENCHMARKS, "all"], help="which benchmark, or all of them")
    bench.add_argument("--json", action="store_true", help="print the results as JSON (headlines to stderr)")
    bench.add_argument(
        "--out", default="bench-results", help="directory for the reports (default: %(default)s)"
    )
    bench.add_argument(
        "--quick", action="store_true", help="small counts: checks the harness, not the figures"
    )
    load_options = bench.add_argument_group("load")
    mode = load_options.add_mutually_exclusive_group()
    mode.add_argument("--stress", action="store_true", help="step the rate up until error rate or p99 breaks")
    mode.add_argument("--spike", action="store_true", help="a base rate, a 10x spike, then recovery")
    mode.add_argument(
        "--soak", type=parse_duration, metavar="DURATION", help="a fixed rate for DURATION (e.g. 5m)"
    )
    load_options.add_argument("--port", type=int, default=0, help="port for tdev serve (default: a free one)")
    load_options.add_argument(
        "--p99-ms", type=float, default=1000.0, help="p99 threshold in ms (default 1000)"
    )
    load_options.add_argument(
        "--max-error-rate", type=float, default=0.01, help="error-rate threshold (0.01)"
    )
    bench.set_defaults(func=run_command)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    mode = "stress" if args.stress else "spike" if args.spike else "soak" if args.soak else "rates"
    return {
        "quick": args.quick,
        "mode": mode,
        "soak_seconds": args.soak,
        "port": args.port,
        "p99_threshold_ms": args.p99_ms,
        "max_error_rate": args.max_error_rate,
    }


def run_one(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Run benchmark `name` with the options its run() accepts; unavailable/failed become results too."""
    module = get(name)
    accepted = inspect.signature(module.run).parameters
    kwargs = {key: value for key, value in options.items() if key in accepted}
    started = time.monotonic()
    try:
        result: dict[str, Any] = module.run(**kwargs)
        result.setdefault("status", "ok")
    except BenchmarkUnavailable as exc:
        result = {
            "name": name,
            "status": "unavailable",
            "headline": f"{name}: not available: {exc}",
            "figures": {},
        }
    except Exception as exc:  # a failing benchmark must not hide the others' figures
        result = {
            "name": name,
            "status": "failed",
            "headline": f"{name}: FAILED: {type(exc).__name__}: {exc}",
            "figures": {},
            "notes": traceback.format_exception(exc)[-4:],
        }
    result.setdefault("description", getattr(module, "DESCRIPTION", ""))
    result["seconds"] = round(time.monotonic() - started, 2)
    return result


def run_command(args: argparse.Namespace) -> int:
    from tdev_cli.benchmarks import common, report

    names = list(BENCHMARKS) if args.benchmark == "all" else [args.benchmark]
    options = _options(args)
    results = []
    headline_stream = sys.stderr if args.json else sys.stdout
    for name in names:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        result = run_one(name, options)
        results.append(result)
        if not args.json:
            for table in result.get("tables", []):
                print(f"\n{table['title']}")
                widths = [
                    max(len(report._cell(v)) for v in [column, *(row[i] for row in table["rows"])])
                    for i, column in enumerate(table["columns"])
                ]
                print("  ".join(str(c).ljust(w) for c, w in zip(table["columns"], widths, strict=True)))
                for row in table["rows"]:
                    print("  ".join(report._cell(v).ljust(w) for v, w in zip(row, widths, strict=True)))
            for note in result.get("notes", []):
                print(f"  note: {note}")
        print(f"[{result['seconds']:.1f} s] {result['headline']}", file=sys.stderr, flush=True)
        print(result["headline"], file=headline_stream, flush=True)
    machine = common.machine()
    paths = report.write(results, Path(args.out), machine)
    if args.json:
        print(json.dumps({"machine": machine, "results": results}, indent=2, default=str))
    print(f"[bench] reports: {paths[-1].parent}/report.html, report.md, results.json", file=sys.stderr)
    if len(results) > 1:  # `all`: the headlines again, together, the last lines printed
        for result in results:
            print(result["headline"], file=headline_stream)
    return EXIT_OK if all(r["status"] == "ok" for r in results) else EXIT_FAILED
