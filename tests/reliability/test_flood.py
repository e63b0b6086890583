"""Floods with the defaults: junk query strings cannot evict sessions or grow memory without bound.

Nothing is configured (no ``CACHES``, no ``CACHEKIT_URL``): the page cache and
the session store both come from the local-memory default, as a new user's app
gets them. Each case is an anonymous client sending GETs with junk query
strings, all of them cacheable. The junk also goes into the path (an app with a
catch-all route answers any path), so each request is a new URL and the
page cache's cap on variants per path does not stop the flood: these tests show
what the byte bound and the sessions' own store do on their own.
"""

from __future__ import annotations

import tracemalloc
from collections import Counter
from collections.abc import Iterable
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import Any

import pytest

from cachekit.backends.locmem import DEFAULT_MAX_BYTES
from cachekit.backends.locmem import LocMemBackend
from cachekit.config import ENV_VAR
from cachekit.config import caches
from middleware.cache import CacheMiddleware
from middleware.sessions import SessionMiddleware
from tests.wsgi import Client

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

JUNK_GETS = 600
BIG_VARIANTS = 200
BIG_PAGE = 512 * 1024
#: Renders per "path?query": a page served from the cache is not rendered again.
RENDERS: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _defaults(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(ENV_VAR, raising=False)
    caches.configure(None)
    for cache in (caches["default"], caches.for_sessions()):
        cache.clear()
    RENDERS.clear()
    yield
    for cache in caches.all():
        cache.clear()
    caches.configure(None)


def _site(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    RENDERS[f"{path}?{environ.get('QUERY_STRING', '')}"] += 1
    if path == "/login":
        environ["cachekit.session"]["user"] = "alice"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Cache-Control", "no-store")])
        return [b"logged in"]
    if path == "/me":
        user = environ["cachekit.session"].get("user", "nobody")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [user.encode()]
    if path.startswith("/big/"):
        # A fresh body per render, as a real page is: no object shared between entries.
        body = environ.get("QUERY_STRING", "").encode().ljust(BIG_PAGE, b".")
        start_response("200 OK", [("Content-Type", "text/plain"), ("Cache-Control", "max-age=300")])
        return [body]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Cache-Control", "max-age=300")])
    return [f"page {environ.get('QUERY_STRING', '')}".encode()]


@pytest.mark.parametrize("order", ["sessions-outside", "cache-outside"])
def test_junk_queries_do_not_evict_a_logged_in_session(order: str) -> None:
    app: Any = (
        SessionMiddleware(CacheMiddleware(_site))
        if order == "sessions-outside"
        else CacheMiddleware(SessionMiddleware(_site))
    )
    alice = Client(app)
    assert alice.get("/login")[0] == "200 OK"
    assert alice.get("/me")[2] == b"alice"
    flood = Client(app)
    for n in range(JUNK_GETS):
        assert flood.get(f"/page/{n}?junk={n}")[0] == "200 OK"
    # The flood did fill the page cache: the last junk page is served from it.
    flood.get(f"/page/{JUNK_GETS - 1}?junk={JUNK_GETS - 1}")
    assert RENDERS[f"/page/{JUNK_GETS - 1}?junk={JUNK_GETS - 1}"] == 1
    assert alice.get("/me")[2] == b"alice"


def test_default_local_memory_has_a_byte_bound() -> None:
    backend = caches["default"].backend
    assert isinstance(backend, LocMemBackend)
    assert backend.max_bytes == DEFAULT_MAX_BYTES
    sessions_backend = caches.for_sessions().backend
    assert isinstance(sessions_backend, LocMemBackend)
    assert sessions_backend.location != backend.location


@pytest.mark.parametrize("one_path", [False, True], ids=["distinct-paths", "one-path"])
def test_junk_variants_of_a_big_page_stay_under_the_byte_bound(one_path: bool) -> None:
    app = CacheMiddleware(_site)
    client = Client(app)
    backend = caches["default"].backend
    assert isinstance(backend, LocMemBackend)
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        for n in range(BIG_VARIANTS):
            status, _headers, body = client.get(f"/big/{0 if one_path else n}?junk={n}")
            assert status == "200 OK"
            assert len(body) == BIG_PAGE
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    grown = held - start
    unbounded = BIG_VARIANTS * BIG_PAGE  # 100 MiB: what the flood holds with no bound
    # The locmem count and the memory Python really allocated both stay under the bound
    # (plus 4 MiB of slack for the entries' bookkeeping and the last response in flight).
    assert backend._store.size <= DEFAULT_MAX_BYTES
    assert grown <= DEFAULT_MAX_BYTES + 4 * 1024 * 1024, (grown, unbounded)
    if not one_path:
        # ... and the cache did store pages (the bound, not a refusal, keeps it small).
        # (On one path, which variants stay depends on the per-path cap as well.)
        url = f"/big/{BIG_VARIANTS - 1}?junk={BIG_VARIANTS - 1}"
        client.get(url)
        assert RENDERS[url] == 1
