"""`tdev seed`: test data at the spec's three scales in a local backend, timed, with its access patterns
checked (spec 1.19.3; the data itself: tdev_cli.testdata).

After loading, it measures the access patterns a user's calls make against the seeded table (DynamoDB
read units, metered from item sizes as `tdev bench` meters them) and compares each with the budget the
tests hold it to on a small table (tests/e2e/test_seed.py): a pattern whose cost grows with the table (a
scan, an unbounded query) fails the command.

    tdev seed --scale small|medium|large [--seed N] [--snapshot FILE]
    tdev seed --scenario five-agent-workflow | 10-users-x-20-executions | 50-failures
    tdev serve --seed medium                 # serve a backend filled the same way
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tdev_cli.testdata import Dataset

EXIT_OK, EXIT_OVER_BUDGET, EXIT_USAGE = 0, 1, 2
SCENARIO_NAMES = ("five-agent-workflow", "10-users-x-20-executions", "50-failures")


@dataclass(frozen=True)
class Scale:
    users: int
    projects: int
    executions: int


# The spec's three scales (1.19.3): users / projects / executions.
SCALES: dict[str, Scale] = {
    "small": Scale(users=100, projects=50, executions=1_000),
    "medium": Scale(users=1_000, projects=500, executions=10_000),
    "large": Scale(users=10_000, projects=5_000, executions=100_000),
}


def dataset_at(scale: str, seed: int = 1) -> Dataset:
    from tdev_cli import testdata

    sizes = asdict(SCALES[scale])
    return testdata.at_scale(sizes["users"], sizes["projects"], sizes["executions"], seed)


# ----------------------------------------------------------------------------- access patterns
@dataclass(frozen=True)
class AccessPattern:
    name: str
    budget_read_units: float  # what tests/e2e/test_seed.py holds it to on a small table
    call: Callable[[Any, Dataset], None]


def _get_execution(runtime: Any, data: Dataset) -> None:
    execution, _ = data.executions[len(data.executions) // 2]
    project = next(p for p in data.projects if p.project_id == execution.project_id)
    status, body = runtime.as_principal(project.owner).api("GET", f"/v1/executions/{execution.execution_id}")
    if status != 200:
        raise RuntimeError(f"GET /v1/executions/{{id}} answered {status}: {body}")


def _get_project(runtime: Any, data: Dataset) -> None:
    project = data.projects[len(data.projects) // 2]
    status, body = runtime.as_principal(project.owner).api("GET", f"/v1/projects/{project.project_id}")
    if status != 200:
        raise RuntimeError(f"GET /v1/projects/{{id}} answered {status}: {body}")


def _hidden_execution(runtime: Any, data: Dataset) -> None:
    execution, _ = data.executions[0]
    outsider = "user-outsider"
    status, body = runtime.as_principal(outsider).api("GET", f"/v1/executions/{execution.execution_id}")
    if status != 404:
        raise RuntimeError(f"an outsider's GET /v1/executions/{{id}} answered {status}: {body}")


def _reconcile(runtime: Any, data: Dataset) -> None:
    runtime.reconcile()


ACCESS_PATTERNS: tuple[AccessPattern, ...] = (
    AccessPattern("GET /v1/executions/{id} (owner)", 6.0, _get_execution),
    AccessPattern("GET /v1/executions/{id} (outsider: 404)", 4.0, _hidden_execution),
    AccessPattern("GET /v1/projects/{id}", 4.0, _get_project),
    AccessPattern("reconciler pass (every minute)", 2.0, _reconcile),
)


@dataclass(frozen=True)
class Measured:
    pattern: AccessPattern
    read_units: float
    calls: int

    @property
    def within_budget(self) -> bool:
        return self.read_units <= self.pattern.budget_read_units


def measure(runtime: Any, data: Dataset, meter: Any) -> list[Measured]:
    """Each access pattern's DynamoDB read units on the current table, from `meter` (an `AwsMeter`
    installed before the runtime started): one uncounted warm-up call, then one counted call."""
    measured = []
    for pattern in ACCESS_PATTERNS:
        with meter.pause():
            pattern.call(runtime, data)  # warm: clients, the authorizer's key, lazily built services
        units, calls = meter.read_units, _dynamodb_calls(meter)
        pattern.call(runtime, data)
        measured.append(Measured(pattern, round(meter.read_units - units, 2), _dynamodb_calls(meter) - calls))
    return measured


def _dynamodb_calls(meter: Any) -> int:
    return sum(n for (service, _), n in meter.calls.items() if service == "dynamodb")


# ------------------------------------------------------------------------------------ command
def register(commands: Any) -> None:
    seed = commands.add_parser(
        "seed", help="fill a local backend with test data at a scale, timed and checked"
    )
    seed.add_argument("--scale", choices=sorted(SCALES), default="small", help="small, medium or large")
    seed.add_argument(
        "--scenario", choices=sorted(SCENARIO_NAMES), help="a named scenario instead of a scale"
    )
    seed.add_argument("--seed", type=int, default=1, help="random seed: the same seed, the same data")
    seed.add_argument("--snapshot", type=Path, help="also write the dataset as JSON to this file")
    seed.add_argument("--from-snapshot", type=Path, help="load this snapshot instead of generating data")
    seed.set_defaults(func=_command)


def dataset_for(args: argparse.Namespace) -> Dataset:
    from tdev_cli import testdata

    if args.from_snapshot:
        return testdata.restore(args.from_snapshot)
    if args.scenario:
        return testdata.SCENARIOS[args.scenario]()
    return dataset_at(args.scale, args.seed)


def _command(args: argparse.Namespace) -> int:
    import contextlib
    import os

    from tdev_cli import testdata
    from tdev_cli.benchmarks.meter import AwsMeter
    from tdev_cli.function_logs import functions_output
    from tdev_cli.runtime import LocalRuntime

    os.environ.setdefault("AGNO_TELEMETRY", "false")
    label = args.scenario or (
        f"snapshot {args.from_snapshot}" if args.from_snapshot else f"scale {args.scale}"
    )
    started = time.perf_counter()
    data = dataset_for(args)
    built_s = time.perf_counter() - started
    if args.snapshot:
        testdata.snapshot(data, args.snapshot)
    meter = AwsMeter()
    with functions_output(".tdev/logs", "seed"), contextlib.ExitStack() as stack:
        stack.enter_context(meter.installed())
        with meter.pause():
            runtime = stack.enter_context(LocalRuntime(rate_limit_default=None))
            timings = testdata.load(data)
        measured = measure(runtime, data, meter)
    print(
        f"seeded {label} (seed {args.seed}): {len(data.users)} users, {len(data.projects)} projects, "
        f"{len(data.executions)} executions ({len(data.failed)} failed), {timings.items} execution/task items"
    )
    rate = timings.items / max(timings.executions_s, 1e-9)
    print(
        f"  built in {built_s:.1f} s; projects and members written in {timings.projects_s:.1f} s; "
        f"executions in {timings.executions_s:.1f} s ({rate:.0f} items/s)"
    )
    print("  access pattern                             read units  budget  DynamoDB calls")
    for m in measured:
        mark = "ok" if m.within_budget else "OVER"
        budget = m.pattern.budget_read_units
        print(f"  {m.pattern.name:<42} {m.read_units:>10.1f}  {budget:>6.1f}  {m.calls:>5}  {mark}")
    over = [m for m in measured if not m.within_budget]
    print(
        f"access patterns within budget: {len(measured) - len(over)}/{len(measured)} on "
        f"{len(data.executions)} executions (read units metered from item sizes; local emulation)"
    )
    return EXIT_OVER_BUDGET if over else EXIT_OK
