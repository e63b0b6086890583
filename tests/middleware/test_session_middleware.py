"""SessionMiddleware as a bare WSGI callable: wire format, laziness, concurrency, hostile cookies."""

from __future__ import annotations

import threading
import types
from collections.abc import Iterable
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import Any

import pytest

import cachekit
from cachekit.exceptions import ConfigurationError
from middleware.sessions import SessionMiddleware
from sessions.cookies import read_cookie
from sessions.exceptions import CookieTooLargeError
from sessions.session import Session
from sessions.stores.base import BaseStore
from sessions.stores.cache import CacheStore
from sessions.stores.cookie import SignedCookieStore
from tests.servers import free_port
from tests.sessions.helpers import SECRET
from tests.sessions.helpers import SERVER_STORES
from tests.sessions.helpers import WallClock
from tests.sessions.helpers import build_store
from tests.wsgi import Client
from tests.wsgi import call_app
from tests.wsgi import header_values
from tests.wsgi import make_environ

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

AGE = 1209600


def counter_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """``/`` reads, ``/incr?k`` increments ``k``, ``/logout`` flushes, ``/login`` cycles, ``/fail`` 500s."""
    session: Session = environ["cachekit.session"]
    path, key = environ["PATH_INFO"], environ["QUERY_STRING"] or "n"
    status = "200 OK"
    if path == "/incr":
        session[key] = session.get(key, 0) + 1
    elif path == "/logout":
        session.flush()
    elif path == "/login":
        session.cycle_key()
        session["user"] = "ada"
    elif path == "/fail":
        session["n"] = 99
        status = "500 Internal Server Error"
    elif path == "/untouched":
        start_response(status, [("Content-Type", "text/plain")])
        return [b"no session"]
    body = repr(sorted(dict(session).items())).encode()
    start_response(status, [("Content-Type", "text/plain"), ("Vary", "Accept-Encoding")])
    return [body]


@pytest.fixture
def clock() -> WallClock:
    return WallClock()


@pytest.fixture(params=["locmem", "signed-cookie"])
def store(request: pytest.FixtureRequest, clock: WallClock) -> BaseStore:
    return build_store(request.param, request, clock)


@pytest.fixture
def client(store: BaseStore) -> Client:
    return Client(SessionMiddleware(counter_app, store))


def set_cookies(headers: list[tuple[str, str]]) -> list[str]:
    return header_values(headers, "Set-Cookie")


# -- wire format -----------------------------------------------------------------------


def test_set_cookie_defaults_on_the_wire(client: Client, clock: WallClock) -> None:
    status, headers, body = client.get("/incr")
    assert status == "200 OK"
    assert body == b"[('n', 1)]"
    (line,) = set_cookies(headers)
    value = client.cookies["session"]
    expires = _http_date(clock.now + AGE)
    assert line == f"session={value}; Expires={expires}; Max-Age={AGE}; HttpOnly; Path=/; SameSite=Lax"
    assert header_values(headers, "Vary") == ["Accept-Encoding, Cookie"]


def _http_date(timestamp: float) -> str:
    import email.utils

    return email.utils.formatdate(timestamp, usegmt=True)


def test_configured_cookie_attributes(store: BaseStore, clock: WallClock) -> None:
    app = SessionMiddleware(
        counter_app,
        store,
        cookie_name="sid",
        cookie_path="/app",
        cookie_domain="example.com",
        cookie_secure=True,
        cookie_httponly=False,
        cookie_samesite="Strict",
    )
    client = Client(app)
    _, headers, _ = client.get("/incr")
    value = client.cookies["sid"]
    assert set_cookies(headers) == [
        f"sid={value}; Domain=example.com; Expires={_http_date(clock.now + AGE)}; Max-Age={AGE}; "
        "Secure; Path=/app; SameSite=Strict"
    ]


def test_browser_session_cookie_has_no_expiry(request: pytest.FixtureRequest, clock: WallClock) -> None:
    store = build_store("locmem", request, clock, expire_at_browser_close=True)
    client = Client(SessionMiddleware(counter_app, store, cookie_samesite=None))
    _, headers, _ = client.get("/incr")
    assert set_cookies(headers) == [f"session={client.cookies['session']}; HttpOnly; Path=/"]


