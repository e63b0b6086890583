"""Faults one at a time, each bounded and each restored: hung servers, broken replies, a lost
memcached node, a full Redis.

Every fault is checked where users meet it: through :class:`~cachekit.Cache`
(misses and no-ops, counted in ``stats()["errors"]``) and through the
middleware stack of :mod:`tests.reliability.app` (pages still answered,
session writes answered 503 with ``Retry-After``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest

import cachekit
from cachekit import Cache
from cachekit.backends.redis import RedisBackend
from tests import servers
from tests.conftest import require_binary
from tests.reliability.fakes import BreakingServer
from tests.reliability.fakes import SilentServer
from tests.wsgi import Client
from tests.wsgi import call_app
from tests.wsgi import make_environ

SOCKET_TIMEOUT = 0.3
CONNECT_TIMEOUT = 0.2
# Scheduling noise on a shared 2-core machine; an OS default would be minutes, not this.
SLACK = 0.35


def timed(action: Callable[[], Any]) -> tuple[Any, float]:
    start = time.monotonic()
    result = action()
    return result, time.monotonic() - start


def redis_cache(port: int, **options: Any) -> Cache:
    return cachekit.from_url(
        f"redis://127.0.0.1:{port}/0?socket_timeout={SOCKET_TIMEOUT}"
        f"&socket_connect_timeout={CONNECT_TIMEOUT}",
        **options,
    )


def memcached_cache(port: int, **options: Any) -> Cache:
    return cachekit.from_url(
        f"memcached://127.0.0.1:{port}?socket_timeout={SOCKET_TIMEOUT}&connect_timeout={CONNECT_TIMEOUT}",
        **options,
    )


CACHES = {"redis": redis_cache, "memcached": memcached_cache}


# -- a server that accepts connections and never answers ------------------------------------


@pytest.mark.parametrize("kind", CACHES)
@pytest.mark.parametrize("backlog_full", [False, True], ids=["never-answers", "never-accepts"])
def test_silent_server_costs_the_configured_timeout(kind: str, backlog_full: bool) -> None:
    with SilentServer(backlog_full=backlog_full) as silent:
        cache = CACHES[kind](silent.port)
        limit = CONNECT_TIMEOUT if backlog_full else SOCKET_TIMEOUT + CONNECT_TIMEOUT
        value, elapsed = timed(lambda: cache.get("k", "default"))
        assert value == "default"
        assert elapsed < limit + SLACK
        _, elapsed = timed(lambda: cache.set("k", 1))
        assert elapsed < limit + SLACK
        assert cache.stats()["errors"] == 2


@pytest.mark.parametrize("kind", CACHES)
def test_silent_server_under_the_middleware_is_bounded(kind: str, make_app: Callable[..., Any]) -> None:
    """A page still renders and a session write answers 503, each in a few socket timeouts.

    Each backend call of a request waits out its own timeout (the page cache
    makes about five); see docs/reliability.md.
    """
    with SilentServer() as silent:
        app = make_app(CACHES[kind](silent.port).backend)
        (status, _, body), elapsed = timed(lambda: call_app(app, make_environ("/page/1")))
        assert status == "200 OK"
        assert body.startswith(b"page 1 rendered")
        assert elapsed < 8 * SOCKET_TIMEOUT + SLACK
        (status, headers, _), elapsed = timed(lambda: call_app(app, make_environ("/count")))
        assert status == "503 Service Unavailable"
        assert ("Retry-After", "5") in headers
        assert elapsed < 3 * SOCKET_TIMEOUT + SLACK


# -- network errors in the middle of a reply ------------------------------------------------

REDIS_REPLIES = {
    "half-bulk-reply": b"$10\r\nabc",
    "half-line": b"+O",
    "nothing": b"",
}
MEMCACHED_REPLIES = {
    "half-value": b"VALUE k 0 10\r\nabc",
    "half-line": b"VALU",
    "nothing": b"",
    "garbage": b"HELLO\r\n",
}


def _broken_reply_cases() -> Iterator[Any]:
    for name, reply in REDIS_REPLIES.items():
        for reset in (False, True):
            yield pytest.param("redis", reply, reset, id=f"redis-{name}-{'reset' if reset else 'close'}")
    yield pytest.param("redis", b"HELLO\r\n", False, id="redis-garbage-close")
    for name, reply in MEMCACHED_REPLIES.items():
        for reset in (False, True):
            yield pytest.param(
                "memcached", reply, reset, id=f"memcached-{name}-{'reset' if reset else 'close'}"
            )


@pytest.mark.parametrize(("kind", "reply", "reset"), list(_broken_reply_cases()))
def test_reply_broken_off_is_a_miss(kind: str, reply: bytes, reset: bool) -> None:
    with BreakingServer(reply, reset=reset) as server:
        cache = CACHES[kind](server.port)
        value, elapsed = timed(lambda: cache.get("k", "default"))
        assert value == "default"
        cache.set("k", 1)  # a no-op
        assert cache.get_many(["a", "b"]) == {}
        assert elapsed < SOCKET_TIMEOUT + SLACK
        assert cache.stats()["errors"] == 3
        assert server.broken > 0


# -- one memcached node of three dies -------------------------------------------------------


@pytest.fixture
def own_memcached_pool() -> Iterator[list[servers.ServerProcess]]:
    require_binary("memcached")
    pool = [servers.start_memcached() for _ in range(3)]
    yield pool
    for server in pool:
        server.stop()


def test_dead_memcached_node_costs_only_its_pages(
    own_memcached_pool: list[servers.ServerProcess], make_app: Callable[..., Any]
) -> None:
    """Every page is cached, one node is killed: exactly the pages with a key on it are rendered again."""
    location = ",".join(server.address for server in own_memcached_pool)
    app = make_app(f"memcached://{location}")
    views, pages = app.views, app.views.pages  # type: ignore[attr-defined]
    backend = pages.backend
    engine = app.page_cache  # type: ignore[attr-defined]
    paths = [f"/page/{n}" for n in range(60)]
    for path in paths:
        assert call_app(app, make_environ(path))[0] == "200 OK"

    def node(key: str) -> int:
        return int(backend._locate(pages.make_key(key))[0].server[1])

    def keys_of(path: str) -> list[str]:
        return engine.keys_for(make_environ(path))  # type: ignore[no-any-return]

    victim = own_memcached_pool[0]
    on_victim = {path for path in paths if any(node(key) == victim.port for key in keys_of(path))}
    assert 0 < len(on_victim) < len(paths)
    rendered_before = dict(views.renders)
    victim.kill()
    for path in paths:
        status, headers, _ = call_app(app, make_environ(path))
        assert status == "200 OK"
        assert any(name == "Age" for name, _ in headers) is (path not in on_victim)
    rerendered = {path for path in paths if views.renders[path] > rendered_before[path]}
    assert rerendered == on_victim
    assert pages.stats()["errors"] > 0


# -- a full Redis: maxmemory with noeviction ---------------------------------------------------


@pytest.fixture
def full_redis() -> Iterator[servers.ServerProcess]:
    """A Redis at its ``maxmemory`` (noeviction), holding ``"before"`` under ``sessions:1:kept``."""
    require_binary("redis-server")
    server = servers.start_redis(["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"])
    import redis

    client = redis.Redis(servers.HOST, server.port)
    try:
        client.set(":1:kept", b"before")
        filler = b"x" * 10_000
        for n in range(10_000):
            try:
                client.set(f"filler:{n}", filler)
            except redis.exceptions.OutOfMemoryError:
                break
        else:
            pytest.fail("Redis never reported that it is full")
    finally:
        client.close()
    yield server
    server.stop()


def test_full_redis_still_answers_reads(full_redis: servers.ServerProcess) -> None:
    import redis

    backend = RedisBackend.from_url(f"redis://{full_redis.address}/0", socket_timeout=SOCKET_TIMEOUT)
    cache = Cache(backend, serializer=_RawBytes())
    assert cache.get("kept") == b"before"
    assert cache.get("missing", "default") == "default"
    client = redis.Redis(servers.HOST, full_redis.port)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("one-more", b"x" * 10_000)  # it really is full
    client.close()


def test_full_redis_write_fails_cleanly(full_redis: servers.ServerProcess) -> None:
    cache = redis_cache(full_redis.port)
    cache.set("new", b"x" * 10_000)  # a no-op, not an exception
    assert cache.get("new") is None
    assert cache.stats()["errors"] == 1


def test_full_redis_session_write_is_503_and_pages_render(
    full_redis: servers.ServerProcess, make_app: Callable[..., Any]
) -> None:
    app = make_app(f"redis://{full_redis.address}/0")
    client = Client(app)
    status, headers, _ = client.get("/count")
    assert status == "503 Service Unavailable"
    assert ("Retry-After", "5") in headers
    status, _, body = client.get("/page/1")
    assert (status, body[:6]) == ("200 OK", b"page 1")


class _RawBytes:
    def dumps(self, value: Any) -> bytes:
        return bytes(value)

    def loads(self, data: bytes) -> Any:
        return bytes(data)
