"""AsgiCacheMiddleware as a bare ASGI app (tests/asgi.py) and through httpx.ASGITransport.

Each test runs one event loop (``asyncio.run``) and builds its AsyncCache inside it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import cachekit
from cachekit import aio
from cachekit.aio import AsyncCache
from middleware import AsgiCacheMiddleware
from middleware import AsgiSessionMiddleware
from middleware import CacheMiddleware
from sessions.stores.aio_cache import AsyncCacheStore
from sessions.stores.cache import CacheStore
from sessions.stores.cookie import SignedCookieStore
from tests.asgi import AsgiClient
from tests.asgi import Message
from tests.asgi import call_asgi
from tests.asgi import make_scope
from tests.conftest import FakeClock
from tests.sessions.helpers import SECRET
from tests.wsgi import call_app
from tests.wsgi import make_environ


class Page:
    """An ASGI app whose responses the tests set; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.status = 200
        self.headers: list[tuple[str, str]] = [("Content-Type", "text/plain")]
        self.chunks: list[bytes] = [b"hello"]
        self.gate: asyncio.Event | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        raw = [(k.lower().encode(), v.encode()) for k, v in self.headers]
        await send({"type": "http.response.start", "status": self.status, "headers": raw})
        for index, chunk in enumerate(self.chunks):
            last = index == len(self.chunks) - 1
            await send({"type": "http.response.body", "body": chunk, "more_body": not last})


def run(
    test: Callable[[AsyncCache], Awaitable[None]],
    url: str | None = None,
    clock: FakeClock | None = None,
    **options: Any,
) -> None:
    async def main() -> None:
        cache = aio.from_url(url or f"locmem://p{uuid.uuid4().hex[:10]}", **options)
        if clock is not None:
            cache = cache.replace(clock=clock)
        try:
            await test(cache)
        finally:
            await cache.clear()
            await cache.close()

    asyncio.run(main())


@pytest.fixture(params=["locmem", "redis"])
def cache_url(request: pytest.FixtureRequest) -> str:
    if request.param == "locmem":
        return f"locmem://p{uuid.uuid4().hex[:10]}"
    return str(request.getfixturevalue("redis_url"))


def test_second_get_is_served_from_cache(cache_url: str) -> None:
    page = Page()

    async def test(cache: AsyncCache) -> None:
        app = AsgiCacheMiddleware(page, cache=cache, timeout=60)
        first = await call_asgi(app, make_scope("/a"))
        assert first.headers == [("content-type", "text/plain")]  # a miss passes through untouched
        second = await call_asgi(app, make_scope("/a"))
        assert page.calls == 1
        assert second.status == 200
        assert second.body == b"hello"
        assert second.header("age") == "0"
        assert second.header("cache-control") == "max-age=60"
        assert second.header("etag")
        await call_asgi(app, make_scope("/a?other"))
        assert page.calls == 2

    run(test, cache_url, key_prefix=f"k{uuid.uuid4().hex[:8]}")


def test_streamed_miss_passes_chunk_by_chunk_and_is_stored_whole() -> None:
    page = Page()
    page.chunks = [b"one ", b"two ", b"three"]

    async def test(cache: AsyncCache) -> None:
        app = AsgiCacheMiddleware(page, cache=cache)
        first = await call_asgi(app, make_scope())
        assert first.chunks == [b"one ", b"two ", b"three"]
        second = await call_asgi(app, make_scope())
        assert second.body == b"one two three"
        assert page.calls == 1

    run(test)


def test_body_over_max_body_size_is_streamed_not_stored() -> None:
    page = Page()
    page.chunks = [b"x" * 60, b"y" * 60]

    async def test(cache: AsyncCache) -> None:
        app = AsgiCacheMiddleware(page, cache=cache, max_body_size=100)
        for _ in range(2):
            response = await call_asgi(app, make_scope())
            assert response.chunks == [b"x" * 60, b"y" * 60]
        assert page.calls == 2

    run(test)


