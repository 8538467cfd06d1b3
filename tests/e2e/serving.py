"""`tdev serve` as the end-to-end tests start it: this tree's code in a subprocess on a free port, its URL
read from the state file it writes, stopped cleanly (exit 0, state file removed) when the test module ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

TDEV = [sys.executable, "-m", "tdev_cli.main"]
REPO = Path(__file__).resolve().parents[2]
# The commands run this tree's code (as pytest's own pythonpath does), whatever package the venv installed.
TREE = {"PYTHONPATH": os.pathsep.join(str(REPO / p) for p in ("layers/core/python", "cli", "."))}


def serve_env(**overrides: str) -> dict[str, str]:
    """The environment `tdev serve` and the CLI run with: this tree first, no outside Redis (serve starts
    its own)."""
    env = {**os.environ, **TREE, **overrides}
    env.pop("REDIS_URL", None)
    return env


@contextmanager
def serving(cwd: Path, env: Mapping[str, str], *options: str, start_timeout_s: float = 90) -> Iterator[str]:
    """Run `tdev serve --port 0 *options` in `cwd` and yield its URL; on exit it must stop cleanly."""
    process = subprocess.Popen(
        [*TDEV, "serve", "--port", "0", *options],
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    state = cwd / ".tdev" / "serve.json"
    deadline = time.monotonic() + start_timeout_s
    try:
        while not state.exists():
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "tdev serve did not start"
            time.sleep(0.2)
        yield str(json.loads(state.read_text())["url"])
    finally:
        process.terminate()
        code = process.wait(timeout=30)
    assert code == 0
    assert not state.exists()  # the server removes its state file when it stops
