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

IN_CI = bool(os.environ.get("CI"))
HAVE_REDIS = shutil.which("redis-server") is not None
HAVE_MEMCACHED = shutil.which("memcached") is not None

#: Every backend the conformance suite runs on (parameter ids).
BACKENDS = [
    "locmem",
    "redis" if HAVE_REDIS or IN_CI else "redis-fake",
    "memcached",
    "memcached-pool",
]


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

    backend = RedisBackend.from_url(f"redis://{redis_server.address}/0")
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
def memcached_backend(memcached_server: servers.ServerProcess) -> Iterator[BackendHarness]:
    from cachekit.backends.memcached import MemcachedBackend

    backend = MemcachedBackend.from_url(f"memcached://{memcached_server.address}")
    yield BackendHarness(backend, "memcached", short_ttl=1.0)
    backend.close()


@pytest.fixture
def memcached_pool_backend(memcached_servers: list[servers.ServerProcess]) -> Iterator[BackendHarness]:
    from cachekit.backends.memcached import MemcachedBackend

    location = ",".join(server.address for server in memcached_servers)
    backend = MemcachedBackend.from_url(f"memcached://{location}")
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