@pytest.mark.parametrize(
    ("status", "headers", "request_headers"),
    [
        pytest.param(200, [("Set-Cookie", "a=1")], {}, id="sets-cookie"),
        pytest.param(200, [("Cache-Control", "private")], {}, id="private"),
        pytest.param(200, [("Cache-Control", "no-store")], {}, id="no-store"),
        pytest.param(200, [("Vary", "*")], {}, id="vary-star"),
        pytest.param(500, [], {}, id="server-error"),
        pytest.param(200, [], {"Authorization": "Bearer x"}, id="authorization"),
    ],
)
def test_uncacheable_responses_are_not_stored(
    status: int, headers: list[tuple[str, str]], request_headers: dict[str, str]
) -> None:
    page = Page()
    page.status = status
    page.headers = headers

    async def test(cache: AsyncCache) -> None:
        app = AsgiCacheMiddleware(page, cache=cache)
        for _ in range(2):
            response = await call_asgi(app, make_scope(headers=request_headers))
            assert response.status == status
            assert response.header("age") is None
        assert page.calls == 2

    run(test)


def test_post_passes_through_and_head_is_answered_from_get() -> None:
    page = Page()

    async def test(cache: AsyncCache) -> None:
        app = AsgiCacheMiddleware(page, cache=cache)
        await call_asgi(app, make_scope(method="POST"))
        await call_asgi(app, make_scope(method="POST"))
        assert page.calls == 2
        await call_asgi(app, make_scope())
        head = await call_asgi(app, make_scope(method="HEAD"))
        assert page.calls == 3
        assert head.status == 200
        assert head.body == b""
        assert head.header("age") is not None

    run(test)


def test_conditional_request_gets_304() -> None:
    page = Page()

    async def test(cache: AsyncCache) -> None:
        app = AsgiCacheMiddleware(page, cache=cache)
        await call_asgi(app, make_scope())
        etag = (await call_asgi(app, make_scope())).header("etag")
        assert etag is not None
        response = await call_asgi(app, make_scope(headers={"If-None-Match": etag}))
        assert response.status == 304
        assert response.body == b""

    run(test)


def test_vary_is_learned_per_url() -> None:
    async def by_language(scope: dict[str, Any], receive: Any, send: Any) -> None:
        language = dict(scope["headers"]).get(b"accept-language", b"-")
        headers = [(b"content-type", b"text/plain"), (b"vary", b"Accept-Language")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": language})

    async def test(cache: AsyncCache) -> None:
        app = AsgiCacheMiddleware(by_language, cache=cache)
        for language in ("en", "fr", "en", "fr"):
            response = await call_asgi(app, make_scope(headers={"Accept-Language": language}))
            assert response.body == language.encode()

    run(test)


def test_concurrent_cold_requests_compute_once() -> None:
    page = Page()

    async def test(cache: AsyncCache) -> None:
        app = AsgiCacheMiddleware(page, cache=cache)
        page.gate = asyncio.Event()
        requests = [asyncio.create_task(call_asgi(app, make_scope())) for _ in range(10)]
        while page.calls == 0:
            await asyncio.sleep(0.001)
        page.gate.set()
        responses = await asyncio.gather(*requests)
        assert [response.body for response in responses] == [b"hello"] * 10
        assert page.calls == 1

    run(test)


def test_stale_if_error_serves_the_stale_page() -> None:
    clock = FakeClock(start=1_700_000_000.0)
    page = Page()
    page.headers = [("Content-Type", "text/plain"), ("Cache-Control", "max-age=10, stale-if-error=100")]

    async def test(cache: AsyncCache) -> None:
        app = AsgiCacheMiddleware(page, cache=cache)
        await call_asgi(app, make_scope())
        clock.advance(20)
        page.status = 503
        page.chunks = [b"down"]
        response = await call_asgi(app, make_scope())
        assert page.calls == 2
        assert response.status == 200
        assert response.body == b"hello"
        assert cache.stats()["stale_serves"] == 1

    run(test, clock=clock)


def test_purge_drops_every_variant() -> None:
    page = Page()

    async def test(cache: AsyncCache) -> None:
        app = AsgiCacheMiddleware(page, cache=cache)
        await call_asgi(app, make_scope("/p"))
        assert await app.purge("http://testserver/p") is True
        await call_asgi(app, make_scope("/p"))
        assert page.calls == 2

    run(test)


def test_pages_are_shared_with_the_wsgi_middleware() -> None:
    location = f"locmem://shared{uuid.uuid4().hex[:8]}"

    def wsgi_page(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"from wsgi"]

    call_app(CacheMiddleware(wsgi_page, cache=cachekit.from_url(location)), make_environ("/shared?q=1"))
    page = Page()

    async def test(cache: AsyncCache) -> None:
        response = await call_asgi(AsgiCacheMiddleware(page, cache=cache), make_scope("/shared?q=1"))
        assert response.body == b"from wsgi"
        assert page.calls == 0

    run(test, location)


def test_pages_using_the_session_are_not_stored() -> None:
    async def counter(scope: dict[str, Any], receive: Any, send: Any) -> None:
        session = scope["session"]
        session["n"] = session.get("n", 0) + 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(session["n"]).encode()})

    async def test(cache: AsyncCache) -> None:
        app = AsgiCacheMiddleware(AsgiSessionMiddleware(counter, SignedCookieStore([SECRET])), cache=cache)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            assert [(await client.get("/")).text for _ in range(3)] == ["1", "2", "3"]

    run(test)


