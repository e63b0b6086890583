"""Issue 13: the page cache is safe in every composition, through the WSGI and the ASGI shell.

Each test is named after the numbered behaviour it pins (``test_13_1_...``).
Every one failed on the code before ``cachekit/pages/`` (run against that
commit in a separate worktree) and passes now. Framework tests use the
framework's own pieces: Flask with ``CacheKitSessionInterface`` and with its
default cookie session, werkzeug's ``ProxyFix``, Django's own
``SessionMiddleware`` over ``sessions.contrib.django``, Starlette's
``SessionMiddleware``.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

import pytest

from tests.conftest import FakeClock
from tests.pages.shells import SHELLS
from tests.pages.shells import Shell
from tests.pages.shells import environ_for
from tests.wsgi import Client

NOW = 1_700_000_000.0
StartResponse = Callable[..., Any]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _use(shell: str, app: Any, clock: FakeClock | None, **options: Any) -> Shell:
    return Shell(shell, app, clock=clock, **options)


class Renders:
    """A WSGI app answering ``body_of(environ)`` with ``headers``; counts its renders."""

    def __init__(
        self,
        headers: Iterable[tuple[str, str]] = (),
        status: str | Callable[[int], str] = "200 OK",
        body_of: Callable[[dict[str, Any]], bytes] | None = None,
    ) -> None:
        self.headers = list(headers)
        self.status = status
        self.body_of = body_of or (lambda environ: b"v%d" % self.calls)
        self.calls = 0
        self.fail: BaseException | None = None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        status = self.status(self.calls) if callable(self.status) else self.status
        start_response(status, list(self.headers))
        return [self.body_of(environ)]


# -- 1. Authorization  ----------


@pytest.mark.parametrize(
    "cache_control", ["must-revalidate", "must-revalidate, max-age=60", "proxy-revalidate"]
)
def test_13_1_authorized_must_revalidate_page_is_not_shared(
    shell: str, clock: FakeClock, cache_control: str
) -> None:
    app = Renders(
        [("Cache-Control", cache_control)],
        body_of=lambda environ: ("for " + environ.get("HTTP_AUTHORIZATION", "anonymous")).encode(),
    )
    engine = _use(shell, app, clock)
    try:
        assert engine(environ_for(headers={"Authorization": "Bearer alice"}))[2] == b"for Bearer alice"
        assert engine(environ_for(headers={"Authorization": "Bearer bob"}))[2] == b"for Bearer bob"
        assert engine(environ_for())[2] == b"for anonymous"
    finally:
        engine.close()


def test_13_1_authorized_public_page_is_shared(shell: str, clock: FakeClock) -> None:
    app = Renders([("Cache-Control", "public, max-age=60")])
    engine = _use(shell, app, clock)
    try:
        engine(environ_for(headers={"Authorization": "Bearer alice"}))
        assert engine(environ_for(headers={"Authorization": "Bearer bob"}))[2] == b"v1"
    finally:
        engine.close()


# -- 2. sessions that are not ours  ----------


def test_13_2_cookie_varying_page_is_not_kept_per_cookie(shell: str, clock: FakeClock) -> None:
    """Any session system marks the page ``Vary: Cookie``: a request with cookies is never served a copy."""
    app = Renders([("Vary", "Cookie")], body_of=lambda environ: environ.get("HTTP_COOKIE", "anon").encode())
    engine = _use(shell, app, clock)
    try:
        for _ in range(2):
            assert engine(environ_for(headers={"Cookie": "session=alice"}))[2] == b"session=alice"
        assert app.calls == 2  # the logged-in page was not stored for the old cookie to get back
        assert engine(environ_for())[2] == b"anon"
        assert engine(environ_for())[2] == b"anon"
        assert app.calls == 3  # anonymous pages stay cacheable
    finally:
        engine.close()


def test_13_2_shareable_cookies_keep_pages_shared(shell: str, clock: FakeClock) -> None:
    app = Renders([("Vary", "Cookie")])
    engine = _use(shell, app, clock, shareable_cookies=["lang"])
    try:
        engine(environ_for(headers={"Cookie": "lang=fr"}))
        assert engine(environ_for(headers={"Cookie": "lang=fr"}))[2] == b"v1"
        assert engine(environ_for(headers={"Cookie": "lang=fr; sessionid=x"}))[2] == b"v2"
    finally:
        engine.close()


def _flask_site(interface: Any | None) -> Any:
    flask = pytest.importorskip("flask")
    app = flask.Flask("site")
    app.secret_key = "test-secret-key-0123456789-0123456789"
    if interface is not None:
        app.session_interface = interface

    @app.get("/login")
    def login() -> str:
        flask.session["user"] = "alice"
        return "logged in"

    @app.get("/logout")
    def logout() -> str:
        flask.session.clear()
        return "logged out"

    @app.get("/me")
    def me() -> str:
        app.config["RENDERS"] = app.config.get("RENDERS", 0) + 1
        return "user=" + str(flask.session.get("user", "anonymous"))

    return app


@pytest.mark.parametrize("session_system", ["cachekit-interface", "flask-cookie-session"])
def test_13_2_flask_logout_is_final_behind_cache_middleware(session_system: str) -> None:
    from cachekit import Cache
    from cachekit.backends.locmem import LocMemBackend
    from middleware import CacheMiddleware
    from sessions.contrib.flask import CacheKitSessionInterface
    from sessions.stores import CacheStore

    interface = None
    if session_system == "cachekit-interface":
        interface = CacheKitSessionInterface(
            CacheStore(Cache(LocMemBackend(f"flask-sessions-{session_system}")))
        )
    site = _flask_site(interface)
    pages = Cache(LocMemBackend(f"flask-pages-{session_system}"))
    try:
        client = Client(CacheMiddleware(site.wsgi_app, cache=pages, timeout=60))
        assert client.get("/me")[2] == b"user=anonymous"
        client.get("/login")
        old_cookies = dict(client.cookies)
        renders = site.config["RENDERS"]
        assert client.get("/me")[2] == b"user=alice"
        assert client.get("/me")[2] == b"user=alice"
        assert site.config["RENDERS"] == renders + 2  # a logged-in page is not stored, per cookie or not
        client.get("/logout")
        client.cookies = old_cookies  # a stolen or stale cookie, or a browser that kept it
        body = client.get("/me")[2]
        if session_system == "cachekit-interface":
            assert body == b"user=anonymous"  # the stored session is gone
        else:
            assert body == b"user=alice"  # a signed cookie stays valid: rendered, not from the cache
        stranger = Client(CacheMiddleware(site.wsgi_app, cache=pages, timeout=60))
        assert stranger.get("/me")[2] == b"user=anonymous"
    finally:
        pages.clear()


def test_13_2_flask_interface_says_when_the_session_is_anonymous() -> None:
    """Our Flask interface tells the engine: an anonymous session's page is kept per cookie."""
    from cachekit import Cache
    from cachekit.backends.locmem import LocMemBackend
    from middleware import CacheMiddleware
    from sessions.contrib.flask import CacheKitSessionInterface
    from sessions.stores import CacheStore

    site = _flask_site(CacheKitSessionInterface(CacheStore(Cache(LocMemBackend("flask-anon-sessions")))))
    pages = Cache(LocMemBackend("flask-anon-pages"))
    try:
        client = Client(CacheMiddleware(site.wsgi_app, cache=pages, timeout=60))
        client.cookies = {"session": "an-id-the-store-does-not-hold"}
        for _ in range(3):
            assert client.get("/me")[2] == b"user=anonymous"
        assert site.config["RENDERS"] == 1
    finally:
        pages.clear()


