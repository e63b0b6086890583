"""``@cache_page`` and the page-cache engine: privacy, streaming, closing, stale pages, tags, purge."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from typing import Any

import pytest

from cachekit import Cache
from cachekit.backends.locmem import LocMemBackend
from cachekit.views import PageCache
from cachekit.views import cache_page
from cachekit.views import purge
from tests.conftest import BackendHarness
from tests.conftest import FakeClock
from tests.wsgi import call_app
from tests.wsgi import header_values
from tests.wsgi import make_environ

StartResponse = Callable[..., Any]
URL = "http://testserver/page"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def cache(clock: FakeClock, request: pytest.FixtureRequest) -> Iterator[Cache]:
    cache = Cache(LocMemBackend(f"views-{request.node.nodeid}", clock=clock), clock=clock)
    yield cache
    cache.clear()


class ClosingBody:
    """A response iterable that records whether it was closed and how far it was read."""

    def __init__(self, chunks: Iterable[bytes], *, fail_after: int | None = None) -> None:
        self.chunks = list(chunks)
        self.fail_after = fail_after
        self.closed = False
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            if self.fail_after is not None and self.sent >= self.fail_after:
                raise RuntimeError("the body broke")
            self.sent += 1
            yield chunk

    def close(self) -> None:
        self.closed = True


def test_cache_page_on_a_function(cache: Cache) -> None:
    calls: list[int] = []

    @cache_page(60, cache=cache)
    def view(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        calls.append(1)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello ", b"world"]

    first = call_app(view, make_environ("/page"))
    second = call_app(view, make_environ("/page"))
    assert first[2] == second[2] == b"hello world"
    assert len(calls) == 1
    assert view.__name__ == "view"
    assert header_values(second[1], "Age") == ["0"]


def test_cache_page_on_a_method(cache: Cache) -> None:
    class Site:
        def __init__(self) -> None:
            self.calls = 0

        @cache_page(60, cache=cache)
        def page(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
            self.calls += 1
            start_response("200 OK", [])
            return [b"site %d" % self.calls]

    site = Site()
    assert call_app(site.page, make_environ())[2] == b"site 1"
    assert call_app(site.page, make_environ())[2] == b"site 1"
    assert site.calls == 1


def session_view(calls: list[str]) -> Callable[..., list[bytes]]:
    """A page that reads the session from the cookie, as SessionMiddleware marks it: Vary: Cookie."""

    def view(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        user = environ.get("HTTP_COOKIE", "anonymous")
        calls.append(user)
        start_response("200 OK", [("Content-Type", "text/html"), ("Vary", "Cookie")])
        return [f"<p>private page of {user}</p>".encode()]

    return view


def test_two_users_never_see_each_others_page(cache: Cache) -> None:
    calls: list[str] = []
    app = cache_page(60, cache=cache)(session_view(calls))
    alice = make_environ("/account", headers={"Cookie": "sessionid=alice"})
    bob = make_environ("/account", headers={"Cookie": "sessionid=bob"})
    for _ in range(3):
        assert call_app(app, dict(alice))[2] == b"<p>private page of sessionid=alice</p>"
        assert call_app(app, dict(bob))[2] == b"<p>private page of sessionid=bob</p>"
    for _ in range(2):
        assert call_app(app, make_environ("/account"))[2] == b"<p>private page of anonymous</p>"
    # A page that varies on Cookie is shared only with requests carrying no cookie:
    # each logged-in request renders (a per-Cookie copy would outlive a logout).
    assert sorted(calls) == ["anonymous"] + ["sessionid=alice"] * 3 + ["sessionid=bob"] * 3


def test_a_response_that_sets_a_cookie_is_never_served_to_another_client(cache: Cache) -> None:
    issued: list[str] = []

    @cache_page(60, cache=cache)
    def login(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        token = f"token{len(issued)}"
        issued.append(token)
        start_response("200 OK", [("Set-Cookie", f"sid={token}; HttpOnly")])
        return [f"welcome {token}".encode()]

    first = call_app(login, make_environ("/login"))
    second = call_app(login, make_environ("/login"))
    assert header_values(first[1], "Set-Cookie") == ["sid=token0; HttpOnly"]
    assert header_values(second[1], "Set-Cookie") == ["sid=token1; HttpOnly"]
    assert second[2] == b"welcome token1"


def test_uncached_response_passes_through_untouched(cache: Cache) -> None:
    body = ClosingBody([b"a", b"b"])
    headers = [("Set-Cookie", "x=1"), ("X-Odd", "  spaced  "), ("content-type", "text/x")]
    seen: list[Any] = []

    def app(environ: dict[str, Any], start_response: StartResponse) -> ClosingBody:
        start_response("200 OK", headers)
        return body

    def start_response(status: str, got: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen.append((status, got))
        return lambda data: None

    result = PageCache(60, cache=cache)(app, make_environ(), start_response)
    assert result is body  # the app's own iterable: nothing wraps it
    assert seen == [("200 OK", headers)]
    assert seen[0][1] is headers


def test_stored_miss_is_sent_byte_for_byte(cache: Cache) -> None:
    headers = [("Content-Type", "text/plain"), ("X-Custom", "a,b")]

    def app(environ: dict[str, Any], start_response: StartResponse) -> ClosingBody:
        start_response("200 OK", headers)
        return ClosingBody([b"chunk1", b"", b"chunk2"])

    status, got, body = call_app(_bind(app, cache), make_environ())
    assert (status, got, body) == ("200 OK", headers, b"chunk1chunk2")


def _bind(app: Callable[..., Any], cache: Cache, **options: Any) -> Callable[..., Iterable[bytes]]:
    engine = PageCache(60, cache=cache, **options)

    def wrapped(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return engine(app, environ, start_response)

    return wrapped


@pytest.mark.parametrize(
    ("status", "fail_after", "stop_after"),
    [
        pytest.param("200 OK", None, None, id="stored"),
        pytest.param("500 Internal Server Error", None, None, id="not-stored"),
        pytest.param("200 OK", 1, None, id="body-raises"),
        pytest.param("200 OK", None, 1, id="client-went-away"),
    ],
)
def test_the_apps_iterable_is_always_closed(
    cache: Cache, status: str, fail_after: int | None, stop_after: int | None
) -> None:
    bodies: list[ClosingBody] = []

    def app(environ: dict[str, Any], start_response: StartResponse) -> ClosingBody:
        start_response(status, [])
        bodies.append(ClosingBody([b"one", b"two"], fail_after=None if bodies else fail_after))
        return bodies[-1]

    wrapped = _bind(app, cache)
    result = wrapped(make_environ(), lambda *a: lambda data: None)
    iterator = iter(result)
    try:
        for count, _chunk in enumerate(iterator, 1):
            if stop_after == count:
                break
    except RuntimeError:
        pass
    finally:
        result.close()  # type: ignore[attr-defined]
    assert bodies[0].closed
    # A complete, cacheable body is stored once the app produced it, whether or not
    # the client read it all: a second request calls the app again otherwise.
    call_app(wrapped, make_environ())
    assert len(bodies) == (1 if (status, fail_after) == ("200 OK", None) else 2)


@pytest.mark.parametrize(
    ("cache_control", "read_ahead"),
    [
        pytest.param("max-age=60", [0, 1, 2, 3, 4], id="stored-read-whole-first"),
        pytest.param("no-store", [0], id="not-stored-streams"),
    ],
)
def test_a_storable_body_is_produced_before_it_is_sent(
    cache: Cache, cache_control: str, read_ahead: list[int]
) -> None:
    produced: list[int] = []

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Cache-Control", cache_control)])
        for n in range(5):
            produced.append(n)
            yield b"x" * 100

    result = _bind(app, cache)(make_environ(), lambda *a: lambda data: None)
    iterator = iter(result)
    assert next(iterator) == b"x" * 100
    # Stored: read from the app (up to max_body_size) before the client gets it, so the
    # lock is released when the app is done, not when the client is. Not stored: streamed.
    assert produced == read_ahead
    rest = list(iterator)
    result.close()  # type: ignore[attr-defined]
    assert len(rest) == 4


def test_body_over_the_limit_is_served_whole_but_not_stored(cache: Cache) -> None:
    calls: list[int] = []

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        calls.append(1)
        start_response("200 OK", [])
        for _ in range(10):
            yield b"y" * 1000

    wrapped = _bind(app, cache, max_body_size=4096)
    assert call_app(wrapped, make_environ())[2] == b"y" * 10_000
    assert call_app(wrapped, make_environ())[2] == b"y" * 10_000
    assert len(calls) == 2


def test_content_length_over_the_limit_is_not_wrapped(cache: Cache) -> None:
    body = ClosingBody([b"z" * 10])

    def app(environ: dict[str, Any], start_response: StartResponse) -> ClosingBody:
        start_response("200 OK", [("Content-Length", "10")])
        return body

    assert PageCache(60, cache=cache, max_body_size=5)(app, make_environ(), lambda *a: None) is body


def test_write_callable_bodies_are_stored(cache: Cache) -> None:
    calls: list[int] = []

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        calls.append(1)
        write = start_response("200 OK", [])
        write(b"written ")
        return [b"returned"]

    wrapped = _bind(app, cache)
    assert call_app(wrapped, make_environ())[2] == b"written returned"
    assert call_app(wrapped, make_environ())[2] == b"written returned"
    assert len(calls) == 1


def test_stale_while_revalidate_serves_stale_while_one_request_refreshes(
    cache: Cache, clock: FakeClock
) -> None:
    version = [1]
    entered, release = threading.Event(), threading.Event()

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        if version[0] > 1:
            entered.set()
            assert release.wait(5)
        start_response("200 OK", [])
        return [b"v%d" % version[0]]

    # Inline: the request that takes the lock renders (background re-renders: tests/pages/test_background.py).
    wrapped = _bind(app, cache, stale_while_revalidate=30, background_revalidate=False)
    assert call_app(wrapped, make_environ())[2] == b"v1"
    version[0] = 2
    clock.advance(70)  # 10 s into the stale window
    refreshed: list[bytes] = []
    refresher = threading.Thread(target=lambda: refreshed.append(call_app(wrapped, make_environ())[2]))
    refresher.start()
    assert entered.wait(5)
    status, headers, body = call_app(wrapped, make_environ())  # while the refresh is running
    assert (status, body) == ("200 OK", b"v1")
    assert header_values(headers, "Age") == ["70"]
    assert cache.stats()["stale_serves"] == 1
    release.set()
    refresher.join(5)
    assert refreshed == [b"v2"]
    assert call_app(wrapped, make_environ())[2] == b"v2"


def test_after_the_stale_window_the_page_is_recomputed(cache: Cache, clock: FakeClock) -> None:
    version = [1]

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [])
        return [b"v%d" % version[0]]

    wrapped = _bind(app, cache, stale_while_revalidate=30)
    call_app(wrapped, make_environ())
    version[0] = 2
    clock.advance(91)
    assert call_app(wrapped, make_environ())[2] == b"v2"


@pytest.mark.parametrize("failure", ["raise", "500", "raise-in-body"])
def test_stale_if_error_serves_the_stale_page(
    cache: Cache, clock: FakeClock, caplog: pytest.LogCaptureFixture, failure: str
) -> None:
    broken = [False]

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if broken[0] and failure == "raise":
            raise RuntimeError("database down")
        if broken[0] and failure == "raise-in-body":
            return ClosingBody([b"never"], fail_after=0)
        start_response("500 Internal Server Error" if broken[0] else "200 OK", [])
        return [b"error" if broken[0] else b"good"]

    wrapped = _bind(app, cache, stale_if_error=600)
    call_app(wrapped, make_environ())
    broken[0] = True
    clock.advance(120)
    with caplog.at_level(logging.ERROR, logger="cachekit.views"):
        status, headers, body = call_app(wrapped, make_environ())
    assert (status, body) == ("200 OK", b"good")
    assert header_values(headers, "Age") == ["120"]
    assert "serving the stale copy" in caplog.text
    assert cache.stats()["stale_serves"] == 1


def test_stale_if_error_does_not_hide_errors_without_a_stale_copy(cache: Cache) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        call_app(_bind(app, cache, stale_if_error=600), make_environ())


def test_timeout_zero_disables_caching(cache: Cache) -> None:
    calls: list[int] = []

    @cache_page(0, cache=cache)
    def view(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        calls.append(1)
        start_response("200 OK", [])
        return [b"x"]

    call_app(view, make_environ())
    call_app(view, make_environ())
    assert len(calls) == 2


# -- tags and purge on every backend ------------------------------------------------------


def counting_view(cache: Cache, **options: Any) -> tuple[Callable[..., Iterable[bytes]], list[str]]:
    calls: list[str] = []

    @cache_page(60, cache=cache, **options)
    def view(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        calls.append(environ["PATH_INFO"])
        start_response("200 OK", [("Vary", "Accept-Language")])
        return [b"%s %d" % (environ["PATH_INFO"].encode(), len(calls))]

    return view, calls


def test_tag_invalidation_on_every_backend(backend_harness: BackendHarness) -> None:
    cache = Cache(backend_harness.backend, key_prefix="tagtest")
    news, news_calls = counting_view(cache, tags=["news"], key_prefix="news")
    sport, sport_calls = counting_view(cache, tags=["sport"], key_prefix="sport")
    for _ in range(2):
        call_app(news, make_environ("/n"))
        call_app(sport, make_environ("/s"))
    assert (news_calls, sport_calls) == (["/n"], ["/s"])
    cache.invalidate_tags("news")
    assert call_app(news, make_environ("/n"))[2] == b"/n 2"
    assert call_app(sport, make_environ("/s"))[2] == b"/s 1"
    assert call_app(news, make_environ("/n"))[2] == b"/n 2"  # cached again under the new generation


def test_tags_from_the_environ(cache: Cache) -> None:
    view, calls = counting_view(cache, tags=lambda environ: ["page:" + environ["PATH_INFO"]])
    for path in ("/a", "/b", "/a", "/b"):
        call_app(view, make_environ(path))
    cache.invalidate_tags("page:/a")
    call_app(view, make_environ("/a"))
    call_app(view, make_environ("/b"))
    assert calls == ["/a", "/b", "/a"]


def test_purge_drops_every_variant_on_every_backend(backend_harness: BackendHarness) -> None:
    cache = Cache(backend_harness.backend, key_prefix="purgetest")
    view, calls = counting_view(cache, key_prefix="site")
    english = make_environ("/p", headers={"Accept-Language": "en"})
    french = make_environ("/p", headers={"Accept-Language": "fr"})
    other = make_environ("/other")
    for environ in (english, french, other, english, french, other):
        call_app(view, dict(environ))
    assert calls == ["/p", "/p", "/other"]
    assert purge("http://testserver/p", cache=cache, key_prefix="site") is True
    for environ in (english, french, other):
        call_app(view, dict(environ))
    assert calls == ["/p", "/p", "/other", "/p", "/p"]
    assert view.purge("http://TESTSERVER:80/p") is True  # type: ignore[attr-defined]
    assert purge("http://testserver/never-cached", cache=cache, key_prefix="site") is False


def test_purge_needs_an_absolute_url(cache: Cache) -> None:
    with pytest.raises(ValueError, match="absolute URL"):
        purge("/relative", cache=cache)


def test_purge_url_forms_match_request_paths(cache: Cache) -> None:
    view, calls = counting_view(cache)
    call_app(view, make_environ("/caf\xc3\xa9 x", QUERY_STRING="q=1"))  # WSGI's latin-1 decoded path
    assert view.purge("http://testserver/caf%C3%A9%20x?q=1")  # type: ignore[attr-defined]


def test_caller_that_never_closes_still_stores_and_releases_the_lock() -> None:
    """A careless client (``list(app(...))`` without ``close()``) must not wedge the page."""
    cache = Cache(LocMemBackend("never-closes"), lock_timeout=0.5)
    renders: list[int] = []

    @cache_page(60, cache=cache)
    def view(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        renders.append(1)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"body"])

    def fetch() -> bytes:
        environ = make_environ("/careless")
        return b"".join(view(environ, lambda status, headers, exc_info=None: None))

    assert fetch() == b"body"
    assert fetch() == b"body"
    assert renders == [1]
    lock = cache.backend.lock("probe", ttl=1)
    assert lock.acquire(blocking=False)
    lock.release()


# -- a session in the environ (SessionMiddleware outside @cache_page) ------------------


class FakeSession:
    """Duck-types ``sessions.Session`` as the engine reads it (cachekit may not import sessions)."""

    #: On the type, as ``Session.is_new`` (a property) is: the engine looks there to tell our sessions.
    is_new: bool = True

    def __init__(self, *, stored: bool, user: str = "anonymous") -> None:
        self.user = user
        self.accessed = False
        self.loaded = False
        self.is_new = not stored
        self.modified = False
        self.flushed = False

    def read(self) -> str:
        self.accessed = self.loaded = True
        return self.user


def session_page(
    cache: Cache, calls: list[str], *, headers: Iterable[tuple[str, str]] = (), write: bool = False
) -> Callable[..., list[bytes]]:
    @cache_page(60, cache=cache)
    def view(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        session: FakeSession = environ["cachekit.session"]
        user = session.read()
        session.modified = write
        calls.append(user)
        start_response("200 OK", [("Content-Type", "text/plain"), *headers])
        return [f"hello {user}".encode()]

    return view


def session_environ(session: FakeSession, cookie: str | None = None) -> dict[str, Any]:
    environ = make_environ("/me", headers={"Cookie": cookie} if cookie else None)
    environ["cachekit.session"] = session
    return environ


def test_a_page_that_read_a_stored_session_is_never_stored(cache: Cache) -> None:
    calls: list[str] = []
    view = session_page(cache, calls)
    alice = call_app(view, session_environ(FakeSession(stored=True, user="alice"), "sid=a"))
    bob = call_app(view, session_environ(FakeSession(stored=True, user="bob"), "sid=b"))
    anonymous = call_app(view, session_environ(FakeSession(stored=False)))
    assert [alice[2], bob[2], anonymous[2]] == [b"hello alice", b"hello bob", b"hello anonymous"]
    # Passed through untouched: the session middleware adds its own Vary and private.
    assert alice[1] == [("Content-Type", "text/plain")]
    assert (
        call_app(view, session_environ(FakeSession(stored=True, user="alice"), "sid=a"))[2] == b"hello alice"
    )
    assert calls == ["alice", "bob", "anonymous", "alice"]


def test_an_anonymous_session_page_is_kept_per_cookie(cache: Cache) -> None:
    calls: list[str] = []
    view = session_page(cache, calls)
    first = call_app(view, session_environ(FakeSession(stored=False)))
    assert header_values(first[1], "Vary") == []  # the live response is the app's own
    served = call_app(view, session_environ(FakeSession(stored=False)))
    assert served[2] == b"hello anonymous"
    assert header_values(served[1], "Vary") == ["Cookie"]
    other = call_app(view, session_environ(FakeSession(stored=False, user="guest"), "theme=dark"))
    assert other[2] == b"hello guest"
    assert (
        call_app(view, session_environ(FakeSession(stored=False, user="x"), "theme=dark"))[2]
        == b"hello guest"
    )
    assert calls == ["anonymous", "guest"]


def test_a_public_page_that_read_a_stored_session_is_kept_per_cookie(cache: Cache) -> None:
    """``public`` is the app opting a per-user page into shared caching: keyed on the cookie."""
    calls: list[str] = []
    view = session_page(cache, calls, headers=[("Cache-Control", "public, max-age=60"), ("Vary", "Accept")])
    for _ in range(2):
        assert (
            call_app(view, session_environ(FakeSession(stored=True, user="alice"), "sid=a"))[2]
            == b"hello alice"
        )
        served = call_app(view, session_environ(FakeSession(stored=True, user="bob"), "sid=b"))
        assert served[2] == b"hello bob"
    assert header_values(served[1], "Vary") == ["Accept, Cookie"]
    assert calls == ["alice", "bob"]


def test_a_page_whose_session_is_saved_is_never_stored(cache: Cache) -> None:
    """The session middleware will add ``Set-Cookie``: such a response is never replayed."""
    calls: list[str] = []
    view = session_page(cache, calls, write=True)
    for _ in range(2):
        call_app(view, session_environ(FakeSession(stored=False)))
    assert calls == ["anonymous", "anonymous"]


def test_a_page_that_did_not_touch_the_session_is_shared(cache: Cache) -> None:
    calls: list[str] = []

    @cache_page(60, cache=cache)
    def view(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        calls.append("render")
        start_response("200 OK", [])
        return [b"same for all"]

    call_app(view, session_environ(FakeSession(stored=True), "sid=a"))
    served = call_app(view, session_environ(FakeSession(stored=True), "sid=b"))
    assert served[2] == b"same for all"
    assert header_values(served[1], "Vary") == []
    assert calls == ["render"]


def test_a_session_read_while_the_body_streams_is_not_stored(cache: Cache) -> None:
    """A generator body may read the session after the response started: not stored then."""
    calls: list[str] = []

    @cache_page(60, cache=cache)
    def view(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"hello "
        user = environ["cachekit.session"].read()
        calls.append(user)
        yield user.encode()

    assert (
        call_app(view, session_environ(FakeSession(stored=True, user="alice"), "sid=a"))[2] == b"hello alice"
    )
    assert call_app(view, session_environ(FakeSession(stored=True, user="bob"), "sid=b"))[2] == b"hello bob"
    assert calls == ["alice", "bob"]


# -- purge during a render --------------------------------------------------------------


class Article:
    """The data a page shows, and an editor that changes it and purges while a render is in flight."""

    def __init__(self) -> None:
        self.text = "v1"
        self.during_render: Callable[[], None] | None = None
        self.renders = 0

    def view(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        self.renders += 1
        text = self.text  # the render reads the data first...
        edit, self.during_render = self.during_render, None
        if edit is not None:
            edit()  # ...meanwhile the data changes and the page is purged
        start_response("200 OK", [("Content-Type", "text/plain"), *self.vary])
        return [text.encode()]

    vary: tuple[tuple[str, str], ...] = ()


@pytest.mark.parametrize("refresh", ["stale-while-revalidate", "client-no-cache"])
def test_purge_during_a_render_wins(cache: Cache, clock: FakeClock, refresh: str) -> None:
    """The URL's learned Vary is there when the render starts; a purge removes it before the store."""
    article = Article()
    view = cache_page(60, cache=cache, stale_while_revalidate=30, background_revalidate=False)(article.view)

    def edit() -> None:
        article.text = "v2"
        assert view.purge(URL) is True  # type: ignore[attr-defined]

    assert call_app(view, make_environ("/page"))[2] == b"v1"
    if refresh == "stale-while-revalidate":
        clock.advance(61)
        request = make_environ("/page")
    else:
        request = make_environ("/page", headers={"Cache-Control": "no-cache"})
    article.during_render = edit
    assert call_app(view, request)[2] == b"v1"  # in flight: rendered before the edit
    assert call_app(view, make_environ("/page"))[2] == b"v2"
    assert call_app(view, make_environ("/page"))[2] == b"v2"
    assert article.renders == 3


