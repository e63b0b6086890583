"""Issue 14 item 5: sessions evicted silently.

Redis applies ``maxmemory`` and its policy per instance, so page churn in one
database evicts sessions kept in another; the layout that holds is a second
instance with ``noeviction`` for sessions. The session middlewares check at
start-up and warn (finding ``sessions-may-be-evicted``) when the store's
servers may evict: Redis with an evicting policy, memcached without ``-M``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import cachekit
from cachekit import aio
from cachekit import check
from middleware import AsgiSessionMiddleware
from middleware import SessionMiddleware
from sessions.stores.aio_cache import AsyncCacheStore
from sessions.stores.cache import CacheStore
from tests import servers
from tests.asgi import call_asgi
from tests.asgi import make_scope
from tests.conftest import require_binary
from tests.wsgi import call_app
from tests.wsgi import make_environ

USERS = 300


@pytest.fixture(autouse=True)
def fresh_findings() -> Iterator[None]:
    check.reset_warnings()
    yield
    check.reset_warnings()


def _redis(policy: str, maxmemory: str = "4mb") -> servers.ServerProcess:
    require_binary("redis-server")
    return servers.start_redis(["--maxmemory", maxmemory, "--maxmemory-policy", policy])


@pytest.fixture(scope="module")
def lru_redis() -> Iterator[servers.ServerProcess]:
    server = _redis("allkeys-lru")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def noeviction_redis() -> Iterator[servers.ServerProcess]:
    server = _redis("noeviction")
    yield server
    server.stop()


def _findings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "cachekit.check" and "sessions-may-be-evicted" in r.getMessage()
    ]


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = environ["cachekit.session"]
    if environ["PATH_INFO"] == "/login":
        session["user"] = environ["QUERY_STRING"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(session.get("user", "anonymous")).encode()]


@pytest.mark.parametrize(
    ("server", "warned"),
    [
        pytest.param("lru_redis", True, id="redis-allkeys-lru"),
        pytest.param("noeviction_redis", False, id="redis-noeviction"),
    ],
)
def test_wsgi_start_up_check_on_redis(
    server: str, warned: bool, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    redis = request.getfixturevalue(server)
    with caplog.at_level(logging.WARNING, logger="cachekit.check"):
        SessionMiddleware(_app, CacheStore(cachekit.from_url(f"redis://{redis.address}/1")))
    found = _findings(caplog)
    assert bool(found) is warned
    if warned:
        assert "allkeys-lru" in found[0]


@pytest.mark.parametrize(
    ("server", "warned"),
    [
        pytest.param("lru_redis", True, id="redis-allkeys-lru"),
        pytest.param("noeviction_redis", False, id="redis-noeviction"),
    ],
)
def test_asgi_start_up_check_on_redis(
    server: str, warned: bool, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    redis = request.getfixturevalue(server)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def main() -> None:
        cache = aio.from_url(f"redis://{redis.address}/1")
        middleware = AsgiSessionMiddleware(app, AsyncCacheStore(cache))
        assert (await call_asgi(middleware, make_scope("/"))).status == 200
        assert (await call_asgi(middleware, make_scope("/"))).status == 200
        await cache.close()

    with caplog.at_level(logging.WARNING, logger="cachekit.check"):
        asyncio.run(main())
    assert len(_findings(caplog)) == (1 if warned else 0)


@pytest.mark.parametrize(
    ("options", "warned"),
    [pytest.param([], True, id="memcached-evicts"), pytest.param(["-M"], False, id="memcached-M")],
)
def test_start_up_check_on_memcached(
    options: list[str], warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    require_binary("memcached")
    server = servers.start_memcached(options)
    try:
        with caplog.at_level(logging.WARNING, logger="cachekit.check"):
            SessionMiddleware(_app, CacheStore(cachekit.from_url(f"memcached://{server.address}")))
    finally:
        server.stop()
    assert bool(_findings(caplog)) is warned


def _log_in_users(app: Any) -> list[str]:
    cookies = []
    for number in range(USERS):
        _status, headers, body = call_app(app, make_environ("/login", QUERY_STRING=f"user{number}"))
        assert body == f"user{number}".encode()
        cookies.append(next(v for n, v in headers if n == "Set-Cookie").split(";")[0].split("=", 1)[1])
    return cookies


def _logged_in(app: Any, cookies: list[str]) -> int:
    return sum(
        call_app(app, make_environ("/", headers={"Cookie": f"session={c}"}))[2] != b"anonymous"
        for c in cookies
    )


def _churn(page_cache: cachekit.Cache) -> None:
    for number in range(1500):  # about 15 MB of pages through a 4 MB instance
        page_cache.set(f"page{number}", "p" * 10_000)


def test_documented_layout_keeps_sessions_through_page_churn(
    lru_redis: servers.ServerProcess, noeviction_redis: servers.ServerProcess
) -> None:
    prefix = uuid.uuid4().hex[:8]
    pages = cachekit.from_url(f"redis://{lru_redis.address}/0", key_prefix=f"pages{prefix}")
    # The old advice: sessions in another database of the page instance.
    same_instance = SessionMiddleware(
        _app, CacheStore(cachekit.from_url(f"redis://{lru_redis.address}/1", key_prefix=prefix))
    )
    # The documented layout: sessions on an instance of their own with noeviction.
    own_instance = SessionMiddleware(
        _app, CacheStore(cachekit.from_url(f"redis://{noeviction_redis.address}/0", key_prefix=prefix))
    )
    shared_cookies = _log_in_users(same_instance)
    own_cookies = _log_in_users(own_instance)
    _churn(pages)
    evicted_shared = USERS - _logged_in(same_instance, shared_cookies)
    evicted_own = USERS - _logged_in(own_instance, own_cookies)
    print(
        f"\npage churn under allkeys-lru: sessions in another database of that instance: "
        f"{evicted_shared} of {USERS} logged out; on a noeviction instance: {evicted_own} of {USERS}"
    )
    assert evicted_shared > 0  # a separate database does not protect them
    assert evicted_own == 0
