"""Shared fixtures: real servers, the parametrized ``backend`` harness and a fake clock.

Server fixtures are session-scoped and start on free loopback ports. Without a
server binary a test is skipped locally, but fails when ``CI`` is set, where
``.ci/run`` has installed every server. fakeredis stands in for Redis only when
``redis-server`` is missing, under the visible id ``redis-fake``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from cachekit.backends.locmem import LocMemBackend
from tests import servers
from tests.faultproxy import FaultProxy

IN_CI = bool(os.environ.get("CI"))
HAVE_REDIS = shutil.which("redis-server") is not None
HAVE_MEMCACHED = shutil.which("memcached") is not None

#: The conformance fixtures test what the backends answer, not how fast a loaded CI
#: machine connects: the 0.25 s default connect timeout once failed a fixture's set-up
#: on a stalled runner. The fault tests (tests/cachekit/test_faults.py) set their own.
STEADY_REDIS = {"socket_connect_timeout": 5.0}
STEADY_MEMCACHED = {"connect_timeout": 5.0}

#: Every backend the conformance suite runs on (parameter ids).
BACKENDS = [
    "locmem",
    "redis" if HAVE_REDIS or IN_CI else "redis-fake",
    "memcached",
    "memcached-pool",
]
if HAVE_REDIS or IN_CI:
    # Sentinel and Cluster need the real binaries; fakeredis has no stand-in for them.
    BACKENDS += ["redis-cluster", "redis-sentinel", "redis-near", "redis-near-cluster"]

#: The async backends (cachekit.backends.aio_*) the same suites run on, through the sync
#: bridge in tests/async_bridge.py; see the ``async_backend_harness`` fixture.
ASYNC_BACKENDS = [
    "locmem-async",
    "redis-async" if HAVE_REDIS or IN_CI else "redis-fake-async",
    "memcached-async",
]
if HAVE_REDIS or IN_CI:
    ASYNC_BACKENDS += ["redis-cluster-async", "redis-sentinel-async", "redis-near-async"]


def require_binary(name: str) -> None:
    """Skip (locally) or fail (in CI) when a server binary is missing."""
    if shutil.which(name) is None:
        message = f"{name} is not installed; .ci/run installs it with apt-get"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class BackendHarness:
    """A backend under test plus the means to let time pass for it."""

    backend: Any
    name: str
    #: Set for in-process backends whose time is faked.
    clock: FakeClock | None = None
    #: The shortest TTL the backend honours exactly (memcached counts whole seconds).
    short_ttl: float = 0.3
    #: Builds the cache front the Cache-level suite tests (see :meth:`make_cache`).
    cache_factory: Callable[..., Any] | None = None

    def make_cache(self, **options: Any) -> Any:
        """A ``Cache(backend, **options)``; for async backends a sync facade over an ``AsyncCache``."""
        if self.cache_factory is not None:
            return self.cache_factory(**options)
        from cachekit import Cache

        return Cache(self.backend, **options)

    def expire(self, ttl: float | None = None) -> None:
        """Let ``ttl`` (default: ``short_ttl``) pass, plus a margin."""
        seconds = self.short_ttl if ttl is None else ttl
        if self.clock is not None:
            self.clock.advance(seconds + 0.001)
        else:
            time.sleep(seconds + 0.05)

    def eventually(self, predicate: Callable[[], bool], within: float = 3.0) -> bool:
        """Poll ``predicate`` (advancing fake time too) until true or ``within`` seconds pass."""
        end = time.monotonic() + within
        while True:
            if predicate():
                return True
            if time.monotonic() > end:
                return False
            if self.clock is not None:
                self.clock.advance(0.1)
            time.sleep(0.02)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def locmem_backend(fake_clock: FakeClock, request: pytest.FixtureRequest) -> Iterator[BackendHarness]:
    backend = LocMemBackend(f"test-{request.node.nodeid}", clock=fake_clock)
    yield BackendHarness(backend, "locmem", clock=fake_clock)
    backend.clear()


# -- real servers -----------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[servers.ServerProcess]:
    require_binary("redis-server")
    server = servers.start_redis()
    yield server
    server.stop()


@pytest.fixture
def proxy(redis_server: servers.ServerProcess) -> Iterator[FaultProxy]:
    """A :class:`~tests.faultproxy.FaultProxy` in front of the session's redis-server."""
    faults = FaultProxy(redis_server.port).start()
    yield faults
    faults.stop()


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[servers.ServerProcess]:
    require_binary("memcached")
    server = servers.start_memcached()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def memcached_servers() -> Iterator[list[servers.ServerProcess]]:
    require_binary("memcached")
    started = [servers.start_memcached() for _ in range(3)]
    yield started
    for server in started:
        server.stop()


@pytest.fixture
def redis_url(redis_server: servers.ServerProcess) -> str:
    return f"redis://{redis_server.address}/0"