def test_a_stale_render_never_replaces_one_stored_after_a_purge(cache: Cache) -> None:
    """Cold start: another request stores v1, the editor purges, a third stores v2; ours is stale."""
    article = Article()
    # No lock: the other requests run (in this thread) while ours is in flight.
    view = cache_page(60, cache=cache, lock=False)(article.view)

    def others() -> None:
        assert call_app(view, make_environ("/page"))[2] == b"v1"
        article.text = "v2"
        assert view.purge(URL) is True  # type: ignore[attr-defined]
        assert call_app(view, make_environ("/page"))[2] == b"v2"

    article.during_render = others
    assert call_app(view, make_environ("/page"))[2] == b"v1"
    assert call_app(view, make_environ("/page"))[2] == b"v2"
    assert article.renders == 3


def test_purge_wins_when_the_render_changes_the_learned_vary(cache: Cache, clock: FakeClock) -> None:
    article = Article()
    view = cache_page(60, cache=cache, stale_while_revalidate=30, background_revalidate=False)(article.view)

    def edit() -> None:
        article.text = "v2"
        article.vary = (("Vary", "Accept-Language"),)
        assert view.purge(URL) is True  # type: ignore[attr-defined]

    call_app(view, make_environ("/page"))
    clock.advance(61)
    article.during_render = edit
    assert call_app(view, make_environ("/page"))[2] == b"v1"
    assert call_app(view, make_environ("/page"))[2] == b"v2"
    assert article.renders == 3


