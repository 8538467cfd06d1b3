"""Granted actions that no function's own code calls, each with its reason, in one place.

`tests/infrastructure/test_permissions_from_evidence.py` records every AWS call each function makes
while the product paths run locally and requires every action in a function's role to be used by one
of them or listed here: (function or "*", action pattern) -> why the role needs it anyway.
"""

from __future__ import annotations

NOT_CALLED_BY_CODE: dict[tuple[str, str], str] = {}
