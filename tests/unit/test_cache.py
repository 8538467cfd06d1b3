"""The shared Redis: a real server on 127.0.0.1 reached through REDIS_URL; as deployed, a Redis Cluster.

ElastiCache Serverless speaks the cluster protocol: a multi-key command or script whose keys are in
different hash slots fails with CROSSSLOT. The tests' Redis is a local three-master cluster, and these
tests prove it is as strict, and that every multi-key operation of `tdev` names keys of one slot.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster, key_slot

from tdev import cache
from tdev.errors import ConfigurationError
from tdev.llm.breaker import CircuitBreakers
from tdev.llm.limits import History, RateLimits
from tdev.memory.hierarchical import ShortTermMemory
from tdev.sessions.limits import GLOBAL_KEY, USER_KEY
from tdev.settings import get_settings

REPO = Path(__file__).resolve().parents[2]


def test_client_talks_to_the_real_server(any_redis_url: str) -> None:
    client = cache.redis_client()
    client.set("tdev:probe", "1", ex=5)
    assert client.get("tdev:probe") == "1"
    assert 0 < client.ttl("tdev:probe") <= 5
    expected = RedisCluster if cache.is_cluster_url(any_redis_url) else redis.Redis
    assert type(client) is expected


def test_missing_redis_url_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABLE_NAME", "t-table")
    monkeypatch.delenv("REDIS_URL", raising=False)
    get_settings.cache_clear()
    cache.reset()
    try:
        with pytest.raises(ConfigurationError, match="REDIS_URL"):
            cache.redis_client()
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("url", "base", "cluster"),
    [
        ("rediss://cache.example:6379/0?cluster=true", "rediss://cache.example:6379/0", True),
        ("rediss://c:1/0?ssl_cert_reqs=required&cluster=yes", "rediss://c:1/0?ssl_cert_reqs=required", True),
        ("redis://127.0.0.1:6379/0?cluster=false", "redis://127.0.0.1:6379/0", False),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", False),
    ],
)  # fmt: skip
def test_redis_url_says_whether_the_endpoint_is_a_cluster(url: str, base: str, cluster: bool) -> None:
    assert cache.split_cluster_flag(url) == (base, cluster)


def test_the_test_redis_is_a_three_master_cluster_by_default(redis_url: str) -> None:
    if not cache.is_cluster_url(redis_url):
        pytest.skip("TDEV_TEST_REDIS=single (or a REDIS_URL without cluster=true) chose a single node")
    client = cache.connect(redis_url)
    assert len(client.get_primaries()) == 3
    owners = {client.get_node_from_key(f"tdev:probe:{i}").port for i in range(64)}
    assert len(owners) == 3  # keys really spread over the three masters


def _node_for(url: str, key: str) -> redis.Redis:
    """A plain (non-cluster) connection to the master that owns `key`: no client-side slot checks."""
    node = cache.connect(url).get_node_from_key(key)
    return redis.Redis(host=node.host, port=node.port, decode_responses=True)


def test_a_cross_slot_script_fails_on_the_test_cluster_as_on_elasticache(redis_url: str) -> None:
    if not cache.is_cluster_url(redis_url):
        pytest.skip("only a cluster rejects cross-slot operations")
    first, second = "tdev:a", "tdev:b"
    assert key_slot(first.encode()) != key_slot(second.encode())
    script = "redis.call('SET', KEYS[1], '1'); redis.call('SET', KEYS[2], '2'); return 1"
    node = _node_for(redis_url, first)
    # The server itself answers CROSSSLOT (redis-py raises it as ClusterCrossSlotError), like ElastiCache.
    with pytest.raises(redis.exceptions.ClusterCrossSlotError, match="same slot"):
        node.eval(script, 2, first, second)
    with pytest.raises(redis.exceptions.ClusterCrossSlotError):
        node.mget(first, second)
    assert node.exists(first) == 0  # nothing of the refused script ran
    with pytest.raises(redis.exceptions.RedisClusterException, match="same key slot"):
        cache.connect(redis_url).eval(script, 2, first, second)  # the cluster client refuses first
    # The same script on keys that share a hash tag runs.
    tagged = "tdev:{probe}:a", "tdev:{probe}:b"
    assert cache.connect(redis_url).eval(script, 2, *tagged) == 1
    assert _node_for(redis_url, tagged[0]).eval(script, 2, *tagged) == 1


def test_keys_are_refused_on_a_cluster_node_for_a_slot_it_does_not_own(redis_url: str) -> None:
    """A plain client on a cluster is redirected (MOVED): only a cluster client works there."""
    if not cache.is_cluster_url(redis_url):
        pytest.skip("only a cluster redirects")
    client = cache.connect(redis_url)
    owner = client.get_node_from_key("tdev:probe")
    other = next(n for n in client.get_primaries() if n.port != owner.port)
    with pytest.raises(redis.exceptions.MovedError):
        redis.Redis(host=other.host, port=other.port).get("tdev:probe")


def test_every_multi_key_operation_of_tdev_names_keys_of_one_slot() -> None:
    """The keys a Lua script or MULTI pipeline of tdev touches together share one hash slot."""

    def slots(*keys: str) -> set[int]:
        return {key_slot(k.encode()) for k in keys}

    for model in ("bedrock:amazon.nova-lite-v1:0", "openai:gpt-4.1-mini", "odd{model}"):
        rate = RateLimits(redis=_NoRedis()).key(model)
        together = (CircuitBreakers.key(model), rate, History.key(model))  # tdev.llm.guards' scripts
        assert len(slots(*together)) == 1, together
    assert len(slots(CircuitBreakers.key("a:b"), CircuitBreakers.key("a:c"))) == 2  # models spread
    assert len(slots(GLOBAL_KEY, USER_KEY % "alice", USER_KEY % "bob")) == 1  # session limits
    memory = ShortTermMemory(_NoRedis(), "session-1")
    assert len(slots(memory.index, memory._key("item-1"), memory._key("item-2"))) == 1


class _NoRedis:
    """Enough of a client to build key names: registering a script sends nothing."""

    def register_script(self, source: str) -> object:
        return source


def test_tdev_never_lists_the_keyspace() -> None:
    """No KEYS and no SCAN (a walk over every node of the cluster) on Redis anywhere in the layer."""
    listing = re.compile(r"\b(redis|redis_client\(\)|client)\.(keys|scan|scan_iter)\(|['\"](KEYS|SCAN)['\"]")
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for path in (REPO / "layers/core/python/tdev").rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if listing.search(line)
    ]
    assert offenders == []
    assert listing.search("self.redis.scan_iter('tdev:*')") and listing.search("client.keys('*')")


_CHILD = textwrap.dedent(
    """
    import threading, time
    from tdev_cli.redis_server import LocalRedisCluster, RedisServer

    cluster = LocalRedisCluster().start()
    pids = list(cluster.pids)
    holder = {}
    worker = threading.Thread(target=lambda: holder.update(server=RedisServer().start()))
    worker.start()
    worker.join()  # the thread that asked for this server is gone; the server must live on
    time.sleep(0.3)
    assert holder["server"]._process.poll() is None, "a server died with the thread that started it"
    pids.append(holder["server"].pid)
    print(" ".join(map(str, pids)), flush=True)
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie (not yet reaped) is dead


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_redis_servers_die_with_a_parent_killed_by_sigkill() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "cli"), *sys.path])}
    parent = subprocess.Popen(
        [sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line, parent.stderr.read() if parent.stderr else "no output"
        pids = [int(p) for p in line.split()]
        assert len(pids) == 4 and all(_alive(p) for p in pids)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p for p in pids if _alive(p)] == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
