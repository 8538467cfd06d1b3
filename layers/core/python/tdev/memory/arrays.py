"""numpy for the memory package, imported the first time an array is made, not when the package is.

The API function imports the session service, and so this package, at cold start; only the chat and
memory routes ever compute a vector. numpy's import is ~50-100 ms of a Lambda cold start (seconds on a
loaded machine), so every other route should not pay for it (tests/unit/test_cold_start_imports.py).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any


class _OnFirstUse:
    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)


if TYPE_CHECKING:
    import numpy as np
else:
    np = _OnFirstUse("numpy")

__all__ = ["np"]
