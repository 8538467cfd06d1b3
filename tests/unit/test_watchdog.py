"""Nothing the local runtime starts outlives it: a SIGKILLed process leaves no redis-server, no folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import json, sys, tempfile, time
from tdev_cli import watchdog
from tdev_cli.redis_server import RedisServer
server = RedisServer().start()
folder = tempfile.mkdtemp(prefix="tdev-keys-")
open(folder + "/signing-key.pem", "w").write("key")
watchdog.guard_directory(folder)
print(json.dumps({"redis": server._process.pid, "folder": folder, "redis_folder": server._directory.name}))
sys.stdout.flush()
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return Path(f"/proc/{pid}/status").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def test_a_sigkilled_runtime_leaves_no_redis_server_and_no_temporary_folder() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    started = json.loads(child.stdout.readline())
    assert _alive(started["redis"]) and Path(started["folder"], "signing-key.pem").exists()
    child.send_signal(signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (
        _alive(started["redis"]) or Path(started["folder"]).exists() or Path(started["redis_folder"]).exists()
    ):
        time.sleep(0.1)
    assert not _alive(started["redis"])
    assert not Path(started["folder"]).exists() and not Path(started["redis_folder"]).exists()


def test_the_next_runtime_removes_the_folders_of_a_process_that_is_gone(tmp_path: Path) -> None:
    from tdev_cli import watchdog

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f"tdev-keys-{gone.pid}-abc"
    stale.mkdir()
    (stale / "signing-key.pem").write_text("key")
    ours = tmp_path / f"{watchdog.owned_prefix('redis')}xyz"
    ours.mkdir()
    other = tmp_path / "tdev-notes"
    other.mkdir()
    assert watchdog.sweep_stale(str(tmp_path)) == [str(stale)]
    assert not stale.exists() and ours.exists() and other.exists()
