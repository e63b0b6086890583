"""The Redis near cache (issue 17): exact across processes, through lost connections and restarts.

Every test runs on a real redis-server (``tests/servers.py``); the cross-process tests use
a second real process started with ``multiprocessing`` (spawn).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
import signal
import statistics
import time
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import cachekit
from cachekit.backends.redis import RedisBackend
from cachekit.exceptions import ConfigurationError
from cachekit.metrics import render_text
from cachekit.serializers import PickleSerializer
from cachekit.signing import SignedSerializer
from tests import servers
from tests.conftest import require_binary

ROUNDS = 200


def _until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0005)
    return True


def _near(url: str) -> RedisBackend:
    backend = RedisBackend.from_url(url, near_cache=100)
    assert backend.near.wait_ready(5.0)  # type: ignore[attr-defined]
    return backend


@pytest.fixture
def url(redis_server: servers.ServerProcess) -> Iterator[str]:
    address = f"redis://{redis_server.address}/0"
    yield address
    redis.Redis.from_url(address).flushdb()


def _reader(url: str, commands: Any, replies: Any, asynchronous: bool = False) -> None:
    """Process B: keeps keys in near memory, reports when each invalidation arrived."""
    if asynchronous:
        from cachekit.backends.aio_redis import AsyncRedisBackend

        loop = asyncio.new_event_loop()
        backend: Any = AsyncRedisBackend.from_url(url, near_cache=100)

        def get(key: str) -> Any:
            return loop.run_until_complete(backend.get(key))
    else:
        backend = RedisBackend.from_url(url, near_cache=100)
        get = backend.get
    near = backend.near
    assert near.wait_ready(10.0)
    arrivals: list[float] = []
    original = near._on_invalidate

    def record(keys: Any) -> None:
        original(keys)
        arrivals.append(time.monotonic())

    near._on_invalidate = record
    replies.put("ready")
    while (command := commands.get()) is not None:
        key, expected = command
        seen = len(arrivals)
        # Warm: the current value served from local memory (a near hit).
        assert _until(
            lambda key=key, expected=expected: get(key) == expected and near.lookup(key) == expected
        )
        hits = near.hits
        assert get(key) == expected
        assert near.hits == hits + 1
        replies.put(("warm", seen))
        sent_at, returned_at, version = commands.get()
        assert _until(lambda seen=seen: len(arrivals) > seen)
        value = get(key)  # after the invalidation arrived: never the old value
        replies.put(("read", value, version, arrivals[seen] - sent_at, arrivals[seen] - returned_at))
    if asynchronous:
        loop.run_until_complete(backend.close())
        loop.close()
    else:
        backend.close()


def _two_processes(url: str, keys: list[str], rounds: int, asynchronous: bool = False) -> None:
    """A (this process) writes each key in turn; B (spawned) must read every new value.

    Prints the delivery time (A's SET sent / returned -> B's listener had the invalidation).
    """
    writer = RedisBackend.from_url(url)
    for key in keys:
        writer.set(key, b"0", None)
    ctx = multiprocessing.get_context("spawn")
    commands, replies = ctx.Queue(), ctx.Queue()
    reader = ctx.Process(target=_reader, args=(url, commands, replies, asynchronous), daemon=True)
    reader.start()
    try:
        assert replies.get(timeout=30) == "ready"
        delays: list[float] = []
        after_return: list[float] = []
        for version in range(1, rounds + 1):
            key = keys[version % len(keys)]
            commands.put((key, writer.get(key)))
            assert replies.get(timeout=10)[0] == "warm"
            sent_at = time.monotonic()
            writer.set(key, str(version).encode(), None)
            commands.put((sent_at, time.monotonic(), version))
            kind, value, seen_version, from_sent, from_returned = replies.get(timeout=10)
            assert (kind, value, seen_version) == ("read", str(version).encode(), version)
            delays.append(from_sent)
            after_return.append(from_returned)
        commands.put(None)
        reader.join(timeout=10)
        assert reader.exitcode == 0
    finally:
        if reader.is_alive():
            reader.kill()
        writer.close()
    for label, sample in (("SET sent", delays), ("SET returned", after_return)):
        sample.sort()
        p50 = statistics.median(sample) * 1e6
        p99 = sample[int(len(sample) * 0.99) - 1] * 1e6
        print(f"\ninvalidation at B, from A's {label}, {rounds} writes: p50 {p50:.0f} us, p99 {p99:.0f} us")


def test_a_write_in_one_process_is_never_read_stale_in_another(url: str) -> None:
    """A writes; once A's write returned and the invalidation reached B, B reads the new value.

    Also measures the delivery time (A's SET returned -> B's listener had the invalidation).
    """
    _two_processes(url, ["k"], ROUNDS)


def test_own_writes_are_seen_at_once(url: str) -> None:
    backend = _near(url)
    backend.set("k", b"1", None)
    assert backend.get("k") == b"1"
    assert _until(lambda: backend.get("k") == b"1" and backend.near.hits > 0)  # type: ignore[attr-defined]
    for write, expected in (
        (lambda: backend.set("k", b"2", None), b"2"),
        (lambda: backend.set_many({"k": b"3"}, 60), b"3"),
        (lambda: backend.incr("k", 1), b"4"),
        (lambda: backend.cas("k", b"5", b"4", None), b"5"),
        (lambda: backend.delete("k"), None),
        (lambda: backend.add("k", b"6", None), b"6"),
        (lambda: backend.delete_many(["k"]), None),
    ):
        backend.get("k")
        backend.get("k")  # in local memory now (when the value exists)
        write()
        assert backend.get("k") == expected  # without waiting for the server's invalidation
    backend.set("k", b"7", None)
    backend.get("k")
    backend.get("k")  # held locally with no expiry
    backend.touch("k", 0.2)
    assert _until(lambda: backend.get("k") is None, timeout=5.0)  # the new TTL applies locally
    backend.set("k", b"8", None)
    backend.get("k")
    backend.clear()
    assert backend.get("k") is None
    backend.close()


def test_gets_locks_and_incr_go_to_the_server(url: str) -> None:
    backend = _near(url)
    near = backend.near  # type: ignore[attr-defined]
    backend.set("k", b"1", None)
    backend.get("k")
    hits, misses = near.hits, near.misses
    assert backend.gets("k") == (b"1", b"1")
    assert backend.incr("k", 1) == 2
    lock = backend.lock("l", ttl=5)
    assert lock.acquire(blocking=False)
    assert not backend.lock("l", ttl=5).acquire(blocking=False)
    lock.release()
    assert (near.hits, near.misses) == (hits, misses)
    backend.close()


def test_a_read_in_flight_during_an_invalidation_does_not_fill(url: str) -> None:
    """The classic client-side-caching race: the reply left Redis before another client's write."""
    backend = _near(url)
    near = backend.near  # type: ignore[attr-defined]
    other = redis.Redis.from_url(url)
    other.set("k", b"old")
    original = backend._call

    def slow_reply(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)  # holds b"old"
        seen = near.invalidations
        other.set("k", b"new")
        assert _until(lambda: near.invalidations > seen)  # the invalidation won the race
        return result

    backend._call = slow_reply  # type: ignore[method-assign]
    assert backend.get("k") == b"old"  # the value as it was when read
    backend._call = original  # type: ignore[method-assign]
    assert backend.get("k") == b"new"  # not the in-flight b"old" from local memory
    backend.close()