@pytest.fixture
def redis_backend(redis_server: servers.ServerProcess) -> Iterator[BackendHarness]:
    from cachekit.backends.redis import RedisBackend

    backend = RedisBackend.from_url(f"redis://{redis_server.address}/0", **STEADY_REDIS)
    backend.clear()
    yield BackendHarness(backend, "redis")
    backend.clear()
    backend.close()


@pytest.fixture
def redis_fake_backend() -> Iterator[BackendHarness]:
    fakeredis = pytest.importorskip("fakeredis")
    from cachekit.backends.redis import RedisBackend

    backend = RedisBackend(client=fakeredis.FakeRedis())
    yield BackendHarness(backend, "redis-fake")
    backend.clear()


@pytest.fixture
def redis_near_backend(redis_server: servers.ServerProcess) -> Iterator[BackendHarness]:
    """Redis with a near cache (issue 17), its invalidation listener subscribed."""
    from cachekit.backends.redis import RedisBackend

    backend = RedisBackend.from_url(f"redis://{redis_server.address}/0", near_cache=1000, **STEADY_REDIS)
    backend.clear()
    assert backend.near.wait_ready(5.0), "near-cache listener did not subscribe"
    yield BackendHarness(backend, "redis-near")
    backend.clear()
    backend.close()


@pytest.fixture
def memcached_backend(memcached_server: servers.ServerProcess) -> Iterator[BackendHarness]:
    from cachekit.backends.memcached import MemcachedBackend

    backend = MemcachedBackend.from_url(f"memcached://{memcached_server.address}", **STEADY_MEMCACHED)
    backend.clear()  # the server outlives the test: start from an empty namespace
    yield BackendHarness(backend, "memcached", short_ttl=1.0)
    backend.close()


@pytest.fixture
def memcached_pool_backend(memcached_servers: list[servers.ServerProcess]) -> Iterator[BackendHarness]:
    from cachekit.backends.memcached import MemcachedBackend

    location = ",".join(server.address for server in memcached_servers)
    backend = MemcachedBackend.from_url(f"memcached://{location}", **STEADY_MEMCACHED)
    backend.clear()
    yield BackendHarness(backend, "memcached-pool", short_ttl=1.0)
    backend.close()


@pytest.fixture(params=BACKENDS)
def backend_harness(request: pytest.FixtureRequest) -> BackendHarness:
    """Every backend in turn; servers start only for the parameters that need one."""
    harness: BackendHarness = request.getfixturevalue(f"{request.param.replace('-', '_')}_backend")
    return harness


@pytest.fixture
def backend(backend_harness: BackendHarness) -> Any:
    return backend_harness.backend


# -- Redis Cluster and Sentinel ------------------------------------------------------


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[servers.RedisClusterProcesses]:
    """A 3-master Redis Cluster shared by the session; tests must not stop its nodes."""
    require_binary("redis-server")
    require_binary("redis-cli")
    cluster = servers.start_redis_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[servers.RedisSentinelProcesses]:
    """A master, its replica and a Sentinel shared by the session; tests must not fail it over."""
    require_binary("redis-server")
    group = servers.start_redis_sentinel()
    yield group
    group.stop()


@pytest.fixture
def redis_near_cluster_backend(redis_cluster: servers.RedisClusterProcesses) -> Iterator[BackendHarness]:
    """Redis Cluster with a near cache (issue 17): a listener per master, all subscribed."""
    from cachekit.backends.redis import RedisBackend

    backend = RedisBackend.from_url(redis_cluster.url, near_cache=1000, **STEADY_REDIS)
    backend.clear()
    assert backend.near.wait_ready(10.0), "near-cache listeners did not subscribe"
    yield BackendHarness(backend, "redis-near-cluster")
    backend.clear()
    backend.close()


@pytest.fixture
def redis_cluster_backend(redis_cluster: servers.RedisClusterProcesses) -> Iterator[BackendHarness]:
    from cachekit.backends.redis import RedisBackend

    backend = RedisBackend.from_url(redis_cluster.url, **STEADY_REDIS)
    backend.clear()
    yield BackendHarness(backend, "redis-cluster")
    backend.clear()
    backend.close()


@pytest.fixture
def redis_sentinel_backend(redis_sentinel: servers.RedisSentinelProcesses) -> Iterator[BackendHarness]:
    from cachekit.backends.redis import RedisBackend

    backend = RedisBackend.from_url(redis_sentinel.url, **STEADY_REDIS)
    backend.clear()
    yield BackendHarness(backend, "redis-sentinel")
    backend.clear()
    backend.close()


