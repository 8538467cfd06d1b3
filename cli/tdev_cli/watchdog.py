"""Nothing the local runtime starts outlives it, even when it is killed with SIGKILL.

Cleanup in `__exit__` or `atexit` never runs on SIGKILL (or an OOM kill), which left an orphaned
redis-server and temporary folders behind (one of them holds the local issuer's signing key). A small
watchdog process, started on first use, holds the read end of a pipe from this process: it learns which
child processes and folders to clean up, and when the pipe reaches end-of-file (this process ended, however
it ended) it stops those processes and removes those folders. It lives in its own session, so a signal
to the whole process group does not take it down before it has done its work.

Where even the watchdog could not run (killed with its parent's whole session, an OOM kill of both),
the folders name the process that made them (`tdev-keys-<pid>-...`), and the next local runtime removes
those whose process is gone (`sweep_stale`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
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


_OWNED = re.compile(r"^tdev-[a-z]+-(\d+)-")


def owned_prefix(kind: str) -> str:
    """The prefix of a temporary folder of this process: `tdev-<kind>-<pid>-` (see `sweep_stale`)."""
    return f"tdev-{kind}-{os.getpid()}-"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_stale(directory: str | None = None) -> list[str]:
    """Remove the temporary folders left by tdev processes that no longer exist; returns their paths."""
    removed: list[str] = []
    root = Path(directory or tempfile.gettempdir())
    for folder in root.glob("tdev-*-*-*"):
        match = _OWNED.match(folder.name)
        if match is None or not folder.is_dir() or folder.is_symlink():
            continue
        if _process_exists(int(match.group(1))):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(str(folder))
    return removed