def test_flushdb_empties_local_memory(url: str) -> None:
    backend = _near(url)
    near = backend.near  # type: ignore[attr-defined]
    backend.set("k", b"1", None)
    backend.get("k")
    assert _until(lambda: backend.get("k") == b"1" and near.hits > 0)
    flushes = near.flushes
    redis.Redis.from_url(url).flushdb()
    assert _until(lambda: near.flushes > flushes)
    assert backend.get("k") is None
    backend.close()


def test_a_killed_listener_connection_flushes_before_serving_again(url: str) -> None:
    backend = _near(url)
    near = backend.near  # type: ignore[attr-defined]
    other = redis.Redis.from_url(url)
    backend.set("k", b"1", None)
    assert _until(lambda: backend.get("k") == b"1" and near.hits > 0)
    flushes = near.flushes
    other.client_kill_filter(_type="pubsub")
    other.set("k", b"2")  # written while nobody listens for this process
    assert _until(lambda: near.flushes > flushes)
    assert backend.get("k") == b"2"
    assert near.wait_ready(5.0)
    assert _until(lambda: backend.get("k") == b"2" and near.hits > 0)
    seen = near.invalidations
    other.set("k", b"3")
    assert _until(lambda: near.invalidations > seen)
    assert backend.get("k") == b"3"
    backend.close()


