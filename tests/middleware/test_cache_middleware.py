"""CacheMiddleware: the same engine as ``@cache_page`` around a whole app, with real sessions."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest

from cachekit import Cache
from cachekit import cache_page
from cachekit._wsgi import SESSION_ENVIRON_KEY
from cachekit.aio_views import SESSION_SCOPE_KEY
from cachekit.backends.locmem import LocMemBackend
from middleware import CacheMiddleware
from middleware import SessionMiddleware
from middleware.asgi_sessions import SCOPE_KEY
from middleware.sessions import ENVIRON_KEY
from sessions import CacheStore
from sessions.session import Session
from tests.conftest import BackendHarness
from tests.wsgi import Client
from tests.wsgi import call_app
from tests.wsgi import header_values
from tests.wsgi import make_environ

StartResponse = Callable[..., Any]


@pytest.fixture
def cache(request: pytest.FixtureRequest) -> Iterator[Cache]:
    cache = Cache(LocMemBackend(f"mw-{request.node.nodeid}"))
    yield cache
    cache.clear()


class Site:
    """A small app: ``/`` is public, ``/me`` reads the session, ``/login`` writes it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        path = environ["PATH_INFO"]
        self.calls.append(path)
        if path == "/login":
            session = environ["cachekit.session"]
            session["user"] = environ["QUERY_STRING"].partition("=")[2]
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"logged in"]
        if path in ("/me", "/me-public"):
            user = environ["cachekit.session"].get("user", "anonymous")
            headers = [("Content-Type", "text/plain")]
            if path == "/me-public":  # the app opts this per-user page into shared caching
                headers.append(("Cache-Control", "public"))
            start_response("200 OK", headers)
            return [f"hello {user}".encode()]
        if environ["REQUEST_METHOD"] == "POST":
            start_response("201 Created", [])
            return [b"created"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"home %d" % len(self.calls)]


def test_public_page_is_cached(cache: Cache) -> None:
    site = Site()
    app = CacheMiddleware(site, cache=cache, timeout=60)
    assert call_app(app, make_environ("/"))[2] == b"home 1"
    status, headers, body = call_app(app, make_environ("/"))
    assert (status, body) == ("200 OK", b"home 1")
    assert header_values(headers, "Cache-Control") == ["max-age=60"]
    assert site.calls == ["/"]


def test_post_passes_through(cache: Cache) -> None:
    site = Site()
    app = CacheMiddleware(site, cache=cache, timeout=60)
    for _ in range(2):
        assert call_app(app, make_environ("/", "POST")) == ("201 Created", [], b"created")
    assert site.calls == ["/", "/"]


def nest(site: Site, store: CacheStore, cache: Cache, order: str) -> Callable[..., Any]:
    """Both middleware around ``site``, the page cache outside the sessions or inside them."""
    if order == "cache-outside":
        return CacheMiddleware(SessionMiddleware(site, store), cache=cache, timeout=60)
    return SessionMiddleware(CacheMiddleware(site, cache=cache, timeout=60), store)


ORDERS = ["cache-outside", "cache-inside"]


@pytest.mark.parametrize("order", ORDERS)
def test_logged_in_pages_are_never_stored(cache: Cache, order: str) -> None:
    """A page that read a stored session is private: rendered for each request, never replayed."""
    site = Site()
    store = CacheStore(Cache(LocMemBackend(f"sessions-{id(cache)}")))
    app = nest(site, store, cache, order)
    alice, bob, anonymous = Client(app), Client(app), Client(app)
    alice.get("/login?user=alice")
    bob.get("/login?user=bob")
    for _ in range(3):
        assert alice.get("/me")[2] == b"hello alice"
        status, headers, body = bob.get("/me")
        assert body == b"hello bob"
        assert header_values(headers, "Cache-Control") == ["private"]
        assert anonymous.get("/me")[2] == b"hello anonymous"
    # Alice's and Bob's pages were rendered every time; the anonymous page once.
    assert site.calls.count("/me") == 3 + 3 + 1


@pytest.mark.parametrize("order", ORDERS)
def test_logged_in_users_never_see_each_others_public_page(cache: Cache, order: str) -> None:
    """A per-user page the app marks public is kept per cookie, and variants never cross."""
    site = Site()
    store = CacheStore(Cache(LocMemBackend(f"sessions-public-{id(cache)}")))
    app = nest(site, store, cache, order)
    alice, bob, anonymous = Client(app), Client(app), Client(app)
    alice.get("/login?user=alice")
    bob.get("/login?user=bob")
    assert alice.cookies != bob.cookies
    for _ in range(3):
        assert alice.get("/me-public")[2] == b"hello alice"
        assert bob.get("/me-public")[2] == b"hello bob"
        assert anonymous.get("/me-public")[2] == b"hello anonymous"
    # Each user's page was rendered once and then served from their own variant.
    assert site.calls.count("/me-public") == 3


