"""`tdev bench`: benchmarks that print figures (not timed tests).

A benchmark is a module of this package with `NAME`, `run(quick: bool = False, ...)` and optionally
`DESCRIPTION`; run() returns a dict with at least `name`, `headline` (one line, printed last) and
`figures` (numbers a reader compares), optionally `charts` (see report.py), `tables` and `notes`.
Adding one is one line in BENCHMARKS below. A benchmark whose subject is missing on this branch raises
BenchmarkUnavailable (it says what is missing) instead of printing figures it did not measure.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Run order of `tdev bench all`: cheap first.
BENCHMARKS: tuple[str, ...] = (
    "planning",
    "routing",
    "flags",
    "llm",
    "instantiation",
    "coldstart",
    "cost",
    "storage",
    "cache",
    "load",
)


class BenchmarkUnavailable(RuntimeError):
    """What a benchmark measures does not exist here (e.g. `tdev serve` before the security layer)."""


def get(name: str) -> ModuleType:
    """The benchmark module called `name`; ValueError for a name not in BENCHMARKS."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of: {', '.join(BENCHMARKS)} or all")
    module = importlib.import_module(f"{__name__}.{name}")
    if getattr(module, "NAME", None) != name or not callable(getattr(module, "run", None)):
        raise ValueError(f"benchmark module {name!r} must define NAME = {name!r} and run()")
    return module