def test_a_redis_restart_leaves_nothing_stale() -> None:
    require_binary("redis-server")
    server = servers.start_redis()
    try:
        url = f"redis://{server.address}/0"
        backend = _near(url)
        near = backend.near  # type: ignore[attr-defined]
        backend.set("k", b"1", None)
        assert _until(lambda: backend.get("k") == b"1" and near.hits > 0)
        flushes = near.flushes
        server.restart()  # no persistence: the server comes back empty
        assert _until(lambda: near.flushes > flushes and near.ready, timeout=10.0)
        assert backend.get("k") is None
        redis.Redis.from_url(url).set("k", b"2")
        assert _until(lambda: backend.get("k") == b"2")
        backend.close()
    finally:
        server.stop()


def test_the_option_in_urls_settings_and_stats(url: str) -> None:
    cache = cachekit.from_url(url + "?near_cache=10&near_cache_bytes=100000")
    assert cache.backend.near.max_entries == 10
    assert cache.backend.near.max_bytes == 100000
    assert cache.backend.near.wait_ready(5.0)
    cache.set("a", 1)
    cache.get("a")
    assert _until(lambda: cache.get("a") == 1 and cache.stats()["near_hits"] > 0)
    assert {"near_misses", "near_invalidations", "near_flushes"} <= set(cache.stats())
    assert "near_hits" not in cachekit.from_url(url).stats()
    exported = render_text(lambda: [cache])  # the counters reach Prometheus
    hits = re.search(r'^cachekit_near_hits_total\{cache="[^"]*"\} (\d+)$', exported, re.MULTILINE)
    assert hits is not None
    assert int(hits.group(1)) > 0
    assert re.search(r'^cachekit_near_ready\{cache="[^"]*"\} 1$', exported, re.MULTILINE)
    cache.backend.close()


@pytest.mark.parametrize(
    ("location", "options"),
    [
        ("redis://127.0.0.1:6379/0", {"near_cache": -1}),
        ("redis://127.0.0.1:6379/0", {"near_cache_bytes": 100}),
    ],
)
def test_where_it_is_not_built_yet_it_says_so(location: str, options: dict[str, int]) -> None:
    with pytest.raises(ConfigurationError):
        RedisBackend.from_url(location, **options)


def test_a_silent_listener_stops_local_serving() -> None:
    """A server that stops answering (SIGSTOP: no reset, no invalidations) is noticed by PING."""
    require_binary("redis-server")
    server = servers.start_redis()
    try:
        backend = _near(f"redis://{server.address}/0")
        near = backend.near  # type: ignore[attr-defined]
        near._ping_interval = 0.2
        backend.set("k", b"1", None)
        assert _until(lambda: backend.get("k") == b"1" and near.hits > 0)
        os.kill(server.pid, signal.SIGSTOP)
        try:
            # ping_interval + socket_timeout (0.5 s) plus slack for a loaded machine.
            assert _until(lambda: not near.ready, timeout=5.0)
            assert near.lookup("k") is None
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert near.wait_ready(10.0)
        backend.close()
    finally:
        server.stop()


