"""The exit codes of every tdev command, in one place (scripts and CI read them)."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DEGRADED = 0, 1, 2, 3
EXIT_BUDGET_EXCEEDED, EXIT_CANCELLED = 4, 5  # a budget stopped the work; it was cancelled
