"""Hostile input, property-based (Hypothesis) and table-driven: cookies, session ids, cache keys
and the request headers the page cache reads.

What must hold for every input: nothing escapes the middleware (a 500), no
request reaches another user's session or stores under its key, no header the
page cache does not key on changes the page other clients get (cache
poisoning), and no response that sets a cookie or carries private data is
stored. Budgets: see tests/reliability/conftest.py.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import Any

import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st

from cachekit._page import BODY
from cachekit._page import HEADERS
from cachekit._page import MARK
from cachekit.backends.locmem import LocMemBackend
from middleware.cache import CacheMiddleware
from sessions.stores.cookie import SignedCookieStore
from tests.conftest import BackendHarness
from tests.reliability.app import build_app
from tests.wsgi import Client
from tests.wsgi import call_app
from tests.wsgi import header_values
from tests.wsgi import make_environ

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

# WSGI hands header values over as latin-1 text: every byte a client can send is one of these.
LATIN1 = st.characters(min_codepoint=0, max_codepoint=255)
WIRE_TEXT = st.text(LATIN1, max_size=300)


class RecordingBackend(LocMemBackend):
    """Local memory that remembers every value ever stored, to inspect what the page cache kept."""

    def __init__(self) -> None:
        super().__init__(f"hostile-{secrets.token_hex(8)}")
        self.stored: list[tuple[str, Any]] = []

    def set(self, key: str, value: Any, ttl: float | None) -> None:
        self.stored.append((key, value))
        super().set(key, value, ttl)

    def pages(self) -> list[tuple[Any, ...]]:
        return [value for _, value in self.stored if type(value) is tuple and value[:1] == (MARK,)]


def stores(kind: str, backend: RecordingBackend) -> Any:
    if kind == "cookie":
        # Fresh keys per site: a cookie replayed from Hypothesis's database never verifies.
        return SignedCookieStore([secrets.token_hex(16), secrets.token_hex(16)])
    return None  # build_app's CacheStore on the same backend


def set_cookie_value(headers: list[tuple[str, str]]) -> str | None:
    for line in header_values(headers, "Set-Cookie"):
        if line.startswith("session="):
            return line.split(";", 1)[0][len("session=") :]
    return None


# -- cookies ---------------------------------------------------------------------------------


class Site:
    """The reliability app on a recording backend, with a logged-in victim who has counted to 3."""

    def __init__(self, kind: str) -> None:
        self.backend = RecordingBackend()
        self.app = build_app(self.backend, store=stores(kind, self.backend))
        self.victim = Client(self.app)
        self.victim.request("/login?name=victim", "POST")
        for _ in range(3):
            self.victim.get("/count")
        self.victim_cookie = self.victim.cookies["session"]

    def victim_untouched(self) -> bool:
        before = dict(self.victim.cookies)
        status, _, body = call_app(
            self.app, make_environ("/me", headers={"Cookie": f"session={before['session']}"})
        )
        return status == "200 OK" and body == b"user=victim"


def mutations(value: str) -> list[str]:
    """Near misses of a real cookie value: what guessing or tampering produces."""
    return [
        value[:-1],
        value + "A",
        value.swapcase(),
        value[1:] + value[0],
        value.replace(value[-2], "A" if value[-2] != "A" else "B"),
        '"' + value,
        value + "\x00",
        '"' + value + "'",
    ]


def cookie_headers(victim_cookie: str) -> st.SearchStrategy[str]:
    name = st.sampled_from(["session", "Session", " session", "session ", "sess", "session\x00", "a"])
    value = st.one_of(
        WIRE_TEXT,
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        st.sampled_from(mutations(victim_cookie)),
        st.just(secrets.token_urlsafe(32)),
    )
    pairs = st.lists(st.tuples(name, value), max_size=20).map(
        lambda items: "; ".join(f"{n}={v}" for n, v in items)
    )
    duplicated = st.sampled_from(mutations(victim_cookie)).map(
        lambda other: f"session={victim_cookie}; session={other}"
    )
    return st.one_of(WIRE_TEXT, pairs, duplicated)


HUGE_COOKIES = [
    pytest.param("session=" + "A" * 100_000, id="huge-value"),
    pytest.param("; ".join(f"c{n}=v{n}" for n in range(5000)), id="5000-cookies"),
    pytest.param("; ".join(f"session=v{n}" for n in range(1000)), id="1000-duplicates"),
    pytest.param("session=\xff\xfe\x00\x80; session=\xc3\x28", id="bad-encodings"),
    pytest.param("session=" + "=" * 5000, id="separators"),
    pytest.param("session", id="no-value"),
    pytest.param(";;;;=;=;", id="empty-pairs"),
]


def check_hostile_cookie(site: Site, header: str) -> None:
    status, headers, body = call_app(site.app, make_environ("/count", headers={"Cookie": header}))
    assert status == "200 OK"
    assert body == b"1"  # a new, empty session: nothing adopted, nobody else's
    issued = set_cookie_value(headers)
    assert issued is not None
    assert issued != site.victim_cookie
    assert issued not in header
    assert site.victim_untouched()


@pytest.mark.parametrize("kind", ["cache", "cookie"])
@pytest.mark.parametrize("header", HUGE_COOKIES)
def test_hostile_cookie_table(kind: str, header: str) -> None:
    check_hostile_cookie(Site(kind), header)


@pytest.mark.parametrize("kind", ["cache", "cookie"])
def test_hostile_cookie_property(kind: str) -> None:
    site = Site(kind)

    @given(cookie_headers(site.victim_cookie))
    def check(header: str) -> None:
        check_hostile_cookie(site, header)

    check()


# -- session ids -------------------------------------------------------------------------------


def test_guessed_session_id_is_never_adopted() -> None:
    site = Site("cache")
    for guess in [secrets.token_urlsafe(32) for _ in range(20)] + mutations(site.victim_cookie):
        check_hostile_cookie(site, f"session={guess}")


def test_session_id_reused_after_logout_is_dead() -> None:
    site = Site("cache")
    stolen = site.victim_cookie
    site.victim.request("/logout", "POST")
    assert "session" not in site.victim.cookies
    for path in ("/me", "/count"):
        status, headers, body = call_app(
            site.app, make_environ(path, headers={"Cookie": f"session={stolen}"})
        )
        assert status == "200 OK"
        assert body in (b"user=None", b"1")
        assert set_cookie_value(headers) in (None, *[v for v in [set_cookie_value(headers)] if v != stolen])
    assert site.app.store.load(stolen) is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["cache", "cookie"])
def test_planted_session_id_is_replaced_at_login(kind: str) -> None:
    """Fixation: the attacker plants its own live session id; after the victim logs in, it is worthless."""
    site = Site(kind)
    attacker = Client(site.app)
    attacker.get("/count")
    planted = attacker.cookies["session"]
    victim = Client(site.app)
    victim.cookies["session"] = planted
    victim.request("/login?name=alice", "POST")
    assert victim.cookies["session"] != planted
    assert victim.get("/me")[2] == b"user=alice"
    assert attacker.get("/me")[2] == b"user=None"


def test_other_users_session_is_not_written_by_a_colliding_create() -> None:
    """Session creation uses ``add``: even a forced id collision never overwrites another session."""
    site = Site("cache")
    store = site.app.store  # type: ignore[attr-defined]
    victim_id = site.victim_cookie
    ids = iter([victim_id] * 3 + [secrets.token_urlsafe(32)])
    original = secrets.token_urlsafe
    try:
        secrets.token_urlsafe = lambda nbytes=None: next(ids)  # type: ignore[assignment]
        status, headers, body = call_app(site.app, make_environ("/count"))
    finally:
        secrets.token_urlsafe = original
    assert (status, body) == ("200 OK", b"1")
    assert set_cookie_value(headers) != victim_id
    assert site.victim_untouched()
    assert store.load(victim_id).data["count"] == 3


# -- cache keys ----------------------------------------------------------------------------------

# Every Unicode category but Cs (lone surrogates, tested on their own below).
ANY_KEY = st.text(st.characters(codec=None, exclude_categories=["Cs"]), max_size=300)
HUGE_KEYS = st.sampled_from(["k" * 10_240, "\u00e9" * 10_240, "\x00" * 10_240, "\U0001f600" * 2560])


@given(st.lists(st.one_of(ANY_KEY, HUGE_KEYS), min_size=1, max_size=6, unique=True))
@example(["a b", "a_b", "a\r\nb", "a\x00b", "~a b", ":1:", "\u200b", "\x7f"])
def test_any_key_round_trips_without_collisions(backend_harness: BackendHarness, keys: list[str]) -> None:
    cache = backend_harness.make_cache(key_prefix="hostile")
    values = {key: n for n, key in enumerate(keys)}
    assert cache.set_many(values) == []
    for key, value in values.items():
        assert cache.get(key) == value
    assert cache.get_many(keys) == values
    cache.delete_many(keys)
    assert cache.get_many(keys) == {}


LONE_SURROGATES = ["\ud800", "a\udfffb", "\udc80" * 100]


def test_lone_surrogate_keys(backend_harness: BackendHarness) -> None:
    cache = backend_harness.make_cache(key_prefix="hostile")
    for n, key in enumerate(LONE_SURROGATES):
        cache.set(key, n)
    assert [cache.get(key) for key in LONE_SURROGATES] == list(range(len(LONE_SURROGATES)))


# -- request headers and the page cache ---------------------------------------------------------


def echo_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """A page built only from what the page cache keys on: host, path, query and Accept-Language.

    The host is rendered as a URL carries it (lower case, no default port),
    which is how the page cache keys it (RFC 3986 section 6.2.2).
    """
    host = environ.get("HTTP_HOST", "").lower().removesuffix(":80")
    path, query = environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", "")
    lang = environ.get("HTTP_ACCEPT_LANGUAGE", "")
    body = f"{host!r} {path!r} {query!r} {lang!r}".encode("utf-8", "surrogateescape")
    headers = [("Content-Type", "text/plain"), ("Vary", "Accept-Language")]
    if environ.get("HTTP_AUTHORIZATION"):
        headers.append(("Cache-Control", "private"))
        body += b" private"
    start_response("200 OK", headers)
    return [body]


def rendered(environ: dict[str, Any]) -> bytes:
    captured: list[str] = []
    return b"".join(echo_app(environ, lambda status, headers, exc_info=None: captured.append(status)))


HEADER_NAMES = [
    "Host",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Forwarded-For",
    "X-Original-URL",
    "Accept-Language",
    "Cache-Control",
    "Pragma",
    "If-None-Match",
    "If-Modified-Since",
    "Authorization",
    "Cookie",
    "Vary",
    "Range",
]
HOSTS = st.one_of(
    st.sampled_from(
        [
            "site.example",
            "SITE.example",
            "site.example:80",
            "site.example/admin",
            "site.example/admin?x=",
            "site.example#",
            "site.example%2Fadmin",
            "site.example@evil.example",
            "evil.example",
            "",
        ]
    ),
    WIRE_TEXT,
)
PATHS = st.one_of(st.sampled_from(["/", "/x", "/admin", "/admin/x", "/admin%2Fx", "/a?b"]), WIRE_TEXT)
CACHE_CONTROL = st.one_of(
    st.sampled_from(
        [
            "no-cache",
            "max-age=0",
            "public, max-age=99999",
            "no-store",
            'no-cache="x", max-age="1"',
            "max-age=-1",
            "max-age=1e9",
            "only-if-cached",
            ",,,",
            '"unterminated',
        ]
    ),
    WIRE_TEXT,
)
ATTACKER_HEADERS = st.dictionaries(
    st.sampled_from(HEADER_NAMES),
    st.one_of(WIRE_TEXT, CACHE_CONTROL, st.just("x" * 70_000)),
    max_size=6,
)
VICTIM_PATHS = ["/", "/x", "/admin", "/admin/x"]


@pytest.fixture
def page_site() -> tuple[WSGIApplication, RecordingBackend]:
    backend = RecordingBackend()
    from cachekit import Cache

    return CacheMiddleware(echo_app, cache=Cache(backend), timeout=60), backend


@pytest.mark.parametrize(
    ("host", "path", "victim_path"),
    [
        pytest.param("site.example/admin", "/x", "/admin/x", id="slash-in-host"),
        pytest.param("site.example/admin?x=", "/", "/admin", id="query-in-host"),
        pytest.param("site.example%2Fadmin", "/x", "/admin/x", id="escaped-slash-in-host"),
        pytest.param("site.example#", "/admin", "/admin", id="fragment-in-host"),
    ],
)
def test_host_cannot_pose_as_a_path(
    page_site: tuple[WSGIApplication, RecordingBackend], host: str, path: str, victim_path: str
) -> None:
    app, _ = page_site
    call_app(app, make_environ(path, host=host))
    victim = make_environ(victim_path, host="site.example")
    assert call_app(app, victim)[2] == rendered(make_environ(victim_path, host="site.example"))


@given(
    host=HOSTS,
    path=PATHS,
    query=WIRE_TEXT,
    headers=ATTACKER_HEADERS,
    victim_path=st.sampled_from(VICTIM_PATHS),
)
def test_no_request_poisons_the_page_other_clients_get(
    page_site: tuple[WSGIApplication, RecordingBackend],
    host: str,
    path: str,
    query: str,
    headers: dict[str, str],
    victim_path: str,
) -> None:
    app, backend = page_site
    attacker = make_environ(path, headers=headers, host=host, QUERY_STRING=query, PATH_INFO=path)
    if "Host" in headers:
        attacker["HTTP_HOST"] = headers["Host"]
    status, _, _ = call_app(app, attacker)
    assert status[:3] in ("200", "304")
    for lang in ("", "en"):
        victim = make_environ(
            victim_path, headers={"Accept-Language": lang} if lang else {}, host="site.example"
        )
        status, _, body = call_app(app, victim)
        assert status == "200 OK"
        assert body == rendered(
            make_environ(victim_path, headers={"Accept-Language": lang} if lang else {}, host="site.example")
        )
    for page in backend.pages():
        stored = dict((name.lower(), value) for name, value in page[HEADERS])
        assert "private" not in stored.get("cache-control", "")
        assert "set-cookie" not in stored


def test_huge_headers_are_answered(page_site: tuple[WSGIApplication, RecordingBackend]) -> None:
    app, _ = page_site
    big = "x" * 1_000_000
    headers = {name: big for name in HEADER_NAMES if name not in ("Host", "Authorization")}
    headers["If-None-Match"] = ", ".join(f'"{n}"' for n in range(20_000))
    start = time.monotonic()
    for _ in range(2):
        status, _, body = call_app(app, make_environ("/", headers=headers))
        assert status == "200 OK"
    assert time.monotonic() - start < 5.0


ETAG_ITEMS = st.one_of(
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=',"'), max_size=20).map(
        lambda text: f'"{text}"'
    ),
    st.sampled_from(["*", "W/", '""', "W/*"]),
)


@given(items=st.lists(st.one_of(ETAG_ITEMS, st.just("ETAG"), st.just("W/ETAG")), max_size=8), noise=WIRE_TEXT)
def test_if_none_match_lists(
    page_site: tuple[WSGIApplication, RecordingBackend], items: list[str], noise: str
) -> None:
    app, _ = page_site
    call_app(app, make_environ("/etag"))
    etag = next(value for name, value in call_app(app, make_environ("/etag"))[1] if name == "ETag")
    tags = [item.replace("ETAG", etag) for item in items]
    header = ", ".join(tags)
    status, headers, body = call_app(app, make_environ("/etag", headers={"If-None-Match": header}))
    matches = header.strip() == "*" or etag in tags or "W/" + etag in tags
    assert status == ("304 Not Modified" if matches else "200 OK")
    assert body == (b"" if matches else rendered(make_environ("/etag")))
    status, _, _ = call_app(app, make_environ("/etag", headers={"If-None-Match": noise}))
    assert status in ("200 OK", "304 Not Modified")


@given(vary=WIRE_TEXT)
@example(vary="*")
@example(vary="Accept-Language, *")
@example(vary=", ,")
def test_any_vary_value_from_the_app(vary: str) -> None:
    backend = RecordingBackend()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Vary", vary)])
        return [environ.get("HTTP_ACCEPT_LANGUAGE", "").encode("latin-1")]

    from cachekit import Cache

    cached = CacheMiddleware(app, cache=Cache(backend), timeout=60)
    for lang in ("en", "fr", "en"):
        status, _, _ = call_app(cached, make_environ("/", headers={"Accept-Language": lang}))
        assert status == "200 OK"
    if "*" in [item.strip() for item in vary.split(",")]:
        assert backend.pages() == []


# -- nothing private is ever stored ---------------------------------------------------------------

REQUESTS = st.lists(
    st.tuples(
        st.sampled_from(["/count", "/me", "/page/1", "/login?name=attacker", "/logout", "/stats.json"]),
        st.sampled_from(["GET", "HEAD", "POST"]),
        ATTACKER_HEADERS,
    ),
    min_size=1,
    max_size=6,
)


@pytest.mark.parametrize("kind", ["cache", "cookie"])
def test_no_request_makes_the_page_cache_store_cookies_or_private_data(kind: str) -> None:
    site = Site(kind)

    @given(REQUESTS)
    def check(requests: list[tuple[str, str, dict[str, str]]]) -> None:
        attacker = Client(site.app)
        for path, method, headers in requests:
            sent = {k: v for k, v in headers.items() if k not in ("Host", "Cookie")}
            status, _, _ = attacker.request(path, method, sent)
            assert status[:3] in ("200", "404")
        for page in site.backend.pages():
            stored = dict((name.lower(), value) for name, value in page[HEADERS])
            assert "set-cookie" not in stored
            assert "private" not in stored.get("cache-control", "")
            if b"user=attacker" in page[BODY] or b"user=victim" in page[BODY]:
                # A page built from a session is kept only as that cookie's own variant.
                assert "cookie" in stored.get("vary", "").lower()
        status, headers, body = call_app(site.app, make_environ("/me"))
        assert (status, body) == ("200 OK", b"user=None")
        assert site.victim_untouched()

    check()