def test_keys_that_are_not_utf8_do_not_stop_the_listener(url: str) -> None:
    backend = _near(url)
    near = backend.near  # type: ignore[attr-defined]
    other = redis.Redis.from_url(url)
    backend.set("k", b"1", None)
    assert _until(lambda: backend.get("k") == b"1" and near.hits > 0)
    seen, flushes = near.invalidations, near.flushes
    other.set(b"\xff\xfe", b"binary")  # another application's key
    other.set("k", b"2")
    assert _until(lambda: near.invalidations > seen)
    assert near.ready
    assert near.flushes == flushes  # the listener did not fall over and reconnect
    assert backend.get("k") == b"2"
    assert type(RedisBackend.from_url(url)) is RedisBackend  # off: the plain backend
    backend.close()


def test_the_async_backend_is_kept_exact_too(url: str) -> None:
    from cachekit.backends.aio_redis import AsyncRedisBackend

    async def scenario() -> None:
        backend = AsyncRedisBackend.from_url(url, near_cache=100)
        near = backend.near  # type: ignore[attr-defined]
        assert near.wait_ready(5.0)
        other = redis.Redis.from_url(url)
        seen = near.invalidations
        await backend.set("k", b"1", None)
        # The server's invalidation of our own write comes back too; once it has, a fill stays.
        assert _until(lambda: near.invalidations > seen)
        await backend.get("k")
        hits = near.hits
        assert await backend.get("k") == b"1"
        assert near.hits == hits + 1  # served from local memory
        seen = near.invalidations
        other.set("k", b"2")
        assert _until(lambda: near.invalidations > seen)
        assert await backend.get("k") == b"2"
        await backend.get("k")
        await backend.delete("k")  # own write: seen at once
        assert await backend.get("k") is None
        assert await backend.gets("k") is None
        await backend.close()

    asyncio.run(scenario())


def test_a_sentinel_failover_leaves_nothing_stale() -> None:
    """The master dies, Sentinel promotes the replica: local memory is dropped, then kept exact again."""
    require_binary("redis-server")
    group = servers.start_redis_sentinel(down_after_ms=300)
    try:
        _two_processes(group.url, ["k"], 30)  # first, two processes on the Sentinel-managed master
        backend = RedisBackend.from_url(group.url, near_cache=100, socket_timeout=0.3)
        near = backend.near  # type: ignore[attr-defined]
        assert near.wait_ready(10.0)
        backend.set("k", b"1", None)
        assert _until(lambda: backend.get("k") == b"1" and near.hits > 0)
        master = redis.Redis(servers.HOST, group.master.port)
        assert master.wait(1, 2000) == 1  # the replica has it before the master dies
        master.close()
        flushes = near.flushes

        group.master.kill()

        assert _until(lambda: near.flushes > flushes)
        assert near.lookup("k") is None
        assert _until(lambda: group.master_port() == group.replica.port, timeout=30.0)
        assert near.wait_ready(30.0)
        promoted = redis.Redis(servers.HOST, group.replica.port)
        promoted.set("k", b"2")  # written on the new master by someone else
        assert _until(lambda: backend.get("k") == b"2", timeout=10.0)
        assert _until(lambda: backend.get("k") == b"2" and near.lookup("k") == b"2")
        seen = near.invalidations
        promoted.set("k", b"3")
        assert _until(lambda: near.invalidations > seen)
        assert backend.get("k") == b"3"
        backend.close()
    finally:
        group.stop()


