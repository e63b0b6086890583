"""CacheMiddleware: the same engine as ``@cache_page`` around a whole app, with real sessions."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest

from cachekit import Cache
from cachekit.backends.locmem import LocMemBackend
from middleware import CacheMiddleware
from middleware import SessionMiddleware
from sessions import CacheStore
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


def test_logged_in_pages_are_never_stored(cache: Cache) -> None:
    """A page that read a stored session is private: rendered for each request, never replayed."""
    site = Site()
    store = CacheStore(Cache(LocMemBackend(f"sessions-{id(cache)}")))
    app = CacheMiddleware(SessionMiddleware(site, store), cache=cache, timeout=60)
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


def test_logged_in_users_never_see_each_others_public_page(cache: Cache) -> None:
    """A per-user page the app marks public is kept per cookie, and variants never cross."""
    site = Site()
    store = CacheStore(Cache(LocMemBackend(f"sessions-public-{id(cache)}")))
    app = CacheMiddleware(SessionMiddleware(site, store), cache=cache, timeout=60)
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


def test_session_cookie_response_is_not_replayed(cache: Cache) -> None:
    site = Site()
    store = CacheStore(Cache(LocMemBackend(f"sessions2-{id(cache)}")))
    app = CacheMiddleware(SessionMiddleware(site, store), cache=cache, timeout=60)
    first, second = Client(app), Client(app)
    first.get("/login?user=alice")
    status, headers, body = second.get("/login?user=mallory")
    assert header_values(headers, "Set-Cookie")
    assert second.cookies != first.cookies
    assert site.calls == ["/login", "/login"]


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