def test_13_2_django_own_session_middleware_logout_is_final() -> None:
    pytest.importorskip("django")
    from tests.django_settings import configure_django

    configure_django()
    from django.core.wsgi import get_wsgi_application

    from cachekit import Cache
    from cachekit.backends.locmem import LocMemBackend
    from middleware import CacheMiddleware

    pages = Cache(LocMemBackend("django-pages-13-2"))
    try:
        site = CacheMiddleware(get_wsgi_application(), cache=pages, timeout=60)
        client = Client(site)
        client.get("/login?user=ada")
        old_cookies = dict(client.cookies)
        assert b'"user": "ada"' in client.get("/show")[2]
        assert b'"user": "ada"' in client.get("/show")[2]
        client.get("/logout")
        client.cookies = old_cookies
        assert b'"user"' not in client.get("/show")[2]
        assert b'"user"' not in Client(site).get("/show")[2]
    finally:
        pages.clear()


def test_13_2_our_django_session_middleware_says_when_the_session_is_anonymous() -> None:
    """With ``sessions.contrib.django.SessionMiddleware`` anonymous pages stay cacheable, per cookie."""
    pytest.importorskip("django")
    from tests.django_settings import configure_django

    configure_django()
    from django.core.wsgi import get_wsgi_application
    from django.test import override_settings

    from cachekit import Cache
    from cachekit.backends.locmem import LocMemBackend
    from middleware import CacheMiddleware
    from tests.contrib import django_urls

    pages = Cache(LocMemBackend("django-anon-pages-13-2"))
    renders: list[int] = []
    show = django_urls.show

    def counting(request: Any) -> Any:
        renders.append(1)
        return show(request)

    try:
        with override_settings(MIDDLEWARE=["sessions.contrib.django.SessionMiddleware"]):
            django_urls.urlpatterns[1].callback = counting
            site = CacheMiddleware(get_wsgi_application(), cache=pages, timeout=60)
            client = Client(site)
            client.cookies = {"csrftoken": "a-cookie-of-no-user"}  # not a session: anonymous
            for _ in range(3):
                assert b'"data": {}' in client.get("/show")[2]
            assert len(renders) == 1
            client.cookies = {}
            client.get("/login?user=ada")
            for _ in range(2):
                assert b'"user": "ada"' in client.get("/show")[2]
            assert len(renders) == 3  # a stored session's page is never stored
    finally:
        django_urls.urlpatterns[1].callback = show
        pages.clear()