def test_a_prefix_keeps_and_tracks_only_its_keys(url: str) -> None:
    backend = RedisBackend.from_url(url, near_cache=100, near_cache_prefix="app:")
    near = backend.near  # type: ignore[attr-defined]
    assert near.wait_ready(5.0)
    other = redis.Redis.from_url(url)
    other.set("app:k", b"1")
    other.set("elsewhere", b"1")
    assert _until(lambda: backend.get("app:k") == b"1" and near.lookup("app:k") == b"1")
    backend.get("elsewhere")
    assert near.lookup("elsewhere") is None  # never kept locally
    seen = near.invalidations
    other.set("elsewhere", b"2")  # no invalidation is sent for a key outside the prefix
    other.set("app:k", b"2")
    assert _until(lambda: near.invalidations > seen)
    assert near.invalidations == seen + 1
    assert backend.get("app:k") == b"2"
    assert backend.get("elsewhere") == b"2"
    backend.close()
    with pytest.raises(ConfigurationError):
        RedisBackend.from_url(url, near_cache_prefix="app:")


# -- Redis Cluster: one listener per primary -------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[servers.RedisClusterProcesses]:
    """A cluster of this module's own: its tests kill connections, flush nodes and move slots."""
    require_binary("redis-server")
    require_binary("redis-cli")
    own = servers.start_redis_cluster()
    yield own
    own.stop()


def _cluster_near(cluster: servers.RedisClusterProcesses, **options: Any) -> RedisBackend:
    backend = RedisBackend.from_url(cluster.url, near_cache=100, socket_timeout=0.5, **options)
    assert backend.near.wait_ready(10.0)  # type: ignore[attr-defined]
    return backend


def _key_per_node(backend: RedisBackend) -> dict[int, str]:
    """One key owned by each master, by port."""
    found: dict[int, str] = {}
    for i in range(1000):
        found.setdefault(backend.client.get_node_from_key(f"k{i}").port, f"k{i}")
    return found


def _node(port: int) -> redis.Redis:
    return redis.Redis(servers.HOST, port)


def _held(backend: RedisBackend, key: str, value: bytes) -> bool:
    near = backend.near  # type: ignore[attr-defined]
    return _until(lambda: backend.get(key) == value and near.lookup(key) == value)


def test_cluster_a_write_in_one_process_is_never_read_stale_in_another(
    cluster: servers.RedisClusterProcesses,
) -> None:
    """Keys on every master: each master's invalidations reach B through its own listener."""
    probe = RedisBackend.from_url(cluster.url)
    keys = list(_key_per_node(probe).values())
    probe.close()
    assert len(keys) == len(cluster.nodes)
    _two_processes(cluster.url, keys, 60)


def test_cluster_listens_to_every_primary_and_stats_count_it(cluster: servers.RedisClusterProcesses) -> None:
    backend = _cluster_near(cluster)
    near = backend.near  # type: ignore[attr-defined]
    for node in cluster.nodes:
        assert _node(node.port).info("clients")["tracking_clients"] >= 1
    for port, key in _key_per_node(backend).items():
        backend.set(key, b"1", None)
        assert _held(backend, key, b"1")
        seen = near.invalidations
        _node(port).set(key, b"2")  # another client, straight on the owner
        assert _until(lambda seen=seen: near.invalidations > seen)
        assert backend.get(key) == b"2"
    assert backend.near_stats()["near_ready"] == 1  # type: ignore[attr-defined]
    backend.close()


def test_cluster_flushall_on_one_node_empties_local_memory(cluster: servers.RedisClusterProcesses) -> None:
    backend = _cluster_near(cluster)
    near = backend.near  # type: ignore[attr-defined]
    owners = _key_per_node(backend)
    for key in owners.values():
        backend.set(key, b"1", None)
        assert _held(backend, key, b"1")
    flushes = near.flushes
    port, flushed = next(iter(owners.items()))
    _node(port).flushall()
    assert _until(lambda: near.flushes > flushes)
    assert backend.get(flushed) is None
    for key in owners.values():
        if key != flushed:
            assert backend.get(key) == b"1"  # the other nodes still hold theirs
    backend.close()


