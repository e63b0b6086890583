"""The HTTP caching rules as a table: each case primes the page cache, then asserts on the wire.

Every case sends two requests to an app wrapped in :class:`cachekit.views.PageCache`
whose body names the call (``v1``, ``v2``, ...), so the body tells whether the
second response came from the cache; status, headers and body bytes are checked.
The pure functions of :mod:`cachekit.http` get direct tests at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import pytest

from cachekit import Cache
from cachekit import http
from cachekit.backends.locmem import LocMemBackend
from tests import wsgi
from tests.conftest import FakeClock
from tests.pages.shells import SHELLS
from tests.pages.shells import Shell

NOW = 1_700_000_000.0
PAST = http.http_date(NOW - 3600)
FUTURE = http.http_date(NOW + 3600)

Environ = dict[str, Any]
Headers = list[tuple[str, str]]


def make_environ(
    path: str = "/page",
    *,
    method: str = "GET",
    query: str = "",
    host: str = "example.com",
    scheme: str = "http",
    headers: dict[str, str] | None = None,
) -> Environ:
    """A WSGI environ; ``headers`` use HTTP names (``If-None-Match``)."""
    return wsgi.make_environ(f"{path}?{query}" if query else path, method, headers, host=host, scheme=scheme)


class CountingApp:
    """Answers ``v<n>`` for its n-th call with the configured status and headers."""

    def __init__(
        self, status: str | Callable[[int], str] = "200 OK", headers: Iterable[tuple[str, str]] = ()
    ):
        self.status = status
        self.headers = list(headers)
        self.calls = 0

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Iterator[bytes]:
        self.calls += 1
        status = self.status(self.calls) if callable(self.status) else self.status
        body = b"v%d" % self.calls
        start_response(status, [*self.headers, ("Content-Length", str(len(body)))])
        return iter([b"" if environ["REQUEST_METHOD"] == "HEAD" else body])


@dataclass
class Case:
    """One rule: a response, two requests, and what the second answer must be."""

    id: str
    status: str | Callable[[int], str] = "200 OK"
    headers: tuple[tuple[str, str], ...] = ()
    first: dict[str, Any] = field(default_factory=dict)
    second: dict[str, Any] = field(default_factory=dict)
    advance: float = 0.0
    engine: dict[str, Any] = field(default_factory=dict)
    expect_status: str | None = None  # default: the second call's status
    expect_body: bytes = b"v1"
    #: Header -> exact value, or None for "present with any value".
    present: dict[str, str | None] = field(default_factory=dict)
    absent: tuple[str, ...] = ()


def cached(case_id: str, status: str, **kw: Any) -> Case:
    return Case(case_id, status=status, expect_status=status, present={"Age": "0"}, **kw)


def not_cached(case_id: str, status: str = "200 OK", **kw: Any) -> Case:
    kw.setdefault("expect_body", b"v2")
    kw.setdefault("absent", ("Age",))
    return Case(case_id, status=status, **kw)


ETAG = '"abc"'
ERROR_STATUSES = [
    "404 Not Found",
    "405 Method Not Allowed",
    "410 Gone",
    "414 URI Too Long",
    "501 Not Implemented",
]
CASES = [
    # -- what is stored -------------------------------------------------------
    Case(
        "200-stored-with-freshness-headers",
        present={
            "Age": "0",
            "Cache-Control": "max-age=60",
            "Expires": http.http_date(NOW + 60),
            "ETag": http.make_etag(b"v1"),
            "Content-Length": "2",
        },
    ),
    *[
        cached(f"status-{code}-stored", status)
        for code, status in [
            (203, "203 Non-Authoritative Information"),
            (204, "204 No Content"),
            (300, "300 Multiple Choices"),
            (301, "301 Moved Permanently"),
            (308, "308 Permanent Redirect"),
        ]
    ],
    # Error pages: only with the response's own freshness, never the default lifetime.
    *[
        cached(f"status-{status[:3]}-stored-with-max-age", status, headers=(("Cache-Control", "max-age=60"),))
        for status in ERROR_STATUSES
    ],
    *[not_cached(f"status-{status[:3]}-not-stored-by-default", status) for status in ERROR_STATUSES],
    cached(
        "status-404-stored-when-configured",
        "404 Not Found",
        engine={"statuses": [200, 404]},
    ),
    *[
        not_cached(f"status-{status[:3]}-not-stored", status)
        for status in [
            "201 Created",
            "302 Found",
            "307 Temporary Redirect",
            "500 Internal Server Error",
            "503 Service Unavailable",
        ]
    ],
    not_cached(
        "set-cookie-never-stored",
        headers=(("Set-Cookie", "sid=secret"),),
        present={"Set-Cookie": "sid=secret"},
    ),
    not_cached("cc-private", headers=(("Cache-Control", "private"),), present={"Cache-Control": "private"}),
    not_cached("cc-no-store", headers=(("Cache-Control", "no-store"),)),
    not_cached("cc-no-cache", headers=(("Cache-Control", "no-cache"),)),
    not_cached("cc-qualified-no-cache", headers=(("Cache-Control", 'no-cache="Set-Cookie"'),)),
    not_cached("vary-star", headers=(("Vary", "*"),)),
    not_cached("max-age-0", headers=(("Cache-Control", "max-age=0"),)),
    not_cached("s-maxage-0-wins-over-max-age", headers=(("Cache-Control", "max-age=100, s-maxage=0"),)),
    not_cached("expires-in-the-past", headers=(("Expires", PAST),)),
    not_cached("invalid-expires-is-expired", headers=(("Expires", "not a date"),)),
    not_cached("request-no-store", first={"headers": {"Cache-Control": "no-store"}}),
    not_cached("body-over-max-body-size", engine={"max_body_size": 1}),
    # -- methods -----------------------------------------------------------------
    not_cached("post-passes-through", first={"method": "POST"}, second={"method": "POST"}),
    not_cached("put-passes-through", first={"method": "PUT"}, second={"method": "PUT"}),
    Case(
        "head-answered-from-stored-get",
        second={"method": "HEAD"},
        expect_body=b"",
        present={"Content-Length": "2", "Age": "0"},
    ),
    not_cached("head-is-not-stored", first={"method": "HEAD"}, second={"method": "HEAD"}, expect_body=b""),
    # -- Authorization -------------------------------------------------------------
    not_cached(
        "authorization-not-stored",
        first={"headers": {"Authorization": "Bearer a"}},
        second={"headers": {"Authorization": "Bearer a"}},
    ),
    Case(
        "authorization-public-stored",
        headers=(("Cache-Control", "public"),),
        first={"headers": {"Authorization": "Bearer a"}},
        second={"headers": {"Authorization": "Bearer b"}},
        present={"Cache-Control": "public, max-age=60"},
    ),
    Case(
        "authorization-s-maxage-stored",
        headers=(("Cache-Control", "s-maxage=30"),),
        first={"headers": {"Authorization": "Bearer a"}},
        second={"headers": {"Authorization": "Bearer b"}},
        present={"Cache-Control": "s-maxage=30"},
    ),
    not_cached("authorization-never-served-a-plain-entry", second={"headers": {"Authorization": "Bearer a"}}),
    # -- freshness -------------------------------------------------------------------
    Case("fresh-before-timeout", advance=59, present={"Age": "59"}),
    not_cached("stale-after-timeout", advance=61),
    Case(
        "response-max-age-wins",
        headers=(("Cache-Control", "max-age=100"),),
        advance=90,
        present={"Cache-Control": "max-age=100", "Age": "90"},
    ),
    not_cached("response-max-age-expires", headers=(("Cache-Control", "max-age=10"),), advance=11),
    Case("s-maxage-wins-over-max-age", headers=(("Cache-Control", "max-age=1, s-maxage=100"),), advance=50),
    Case(
        "expires-header-sets-lifetime",
        headers=(("Expires", FUTURE),),
        advance=3000,
        present={"Expires": FUTURE, "Cache-Control": "max-age=3600", "Age": "3000"},
    ),
    not_cached("expires-header-lifetime-ends", headers=(("Expires", FUTURE),), advance=3601),
    Case("app-age-replaced", headers=(("Age", "500"),), present={"Age": "0"}),
    not_cached("request-no-cache-revalidates", second={"headers": {"Cache-Control": "no-cache"}}),
    not_cached("request-max-age-too-old", advance=10, second={"headers": {"Cache-Control": "max-age=5"}}),
    Case("request-max-age-young-enough", advance=3, second={"headers": {"Cache-Control": "max-age=5"}}),
    # -- hop-by-hop ----------------------------------------------------------------------
    Case(
        "hop-by-hop-stripped",
        headers=(("Connection", "X-Trace"), ("X-Trace", "1"), ("Keep-Alive", "timeout=5"), ("X-Kept", "y")),
        present={"X-Kept": "y"},
        absent=("Connection", "X-Trace", "Keep-Alive"),
    ),
    # -- conditional requests -------------------------------------------------------------
    Case(
        "if-none-match-304",
        headers=(("ETag", ETAG),),
        second={"headers": {"If-None-Match": ETAG}},
        expect_status="304 Not Modified",
        expect_body=b"",
        present={"ETag": ETAG, "Age": "0"},
        absent=("Content-Length",),
    ),
    Case(
        "if-none-match-other-200", headers=(("ETag", ETAG),), second={"headers": {"If-None-Match": '"zzz"'}}
    ),
    Case(
        "if-none-match-star-304",
        second={"headers": {"If-None-Match": "*"}},
        expect_status="304 Not Modified",
        expect_body=b"",
    ),
    Case(
        "if-none-match-list-304",
        headers=(("ETag", ETAG),),
        second={"headers": {"If-None-Match": '"x", "abc"'}},
        expect_status="304 Not Modified",
        expect_body=b"",
    ),
    Case(
        "weak-comparison-304",
        headers=(("ETag", 'W/"abc"'),),
        second={"headers": {"If-None-Match": ETAG}},
        expect_status="304 Not Modified",
        expect_body=b"",
    ),
    Case(
        "generated-etag-304",
        second={"headers": {"If-None-Match": http.make_etag(b"v1")}},
        expect_status="304 Not Modified",
        expect_body=b"",
        present={"ETag": http.make_etag(b"v1")},
    ),
    Case("etag-disabled", engine={"etag": False}, absent=("ETag",)),
    Case(
        "if-modified-since-304",
        headers=(("Last-Modified", PAST),),
        second={"headers": {"If-Modified-Since": http.http_date(NOW)}},
        expect_status="304 Not Modified",
        expect_body=b"",
        present={"Last-Modified": PAST},
    ),
    Case(
        "if-modified-since-older-200",
        headers=(("Last-Modified", http.http_date(NOW)),),
        second={"headers": {"If-Modified-Since": PAST}},
    ),
    Case(
        "if-none-match-beats-if-modified-since",
        headers=(("ETag", ETAG), ("Last-Modified", PAST)),
        second={"headers": {"If-None-Match": '"other"', "If-Modified-Since": http.http_date(NOW)}},
    ),
    Case(
        "no-304-for-404",
        status="404 Not Found",
        headers=(("Cache-Control", "max-age=60"),),
        second={"headers": {"If-None-Match": "*"}},
        expect_status="404 Not Found",
    ),
    # -- keys ---------------------------------------------------------------------------------
    not_cached(
        "vary-header-differs",
        headers=(("Vary", "Accept-Language"),),
        first={"headers": {"Accept-Language": "en"}},
        second={"headers": {"Accept-Language": "fr"}},
    ),
    Case(
        "vary-header-same",
        headers=(("Vary", "Accept-Language"),),
        first={"headers": {"Accept-Language": "en"}},
        second={"headers": {"Accept-Language": "en"}},
    ),
    not_cached(
        "vary-on-option",
        engine={"vary_on": ["X-Tenant"]},
        first={"headers": {"X-Tenant": "a"}},
        second={"headers": {"X-Tenant": "b"}},
    ),
    not_cached("query-differs", first={"query": "a=1"}, second={"query": "a=2"}),
    not_cached("query-order-matters-by-default", first={"query": "a=1&b=2"}, second={"query": "b=2&a=1"}),
    Case(
        "query-order-normalized",
        engine={"normalize_query": True},
        first={"query": "a=1&b=2"},
        second={"query": "b=2&a=1"},
    ),
    not_cached("host-differs", first={"host": "a.example"}, second={"host": "b.example"}),
    not_cached("scheme-differs", first={"scheme": "http"}, second={"scheme": "https"}),
    not_cached("path-differs", first={"path": "/a"}, second={"path": "/b"}),
    Case("default-port-ignored", first={"host": "example.com:80"}, second={"host": "example.com"}),
    # -- RFC 5861 ------------------------------------------------------------------------------
    Case(
        "stale-if-error-from-response",
        status=lambda n: "200 OK" if n == 1 else "500 Internal Server Error",
        headers=(("Cache-Control", "max-age=10, stale-if-error=100"),),
        advance=50,
        expect_status="200 OK",
        present={"Age": "50"},
    ),
    not_cached(
        "stale-if-error-window-over",
        status=lambda n: "200 OK" if n == 1 else "500 Internal Server Error",
        headers=(("Cache-Control", "max-age=10, stale-if-error=100"),),
        advance=111,
        expect_status="500 Internal Server Error",
    ),
]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def cache(clock: FakeClock, request: pytest.FixtureRequest) -> Iterator[Cache]:
    cache = Cache(LocMemBackend(f"http-{request.node.nodeid}", clock=clock), clock=clock)
    yield cache
    cache.clear()


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in CASES])
def test_rule(case: Case, shell: str, clock: FakeClock) -> None:
    """Every rule, through the WSGI and the ASGI shell: one engine, one answer."""
    app = CountingApp(case.status, case.headers)
    engine = Shell(shell, app, clock=clock, **case.engine)
    try:
        engine(make_environ(**case.first))
        clock.advance(case.advance)
        status, headers, body = engine(make_environ(**case.second))
    finally:
        engine.close()

    expected_status = case.expect_status
    if expected_status is None:
        expected_status = case.status(app.calls) if callable(case.status) else case.status
    # The ASGI shell carries the code only; the reason phrase is the server's.
    assert (status[:3], body) == (expected_status[:3], case.expect_body)
    if shell == "wsgi":
        assert status == expected_status
    for name, value in case.present.items():
        found = http.header(headers, name)
        assert found is not None, f"{name} missing from {headers}"
        if value is not None:
            assert found == value, f"{name}: {found!r} != {value!r}"
    for name in case.absent:
        assert http.header(headers, name) is None, f"{name} present in {headers}"


def test_at_least_forty_cases() -> None:
    assert len(CASES) >= 40


# -- the pure functions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("", {}, id="empty"),
        pytest.param("Public, MAX-AGE=5", {"public": None, "max-age": "5"}, id="case-insensitive"),
        pytest.param('no-cache="a, b", max-age=1', {"no-cache": "a, b", "max-age": "1"}, id="quoted-comma"),
        pytest.param("max-age=1, max-age=2", {"max-age": "1"}, id="first-wins"),
        pytest.param(" , ,private", {"private": None}, id="empty-members"),
    ],
)
def test_parse_cache_control(value: str, expected: dict[str, str | None]) -> None:
    assert http.parse_cache_control(value) == expected


def test_malformed_max_age_is_ignored() -> None:
    assert http.delta_seconds(http.parse_cache_control("max-age=-1"), "max-age") is None
    assert http.delta_seconds(http.parse_cache_control("max-age=abc"), "max-age") is None


@pytest.mark.parametrize(
    "value",
    ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"],
    ids=["imf-fixdate", "rfc850", "asctime"],
)
def test_parse_http_date_formats(value: str) -> None:
    assert http.parse_http_date(value) == 784111777.0


def test_http_date_round_trips() -> None:
    assert http.http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert http.parse_http_date("garbage") is None


def test_storability_reports_the_reason() -> None:
    verdict = http.storability(200, [("Set-Cookie", "a=b")], default_timeout=60, now=NOW)
    assert not verdict.storable
    assert "cookie" in verdict.reason


def test_storability_reads_rfc5861_extensions() -> None:
    verdict = http.storability(
        200,
        [("Cache-Control", "max-age=5, stale-while-revalidate=7, stale-if-error=9")],
        default_timeout=60,
        now=NOW,
        stale_while_revalidate=1,
    )
    assert (verdict.lifetime, verdict.stale_while_revalidate, verdict.stale_if_error) == (5, 7, 9)


def test_strip_hop_by_hop_honours_connection() -> None:
    headers = [("Connection", "close, X-A"), ("X-A", "1"), ("TE", "trailers"), ("X-B", "2")]
    assert http.strip_hop_by_hop(headers) == [("X-B", "2")]


def test_cache_control_on_several_lines_is_one_list() -> None:
    from cachekit.http import storability

    headers = [("Cache-Control", "max-age=60"), ("Cache-Control", "private")]
    verdict = storability(200, headers, default_timeout=60, now=0.0)
    assert not verdict.storable


@pytest.mark.parametrize(
    "value",
    ["1 Jan 10000000000 00:00 GMT", "Sat, 01 Jun 99999 00:00:00 GMT", "garbage", ""],
)
def test_absurd_http_dates_are_no_date(value: str) -> None:
    from cachekit.http import parse_http_date

    assert parse_http_date(value) is None


@pytest.mark.parametrize(
    ("off", "has_body", "untrusted", "reason"),
    [
        (False, False, False, None),
        (True, True, True, "caching is off (timeout 0)"),
        (False, True, True, "request carries a body"),
        (False, False, True, "request carries an untrusted forwarded header"),
    ],
)
def test_bypass_reason(off: bool, has_body: bool, untrusted: bool, reason: str | None) -> None:
    from cachekit.pages.rules import bypass_reason

    assert bypass_reason(off=off, has_body=has_body, untrusted_forwarded=untrusted) == reason