def test_through_httpx_asgi_transport() -> None:
    page = Page()

    async def test(cache: AsyncCache) -> None:
        transport = httpx.ASGITransport(app=AsgiCacheMiddleware(page, cache=cache))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            first, second = await client.get("/x"), await client.get("/x")
        assert first.text == second.text == "hello"
        assert "age" not in first.headers
        assert second.headers["age"] == "0"
        assert page.calls == 1

    run(test)


@pytest.mark.parametrize("scope_type", ["lifespan", "websocket"])
def test_other_scopes_pass_through_untouched(scope_type: str) -> None:
    seen: list[dict[str, Any]] = []
    sent: list[Message] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope)
        await send({"type": f"{scope_type}.message", "value": await receive()})

    async def test(cache: AsyncCache) -> None:
        scope = {"type": scope_type, "path": "/", "headers": []}

        async def receive() -> Message:
            return {"type": "incoming"}

        async def send(message: Message) -> None:
            sent.append(message)

        await AsgiCacheMiddleware(app, cache=cache)(scope, receive, send)
        assert seen[0] is scope
        assert scope == {"type": scope_type, "path": "/", "headers": []}

    run(test)
    assert sent == [{"type": f"{scope_type}.message", "value": {"type": "incoming"}}]


def test_client_gone_mid_body_still_stores_the_produced_page() -> None:
    page = Page()
    page.chunks = [b"a", b"b"]

    async def test(cache: AsyncCache) -> None:
        app = AsgiCacheMiddleware(page, cache=cache)
        messages = 0

        async def failing_send(message: Message) -> None:
            nonlocal messages
            messages += 1
            if messages == 3:
                raise OSError("client disconnected")

        async def receive() -> Message:
            return {"type": "http.disconnect"}

        with pytest.raises(OSError, match="client disconnected"):
            await app(make_scope(), receive, failing_send)
        # The app had produced the whole page before the client got any: stored.
        await call_asgi(app, make_scope())
        assert page.calls == 1

    run(test)


