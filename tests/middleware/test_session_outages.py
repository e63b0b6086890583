"""Issue 14 item 6: WSGI and ASGI answer a session store outage from one table.

The table is in :mod:`middleware._session_rules`. Each row runs through
``SessionMiddleware`` (sync ``CacheStore``) and ``AsgiSessionMiddleware``
(``AsyncCacheStore``) on a real Redis that is stopped after a user logged in;
both must give the row's answer. Before the fix ASGI answered 503 to every
request that carried a cookie, used or not.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

import cachekit
from cachekit import aio
from cachekit.exceptions import BackendUnavailableError
from middleware import AsgiSessionMiddleware
from middleware import SessionMiddleware
from sessions.session import Session
from sessions.stores.aio_cache import AsyncCacheStore
from sessions.stores.cache import CacheStore
from tests import servers
from tests.asgi import call_asgi
from tests.asgi import make_scope
from tests.conftest import require_binary
from tests.wsgi import call_app
from tests.wsgi import make_environ

OPTIONS = "?socket_timeout=0.3&socket_connect_timeout=0.2"


def act(session: Session, action: str) -> bytes:
    """What the app does with its session; the body it answers."""
    if action == "untouched":
        return b"page"
    if action == "read":
        return str(session.get("user", "anonymous")).encode()
    if action == "write":
        session["n"] = 1
        return b"written"
    if action == "logout":
        session.flush()
        return b"bye"
    if action == "catch":
        try:
            return str(session.get("user")).encode()
        except BackendUnavailableError:
            return b"degraded"
    raise AssertionError(action)


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = act(environ["cachekit.session"], environ["QUERY_STRING"])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = act(scope["session"], scope["query_string"].decode())
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


# (app action, sends the logged-in cookie) -> (status, body or None for the 503 body, Set-Cookie sent)
TABLE = [
    pytest.param("untouched", True, 200, b"page", id="cookie-untouched"),
    pytest.param("untouched", False, 200, b"page", id="no-cookie-untouched"),
    pytest.param("read", True, 503, None, id="cookie-read"),
    pytest.param("write", True, 503, None, id="cookie-write"),
    pytest.param("write", False, 503, None, id="no-cookie-write"),
    pytest.param("logout", True, 503, None, id="cookie-logout"),
    pytest.param("catch", True, 200, b"degraded", id="cookie-app-catches"),
]


@pytest.fixture(scope="module")
def stopped_redis() -> tuple[str, str, str]:
    """A Redis on which a user logged in, then stopped: (url, key prefix, that user's cookie)."""
    require_binary("redis-server")
    server = servers.start_redis()
    url = f"redis://{server.address}/0{OPTIONS}"
    prefix = f"out{uuid.uuid4().hex[:8]}"

    def login(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["cachekit.session"]["user"] = "ada"
        start_response("200 OK", [])
        return [b""]

    cache = cachekit.from_url(url, key_prefix=prefix)
    _status, headers, _body = call_app(SessionMiddleware(login, CacheStore(cache)), make_environ("/"))
    cookie = next(v for n, v in headers if n == "Set-Cookie").split(";")[0].split("=", 1)[1]
    cache.close()
    server.stop()
    return url, prefix, cookie


def _through_wsgi(url: str, prefix: str, cookie: str | None, action: str) -> tuple[int, bytes, bool]:
    cache = cachekit.from_url(url, key_prefix=prefix)
    app = SessionMiddleware(wsgi_app, CacheStore(cache))
    headers = {"Cookie": f"session={cookie}"} if cookie else {}
    status, response_headers, body = call_app(app, make_environ(f"/?{action}", headers=headers))
    cache.close()
    return int(status[:3]), body, any(n.lower() == "set-cookie" for n, _ in response_headers)


def _through_asgi(url: str, prefix: str, cookie: str | None, action: str) -> tuple[int, bytes, bool]:
    async def main() -> tuple[int, bytes, bool]:
        cache = aio.from_url(url, key_prefix=prefix)
        app = AsgiSessionMiddleware(asgi_app, AsyncCacheStore(cache))
        headers = {"Cookie": f"session={cookie}"} if cookie else {}
        response = await call_asgi(app, make_scope("/", headers=headers, query_string=action.encode()))
        await cache.close()
        return response.status, response.body, response.header("set-cookie") is not None

    return asyncio.run(main())


@pytest.mark.parametrize(("action", "with_cookie", "status", "body"), TABLE)
@pytest.mark.parametrize("through", [_through_wsgi, _through_asgi], ids=["wsgi", "asgi"])
def test_outage_answer_is_the_tables(
    stopped_redis: tuple[str, str, str],
    through: Any,
    action: str,
    with_cookie: bool,
    status: int,
    body: bytes | None,
) -> None:
    url, prefix, cookie = stopped_redis
    got_status, got_body, set_cookie = through(url, prefix, cookie if with_cookie else None, action)
    assert got_status == status
    if body is not None:
        assert got_body == body
    else:
        assert b"session store is not reachable" in got_body
    assert not set_cookie