def test_logout_deletes_the_cookie_and_the_session(client: Client, store: BaseStore) -> None:
    client.get("/incr")
    value = client.cookies["session"]
    _, headers, body = client.get("/logout")
    assert body == b"[]"
    assert set_cookies(headers) == [
        "session=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; Path=/; SameSite=Lax"
    ]
    assert "session" not in client.cookies
    if store.server_side:
        assert store.load(value) is None


def test_unchanged_session_sends_no_cookie_but_varies(client: Client) -> None:
    client.get("/incr")
    _, headers, body = client.get("/")
    assert body == b"[('n', 1)]"
    assert set_cookies(headers) == []
    assert header_values(headers, "Vary") == ["Accept-Encoding, Cookie"]


def test_untouched_session_is_not_loaded_and_adds_nothing(store: BaseStore) -> None:
    loads = []
    original = store.load

    def counting_load(value: str) -> Any:
        loads.append(value)
        return original(value)

    store.load = counting_load  # type: ignore[method-assign]
    client = Client(SessionMiddleware(counter_app, store))
    client.get("/incr")
    loads.clear()
    _, headers, body = client.get("/untouched")
    assert body == b"no session"
    assert headers == [("Content-Type", "text/plain")]
    assert loads == []


def test_vary_star_is_left_alone(store: BaseStore) -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["cachekit.session"].get("x")
        start_response("200 OK", [("Vary", "*")])
        return [b""]

    _, headers, _ = call_app(SessionMiddleware(app, store), make_environ())
    assert header_values(headers, "Vary") == ["*"]


def test_5xx_saves_nothing(client: Client) -> None:
    status, headers, _ = client.get("/fail")
    assert status.startswith("500")
    assert set_cookies(headers) == []
    assert header_values(headers, "Vary") == ["Accept-Encoding, Cookie"]


def test_login_cycles_the_key(client: Client, store: BaseStore) -> None:
    client.get("/incr")
    before = client.cookies["session"]
    _, _, body = client.get("/login")
    after = client.cookies["session"]
    assert after != before
    assert body == b"[('n', 1), ('user', 'ada')]"
    if store.server_side:
        assert store.load(before) is None


def test_save_every_request(store: BaseStore) -> None:
    client = Client(SessionMiddleware(counter_app, store, save_every_request=True))
    client.get("/incr")
    _, headers, _ = client.get("/")
    assert len(set_cookies(headers)) == 1
    _, headers, _ = client.get("/untouched")
    assert set_cookies(headers) == []


def test_idle_refresh_writes_at_most_once_per_interval(
    request: pytest.FixtureRequest, clock: WallClock
) -> None:
    store = build_store("locmem", request, clock, idle_timeout=600, refresh_interval=60)
    client = Client(SessionMiddleware(counter_app, store))
    client.get("/incr")
    clock.advance(30)
    _, headers, _ = client.get("/")
    assert set_cookies(headers) == []
    clock.advance(31)
    _, headers, _ = client.get("/")
    (line,) = set_cookies(headers)
    assert "Max-Age=600;" in line
    clock.advance(599)  # idle 599 s since the refresh: still alive
    _, _, body = client.get("/")
    assert body == b"[('n', 1)]"
    clock.advance(601)
    _, _, body = client.get("/")
    assert body == b"[]"


# -- WSGI contract ------------------------------------------------------------------------


class TrackedBody:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        self.closed = True


def test_app_iterable_passes_through_and_is_closed(store: BaseStore) -> None:
    body = TrackedBody([b"\x00\xff binary ", b"", b"chunks\r\n"])

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["cachekit.session"]["k"] = "v"
        start_response("200 OK", [("Content-Length", "18")])
        return body

    wrapped = SessionMiddleware(app, store)
    environ = make_environ()
    assert wrapped(environ, lambda status, headers, exc_info=None: lambda data: None) is body
    status, headers, data = call_app(wrapped, make_environ())
    assert data == b"\x00\xff binary chunks\r\n"
    assert body.closed


def test_generator_app_starting_late(store: BaseStore) -> None:
    closed = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
        try:
            environ["cachekit.session"]["k"] = "v"
            start_response("200 OK", [])
            yield b"one"
            yield b"two"
        finally:
            closed.append(True)

    status, headers, data = call_app(SessionMiddleware(app, store), make_environ())
    assert (status, data) == ("200 OK", b"onetwo")
    assert len(set_cookies(headers)) == 1
    assert closed == [True]