def profile_site(cache: AsyncCache, renders: list[str]) -> Any:
    """``/login?name`` logs in; ``/profile`` is cached by AsgiCacheMiddleware inside the sessions."""

    async def login(scope: dict[str, Any], receive: Any, send: Any) -> None:
        session = scope["session"]
        session["user"] = scope["query_string"].decode()
        session.cycle_key()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    async def profile(scope: dict[str, Any], receive: Any, send: Any) -> None:
        user = scope["session"].get("user", "anonymous")
        renders.append(user)
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": f"Hello {user}".encode()})

    cached_profile = AsgiCacheMiddleware(profile, cache=cache, timeout=60)

    async def router(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await (login if scope["path"] == "/login" else cached_profile)(scope, receive, send)

    return router


@pytest.mark.parametrize("store_kind", ["async", "sync"])
def test_cache_inside_session_middleware_never_serves_one_users_page_to_another(store_kind: str) -> None:
    renders: list[str] = []

    async def test(cache: AsyncCache) -> None:
        location = f"locmem://s{uuid.uuid4().hex[:10]}"
        store: Any = (
            AsyncCacheStore(aio.from_url(location))
            if store_kind == "async"
            else CacheStore(cachekit.from_url(location))
        )
        app = AsgiSessionMiddleware(profile_site(cache, renders), store)
        alice, bob, anonymous = AsgiClient(app), AsgiClient(app), AsgiClient(app)
        await alice.get("/login?alice")
        await bob.get("/login?bob")
        for _ in range(3):
            for client, user in ((alice, "alice"), (bob, "bob"), (anonymous, "anonymous")):
                response = await client.get("/profile")
                assert response.body == f"Hello {user}".encode()
                assert response.header_values("vary") == ["Cookie"]
                if user != "anonymous":
                    assert response.header_values("cache-control") == ["private"]

    run(test)
    assert renders == ["alice", "bob", "anonymous", "alice", "bob", "alice", "bob"]


def test_anonymous_session_pages_are_cached_per_cookie() -> None:
    renders: list[str] = []

    async def test(cache: AsyncCache) -> None:
        app = AsgiSessionMiddleware(profile_site(cache, renders), SignedCookieStore([SECRET]))
        first = await call_asgi(app, make_scope("/profile"))
        served = await call_asgi(app, make_scope("/profile"))
        assert served.body == first.body == b"Hello anonymous"
        assert served.header_values("vary") == ["Cookie"]
        assert served.header("age") == "0"
        for cookie in ("session=forged", "theme=dark", "theme=dark"):
            assert (
                await call_asgi(app, make_scope("/profile", headers={"Cookie": cookie}))
            ).body == first.body

    run(test)
    assert renders == ["anonymous", "anonymous", "anonymous"]


class Article:
    """An ASGI page over data that an editor changes, purging the page, while a render is in flight."""

    def __init__(self) -> None:
        self.text = "v1"
        self.renders = 0
        self.during_render: Callable[[], Awaitable[None]] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.renders += 1
        text = self.text
        edit, self.during_render = self.during_render, None
        if edit is not None:
            await edit()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": text.encode()})


def test_purge_during_a_render_wins() -> None:
    article = Article()

    async def test(cache: AsyncCache) -> None:
        app = AsgiCacheMiddleware(article, cache=cache, timeout=60)

        async def edit() -> None:
            article.text = "v2"
            assert await app.purge("http://testserver/a") is True

        assert (await call_asgi(app, make_scope("/a"))).body == b"v1"
        article.during_render = edit
        refresh = make_scope("/a", headers={"Cache-Control": "no-cache"})
        assert (await call_asgi(app, refresh)).body == b"v1"  # in flight: rendered before the edit
        assert (await call_asgi(app, make_scope("/a"))).body == b"v2"
        assert (await call_asgi(app, make_scope("/a"))).body == b"v2"

    run(test)
    assert article.renders == 3


def test_a_stale_render_never_replaces_one_stored_after_a_purge() -> None:
    article = Article()

    async def test(cache: AsyncCache) -> None:
        app = AsgiCacheMiddleware(article, cache=cache, timeout=60, lock=False)

        async def others() -> None:
            assert (await call_asgi(app, make_scope("/a"))).body == b"v1"
            article.text = "v2"
            assert await app.purge("http://testserver/a") is True
            assert (await call_asgi(app, make_scope("/a"))).body == b"v2"

        article.during_render = others
        assert (await call_asgi(app, make_scope("/a"))).body == b"v1"
        assert (await call_asgi(app, make_scope("/a"))).body == b"v2"

    run(test)
    assert article.renders == 3
