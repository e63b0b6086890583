"""AsgiSessionMiddleware as a bare ASGI app (tests/asgi.py), through httpx.ASGITransport and under Starlette.

Each test runs one event loop (``asyncio.run``) and builds its store inside it:
``redis.asyncio`` connections belong to the loop that opened them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import cachekit
from cachekit import aio
from middleware import AsgiSessionMiddleware
from middleware import SessionMiddleware
from sessions.aio import AsyncStore
from sessions.session import Session
from sessions.stores.aio_cache import AsyncCacheStore
from sessions.stores.base import Store
from sessions.stores.cache import CacheStore
from sessions.stores.cookie import SignedCookieStore
from tests import servers
from tests.asgi import AsgiClient
from tests.asgi import Message
from tests.asgi import call_asgi
from tests.asgi import make_scope
from tests.sessions.helpers import SECRET
from tests.wsgi import call_app
from tests.wsgi import make_environ

StoreFactory = Callable[[], "AsyncStore | Store"]


async def counter_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/`` reads, ``/incr?k`` increments ``k``, ``/logout`` flushes, ``/login`` cycles, ``/fail`` 500s."""
    session: Session = scope["session"]
    path, key = scope["path"], scope["query_string"].decode() or "n"
    status = 200
    if path == "/incr":
        session[key] = session.get(key, 0) + 1
    elif path == "/logout":
        session.flush()
    elif path == "/login":
        session.cycle_key()
        session["user"] = "ada"
    elif path == "/fail":
        session["n"] = 99
        status = 500
    elif path == "/untouched":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"no session"})
        return
    body = repr(sorted(dict(session).items())).encode()
    headers = [(b"content-type", b"text/plain"), (b"vary", b"Accept-Encoding")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(params=["locmem-async", "redis-async", "signed-cookie", "locmem-sync"])
def make_store(request: pytest.FixtureRequest) -> StoreFactory:
    """A factory for the store under test, called inside the test's event loop."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    if request.param == "locmem-async":
        return lambda: AsyncCacheStore(aio.from_url(f"locmem://{prefix}"))
    if request.param == "redis-async":
        url = request.getfixturevalue("redis_url")
        return lambda: AsyncCacheStore(aio.from_url(url, key_prefix=prefix))
    if request.param == "locmem-sync":
        # A sync server-side store is called inline: fine for local memory.
        return lambda: CacheStore(cachekit.from_url(f"locmem://{prefix}"))
    return lambda: SignedCookieStore([SECRET])


def run(make_store: StoreFactory, scenario: Callable[[Any], Awaitable[None]], **options: Any) -> None:
    async def main() -> None:
        store = make_store()
        try:
            await scenario(AsgiSessionMiddleware(counter_app, store, **options))
        finally:
            await closed(store)

    asyncio.run(main())


async def closed(store: Any) -> None:
    """Close an async store's cache: its connections belong to the loop about to end."""
    if isinstance(store, AsyncCacheStore):
        await store.cache.clear()
        await store.cache.close()


def attributes(set_cookie: str) -> list[str]:
    return [part.strip().split("=")[0] for part in set_cookie.split(";")[1:]]


# -- the wire ------------------------------------------------------------------------


def test_counter_sets_cookie_and_vary(make_store: StoreFactory) -> None:
    async def scenario(app: Any) -> None:
        client = AsgiClient(app)
        first = await client.get("/incr")
        assert first.status == 200
        assert first.body == b"[('n', 1)]"
        assert first.header("vary") == "Accept-Encoding, Cookie"
        (cookie,) = first.header_values("set-cookie")
        assert cookie.startswith("session=")
        assert attributes(cookie) == ["Expires", "Max-Age", "HttpOnly", "Path", "SameSite"]
        assert "Max-Age=1209600" in cookie
        assert "SameSite=Lax" in cookie
        second = await client.get("/incr")
        assert second.body == b"[('n', 2)]"

    run(make_store, scenario)


def test_read_only_request_saves_nothing(make_store: StoreFactory) -> None:
    async def scenario(app: Any) -> None:
        client = AsgiClient(app)
        await client.get("/incr")
        read = await client.get("/")
        assert read.body == b"[('n', 1)]"
        assert read.header_values("set-cookie") == []
        assert read.header("vary") == "Accept-Encoding, Cookie"

    run(make_store, scenario)


def test_untouched_session_passes_response_through(make_store: StoreFactory) -> None:
    async def scenario(app: Any) -> None:
        client = AsgiClient(app)
        await client.get("/incr")
        response = await client.get("/untouched")
        assert response.headers == [("content-type", "text/plain")]
        assert response.body == b"no session"

    run(make_store, scenario)


def test_login_cycles_the_id_and_logout_deletes_the_cookie(make_store: StoreFactory) -> None:
    async def scenario(app: Any) -> None:
        client = AsgiClient(app)
        await client.get("/incr")
        before = client.cookies["session"]
        login = await client.get("/login")
        assert login.body == b"[('n', 1), ('user', 'ada')]"
        after = client.cookies["session"]
        assert after != before
        if app.store.server_side:
            # The pre-login id is worthless now.
            stale = await AsgiClient(app).get("/", {"Cookie": f"session={before}"})
            assert stale.body == b"[]"
        logout = await client.get("/logout")
        (deleting,) = logout.header_values("set-cookie")
        assert "Max-Age=0" in deleting
        assert "session" not in client.cookies
        if app.store.server_side:
            revoked = await AsgiClient(app).get("/", {"Cookie": f"session={after}"})
            assert revoked.body == b"[]"

    run(make_store, scenario)


def test_error_response_saves_nothing(make_store: StoreFactory) -> None:
    async def scenario(app: Any) -> None:
        client = AsgiClient(app)
        await client.get("/incr")
        failed = await client.get("/fail")
        assert failed.status == 500
        assert failed.header_values("set-cookie") == []
        assert (await client.get("/")).body == b"[('n', 1)]"

    run(make_store, scenario)


def test_tampered_cookie_starts_a_new_session(make_store: StoreFactory) -> None:
    async def scenario(app: Any) -> None:
        client = AsgiClient(app)
        await client.get("/incr")
        client.cookies["session"] = client.cookies["session"][:-2] + "xx"
        assert (await client.get("/incr")).body == b"[('n', 1)]"

    run(make_store, scenario)


def test_same_cookie_rules_as_wsgi(make_store: StoreFactory) -> None:
    options: dict[str, Any] = {"cookie_name": "sid", "cookie_secure": True, "cookie_samesite": "Strict"}

    def wsgi_counter(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["cachekit.session"]["n"] = 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    async def scenario(app: Any) -> None:
        response = await AsgiClient(app).get("/incr")
        store = app.store
        sync_store = store if not hasattr(store, "records") else SignedCookieStore([SECRET])
        _, headers, _ = call_app(SessionMiddleware(wsgi_counter, sync_store, **options), make_environ("/"))
        wsgi_cookie = next(value for name, value in headers if name == "Set-Cookie")
        (asgi_cookie,) = response.header_values("set-cookie")
        assert attributes(asgi_cookie) == attributes(wsgi_cookie)
        assert asgi_cookie.split(";", 1)[0].startswith("sid=")

    async def main() -> None:
        store = make_store()
        try:
            await scenario(AsgiSessionMiddleware(counter_app, store, **options))
        finally:
            await closed(store)

    asyncio.run(main())


def test_a_cookie_option_set_on_the_asgi_middleware_changes_the_next_set_cookie() -> None:
    app = AsgiSessionMiddleware(counter_app, SignedCookieStore([SECRET]))
    app.cookie_name = "sid"
    app.save_every_request = True
    assert (app.cookie_name, app.cookie.cookie_name, app.cookie.save_every_request) == ("sid", "sid", True)

    async def main() -> None:
        response = await AsgiClient(app).get("/incr")
        (line,) = response.header_values("set-cookie")
        assert line.startswith("sid=")

    asyncio.run(main())


# -- concurrency and failures ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["locmem", "redis"])
def test_concurrent_requests_changing_different_keys_both_persist(
    kind: str, request: pytest.FixtureRequest
) -> None:
    url = f"locmem://c{uuid.uuid4().hex[:8]}" if kind == "locmem" else request.getfixturevalue("redis_url")

    async def main() -> None:
        store = AsyncCacheStore(aio.from_url(url, key_prefix=f"c{uuid.uuid4().hex[:8]}"))
        client = AsgiClient(AsgiSessionMiddleware(counter_app, store))
        try:
            await client.get("/incr?base")
            await asyncio.gather(*(client.get(f"/incr?k{i}") for i in range(10)))
            expected = sorted({"base": 1, **{f"k{i}": 1 for i in range(10)}}.items())
            assert (await client.get("/")).body == repr(expected).encode()
        finally:
            await closed(store)

    asyncio.run(main())


def test_save_after_concurrent_logout_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        store = AsyncCacheStore(aio.from_url(f"locmem://l{uuid.uuid4().hex[:8]}"))
        client = AsgiClient(AsgiSessionMiddleware(counter_app, store))
        await client.get("/incr")
        cookie = client.cookies["session"]

        async def logout_meanwhile(scope: dict[str, Any], receive: Any, send: Any) -> None:
            scope["session"]["n"] = 5  # loaded before the other tab logs out
            await store.delete(cookie)
            await counter_app({**scope, "path": "/"}, receive, send)

        late = await call_asgi(
            AsgiSessionMiddleware(logout_meanwhile, store),
            make_scope("/", headers={"Cookie": f"session={cookie}"}),
        )
        assert late.header_values("set-cookie") == []  # dropped; the dead id is left alone
        assert await store.load(cookie) is None

    with caplog.at_level(logging.INFO, logger="middleware.sessions"):
        asyncio.run(main())
    assert "session not saved" in caplog.text


def test_store_outage_is_a_503() -> None:
    port = servers.free_port()  # nothing listens here

    async def main() -> None:
        cache = aio.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5)
        app = AsgiSessionMiddleware(counter_app, AsyncCacheStore(cache))
        response = await call_asgi(app, make_scope("/incr", headers={"Cookie": "session=" + "A" * 43}))
        assert response.status == 503
        assert response.header("retry-after") == "5"
        fresh = await call_asgi(app, make_scope("/incr"))  # new session: the save fails
        assert fresh.status == 503
        assert fresh.header_values("set-cookie") == []
        await cache.close()

    asyncio.run(main())


def test_sync_save_on_an_async_store_is_refused() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["session"]["n"] = 1
        with pytest.raises(RuntimeError, match="await sessions.aio.save_session"):
            scope["session"].save()
        await counter_app({**scope, "path": "/"}, receive, send)

    async def main() -> None:
        store = AsyncCacheStore(aio.from_url(f"locmem://s{uuid.uuid4().hex[:8]}"))
        response = await call_asgi(AsgiSessionMiddleware(app, store), make_scope("/"))
        assert response.header_values("set-cookie")

    asyncio.run(main())


# -- what passes through ---------------------------------------------------------------


@pytest.mark.parametrize("scope_type", ["lifespan", "websocket"])
def test_other_scopes_pass_through_untouched(scope_type: str) -> None:
    seen: list[dict[str, Any]] = []
    sent: list[Message] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope)
        await send({"type": f"{scope_type}.message", "value": await receive()})

    async def main() -> None:
        scope = {"type": scope_type, "headers": [(b"cookie", b"session=x")]}

        async def receive() -> Message:
            return {"type": "incoming"}

        async def send(message: Message) -> None:
            sent.append(message)

        await AsgiSessionMiddleware(app, SignedCookieStore([SECRET]))(scope, receive, send)
        assert seen == [{"type": scope_type, "headers": [(b"cookie", b"session=x")]}]
        assert seen[0] is scope

    asyncio.run(main())
    assert sent == [{"type": f"{scope_type}.message", "value": {"type": "incoming"}}]


