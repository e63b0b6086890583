"""Redis servers failing under a live Cache: stop, hang, restart, failover, a lost Cluster master.

Each test starts its own servers (the session's are shared and must stay up)
and stops them by PID. Waits are bounded polls, never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from collections.abc import Iterator

import pytest
import redis

import cachekit
from cachekit import Cache
from cachekit.aio import from_url as aio_from_url
from cachekit.backends.redis import RedisBackend
from tests import servers
from tests.conftest import require_binary

SOCKET_TIMEOUT = 0.3


def eventually(predicate: Callable[[], bool], within: float) -> bool:
    end = time.monotonic() + within
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def timed(action: Callable[[], object]) -> tuple[object, float]:
    start = time.monotonic()
    result = action()
    return result, time.monotonic() - start


@pytest.fixture
def own_server() -> Iterator[servers.ServerProcess]:
    require_binary("redis-server")
    server = servers.start_redis()
    yield server
    if server.process is not None and server.process.poll() is None:
        os.kill(server.pid, signal.SIGCONT)  # in case a test stopped it mid-way
    server.stop()


@pytest.fixture
def cache(own_server: servers.ServerProcess) -> Cache:
    return cachekit.from_url(f"redis://{own_server.address}/0?socket_timeout={SOCKET_TIMEOUT}&key_prefix=f")


def test_stopped_server_gives_misses_then_recovers_after_restart(
    own_server: servers.ServerProcess, cache: Cache
) -> None:
    cache.set("k", "before")
    assert cache.get("k") == "before"

    own_server.stop()
    value, elapsed = timed(lambda: cache.get("k", "default"))
    assert value == "default"
    assert elapsed < SOCKET_TIMEOUT  # refused at once, retried once after a few ms
    cache.set("k", "during")  # a no-op, not an error
    assert cache.set_many({"a": 1, "b": 2}) == ["a", "b"]
    assert cache.get_many(["a", "b"]) == {}
    errors = cache.stats()["errors"]
    assert errors == 4

    own_server.start()  # same port, same Cache object
    cache.set("k", "after")
    assert cache.get("k") == "after"
    assert cache.stats()["errors"] == errors


def test_restart_between_calls_is_invisible(own_server: servers.ServerProcess, cache: Cache) -> None:
    cache.set("k", 1)
    own_server.restart()  # the pooled connection is now dead; the first call finds out
    cache.set("k", 2)
    assert cache.get("k") == 2
    assert cache.stats()["errors"] == 0


def test_hung_server_costs_one_socket_timeout(own_server: servers.ServerProcess, cache: Cache) -> None:
    cache.set("k", "v")
    os.kill(own_server.pid, signal.SIGSTOP)  # accepts nothing, answers nothing
    try:
        value, elapsed = timed(lambda: cache.get("k", "default"))
        _, set_elapsed = timed(lambda: cache.set("k", "new"))
    finally:
        os.kill(own_server.pid, signal.SIGCONT)
    assert value == "default"
    # Timeouts are not retried: one socket_timeout, not two or ten.
    assert SOCKET_TIMEOUT * 0.9 < elapsed < SOCKET_TIMEOUT * 1.8
    assert set_elapsed < SOCKET_TIMEOUT * 1.8
    assert cache.stats()["errors"] == 2
    assert eventually(lambda: cache.get("k") is not None, within=5)


def test_raise_policy_surfaces_cachekit_errors_only(own_server: servers.ServerProcess) -> None:
    cache = cachekit.from_url(f"redis://{own_server.address}/0?on_error=raise")
    own_server.stop()
    with pytest.raises(cachekit.BackendUnavailableError) as info:
        cache.get("k")
    assert not isinstance(info.value, redis.RedisError)


def test_sentinel_failover_keeps_cache_working() -> None:
    require_binary("redis-server")
    group = servers.start_redis_sentinel(down_after_ms=300)
    try:
        cache = cachekit.from_url(f"{group.url}?socket_timeout={SOCKET_TIMEOUT}&key_prefix=fo")
        cache.set("before", "kept")
        master = redis.Redis(servers.HOST, group.master.port)
        assert master.wait(1, 2000) == 1  # the replica has it before the master dies
        master.close()

        group.master.kill()

        def writes_and_reads() -> bool:
            cache.set("after", "written")
            return cache.get("after") == "written"

        assert eventually(writes_and_reads, within=30)
        assert group.master_port() == group.replica.port
        assert cache.get("before") == "kept"
        assert cache.backend.get("fo:1:before") is not None
    finally:
        group.stop()


def test_cluster_keeps_serving_other_masters_keys_when_one_dies() -> None:
    require_binary("redis-server")
    require_binary("redis-cli")
    cluster = servers.start_redis_cluster()
    try:
        cache = cachekit.from_url(f"{cluster.url}?socket_timeout={SOCKET_TIMEOUT}")
        backend = cache.backend
        assert isinstance(backend, RedisBackend)
        values = {f"key-{i}": i for i in range(60)}
        cache.set_many(values)
        owner = {key: backend.client.get_node_from_key(cache.make_key(key)).port for key in values}
        victim = cluster.nodes[0]
        assert victim.port in owner.values()

        victim.kill()

        survivors = {key: value for key, value in values.items() if owner[key] != victim.port}
        lost = [key for key in values if owner[key] == victim.port]
        assert len(survivors) >= 20
        for key, value in survivors.items():
            assert cache.get(key) == value
        assert cache.get_many(list(survivors)) == survivors
        assert cache.get(lost[0], "default") == "default"  # a miss, not an exception
        assert cache.stats()["errors"] >= 1
        first = next(iter(survivors))
        cache.set(first, "rewritten")
        assert cache.get(first) == "rewritten"
    finally:
        cluster.stop()


def test_cluster_get_many_keeps_the_healthy_nodes_hits_when_a_master_dies() -> None:
    """Issue 14, item 9: one MGET per node; the dead node's keys are misses, the rest hits."""
    require_binary("redis-server")
    require_binary("redis-cli")
    cluster = servers.start_redis_cluster()
    runner = asyncio.Runner()
    try:
        cache = cachekit.from_url(f"{cluster.url}?socket_timeout={SOCKET_TIMEOUT}")
        backend = cache.backend
        assert isinstance(backend, RedisBackend)
        # redis.asyncio's cluster client reads the slot map and COMMAND from a random node on
        # first use, so it is started while all nodes are up, as in a running application.
        acache = aio_from_url(f"{cluster.url}?socket_timeout={SOCKET_TIMEOUT}")
        assert runner.run(acache.get("warm-up")) is None
        values = {f"key-{i}": i for i in range(300)}
        cache.set_many(values)
        owner = {key: backend.client.get_node_from_key(cache.make_key(key)).port for key in values}
        victim = cluster.nodes[0]
        victim.kill()
        survivors = {key: value for key, value in values.items() if owner[key] != victim.port}
        assert 0 < len(survivors) < len(values)

        assert cache.get_many(list(values)) == survivors
        for _ in range(3):  # again: after a node failed, the async client re-reads the slot map
            assert runner.run(acache.get_many(list(values))) == survivors
        # Writes reach the healthy nodes too; the call reports the dead node's share as an error.
        errors = cache.stats()["errors"]
        cache.set_many({key: "new" for key in values})
        assert cache.stats()["errors"] == errors + 1
        assert cache.get_many(list(survivors)) == {key: "new" for key in survivors}
        # One breaker per node: only the dead master's opens.
        for _ in range(6):
            cache.get_many(list(values))
        states = {b.name: b.state for b in backend.breakers()}
        opened = [name for name, state in states.items() if state != "closed"]
        assert opened == [f"redis node 127.0.0.1:{victim.port}"], states
        runner.run(acache.close())
    finally:
        runner.close()
        cluster.stop()