def test_a_changed_vary_is_learned_when_no_purge_came(cache: Cache, clock: FakeClock) -> None:
    article = Article()
    view = cache_page(60, cache=cache, stale_while_revalidate=30, background_revalidate=False)(article.view)
    call_app(view, make_environ("/page"))
    clock.advance(61)
    article.vary = (("Vary", "Accept-Language"),)
    for language in ("en", "en", "fr", "fr"):
        call_app(view, make_environ("/page", headers={"Accept-Language": language}))
    assert article.renders == 3


class NoCasBackend:
    """A backend without the optional compare-and-set (``gets``/``cas``), as third-party ones may be."""

    def __init__(self, inner: LocMemBackend) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name in ("gets", "cas"):
            raise AttributeError(name)
        return getattr(self._inner, name)


@pytest.mark.parametrize("purged", [True, False], ids=["purged", "not-purged"])
def test_a_changed_vary_without_compare_and_set(clock: FakeClock, purged: bool) -> None:
    cache = Cache(NoCasBackend(LocMemBackend("no-cas", clock=clock)), clock=clock)  # type: ignore[arg-type]
    try:
        article = Article()
        view = cache_page(60, cache=cache, stale_while_revalidate=30, background_revalidate=False)(
            article.view
        )

        def edit() -> None:
            article.vary = (("Vary", "Accept-Language"),)
            if purged:
                article.text = "v2"
                view.purge(URL)  # type: ignore[attr-defined]

        call_app(view, make_environ("/page"))
        clock.advance(61)
        article.during_render = edit
        call_app(view, make_environ("/page"))
        assert call_app(view, make_environ("/page"))[2] == (b"v2" if purged else b"v1")
        assert article.renders == (3 if purged else 2)
    finally:
        cache.clear()


@pytest.mark.parametrize(
    ("first", "second"),
    [("a=%FE", "a=%FF"), ("flag=", "flag"), ("x=a%20b", "x=a+b"), ("x=1%3By%3D2", "x=1;y=2")],
)
def test_normalized_queries_that_differ_raw_never_share_a_page(first: str, second: str) -> None:
    cache = Cache(LocMemBackend(f"normalize-{first}"))

    @cache_page(60, cache=cache, normalize_query=True)
    def echo(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["QUERY_STRING"].encode()]

    for query in (first, second):
        environ = make_environ("/q")
        environ["QUERY_STRING"] = query
        assert call_app(echo, environ)[2] == query.encode()


def test_normalized_query_order_shares_a_page() -> None:
    cache = Cache(LocMemBackend("normalize-order"))
    calls: list[str] = []

    @cache_page(60, cache=cache, normalize_query=True)
    def echo(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        calls.append(environ["QUERY_STRING"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"page"]

    for query in ("a=1&b=2", "b=2&a=1"):
        environ = make_environ("/q")
        environ["QUERY_STRING"] = query
        call_app(echo, environ)
    assert calls == ["a=1&b=2"]