def test_write_callable_still_works(store: BaseStore) -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["cachekit.session"]["k"] = 1
        write = start_response("200 OK", [])
        write(b"written ")
        return [b"returned"]

    _, _, data = call_app(SessionMiddleware(app, store), make_environ())
    assert data == b"written returned"


# -- races -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SERVER_STORES)
def test_twenty_threads_fifty_increments_each(kind: str, request: pytest.FixtureRequest) -> None:
    store = build_store(kind, request)
    app = SessionMiddleware(counter_app, store)
    client = Client(app)
    client.get("/incr?start")
    cookie = f"session={client.cookies['session']}"
    errors: list[BaseException] = []

    def worker(key: str) -> None:
        try:
            for _ in range(50):
                status, _, _ = call_app(app, make_environ(f"/incr?{key}", headers={"Cookie": cookie}))
                assert status == "200 OK"
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"k{i:02d}",)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    _, _, body = client.get("/")
    expected = [(f"k{i:02d}", 50) for i in range(20)] + [("start", 1)]
    assert body == repr(expected).encode()


@pytest.mark.parametrize("kind", SERVER_STORES)
def test_logout_racing_a_save_stays_logged_out(kind: str, request: pytest.FixtureRequest) -> None:
    store = build_store(kind, request)
    logout_client: Client

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        session = environ["cachekit.session"]
        session["n"] = session.get("n", 0) + 1
        if environ["PATH_INFO"] == "/slow":
            logout_client.get("/logout")  # another tab logs out while this request runs
        return counter_app(environ, start_response)

    wrapped = SessionMiddleware(app, store)
    client = Client(wrapped)
    client.get("/")
    value = client.cookies["session"]
    logout_client = Client(SessionMiddleware(counter_app, store))
    logout_client.cookies = dict(client.cookies)
    status, headers, _ = client.get("/slow")
    assert status == "200 OK"
    assert store.load(value) is None
    assert set_cookies(headers) == []  # the late save was dropped; the dead id is left alone
    _, _, body = client.get("/")  # it loads nothing: a fresh session (this app counts from 1)
    assert body == b"[('n', 1)]"
    assert client.cookies["session"] != value


