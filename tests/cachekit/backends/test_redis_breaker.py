"""The circuit breaker in the Redis backends: a hung server (SIGSTOP) fails fast, shows in stats.

Each test starts its own redis-server and stops it by PID; the hang is bounded
(a few seconds) and every wait is a bounded poll.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import pytest

from cachekit import Cache
from cachekit.aio import AsyncCache
from cachekit.backends.aio_redis import AsyncRedisBackend
from cachekit.backends.redis import RedisBackend
from cachekit.metrics import render_text
from tests import servers
from tests.conftest import require_binary

SOCKET_TIMEOUT = 0.2
COOLDOWN = 0.5


@pytest.fixture
def own_server() -> Iterator[servers.ServerProcess]:
    require_binary("redis-server")
    server = servers.start_redis()
    yield server
    if server.process is not None and server.process.poll() is None:
        os.kill(server.pid, signal.SIGCONT)
    server.stop()


def backend_options(server: servers.ServerProcess) -> dict[str, object]:
    return {
        "host": "127.0.0.1",
        "port": server.port,
        "socket_timeout": SOCKET_TIMEOUT,
        "breaker_failures": 3,
        "breaker_window": 10.0,
        "breaker_cooldown": COOLDOWN,
    }


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def test_hang_fails_fast_after_the_breaker_opens_then_recovers(own_server: servers.ServerProcess) -> None:
    cache = Cache(RedisBackend(**backend_options(own_server)), name="hang")  # type: ignore[arg-type]
    cache.set("k", "v")
    os.kill(own_server.pid, signal.SIGSTOP)
    try:
        latencies: list[float] = []
        after_first_second: list[float] = []
        began = time.monotonic()
        while time.monotonic() < began + 3.0:
            start = time.monotonic()
            assert cache.get("k") is None  # an outage is a miss
            latencies.append(time.monotonic() - start)
            if start > began + 1.0:
                after_first_second.append(latencies[-1])
        stats = cache.stats()
        assert stats["breaker_open"] == 1
        assert stats["breaker_trips"] >= 1
        assert stats["breaker_rejections"] > 100
        # The first three calls paid a socket timeout each; after that, probes once per cool-down.
        slow = [t for t in latencies if t >= SOCKET_TIMEOUT * 0.9]
        assert 3 <= len(slow) <= 3 + 3.0 / COOLDOWN + 1
        assert p99(after_first_second) < 0.05  # the bar for pages during a hang
        text = render_text(lambda: [cache])
        assert 'cachekit_breaker_open{cache="hang"} 1' in text
        assert "# TYPE cachekit_breaker_open gauge" in text
    finally:
        os.kill(own_server.pid, signal.SIGCONT)
    deadline = time.monotonic() + 5
    while cache.get("k") != "v":
        assert time.monotonic() < deadline, "the breaker did not close after the server came back"
        time.sleep(0.05)
    assert cache.stats()["breaker_open"] == 0


def test_error_replies_do_not_open_the_breaker(own_server: servers.ServerProcess) -> None:
    backend = RedisBackend(**backend_options(own_server))  # type: ignore[arg-type]
    backend.set("text", b"abc", None)
    for _ in range(10):
        with pytest.raises(Exception, match="not an integer"):
            backend.incr("text", 1)
    assert [b.state for b in backend.breakers()] == ["closed"]


def test_async_hang_fails_fast(own_server: servers.ServerProcess) -> None:
    async def scenario() -> tuple[dict[str, int | float], int]:
        cache = AsyncCache(AsyncRedisBackend(**backend_options(own_server)), name="ahang")
        await cache.set("k", "v")
        os.kill(own_server.pid, signal.SIGSTOP)
        try:
            slow = 0
            end = time.monotonic() + 2.0
            while time.monotonic() < end:
                start = time.monotonic()
                assert await cache.get("k") is None
                slow += time.monotonic() - start >= SOCKET_TIMEOUT * 0.9
            return cache.stats(), slow
        finally:
            os.kill(own_server.pid, signal.SIGCONT)
            await cache.close()

    stats, slow = asyncio.run(scenario())
    assert stats["breaker_trips"] >= 1
    assert stats["breaker_rejections"] > 100
    assert 3 <= slow <= 3 + 2.0 / COOLDOWN + 1