# -- async backends, bridged to the sync suites ---------------------------------------
#
# Each async backend runs on its own event loop in a thread (tests/async_bridge.py).
# The harness's ``backend`` is a sync Backend whose every call awaits the async
# backend on that loop, and ``make_cache()`` returns a sync facade over an
# AsyncCache, so test_backend_conformance.py and test_cache_conformance.py run
# unchanged on the async code paths (tests/cachekit/test_async_conformance.py
# collects them with ``backend_harness`` replaced by ``async_backend_harness``).


@pytest.fixture
def bridge_loop() -> Iterator[Any]:
    """An event loop in a private thread, closed after the test."""
    from tests.async_bridge import LoopThread

    loop = LoopThread()
    yield loop
    loop.close()


def _bridged(backend: Any, name: str, loop: Any, **harness_options: Any) -> BackendHarness:
    from cachekit.aio import AsyncCache
    from tests.async_bridge import SyncBackend
    from tests.async_bridge import SyncCache

    def make_cache(**options: Any) -> Any:
        return SyncCache(AsyncCache(backend, **options), loop)

    return BackendHarness(SyncBackend(backend, loop), name, cache_factory=make_cache, **harness_options)


@pytest.fixture
def locmem_async_backend(
    fake_clock: FakeClock, request: pytest.FixtureRequest, bridge_loop: Any
) -> Iterator[BackendHarness]:
    from cachekit.backends.aio_locmem import AsyncLocMemBackend

    backend = AsyncLocMemBackend(f"test-async-{request.node.nodeid}", clock=fake_clock)
    yield _bridged(backend, "locmem-async", bridge_loop, clock=fake_clock)
    bridge_loop.run(backend.clear())


def _redis_async(url: str, name: str, loop: Any) -> Iterator[BackendHarness]:
    from cachekit.backends.aio_redis import AsyncRedisBackend

    backend = AsyncRedisBackend.from_url(url, **STEADY_REDIS)
    loop.run(backend.clear())
    yield _bridged(backend, name, loop)
    loop.run(backend.clear())
    loop.run(backend.close())


@pytest.fixture
def redis_async_backend(redis_server: servers.ServerProcess, bridge_loop: Any) -> Iterator[BackendHarness]:
    yield from _redis_async(f"redis://{redis_server.address}/0", "redis-async", bridge_loop)


@pytest.fixture
def redis_near_async_backend(
    redis_server: servers.ServerProcess, bridge_loop: Any
) -> Iterator[BackendHarness]:
    """The async Redis backend with a near cache (issue 17), its listener subscribed."""
    from cachekit.backends.aio_redis import AsyncRedisBackend

    backend = AsyncRedisBackend.from_url(f"redis://{redis_server.address}/0", near_cache=1000, **STEADY_REDIS)
    bridge_loop.run(backend.clear())
    assert backend.near.wait_ready(5.0), "near-cache listener did not subscribe"
    yield _bridged(backend, "redis-near-async", bridge_loop)
    bridge_loop.run(backend.clear())
    bridge_loop.run(backend.close())


@pytest.fixture
def redis_cluster_async_backend(
    redis_cluster: servers.RedisClusterProcesses, bridge_loop: Any
) -> Iterator[BackendHarness]:
    yield from _redis_async(redis_cluster.url, "redis-cluster-async", bridge_loop)


@pytest.fixture
def redis_sentinel_async_backend(
    redis_sentinel: servers.RedisSentinelProcesses, bridge_loop: Any
) -> Iterator[BackendHarness]:
    yield from _redis_async(redis_sentinel.url, "redis-sentinel-async", bridge_loop)


@pytest.fixture
def redis_fake_async_backend(bridge_loop: Any) -> Iterator[BackendHarness]:
    fakeredis = pytest.importorskip("fakeredis")
    from cachekit.backends.aio_redis import AsyncRedisBackend

    backend = AsyncRedisBackend(client=fakeredis.FakeAsyncRedis())
    yield _bridged(backend, "redis-fake-async", bridge_loop)
    bridge_loop.run(backend.clear())


@pytest.fixture
def memcached_async_backend(
    memcached_server: servers.ServerProcess, bridge_loop: Any
) -> Iterator[BackendHarness]:
    from cachekit.backends.aio_memcached import AsyncMemcachedBackend

    backend = AsyncMemcachedBackend.from_url(f"memcached://{memcached_server.address}", **STEADY_MEMCACHED)
    bridge_loop.run(backend.clear())
    yield _bridged(backend, "memcached-async", bridge_loop, short_ttl=1.0)
    bridge_loop.run(backend.close())


@pytest.fixture(params=ASYNC_BACKENDS)
def async_backend_harness(request: pytest.FixtureRequest) -> BackendHarness:
    """Every async backend in turn, bridged; servers start only for the parameters that need one."""
    harness: BackendHarness = request.getfixturevalue(f"{request.param.replace('-', '_')}_backend")
    return harness


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI every dependency is installed, so a skipped test is a failure, not a pass."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where nothing may be missing: {report.longrepr}"
