"""Nothing the local runtime starts outlives it, even when it is killed with SIGKILL.

Cleanup in `__exit__` or `atexit` never runs on SIGKILL (or an OOM kill), which left an orphaned
redis-server and temporary folders behind (one of them holds the local issuer's signing key). A small
watchdog process, started on first use, holds the read end of a pipe from this process: it learns which
child processes and folders to clean up, and when the pipe reaches end-of-file (this process ended, however
it ended) it stops those processes and removes those folders. It lives in its own session, so a signal
to the whole process group does not take it down before it has done its work.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import IO

_WATCHDOG = r"""
import os, shutil, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
pids, dirs = set(), set()
for line in sys.stdin:
    kind, _, value = line.rstrip("\n").partition(" ")
    if kind == "pid":
        pids.add(int(value))
    elif kind == "dir":
        dirs.add(value)
    elif kind == "forget-pid":
        pids.discard(int(value))
    elif kind == "forget-dir":
        dirs.discard(value)
def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False
for pid in pids:
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        pass
deadline = time.monotonic() + 5
while time.monotonic() < deadline and any(alive(p) for p in pids):
    time.sleep(0.05)
for pid in pids:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
for folder in dirs:
    shutil.rmtree(folder, ignore_errors=True)
"""

_lock = threading.Lock()
_pipe: IO[str] | None = None
_process: subprocess.Popen[str] | None = None  # kept: it must outlive every use of the pipe


def _send(line: str) -> None:
    global _pipe, _process
    with _lock:
        if _pipe is None:
            _process = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
            )
            _pipe = _process.stdin
        assert _pipe is not None
        try:
            _pipe.write(line + "\n")
            _pipe.flush()
        except OSError:  # the watchdog is gone: the normal cleanup still runs
            _pipe = None


def guard_process(pid: int) -> None:
    """Stop `pid` (SIGTERM, then SIGKILL) when this process ends without having stopped it."""
    _send(f"pid {pid}")


def release_process(pid: int) -> None:
    _send(f"forget-pid {pid}")


def guard_directory(path: str) -> None:
    """Remove `path` when this process ends without having removed it."""
    _send(f"dir {path}")


def release_directory(path: str) -> None:
    _send(f"forget-dir {path}")