@pytest.mark.parametrize("order", ORDERS)
def test_session_cookie_response_is_not_replayed(cache: Cache, order: str) -> None:
    site = Site()
    store = CacheStore(Cache(LocMemBackend(f"sessions2-{id(cache)}")))
    app = nest(site, store, cache, order)
    first, second = Client(app), Client(app)
    first.get("/login?user=alice")
    status, headers, body = second.get("/login?user=mallory")
    assert header_values(headers, "Set-Cookie")
    assert second.cookies != first.cookies
    assert site.calls == ["/login", "/login"]


def profile_app(page_cache: Cache, renders: list[str]) -> Callable[..., Any]:
    """``/login?name`` logs in; ``/profile`` is a ``@cache_page`` view reading the session."""

    def login(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        session = environ["cachekit.session"]
        session["user"] = environ["QUERY_STRING"]
        session.cycle_key()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    @cache_page(60, cache=page_cache)
    def profile(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        user = environ["cachekit.session"].get("user", "anonymous")
        renders.append(user)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"Hello {user}, your balance is ...".encode()]

    def router(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        return (login if environ["PATH_INFO"] == "/login" else profile)(environ, start_response)

    return router


def test_cache_page_inside_session_middleware_never_serves_one_users_page_to_another(
    backend_harness: BackendHarness,
) -> None:
    """``@cache_page`` sees the response before SessionMiddleware adds ``Vary``/``private``."""
    page_cache = Cache(backend_harness.backend, key_prefix="profile")
    store = CacheStore(Cache(LocMemBackend(f"profile-sessions-{backend_harness.name}")))
    renders: list[str] = []
    app = SessionMiddleware(profile_app(page_cache, renders), store)
    alice, bob, anonymous = Client(app), Client(app), Client(app)
    alice.get("/login?alice")
    bob.get("/login?bob")
    for _ in range(3):
        for client, user in ((alice, "alice"), (bob, "bob"), (anonymous, "anonymous")):
            status, headers, body = client.get("/profile")
            assert body == f"Hello {user}, your balance is ...".encode()
            assert header_values(headers, "Vary") == ["Cookie"]
            if user != "anonymous":
                assert header_values(headers, "Cache-Control") == ["private"]
    # The logged-in pages were rendered each time; the anonymous one once, then served per cookie.
    assert renders == ["alice", "bob", "anonymous", "alice", "bob", "alice", "bob"]


def test_anonymous_session_pages_are_cached_per_cookie(cache: Cache) -> None:
    store = CacheStore(Cache(LocMemBackend(f"anonymous-sessions-{id(cache)}")))
    renders: list[str] = []
    app = SessionMiddleware(profile_app(cache, renders), store)
    first = call_app(app, make_environ("/profile"))
    served = call_app(app, make_environ("/profile"))
    assert served[2] == first[2] == b"Hello anonymous, your balance is ..."
    assert header_values(served[1], "Vary") == ["Cookie"]
    assert header_values(served[1], "Age") == ["0"]
    assert header_values(served[1], "Set-Cookie") == []
    # Another Cookie header (an unknown session id, another site cookie) is another variant.
    for cookie in ("session=forged", "theme=dark", "theme=dark"):
        assert call_app(app, make_environ("/profile", headers={"Cookie": cookie}))[2] == first[2]
    assert renders == ["anonymous", "anonymous", "anonymous"]


def test_the_page_cache_reads_sessions_where_and_as_the_middleware_keeps_them() -> None:
    """cachekit may not import sessions: it names the keys and duck-types the session itself."""
    assert ENVIRON_KEY == SESSION_ENVIRON_KEY
    assert SCOPE_KEY == SESSION_SCOPE_KEY
    for name in ("accessed", "loaded", "is_new", "modified", "flushed"):
        assert hasattr(Session, name), name


def test_purge_through_the_middleware(backend_harness: BackendHarness) -> None:
    site = Site()
    app = CacheMiddleware(site, cache=Cache(backend_harness.backend, key_prefix="mw"), timeout=60)
    call_app(app, make_environ("/"))
    call_app(app, make_environ("/"))
    assert app.purge("http://testserver/") is True
    assert call_app(app, make_environ("/"))[2] == b"home 2"


def test_default_cache_is_caches_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from cachekit.config import caches

    monkeypatch.setenv("CACHEKIT_URL", "locmem://mw-default")
    caches.configure(None)
    try:
        app = CacheMiddleware(Site(), timeout=60)
        call_app(app, make_environ("/"))
        assert app.page_cache.cache is caches["default"]
    finally:
        caches["default"].clear()
        caches.configure(None)