def test_13_2_starlette_session_middleware_never_shares_a_logged_in_page() -> None:
    pytest.importorskip("starlette")
    pytest.importorskip("itsdangerous")
    import asyncio

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.sessions import SessionMiddleware
    from starlette.requests import Request as StarletteRequest
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from cachekit import aio
    from middleware import AsgiCacheMiddleware
    from tests.asgi import AsgiClient

    async def login(request: StarletteRequest) -> PlainTextResponse:
        request.session["user"] = "alice"
        return PlainTextResponse("logged in")

    async def logout(request: StarletteRequest) -> PlainTextResponse:
        request.session.clear()
        return PlainTextResponse("logged out")

    renders: list[str] = []

    async def me(request: StarletteRequest) -> PlainTextResponse:
        user = str(request.session.get("user", "anonymous"))
        renders.append(user)
        return PlainTextResponse("user=" + user)

    async def main() -> None:
        cache = aio.from_url("locmem://starlette-13-2")
        routes = [Route("/login", login), Route("/logout", logout), Route("/me", me)]
        # The page cache inside Starlette's SessionMiddleware: it never sees the Set-Cookie.
        inner = Starlette(routes=routes)
        cached = AsgiCacheMiddleware(inner, cache=cache, timeout=60)
        site = Starlette(routes=[], middleware=[Middleware(SessionMiddleware, secret_key="k" * 32)])
        site.router.mount("/", cached)
        try:
            client = AsgiClient(site)
            await client.get("/login")
            assert (await client.get("/me")).body == b"user=alice"
            assert (await AsgiClient(site).get("/me")).body == b"user=anonymous"
            assert (await client.get("/me")).body == b"user=alice"
            assert renders.count("alice") == 2  # never stored, not even per cookie
            assert (await AsgiClient(site).get("/me")).body == b"user=anonymous"
            assert renders.count("anonymous") == 1  # the anonymous page is
        finally:
            await cache.clear()
            await cache.close()

    asyncio.run(main())


# -- 3. proxies  ----------