def test_cluster_a_killed_node_connection_flushes_before_serving_again(
    cluster: servers.RedisClusterProcesses,
) -> None:
    backend = _cluster_near(cluster)
    near = backend.near  # type: ignore[attr-defined]
    port, key = next(iter(_key_per_node(backend).items()))
    backend.set(key, b"1", None)
    assert _held(backend, key, b"1")
    flushes = near.flushes
    node = _node(port)
    node.client_kill_filter(_type="pubsub")
    node.set(key, b"2")  # written while nobody listens on that node for this process
    assert _until(lambda: near.flushes > flushes)
    assert backend.get(key) == b"2"
    assert near.wait_ready(10.0)
    assert _held(backend, key, b"2")
    seen = near.invalidations
    node.set(key, b"3")
    assert _until(lambda: near.invalidations > seen)
    assert backend.get(key) == b"3"
    backend.close()


def _cluster_id(port: int) -> str:
    answer = _node(port).execute_command("CLUSTER", "MYID")
    return answer.decode() if isinstance(answer, bytes) else str(answer)


def test_cluster_a_moved_slot_flushes_and_the_new_owner_is_heard(
    cluster: servers.RedisClusterProcesses,
) -> None:
    """A slot migrated from one master to another (MOVED for old slot maps): no stale read after."""
    backend = _cluster_near(cluster)
    near = backend.near  # type: ignore[attr-defined]
    owners = _key_per_node(backend)
    (source, key), (target, _) = list(owners.items())[:2]
    slot = backend.client.keyslot(key)
    backend.set(key, b"1", None)
    assert _held(backend, key, b"1")
    flushes = near.flushes
    src, dst = _node(source), _node(target)
    src_id, dst_id = _cluster_id(source), _cluster_id(target)
    try:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        src.execute_command("MIGRATE", servers.HOST, target, "", 0, 5000, "KEYS", key)
        for node in cluster.nodes:
            _node(node.port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        assert _until(lambda: near.flushes > flushes)  # the slot map changed
        assert near.wait_ready(10.0)
        seen = near.invalidations
        dst.set(key, b"2")  # on the new owner, by someone else
        assert _until(lambda: near.invalidations > seen)
        assert _until(lambda: backend.get(key) == b"2")
        assert _held(backend, key, b"2")
        seen = near.invalidations
        dst.set(key, b"3")
        assert _until(lambda: near.invalidations > seen)
        assert backend.get(key) == b"3"
    finally:  # give the slot back for the module's other tests
        dst.delete(key)
        for node in cluster.nodes:
            _node(node.port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", src_id)
        backend.close()


def _cluster_replica_of(cluster: servers.RedisClusterProcesses, port: int) -> servers.ServerProcess:
    """A new cluster node, joined and made a replica of the master on ``port``, in sync."""
    new_port, bus_port = servers.free_port(), servers.free_port()
    workdir = servers._workdir("redis-cluster")
    extra = ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{new_port}.conf"]
    extra += ["--cluster-port", str(bus_port), "--cluster-node-timeout", "1000"]
    extra += ["--cluster-require-full-coverage", "no"]
    argv = servers.redis_server_argv(new_port, workdir, extra)
    replica = servers.ServerProcess("redis-cluster-node", new_port, argv, workdir).start()
    node = _node(new_port)
    _node(port).execute_command("CLUSTER", "MEET", servers.HOST, new_port, bus_port)
    master_id = _cluster_id(port)
    assert _until(lambda: master_id in str(node.execute_command("CLUSTER", "NODES")), 10.0)

    def replicating() -> bool:
        try:
            node.execute_command("CLUSTER", "REPLICATE", master_id)
        except redis.ResponseError:
            return False
        return True

    assert _until(replicating, 10.0)
    assert _until(lambda: node.info("replication").get("master_link_status") == "up", 10.0)
    return replica


def test_cluster_a_failover_leaves_nothing_stale(cluster: servers.RedisClusterProcesses) -> None:
    """A replica takes over a master's slots (CLUSTER FAILOVER): flushed, then the new master is heard."""
    backend = _cluster_near(cluster)
    near = backend.near  # type: ignore[attr-defined]
    port, key = next(iter(_key_per_node(backend).items()))
    replica = _cluster_replica_of(cluster, port)
    promoted = _node(replica.port)
    try:
        backend.set(key, b"1", None)
        assert _held(backend, key, b"1")
        assert _node(port).wait(1, 2000) == 1
        flushes = near.flushes
        promoted.execute_command("CLUSTER", "FAILOVER")
        assert _until(lambda: promoted.info("replication")["role"] == "master", 10.0)
        assert _until(lambda: near.flushes > flushes)
        assert near.wait_ready(10.0)
        assert _until(lambda: backend.get(key) == b"1")
        assert _held(backend, key, b"1")
        seen = near.invalidations
        promoted.set(key, b"2")  # on the new master, by someone else
        assert _until(lambda: near.invalidations > seen)
        assert backend.get(key) == b"2"
    finally:  # the old master takes its slots back, then the extra node leaves
        taken_back = _take_back(_node(port))
        if taken_back:  # else stopping it would leave its slots unserved for the next tests
            replica_id = _cluster_id(replica.port)
            replica.stop()
            for node in cluster.nodes:
                _node(node.port).execute_command("CLUSTER", "FORGET", replica_id)
        backend.close()
    assert taken_back


def _take_back(old: redis.Redis) -> bool:
    """``old`` (a replica now) becomes its slots' master again.

    A plain ``CLUSTER FAILOVER`` first; on a loaded machine the handshake can miss its time, and
    then a ``TAKEOVER``, which asks no other node (this is a test cluster's clean-up).
    """

    def is_master() -> bool:
        return bool(old.info("replication")["role"] == "master")

    for mode in ((), ("TAKEOVER",)):
        if is_master():
            return True
        old.execute_command("CLUSTER", "FAILOVER", *mode)
        if _until(is_master, 10.0):
            return True
    return False


def test_cluster_the_async_backend_is_kept_exact_too(cluster: servers.RedisClusterProcesses) -> None:
    """B on ``AsyncRedisBackend``: the same listeners (threads), keys on every master."""
    probe = RedisBackend.from_url(cluster.url)
    keys = list(_key_per_node(probe).values())
    probe.close()
    _two_processes(cluster.url, keys, 30, asynchronous=True)


# -- Sentinel with the asyncio client ------------------------------------------------------


def test_async_sentinel_two_processes_and_a_failover_leave_nothing_stale() -> None:
    """B on async Sentinel reads every write of A; then the master dies: dropped, exact on the new one."""
    from cachekit.backends.aio_redis import AsyncRedisBackend

    require_binary("redis-server")
    group = servers.start_redis_sentinel(down_after_ms=300)
    try:
        _two_processes(group.url, ["k"], 30, asynchronous=True)

        async def scenario() -> None:
            backend = AsyncRedisBackend.from_url(group.url, near_cache=100, socket_timeout=0.3)
            near = backend.near  # type: ignore[attr-defined]
            assert near.wait_ready(10.0)
            await backend.set("k", b"1", None)
            for _ in range(500):
                if await backend.get("k") == b"1" and near.lookup("k") == b"1":
                    break
                await asyncio.sleep(0.01)
            assert near.lookup("k") == b"1"
            master = redis.Redis(servers.HOST, group.master.port)
            assert master.wait(1, 2000) == 1
            master.close()
            flushes = near.flushes

            group.master.kill()

            assert _until(lambda: near.flushes > flushes)
            assert near.lookup("k") is None
            assert _until(lambda: group.master_port() == group.replica.port, timeout=30.0)
            assert near.wait_ready(30.0)
            promoted = redis.Redis(servers.HOST, group.replica.port)
            promoted.set("k", b"2")  # on the new master, by someone else
            for _ in range(1000):
                if await backend.get("k") == b"2" and near.lookup("k") == b"2":
                    break
                await asyncio.sleep(0.01)
            assert near.lookup("k") == b"2"
            seen = near.invalidations
            promoted.set("k", b"3")
            assert _until(lambda: near.invalidations > seen)
            assert await backend.get("k") == b"3"
            await backend.close()

        asyncio.run(scenario())
    finally:
        group.stop()


# -- the Cache front keeps decoded values of near hits -----------------------------------------


def test_cache_keeps_decoded_immutable_values_and_copies_nothing_shared(url: str) -> None:
    """A near hit of an immutable value costs no unpickling; mutable values are never shared."""
    cache = cachekit.from_url(url + "?near_cache=100")
    near = cache.backend.near
    assert near.wait_ready(5.0)
    other = redis.Redis.from_url(url)
    cache.set("text", "x" * 100)
    cache.set("pair", ("a", 1))
    cache.set("items", ["a", "b"])
    assert _until(lambda: cache.get("text") == "x" * 100 and near.lookup(cache.make_key("text")) is not None)
    first = cache.get("text")
    assert cache.get("text") is first  # the decoded object itself, kept beside its bytes
    assert _until(lambda: cache.get("pair") == ("a", 1) and cache.make_key("pair") in near.decoded)
    assert cache.get("pair") is cache.get("pair")
    assert _until(
        lambda: cache.get("items") == ["a", "b"] and near.lookup(cache.make_key("items")) is not None
    )
    mine = cache.get("items")
    mine.append("mutated")
    assert cache.get("items") == ["a", "b"]  # a list is unpickled afresh on every hit
    assert cache.make_key("items") not in near.decoded
    # Another process's write: the invalidation drops the memo with the bytes.
    seen = near.invalidations
    raw = other.get(cache.make_key("text"))
    other.set(cache.make_key("text"), raw.replace(b"x" * 100, b"y" * 100))
    assert _until(lambda: near.invalidations > seen)
    assert cache.get("text") == "y" * 100
    cache.set("pair", ("b", 2))  # and so does this process's own write
    assert cache.get("pair") == ("b", 2)
    signed = SignedSerializer(PickleSerializer(), "a signing key of enough length, for the test")
    assert cachekit.Cache(cache.backend, serializer=signed).near_memo is None  # bound to the user's key
    assert cachekit.from_url(url).near_memo is None
    cache.backend.close()


def _forked_child(backend: RedisBackend, key: str, replies: Any) -> None:
    """In a forked child (a pre-forking server's worker): nothing served until its own listeners run."""
    near = backend.near  # type: ignore[attr-defined]
    replies.put(("before", near.ready, near.lookup(key)))
    ready = near.wait_ready(10.0)
    redis_value = backend.get(key)  # read from Redis, kept locally
    replies.put(("after", ready, redis_value, _held(backend, key, redis_value)))


@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_a_forked_child_starts_empty_and_listens_on_its_own(
    topology: str, url: str, cluster: servers.RedisClusterProcesses
) -> None:
    backend = _near(url) if topology == "standalone" else _cluster_near(cluster)
    key = "k" if topology == "standalone" else next(iter(_key_per_node(backend).values()))
    near = backend.near  # type: ignore[attr-defined]
    announced = near.invalidations
    backend.set(key, b"1", None)
    # BCAST tells the writer of its own write too: let that arrive before filling, or it may
    # drop the filled copy later and the parent's last check below reads nothing.
    assert _until(lambda: near.invalidations > announced)
    assert _held(backend, key, b"1")
    ctx = multiprocessing.get_context("fork")
    replies = ctx.Queue()
    child = ctx.Process(target=_forked_child, args=(backend, key, replies), daemon=True)
    child.start()
    try:
        assert replies.get(timeout=10) == ("before", False, None)
        assert replies.get(timeout=20) == ("after", True, b"1", True)
        child.join(timeout=10)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
    assert backend.near.lookup(key) == b"1"  # type: ignore[attr-defined]  # the parent is unaffected
    backend.close()
