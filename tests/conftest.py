"""Shared fixtures: the embedded local runtime (moto + our handlers dispatched in process)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "events"

os.environ.setdefault("AGNO_TELEMETRY", "false")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")

# The functions' Powertools logger binds its stream when first imported: import it now, while pytest's
# session-wide capture is in place, not inside a test whose captured stream is closed when it ends.
import tdev.observability  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests may talk to 127.0.0.1 only: any other connection attempt fails the test loudly."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if (
            isinstance(host, str)
            and host not in {"127.0.0.1", "localhost", "::1"}
            and not host.startswith("/")
        ):
            raise RuntimeError(f"network access to {address!r} is not allowed in tests")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


@pytest.fixture
def runtime() -> Iterator[Any]:
    from tdev_cli.runtime import LocalRuntime

    with LocalRuntime() as rt:
        yield rt