def test_streamed_body_passes_chunk_by_chunk() -> None:
    async def streaming(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["session"]["n"] = 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def main() -> None:
        response = await call_asgi(
            AsgiSessionMiddleware(streaming, SignedCookieStore([SECRET])), make_scope()
        )
        assert response.chunks == [b"one ", b"two ", b"three", b""]
        assert response.header_values("set-cookie")

    asyncio.run(main())


# -- through httpx and Starlette ---------------------------------------------------------


def test_through_httpx_asgi_transport(make_store: StoreFactory) -> None:
    async def scenario(app: Any) -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            assert (await client.get("/incr")).text == "[('n', 1)]"
            assert (await client.get("/incr")).text == "[('n', 2)]"
            response = await client.get("/logout")
            assert response.text == "[]"
            assert "session" not in client.cookies

    run(make_store, scenario)


def test_starlette_request_session_is_the_session() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def visits(request: Request) -> PlainTextResponse:
        assert isinstance(request.session, Session)
        request.session["visits"] = request.session.get("visits", 0) + 1
        return PlainTextResponse(str(request.session["visits"]))

    async def main() -> None:
        store = AsyncCacheStore(aio.from_url(f"locmem://st{uuid.uuid4().hex[:8]}"))
        app = AsgiSessionMiddleware(Starlette(routes=[Route("/", visits)]), store)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            assert [(await client.get("/")).text for _ in range(3)] == ["1", "2", "3"]

    asyncio.run(main())


def test_stored_session_pages_are_private(make_store: StoreFactory) -> None:
    async def scenario(app: Any) -> None:
        client = AsgiClient(app)
        first = await client.get("/incr")  # creates the session
        assert first.header_values("set-cookie")
        read = await client.get("/")  # reads the stored session
        assert read.header_values("cache-control") == ["private"]
        anonymous = await AsgiClient(app).get("/")
        assert anonymous.header_values("cache-control") == []

    run(make_store, scenario)