def _link_app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    host = environ.get("HTTP_HOST", "")
    prefix = environ.get("SCRIPT_NAME", "")
    start_response("200 OK", [("Content-Type", "text/html")])
    return [f'<a href="{environ["wsgi.url_scheme"]}://{host}{prefix}/next">next</a>'.encode()]


def test_13_3_flask_proxyfix_inside_the_cache_cannot_poison_it() -> None:
    pytest.importorskip("flask")
    from werkzeug.middleware.proxy_fix import ProxyFix

    from cachekit import Cache
    from cachekit.backends.locmem import LocMemBackend
    from middleware import CacheMiddleware

    pages = Cache(LocMemBackend("proxyfix-13-3"))
    try:
        app = CacheMiddleware(ProxyFix(_link_app, x_host=1, x_proto=1), cache=pages, timeout=60)
        Client(app).get("/", headers={"X-Forwarded-Host": "evil.example"})
        body = Client(app).get("/")[2]
        assert b"evil.example" not in body
    finally:
        pages.clear()


def test_13_3_trusted_forwarded_headers_are_keyed(shell: str, clock: FakeClock) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [])
        return [environ.get("HTTP_X_FORWARDED_HOST", "-").encode()]

    engine = _use(shell, app, clock, trusted_forwarded=["x-forwarded-host"])
    try:
        assert engine(environ_for(headers={"X-Forwarded-Host": "a.example"}))[2] == b"a.example"
        assert engine(environ_for(headers={"X-Forwarded-Host": "b.example"}))[2] == b"b.example"
        assert engine(environ_for())[2] == b"-"
        assert engine(environ_for(headers={"X-Forwarded-Host": "a.example"}))[2] == b"a.example"
    finally:
        engine.close()


@pytest.mark.parametrize("name", ["X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Prefix", "Forwarded"])
def test_13_3_untrusted_forwarded_headers_bypass(shell: str, clock: FakeClock, name: str) -> None:
    app = Renders()
    engine = _use(shell, app, clock)
    try:
        engine(environ_for(headers={name: "evil.example"}))
        assert engine(environ_for())[2] == b"v2"  # nothing was stored from the forwarded request
        assert engine(environ_for(headers={name: "evil.example"}))[2] == b"v3"  # nor served to one
    finally:
        engine.close()


def test_13_3_asgi_root_path_from_an_outer_middleware_is_keyed() -> None:
    import asyncio

    from cachekit import aio
    from middleware import AsgiCacheMiddleware
    from tests.asgi import call_asgi
    from tests.asgi import make_scope

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = f'<a href="{scope["root_path"]}/next">'.encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async def main() -> None:
        cache = aio.from_url("locmem://root-path-13-3")
        cached = AsgiCacheMiddleware(app, cache=cache, timeout=60)

        async def proxy_prefix(scope: dict[str, Any], receive: Any, send: Any) -> None:
            # Like a proxy-prefix middleware: root_path from a header it consumed.
            prefix = dict(scope["headers"]).get(b"x-script-name", b"").decode()
            scope = dict(
                scope, root_path=prefix, headers=[h for h in scope["headers"] if h[0] != b"x-script-name"]
            )
            await cached(scope, receive, send)

        try:
            await call_asgi(proxy_prefix, make_scope("/", headers={"X-Script-Name": "/evil"}))
            assert (await call_asgi(proxy_prefix, make_scope("/"))).body == b'<a href="/next">'
        finally:
            await cache.clear()
            await cache.close()

    asyncio.run(main())


# -- 4. hostile directives  ----------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("max-age=\u00b2", id="superscript-two"),
        pytest.param("max-age=" + "9" * 5000, id="5000-digits"),
        pytest.param("max-age=" + "\u0661\u0662".encode().decode("latin-1"), id="arabic-indic-digits"),
        pytest.param("min-fresh=\u00b2, max-stale=\u00b9", id="other-directives"),
    ],
)
def test_13_4_hostile_request_directives_are_never_a_500(shell: str, clock: FakeClock, value: str) -> None:
    app = Renders([("Cache-Control", "max-age=60")])
    engine = _use(shell, app, clock)
    try:
        engine(environ_for())
        status, _, body = engine(environ_for(headers={"Cache-Control": value}))
        assert (status[:3], body) == ("200", b"v1")  # junk is ignored; a huge max-age is 2**31
    finally:
        engine.close()


