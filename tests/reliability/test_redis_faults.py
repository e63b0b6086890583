"""Redis faults between client and a real redis-server, through tests/faultproxy.py.

Issue 14, item 1: retries that know what they retry. A reply lost to a cut
connection is retried, and the retry recognises what the first attempt did (the
lock's token, the value ``add`` or ``cas`` wrote); ``incr`` is never retried, so it
never adds twice. A reply lost to silence costs one socket timeout, and the lock
it may have taken is released in the background, so the next caller does not wait
for an orphan. Item 3: 500 concurrent calls on a healthy server, 0 misses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import time
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import cachekit
from cachekit import Cache
from cachekit.aio import AsyncCache
from cachekit.aio import from_url as aio_from_url
from cachekit.backends.aio_redis import AsyncRedisBackend
from cachekit.backends.redis import RedisBackend
from cachekit.exceptions import BackendUnavailableError
from tests import servers
from tests.conftest import require_binary
from tests.faultproxy import FaultProxy

SOCKET_TIMEOUT = 0.3
# Scheduling noise on a shared 2-core machine.
SLACK = 0.4


@pytest.fixture(scope="module")
def server() -> Iterator[servers.ServerProcess]:
    require_binary("redis-server")
    process = servers.start_redis()
    yield process
    if process.process is not None and process.process.poll() is None:
        os.kill(process.pid, signal.SIGCONT)
    process.stop()


@pytest.fixture
def proxy(server: servers.ServerProcess) -> Iterator[FaultProxy]:
    fault = FaultProxy(server.port).start()
    yield fault
    fault.stop()


@pytest.fixture
def direct(server: servers.ServerProcess) -> Iterator[redis.Redis]:
    client = redis.Redis(host="127.0.0.1", port=server.port)
    client.flushdb()
    yield client
    client.close()


def backend_via(proxy: FaultProxy, **options: Any) -> RedisBackend:
    return RedisBackend(host="127.0.0.1", port=proxy.port, socket_timeout=SOCKET_TIMEOUT, **options)


def timed(action: Callable[[], Any]) -> tuple[Any, float]:
    start = time.monotonic()
    result = action()
    return result, time.monotonic() - start


def warm(backend: RedisBackend) -> None:
    """Open the pooled connection, so the next fault hits a command, not the handshake."""
    assert backend.get("warm-up") is None


# -- a connection cut after the request reached the server -------------------------


def test_lock_retried_after_a_cut_recognises_its_own_token(proxy: FaultProxy, direct: redis.Redis) -> None:
    backend = backend_via(proxy)
    warm(backend)
    proxy.cut_after_requests(1)
    lock = backend.lock("page", ttl=30)
    acquired, took = timed(lambda: lock.acquire(timeout=5))
    assert proxy.cuts == 1
    assert acquired is True
    assert took < SOCKET_TIMEOUT + SLACK  # not the 5 s a "someone else holds it" wait would take
    lock.release()
    assert direct.exists("page") == 0


def test_add_retried_after_a_cut_reports_that_it_added(proxy: FaultProxy, direct: redis.Redis) -> None:
    backend = backend_via(proxy)
    warm(backend)
    proxy.cut_after_requests(1)
    assert backend.add("claim", b"mine", ttl=30) is True
    assert proxy.cuts == 1
    assert direct.get("claim") == b"mine"
    assert backend.add("claim", b"theirs", ttl=30) is False  # a real conflict still reads as one


def test_cas_retried_after_a_cut_reports_that_it_stored(proxy: FaultProxy, direct: redis.Redis) -> None:
    backend = backend_via(proxy)
    backend.set("s", b"v1", None)
    assert backend.cas("s", b"x", b"not-the-value", None) is False  # loads the script
    token = backend.gets("s")
    assert token is not None
    proxy.cut_after_requests(1)
    assert backend.cas("s", b"v2", token[1], None) is True
    assert proxy.cuts == 1
    assert direct.get("s") == b"v2"
    assert backend.cas("s", b"v3", token[1], None) is False  # the old token no longer matches


def test_incr_is_never_applied_twice(proxy: FaultProxy, direct: redis.Redis) -> None:
    backend = backend_via(proxy)
    backend.set("n", b"10", None)
    assert backend.incr("n", 1) == 11  # the script is loaded, so the cut hits its run
    proxy.cut_after_requests(1)
    with pytest.raises(BackendUnavailableError):
        backend.incr("n", 1)
    assert proxy.cuts == 1
    assert direct.get("n") == b"12"  # applied once; the caller was told it may not have been
    assert backend.incr("n", 1) == 13


def test_async_lock_and_add_recognise_their_own_writes(proxy: FaultProxy, direct: redis.Redis) -> None:
    async def scenario() -> tuple[bool, bool]:
        backend = AsyncRedisBackend(host="127.0.0.1", port=proxy.port, socket_timeout=SOCKET_TIMEOUT)
        assert await backend.get("warm-up") is None
        proxy.cut_after_requests(1)
        lock = backend.lock("alock", ttl=30)
        acquired = await lock.acquire(timeout=5)
        proxy.cut_after_requests(1)
        added = await backend.add("aclaim", b"mine", ttl=30)
        await lock.release()
        await backend.close()
        return acquired, added

    (acquired, added), took = timed(lambda: asyncio.run(scenario()))
    assert (acquired, added) == (True, True)
    assert proxy.cuts == 2
    assert took < 2 * SOCKET_TIMEOUT + SLACK
    assert direct.exists("alock") == 0


# -- a reply lost to silence: one socket timeout, no orphaned lock ------------------


def test_lost_lock_reply_costs_one_timeout_leaves_no_orphan(proxy: FaultProxy, direct: redis.Redis) -> None:
    backend = backend_via(proxy)
    warm(backend)
    proxy.drop_replies(1)
    lock = backend.lock("orphan", ttl=30)
    start = time.monotonic()
    with pytest.raises(BackendUnavailableError):
        lock.acquire(timeout=5)
    assert time.monotonic() - start < SOCKET_TIMEOUT + SLACK
    assert proxy.dropped == 1
    other = backend_via(proxy).lock("orphan", ttl=30)
    acquired, took = timed(lambda: other.acquire(timeout=5))
    assert acquired is True
    assert took < SOCKET_TIMEOUT + SLACK
    other.release()


def test_get_or_set_after_a_lost_lock_reply(proxy: FaultProxy, direct: redis.Redis) -> None:
    cache = Cache(backend_via(proxy), key_prefix="gos")
    other = Cache(backend_via(proxy), key_prefix="gos")
    assert cache.get("warm-up") is None
    assert other.get("warm-up") is None
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        return "fresh"

    # cache.get (a miss) passes, then the lock's reply is lost.
    value, took = timed(lambda: _get_or_set_dropping_lock_reply(cache, proxy, compute))
    assert value == "fresh"
    assert took < SOCKET_TIMEOUT + SLACK
    # The next caller neither waits for the orphaned lock nor fails.
    value, took = timed(lambda: other.get_or_set("page", compute, timeout=60))
    assert value == "fresh"
    assert took < SLACK
    assert other.get("page") == "fresh"
    assert len(calls) == 2


def _get_or_set_dropping_lock_reply(cache: Cache, proxy: FaultProxy, compute: Callable[[], str]) -> str:
    original = cache.backend.lock

    def lock_then_drop(name: str, *, ttl: float) -> Any:
        proxy.drop_replies(1)
        return original(name, ttl=ttl)

    cache.backend.lock = lock_then_drop  # type: ignore[method-assign]
    try:
        return cache.get_or_set("page", compute, timeout=60)
    finally:
        cache.backend.lock = original  # type: ignore[method-assign]


# -- item 3: a burst larger than the pool on a healthy server ----------------------


def test_500_concurrent_calls_no_misses_sync(server: servers.ServerProcess) -> None:
    cache = Cache(RedisBackend(host="127.0.0.1", port=server.port, max_connections=20), key_prefix="burst")
    cache.set("k", "v")

    def read(_: int) -> Any:
        return cache.get("k")

    with concurrent.futures.ThreadPoolExecutor(max_workers=500) as pool:
        results = list(pool.map(read, range(500)))
    assert results.count("v") == 500
    assert cache.stats()["errors"] == 0


def test_500_concurrent_calls_no_misses_async(server: servers.ServerProcess) -> None:
    async def scenario() -> tuple[list[Any], int | float]:
        cache = AsyncCache(AsyncRedisBackend(host="127.0.0.1", port=server.port, max_connections=20))
        await cache.set("k", "v")
        results = await asyncio.gather(*(cache.get("k") for _ in range(500)))
        errors = cache.stats()["errors"]
        await cache.close()
        return list(results), errors

    results, errors = asyncio.run(scenario())
    assert results.count("v") == 500
    assert errors == 0


def test_page_cache_after_a_lost_lock_reply(proxy: FaultProxy, direct: redis.Redis) -> None:
    """The page path takes the backend lock too: a lost reply on it costs one request one timeout."""
    from middleware.cache import CacheMiddleware
    from tests.wsgi import call_app
    from tests.wsgi import make_environ

    renders: list[str] = []

    def never_stored(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        renders.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/plain"), ("Cache-Control", "no-store")])
        return [b"fresh"]

    backend = backend_via(proxy)
    app = CacheMiddleware(never_stored, cache=Cache(backend, key_prefix="pg", lock_timeout=5), timeout=60)
    warm(backend)
    original = backend.lock

    def lock_then_drop(name: str, *, ttl: float) -> Any:
        proxy.drop_replies(1)
        backend.lock = original  # type: ignore[method-assign]
        return original(name, ttl=ttl)

    backend.lock = lock_then_drop  # type: ignore[method-assign]
    (status, _, body), took = timed(lambda: call_app(app, make_environ("/never")))
    assert (status, body) == ("200 OK", b"fresh")
    assert proxy.dropped == 1
    assert took < SOCKET_TIMEOUT + SLACK
    for _ in range(3):  # the next requests do not wait for the orphaned lock
        (status, _, body), took = timed(lambda: call_app(app, make_environ("/never")))
        assert status == "200 OK"
        assert took < SLACK
    assert len(renders) == 4


def test_500_concurrent_calls_through_sentinel_no_misses() -> None:
    """The Sentinel pool blocks too (redis-py's Sentinel pool composed with its blocking pool)."""
    require_binary("redis-server")
    group = servers.start_redis_sentinel()
    try:
        url = f"{group.url}?max_connections=20&key_prefix=sb"
        cache = cachekit.from_url(url)
        cache.set("k", "v")
        with concurrent.futures.ThreadPoolExecutor(max_workers=500) as pool:
            results = list(pool.map(lambda _: cache.get("k"), range(500)))
        assert results.count("v") == 500
        assert cache.stats()["errors"] == 0

        async def scenario() -> tuple[list[Any], int | float]:
            acache = aio_from_url(url)
            found = await asyncio.gather(*(acache.get("k") for _ in range(500)))
            errors = acache.stats()["errors"]
            await acache.close()
            return list(found), errors

        found, errors = asyncio.run(scenario())
        assert found.count("v") == 500
        assert errors == 0
    finally:
        group.stop()
