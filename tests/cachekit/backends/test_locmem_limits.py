"""Issue 14 item 7: local memory refuses what it will not keep, and says so.

A value larger than ``max_bytes`` is refused with :class:`BackendError` by
``set``, ``set_many``, ``add`` and ``cas`` (sync and async), as memcached refuses
a value past its item size; so a session store on it cannot acknowledge a
session it never stored, and the session middleware answers no 200 with a cookie.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

import cachekit
from cachekit import aio
from cachekit.backends.aio_locmem import AsyncLocMemBackend
from cachekit.backends.locmem import LocMemBackend
from cachekit.exceptions import BackendError
from middleware import AsgiSessionMiddleware
from middleware import SessionMiddleware
from sessions.stores.aio_cache import AsyncCacheStore
from sessions.stores.cache import CacheStore
from tests.asgi import call_asgi
from tests.asgi import make_scope
from tests.wsgi import call_app
from tests.wsgi import make_environ

LIMIT = 1000
BIG = b"x" * 5000


def _backend() -> LocMemBackend:
    return LocMemBackend(f"limits-{uuid.uuid4().hex}", max_bytes=LIMIT)


def test_add_refuses_and_stores_nothing() -> None:
    backend = _backend()
    with pytest.raises(BackendError, match="max_bytes"):
        backend.add("k", BIG, None)
    assert backend.get("k") is None
    assert backend.add("k", b"small", None) is True


def test_cas_refuses_and_changes_nothing() -> None:
    backend = _backend()
    backend.set("k", b"old", None)
    found = backend.gets("k")
    assert found is not None
    with pytest.raises(BackendError, match="max_bytes"):
        backend.cas("k", BIG, found[1], None)
    assert backend.get("k") == b"old"


def test_set_refuses_and_drops_the_old_value() -> None:
    backend = _backend()
    backend.set("k", b"old", None)
    with pytest.raises(BackendError, match="max_bytes"):
        backend.set("k", BIG, None)
    assert backend.get("k") is None


def test_set_many_stores_the_others_and_reports_the_refusal() -> None:
    backend = _backend()
    with pytest.raises(BackendError, match="'big'"):
        backend.set_many({"a": b"a", "big": BIG, "b": b"b"}, None)
    assert backend.get_many(["a", "big", "b"]) == {"a": b"a", "b": b"b"}


def test_async_twin_refuses_the_same() -> None:
    async def main() -> None:
        backend = AsyncLocMemBackend(f"limits-{uuid.uuid4().hex}", max_bytes=LIMIT)
        with pytest.raises(BackendError):
            await backend.add("k", BIG, None)
        await backend.set("k", b"old", None)
        found = await backend.gets("k")
        assert found is not None
        with pytest.raises(BackendError):
            await backend.cas("k", BIG, found[1], None)
        assert await backend.get("k") == b"old"

    asyncio.run(main())


def _big_session_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    environ["cachekit.session"]["blob"] = "y" * 5000
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"stored?"]


def test_wsgi_session_too_large_for_the_store_gets_no_cookie() -> None:
    cache = cachekit.from_url(f"locmem://limits-{uuid.uuid4().hex}", max_bytes=LIMIT)
    app = SessionMiddleware(_big_session_wsgi, CacheStore(cache))
    answered: list[tuple[str, Any]] = []
    try:
        status, headers, _body = call_app(app, make_environ("/"))
        answered.append((status, headers))
    except BackendError:
        pass  # the server answers 500 and sends no cookie
    for status, headers in answered:
        assert not status.startswith("2")
        assert not [v for n, v in headers if n.lower() == "set-cookie"]
    assert cache.backend.count() == 0  # type: ignore[attr-defined]


async def _big_session_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    scope["session"]["blob"] = "y" * 5000
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"stored?"})


def test_asgi_session_too_large_for_the_store_gets_no_cookie() -> None:
    async def main() -> None:
        cache = aio.from_url(f"locmem://limits-{uuid.uuid4().hex}", max_bytes=LIMIT)
        app = AsgiSessionMiddleware(_big_session_asgi, AsyncCacheStore(cache))
        try:
            response = await call_asgi(app, make_scope("/"))
        except BackendError:
            return  # the server answers 500 and sends no cookie
        assert response.status >= 500
        assert response.header("set-cookie") is None

    asyncio.run(main())