@pytest.mark.parametrize("value", ["max-age=\u00b2", "s-maxage=" + "7" * 5000])
def test_13_4_hostile_response_directives_are_never_a_500(shell: str, clock: FakeClock, value: str) -> None:
    app = Renders([("Cache-Control", value), ("Content-Length", "\u00b2")])
    engine = _use(shell, app, clock)
    try:
        assert engine(environ_for())[0][:3] == "200"
        assert engine(environ_for())[0][:3] == "200"
    finally:
        engine.close()


# -- 5. never stale against the response's will  ----------


@pytest.mark.parametrize("directive", ["must-revalidate", "proxy-revalidate", "s-maxage=10"])
def test_13_5_no_stale_if_error_against_revalidate(shell: str, clock: FakeClock, directive: str) -> None:
    app = Renders(
        [("Cache-Control", f"max-age=10, {directive}")],
        status=lambda n: "200 OK" if n == 1 else "503 Service Unavailable",
    )
    engine = _use(shell, app, clock, stale_if_error=100, stale_while_revalidate=100)
    try:
        engine(environ_for())
        clock.advance(50)
        status, _, body = engine(environ_for())
        assert (status[:3], body) == ("503", b"v2")
    finally:
        engine.close()


def test_13_5_origin_failure_on_a_must_revalidate_page_is_a_504(shell: str, clock: FakeClock) -> None:
    app = Renders([("Cache-Control", "max-age=10, must-revalidate")])
    engine = _use(shell, app, clock, stale_if_error=100)
    try:
        engine(environ_for())
        clock.advance(50)
        app.fail = ConnectionError("origin down")
        assert engine(environ_for())[0] == "504 Gateway Timeout"
    finally:
        engine.close()


def test_13_5_stale_if_error_still_serves_an_ordinary_page(shell: str, clock: FakeClock) -> None:
    app = Renders(
        [("Cache-Control", "max-age=10")], status=lambda n: "200 OK" if n == 1 else "503 Service Unavailable"
    )
    engine = _use(shell, app, clock, stale_if_error=100)
    try:
        engine(environ_for())
        clock.advance(50)
        assert engine(environ_for())[2] == b"v1"
    finally:
        engine.close()


# -- 6. unsafe methods invalidate  ----------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_13_6_unsafe_method_invalidates_the_target(shell: str, clock: FakeClock, method: str) -> None:
    app = Renders()
    engine = _use(shell, app, clock)
    try:
        engine(environ_for("/item"))
        assert engine(environ_for("/item"))[2] == b"v1"
        engine(environ_for("/item", method=method))
        assert engine(environ_for("/item"))[2] == b"v3"
    finally:
        engine.close()


def test_13_6_same_origin_location_is_invalidated_not_others(shell: str, clock: FakeClock) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        if environ["REQUEST_METHOD"] == "POST":
            start_response(
                "303 See Other",
                [("Location", "/list"), ("Content-Location", "http://other.example/list2")],
            )
            return [b""]
        counts[environ["PATH_INFO"]] = counts.get(environ["PATH_INFO"], 0) + 1
        start_response("200 OK", [])
        return [b"%d" % counts[environ["PATH_INFO"]]]

    counts: dict[str, int] = {}
    engine = _use(shell, app, clock)
    try:
        engine(environ_for("/list"))
        engine(environ_for("/list2"))
        engine(environ_for("/new", method="POST"))
        assert engine(environ_for("/list"))[2] == b"2"
        assert engine(environ_for("/list2"))[2] == b"1"  # other.example is another origin
    finally:
        engine.close()


def test_13_6_failed_unsafe_method_keeps_the_page(shell: str, clock: FakeClock) -> None:
    app = Renders(status=lambda n: "200 OK" if n == 1 else "409 Conflict")
    engine = _use(shell, app, clock)
    try:
        engine(environ_for("/item"))
        engine(environ_for("/item", method="POST"))
        assert engine(environ_for("/item"))[2] == b"v1"
    finally:
        engine.close()