@pytest.mark.parametrize("kind", SERVER_STORES)
def test_logout_racing_saves_in_threads(kind: str, request: pytest.FixtureRequest) -> None:
    store = build_store(kind, request)
    app = SessionMiddleware(counter_app, store)
    for _ in range(5):
        client = Client(app)
        client.get("/incr")
        cookie = {"Cookie": f"session={client.cookies['session']}"}
        barrier = threading.Barrier(2)

        def saver(cookie: dict[str, str] = cookie, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            for _ in range(10):
                call_app(app, make_environ("/incr", headers=cookie))

        thread = threading.Thread(target=saver)
        thread.start()
        barrier.wait()
        call_app(app, make_environ("/logout", headers=cookie))
        thread.join(30)
        assert store.load(client.cookies["session"]) is None


# -- hostile cookies ----------------------------------------------------------------------


def _valid(store: BaseStore, user: str = "victim") -> str:
    session = Session(store)
    session["user"] = user
    return session.save()


HOSTILE = [
    pytest.param(lambda s, v: v[:-3], id="truncated"),
    pytest.param(lambda s, v: v[:10] + ("x" if v[10] != "x" else "y") + v[11:], id="tampered"),
    pytest.param(lambda s, v: _other_key_cookie(s), id="wrong-key"),
    pytest.param(lambda s, v: "A" * 43, id="guessed-id"),
    pytest.param(lambda s, v: "attacker-chosen-id", id="attacker-chosen"),
    pytest.param(lambda s, v: "Z" * 9000, id="oversized"),
    pytest.param(lambda s, v: "\xff\xfe\x80session", id="non-utf8"),
    pytest.param(lambda s, v: '"' + "\\" * 10 + '"', id="quoted-garbage"),
    pytest.param(lambda s, v: "", id="empty"),
]


def _other_key_cookie(store: BaseStore) -> str:
    if isinstance(store, SignedCookieStore):
        other = SignedCookieStore("not-the-real-key-000000000000000")
        session = Session(other)
        session["user"] = "admin"
        return session.save()
    return "B" * 43  # a well-formed id this store never issued


@pytest.mark.parametrize("forge", HOSTILE)
def test_hostile_cookie_yields_new_empty_session(store: BaseStore, forge: Any) -> None:
    hostile = forge(store, _valid(store))
    client = Client(SessionMiddleware(counter_app, store))
    client.cookies["session"] = hostile
    status, _, body = client.get("/")
    assert status == "200 OK"
    assert body == b"[]"
    status, _, body = client.get("/incr")
    assert (status, body) == ("200 OK", b"[('n', 1)]")
    assert client.cookies["session"] != hostile


def test_expired_cookie_yields_new_session(store: BaseStore, clock: WallClock) -> None:
    client = Client(SessionMiddleware(counter_app, store))
    client.get("/incr")
    clock.advance(AGE + 1)
    _, _, body = client.get("/")
    assert body == b"[]"


def test_duplicated_cookie_is_ambiguous(store: BaseStore) -> None:
    victim, planted = _valid(store), _valid(store, "attacker")
    app = SessionMiddleware(counter_app, store)
    for header in (f"session={planted}; session={victim}", f"session={victim}; other=1; session={planted}"):
        status, _, body = call_app(app, make_environ(headers={"Cookie": header}))
        assert (status, body) == ("200 OK", b"[]")
    # the same value twice is not ambiguous
    _, _, body = call_app(app, make_environ(headers={"Cookie": f"session={victim}; session={victim}"}))
    assert body == b"[('user', 'victim')]"


def test_fixation_attacker_id_is_never_issued(request: pytest.FixtureRequest) -> None:
    store = build_store("locmem", request)
    client = Client(SessionMiddleware(counter_app, store))
    planted = "F" * 43
    client.cookies["session"] = planted
    client.get("/incr")
    assert client.cookies["session"] != planted
    assert store.load(planted) is None


def test_read_cookie_parsing() -> None:
    assert read_cookie("a=1; session=xyz; b=2", "session") == "xyz"
    assert read_cookie('session="quoted"', "session") == "quoted"
    assert read_cookie("xsession=1; sessionx=2", "session") is None
    assert read_cookie("session", "session") is None
    assert read_cookie("session=a;session=b", "session") is None


# -- key rotation and size ------------------------------------------------------------------


def test_fallback_signed_cookie_is_resigned_with_current_key() -> None:
    old = SignedCookieStore(["old-key-000000000000000000000000"])
    session = Session(old)
    session["user"] = "ada"
    value = session.save()
    rotated = SignedCookieStore(["new-key-000000000000000000000000", "old-key-000000000000000000000000"])
    client = Client(SessionMiddleware(counter_app, rotated))
    client.cookies["session"] = value
    _, headers, body = client.get("/")
    assert body == b"[('user', 'ada')]"
    assert len(set_cookies(headers)) == 1
    state = SignedCookieStore(["new-key-000000000000000000000000"]).load(client.cookies["session"])
    assert state is not None
    assert state.data == {"user": "ada"}


def test_oversized_session_raises_and_keeps_previous_cookie() -> None:
    import random

    store = SignedCookieStore(SECRET)
    blob = random.Random(1).randbytes(4000).hex()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["cachekit.session"]["blob"] = blob
        start_response("200 OK", [])
        return [b""]

    sent: list[Any] = []
    with pytest.raises(CookieTooLargeError):
        SessionMiddleware(app, store)(make_environ(), lambda *args: sent.append(args))
    assert sent == []


# -- outages --------------------------------------------------------------------------------


@pytest.fixture
def dead_redis_store() -> CacheStore:
    cache = cachekit.from_url(f"redis://127.0.0.1:{free_port()}/0")
    return CacheStore(cache)


def test_outage_on_load_is_503(dead_redis_store: CacheStore) -> None:
    app = SessionMiddleware(counter_app, dead_redis_store)
    environ = make_environ(headers={"Cookie": "session=" + "A" * 43})
    status, headers, body = call_app(app, environ)
    assert status == "503 Service Unavailable"
    assert ("Retry-After", "5") in headers
    status, _, body = call_app(app, make_environ("/untouched", headers={"Cookie": "session=" + "A" * 43}))
    assert (status, body) == ("200 OK", b"no session")


@pytest.mark.parametrize("generator", [False, True], ids=["list-body", "generator-body"])
def test_outage_on_save_is_503_not_silence(dead_redis_store: CacheStore, generator: bool) -> None:
    closed = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["cachekit.session"]["k"] = 1  # new session: no load, the create hits the outage

        def body() -> Iterator[bytes]:
            try:
                start_response("200 OK", [])
                yield b"app body"
            finally:
                closed.append(True)

        if generator:
            return body()
        start_response("200 OK", [])
        return TrackedBodyCloser([b"app body"], closed)

    status, headers, data = call_app(SessionMiddleware(app, dead_redis_store), make_environ())
    assert status == "503 Service Unavailable"
    assert b"session store" in data
    assert set_cookies(headers) == []
    assert closed == [True]


class TrackedBodyCloser(TrackedBody):
    def __init__(self, chunks: list[bytes], closed: list[bool]) -> None:
        super().__init__(chunks)
        self._closed = closed

    def close(self) -> None:
        self._closed.append(True)


# -- settings -------------------------------------------------------------------------------


def test_from_settings_cookie_engine(clock: WallClock) -> None:
    settings = {
        "SESSION_ENGINE": "signed_cookies",
        "SECRET_KEY": "new-0000000000000000000000000000",
        "SECRET_KEY_FALLBACKS": ["old-0000000000000000000000000000"],
        "SESSION_COOKIE_NAME": "sid",
        "SESSION_COOKIE_AGE": 600,
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_SAMESITE": "None",
        "SESSION_IDLE_TIMEOUT": 300,
    }
    app = SessionMiddleware.from_settings(counter_app, settings)
    assert isinstance(app.store, SignedCookieStore)
    assert app.store.policy.age == 600
    assert app.store.policy.idle_timeout == 300
    client = Client(app)
    _, headers, _ = client.get("/incr")
    (line,) = set_cookies(headers)
    assert line.startswith("sid=")
    assert line.endswith("; Max-Age=300; Secure; HttpOnly; Path=/; SameSite=None")


def test_from_settings_cache_engine_with_module_settings() -> None:
    cachekit.configure(CACHES={"default": "locmem://", "sessions": "locmem://session-settings-test"})
    try:
        settings = types.SimpleNamespace(SESSION_ENGINE="cache", SESSION_CACHE_ALIAS="sessions")
        app = SessionMiddleware.from_settings(counter_app, settings)
        assert isinstance(app.store, CacheStore)
        assert app.store.cache is cachekit.caches["sessions"]
        assert Client(app).get("/incr")[2] == b"[('n', 1)]"
    finally:
        cachekit.configure(CACHES=None)


@pytest.mark.parametrize(
    ("settings", "setting"),
    [
        ({"SESSION_ENGINE": "signed_cookies"}, "SECRET_KEY"),
        ({"SESSION_ENGINE": "signed_cookies", "SECRET_KEY": ""}, "SECRET_KEY"),
        (
            {"SESSION_ENGINE": "signed_cookies", "SECRET_KEY": "k", "SECRET_KEY_FALLBACKS": "old"},
            "SECRET_KEY_FALLBACKS",
        ),
        ({"SESSION_ENGINE": "files"}, "SESSION_ENGINE"),
        ({"SESSION_ENGINE": "nowhere.Store"}, "SESSION_ENGINE"),
        ({"SESSION_CACHE_ALIAS": "missing"}, "SESSION_CACHE_ALIAS"),
        ({"SESSION_COOKIE_AGE": "two weeks"}, "SESSION_COOKIE_AGE"),
        ({"SESSION_COOKIE_AGE": -1}, "SESSION_COOKIE_AGE"),
        ({"SESSION_IDLE_TIMEOUT": 0}, "SESSION_IDLE_TIMEOUT"),
        ({"SESSION_COOKIE_SAMESITE": "sometimes"}, "SESSION_COOKIE_SAMESITE"),
        ({"SESSION_COOKIE_SAMESITE": "None"}, "SESSION_COOKIE_SAMESITE"),
        ({"SESSION_COOKIE_NAME": "bad name"}, "SESSION_COOKIE_NAME"),
        ({"SESSION_COOKIE_PATH": "/; Domain=evil"}, "SESSION_COOKIE_PATH"),
        ({"SESSION_COOKIE_SECURE": "maybe"}, "SESSION_COOKIE_SECURE"),
        (
            {"SESSION_SERIALIZER": "django.contrib.sessions.serializers.PickleSerializer"},
            "SESSION_SERIALIZER",
        ),
        ({"SESSION_SERIALIZER": "json.decoder"}, "SESSION_SERIALIZER"),
    ],
)
def test_bad_settings_fail_at_startup_naming_the_setting(settings: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigurationError, match=setting) as info:
        SessionMiddleware.from_settings(counter_app, settings)
    assert info.value.setting == setting


def test_session_changing_pages_are_never_served_from_a_page_cache(store: BaseStore) -> None:
    """Every save re-sends Set-Cookie, which keeps the response out of shared caches.

    Skipping an unchanged cookie looks like a saving, but then a page cache
    outside the session layer stores the per-cookie response and replays it:
    the counter would freeze.
    """
    from middleware.cache import CacheMiddleware

    pages = cachekit.from_url("locmem://session-vs-page-cache")
    client = Client(CacheMiddleware(SessionMiddleware(counter_app, store), cache=pages, timeout=60))
    bodies = [client.get("/incr")[2] for _ in range(4)]
    assert bodies == [repr([("n", i)]).encode() for i in range(1, 5)]
    assert pages.stats()["hits"] == 0


@pytest.mark.parametrize(
    ("app_header", "expected"),
    [
        pytest.param(None, ["private"], id="none-added"),
        pytest.param("max-age=60", ["max-age=60", "private"], id="merged"),
        pytest.param("public, max-age=60", ["public, max-age=60"], id="public-opt-in"),
        pytest.param("no-store", ["no-store"], id="no-store-kept"),
        pytest.param("private, max-age=5", ["private, max-age=5"], id="private-kept"),
    ],
)
def test_stored_session_pages_are_private(app_header: str | None, expected: list[str]) -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        session: Session = environ["cachekit.session"]
        session.setdefault("user", "ada")
        headers = [("Content-Type", "text/plain")]
        if app_header is not None:
            headers.append(("Cache-Control", app_header))
        start_response("200 OK", headers)
        return [b"page"]

    client = Client(SessionMiddleware(app, CacheStore(cachekit.from_url("locmem://private-rule"))))
    _, first, _ = client.get("/")  # creates the session: Set-Cookie keeps it out of caches
    assert header_values(first, "Set-Cookie")
    _, headers, _ = client.get("/")  # reads the stored session
    assert header_values(headers, "Cache-Control") == expected


def test_anonymous_session_pages_stay_shareable() -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["cachekit.session"].get("user")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello anonymous"]

    client = Client(SessionMiddleware(app, CacheStore(cachekit.from_url("locmem://anon-rule"))))
    _, headers, _ = client.get("/")
    assert header_values(headers, "Cache-Control") == []
    assert header_values(headers, "Vary") == ["Cookie"]


@pytest.mark.parametrize("kind", SERVER_STORES)
def test_a_request_racing_login_never_deletes_the_new_cookie(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """A slow request with the pre-login id finishes after login: the browser keeps the login cookie."""
    store = build_store(kind, request)
    browser_cookies: dict[str, str] = {}

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        session = environ["cachekit.session"]
        session["last_seen"] = environ["PATH_INFO"]
        if environ["PATH_INFO"] == "/track":
            login = Client(SessionMiddleware(counter_app, store))  # another tab logs in meanwhile
            login.cookies = dict(browser_cookies)
            login.get("/login")
            browser_cookies.update(login.cookies)
        return counter_app(environ, start_response)

    client = Client(SessionMiddleware(app, store))
    client.get("/")
    browser_cookies.update(client.cookies)
    _, headers, _ = client.get("/track")  # its save conflicts: the id was cycled at login
    assert set_cookies(headers) == []
    assert store.load(browser_cookies["session"]) is not None  # the login session is intact


def test_private_is_added_when_cache_control_spans_lines() -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["cachekit.session"].setdefault("user", "ada")
        start_response("200 OK", [("Cache-Control", "max-age=60"), ("Cache-Control", "must-revalidate")])
        return [b"page"]

    client = Client(SessionMiddleware(app, CacheStore(cachekit.from_url("locmem://private-lines"))))
    client.get("/")
    _, headers, _ = client.get("/")
    assert "private" in ", ".join(header_values(headers, "Cache-Control"))