# -- 7. error pages  ----------


@pytest.mark.parametrize(
    "status",
    ["404 Not Found", "405 Method Not Allowed", "410 Gone", "414 URI Too Long", "501 Not Implemented"],
)
def test_13_7_error_pages_get_no_default_lifetime(shell: str, clock: FakeClock, status: str) -> None:
    app = Renders(status=status)
    engine = _use(shell, app, clock)
    try:
        engine(environ_for())
        assert engine(environ_for())[2] == b"v2"
    finally:
        engine.close()


# -- 8. locks no client can hold  ----------


def test_13_8_a_request_no_store_does_not_switch_the_lock_off(shell: str, clock: FakeClock) -> None:
    app = Renders([("Cache-Control", "max-age=60")])
    engine = _use(shell, app, clock)
    try:
        engine(environ_for(headers={"Cache-Control": "no-store"}))
        nolock = [key for key in _keys(engine) if "nolock" in key]
        assert nolock == []
    finally:
        engine.close()


@pytest.mark.parametrize("status", ["206 Partial Content", "304 Not Modified"])
def test_13_8_a_206_or_304_does_not_switch_the_lock_off(shell: str, clock: FakeClock, status: str) -> None:
    app = Renders([("Cache-Control", "max-age=60")], status=status)
    engine = _use(shell, app, clock)
    try:
        engine(environ_for())
        assert [key for key in _keys(engine) if "nolock" in key] == []
    finally:
        engine.close()


def test_13_8_the_responses_own_no_store_earns_the_shortcut(shell: str, clock: FakeClock) -> None:
    app = Renders([("Cache-Control", "no-store")])
    engine = _use(shell, app, clock)
    try:
        engine(environ_for())
        assert len([key for key in _keys(engine) if "nolock" in key]) == 1
    finally:
        engine.close()


def _keys(engine: Shell) -> list[str]:
    from cachekit.backends.locmem import _shared_store

    return list(_shared_store(engine.name).data)


# -- 10. no code from the cache server  ----------

PWNED: list[str] = []


def pwned(value: str) -> str:
    PWNED.append(value)
    return value


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (pwned, ("code ran in the worker",))


@pytest.mark.parametrize("serializer", ["pickle", "json"])
def test_13_10_a_writer_to_redis_cannot_run_code_in_a_worker(
    shell: str, redis_url: str, serializer: str
) -> None:
    app = Renders([("Cache-Control", "max-age=60")])
    engine = _use(
        shell,
        app,
        None,
        url=redis_url,
        cache_options={"serializer": serializer} if serializer == "json" else {},
    )
    PWNED.clear()
    try:
        engine(environ_for())
        assert engine(environ_for())[2] == b"v1"  # stored whatever the serializer
        import redis

        client = redis.Redis.from_url(redis_url)
        keys = [key for key in client.keys(f"{engine.name}:*")]
        assert keys, "nothing stored"
        for key in keys:  # whoever can write to the cache server overwrites every page key
            client.set(key, pickle.dumps(_Evil()))
        status, _, body = engine(environ_for())
        assert PWNED == []
        assert (status[:3], body) == ("200", b"v2")  # unknown layout: a miss, rendered again
    finally:
        engine.close()


# -- 11. variants per URL are capped ----------


@pytest.mark.parametrize("backend", ["locmem", "redis"])
def test_13_11_junk_query_strings_are_served_uncached_past_the_cap(
    shell: str, clock: FakeClock, backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_url") if backend == "redis" else None
    app = Renders([("Cache-Control", "max-age=60")])
    engine = _use(shell, app, None if url else clock, url=url, max_variants=3)
    try:
        for n in range(6):
            engine(environ_for(query=f"junk={n}"))
        calls = app.calls
        for n in range(6):
            engine(environ_for(query=f"junk={n}"))
        assert app.calls - calls == 3  # junk 0-2 were kept; 3-5 render every time
        assert engine(environ_for(query="junk=0"))[2] == b"v1"
    finally:
        engine.close()
