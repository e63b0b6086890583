"""The HTTP caching rules pinned at their edges (issue 23).

Each test names the rule it holds: the hop-by-hop set, the headers a 304
repeats, one ETag only, naive dates read as GMT whatever the machine's zone
(run under fixed non-UTC zones with ``time.tzset()``), the boundaries of
freshness and of conditional requests. They import the public
:mod:`cachekit.http` names, which keep working wherever the rules live.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator

import pytest

from cachekit import http
from cachekit.http import HOP_BY_HOP
from cachekit.http import NOT_MODIFIED_HEADERS
from cachekit.http import delta_seconds
from cachekit.http import etag_matches
from cachekit.http import header
from cachekit.http import header_values
from cachekit.http import is_not_modified
from cachekit.http import joined
from cachekit.http import make_etag
from cachekit.http import not_modified_headers
from cachekit.http import parse_cache_control
from cachekit.http import parse_http_date
from cachekit.http import patch_served_headers
from cachekit.http import storability
from cachekit.http import strip_hop_by_hop
from cachekit.http import vary_headers

#: 1994-11-06 08:49:37 GMT, RFC 9110's example date.
EXAMPLE = 784111777.0
NOW = 1_700_000_000.0


@pytest.fixture(params=["America/New_York", "Asia/Kolkata", "Pacific/Chatham", "UTC"])
def fixed_zone(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with the process in a fixed time zone (TZ set and ``time.tzset()``), then restore."""
    previous = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    try:
        yield str(request.param)
    finally:
        if previous is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = previous
        time.tzset()


# -- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Sun, 06 Nov 1994 08:49:37 GMT", id="imf-fixdate"),
        pytest.param("Sunday, 06-Nov-94 08:49:37 GMT", id="rfc850"),
        pytest.param("Sun Nov  6 08:49:37 1994", id="asctime-naive"),
        pytest.param("Sun, 06 Nov 1994 08:49:37", id="imf-without-zone-naive"),
    ],
)
def test_http_dates_are_gmt_in_every_zone(fixed_zone: str, value: str) -> None:
    assert parse_http_date(value) == EXAMPLE


def test_zone_fixture_really_changes_local_time(fixed_zone: str) -> None:
    expected_offset = {
        "America/New_York": -5 * 3600,
        "Asia/Kolkata": 19800,
        "Pacific/Chatham": 13 * 3600 + 2700,
    }
    assert time.localtime(EXAMPLE).tm_gmtoff == expected_offset.get(fixed_zone, 0)


def test_explicit_offsets_are_honoured(fixed_zone: str) -> None:
    assert parse_http_date("Sun, 06 Nov 1994 09:49:37 +0100") == EXAMPLE


def test_http_date_formats_gmt_in_every_zone(fixed_zone: str) -> None:
    assert http.http_date(EXAMPLE) == "Sun, 06 Nov 1994 08:49:37 GMT"


def test_if_modified_since_in_a_naive_format_under_a_non_utc_zone(fixed_zone: str) -> None:
    assert is_not_modified("GET", None, "Sun Nov  6 08:49:37 1994", None, EXAMPLE)
    assert not is_not_modified("GET", None, "Sun Nov  6 08:49:36 1994", None, EXAMPLE)


@pytest.mark.parametrize("value", [None, "", "yesterday", "Sun, 06 Nov 99999 08:49:37 GMT"])
def test_no_date(value: str | None) -> None:
    assert parse_http_date(value) is None


# -- hop-by-hop and 304 headers -------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HOP_BY_HOP))
def test_each_hop_by_hop_header_is_stripped(name: str) -> None:
    headers = [("Content-Type", "text/plain"), (name.title(), "x"), ("X-Kept", "1")]
    assert strip_hop_by_hop(headers) == [("Content-Type", "text/plain"), ("X-Kept", "1")]


def test_hop_by_hop_set_is_exactly_rfc_9110s_plus_proxy_connection() -> None:
    assert {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    } == HOP_BY_HOP


def test_transfer_encoding_is_never_replayed() -> None:
    headers = [("Transfer-Encoding", "chunked"), ("Content-Length", "5")]
    assert strip_hop_by_hop(headers) == [("Content-Length", "5")]


def test_headers_named_by_connection_are_stripped_case_insensitively() -> None:
    headers = [("Connection", "X-Trace, close"), ("x-trace", "1"), ("Close", "y"), ("X-Other", "2")]
    assert strip_hop_by_hop(headers) == [("X-Other", "2")]


@pytest.mark.parametrize("name", sorted(NOT_MODIFIED_HEADERS))
def test_each_304_header_is_repeated(name: str) -> None:
    headers = [
        ("Content-Type", "text/html"),
        (name.upper(), "v"),
        ("Content-Length", "10"),
        ("Set-Cookie", "a=1"),
    ]
    assert not_modified_headers(headers) == [(name.upper(), "v")]


def test_304_header_set_is_exactly_rfc_9110s() -> None:
    assert {
        "cache-control",
        "content-location",
        "date",
        "etag",
        "expires",
        "last-modified",
        "vary",
        "age",
    } == NOT_MODIFIED_HEADERS


# -- served headers: one ETag, Age, freshness ------------------------------------------------


def test_no_second_etag_whatever_its_case() -> None:
    for name in ("ETag", "etag", "ETAG"):
        served = patch_served_headers([(name, '"a"')], age=0, lifetime=60, stored_at=NOW, etag='"b"')
        assert [v for n, v in served if n.lower() == "etag"] == ['"a"']


def test_etag_added_when_missing() -> None:
    served = patch_served_headers([], age=None, lifetime=None, stored_at=NOW, etag='"b"')
    assert served == [("ETag", '"b"')]
    assert patch_served_headers([], age=None, lifetime=None, stored_at=NOW, etag=None) == []


def test_age_replaces_any_stored_age_and_is_never_negative() -> None:
    served = patch_served_headers([("AGE", "99")], age=12.9, lifetime=None, stored_at=NOW, etag=None)
    assert served == [("Age", "12")]
    served = patch_served_headers([("Age", "99")], age=-3, lifetime=None, stored_at=NOW, etag=None)
    assert served == [("Age", "0")]
    assert patch_served_headers([("Age", "99")], age=None, lifetime=None, stored_at=NOW, etag=None) == []


def test_freshness_headers_added_only_when_absent() -> None:
    served = patch_served_headers([], age=None, lifetime=60.7, stored_at=EXAMPLE, etag=None)
    assert served == [("Cache-Control", "max-age=60"), ("Expires", "Sun, 06 Nov 1994 08:50:37 GMT")]
    kept = [("Cache-Control", "public"), ("Expires", "x")]
    served = patch_served_headers(kept, age=None, lifetime=60, stored_at=NOW, etag=None)
    assert served == [("Cache-Control", "public, max-age=60"), ("Expires", "x")]
    for directive in ("max-age=5", "s-maxage=5"):
        stated = [("Cache-Control", f"public, {directive}")]
        assert patch_served_headers(stated, age=None, lifetime=60, stored_at=NOW, etag=None)[0] == stated[0]


def test_max_age_on_a_second_cache_control_line_counts() -> None:
    headers = [("Cache-Control", "public"), ("Cache-Control", "max-age=5")]
    served = patch_served_headers(headers, age=None, lifetime=60, stored_at=NOW, etag=None)
    assert [v for n, v in served if n == "Cache-Control"] == ["public", "max-age=5"]


# -- conditional requests ---------------------------------------------------------------------


def test_if_modified_since_boundaries() -> None:
    since = "Sun, 06 Nov 1994 08:49:37 GMT"
    assert is_not_modified("GET", None, since, None, EXAMPLE)  # modified exactly then: not modified
    assert is_not_modified("HEAD", None, since, None, EXAMPLE + 0.9)  # same second
    assert not is_not_modified("GET", None, since, None, EXAMPLE + 1)
    assert is_not_modified("GET", None, since, None, EXAMPLE - 1)
    assert not is_not_modified("POST", None, since, None, EXAMPLE)
    assert not is_not_modified("GET", None, since, None, None)
    assert not is_not_modified("GET", None, None, None, EXAMPLE)
    assert not is_not_modified("GET", None, "not a date", None, EXAMPLE)


def test_if_none_match_takes_precedence() -> None:
    since = "Sun, 06 Nov 1994 08:49:37 GMT"
    assert not is_not_modified("GET", '"other"', since, '"a"', EXAMPLE)
    assert is_not_modified("GET", '"a"', "not a date", '"a"', None)
    assert not is_not_modified("PUT", '"a"', None, '"a"', None)


@pytest.mark.parametrize(
    ("if_none_match", "etag", "expected"),
    [
        pytest.param('"a"', '"a"', True, id="same"),
        pytest.param('W/"a"', '"a"', True, id="weak-request"),
        pytest.param('"a"', 'W/"a"', True, id="weak-stored"),
        pytest.param('"b", "a"', '"a"', True, id="in-list"),
        pytest.param(" * ", '"a"', True, id="star"),
        pytest.param("*", None, False, id="star-no-etag"),
        pytest.param('"b"', '"a"', False, id="other"),
        pytest.param('"a,b"', '"a"', False, id="comma-inside-quotes"),
        pytest.param('"a"', None, False, id="no-etag"),
    ],
)
def test_etag_matching(if_none_match: str, etag: str | None, expected: bool) -> None:
    assert etag_matches(if_none_match, etag) is expected


def test_make_etag_is_a_strong_quoted_digest() -> None:
    tag = make_etag(b"body")
    assert tag.startswith('"')
    assert tag.endswith('"')
    assert len(tag) == 34
    assert make_etag(b"body") == tag != make_etag(b"other")


# -- parsing helpers -------------------------------------------------------------------------


def test_header_helpers_are_case_insensitive_and_ordered() -> None:
    headers = [("Vary", "Accept, cookie"), ("vary", " Accept-Encoding ,, "), ("X", "1")]
    assert header(headers, "VARY") == "Accept, cookie"
    assert header(headers, "missing") is None
    assert joined(headers, "vary") == "Accept, cookie,  Accept-Encoding ,, "
    assert joined(headers, "missing") is None
    assert joined(headers, "VARY") == joined(headers, "vary")
    assert header_values(headers, "Vary") == ["Accept", "cookie", "Accept-Encoding"]
    assert vary_headers(headers) == ["accept", "cookie", "accept-encoding"]
    assert vary_headers([("Vary", "Cookie, cookie")]) == ["cookie"]


def test_parse_cache_control_edges() -> None:
    assert parse_cache_control(None) == {}
    assert parse_cache_control("") == {}
    assert parse_cache_control("Max-Age=5, max-age=9") == {"max-age": "5"}  # the first wins
    assert parse_cache_control('no-cache="a, b", =x, ,private') == {"no-cache": "a, b", "private": None}
    assert parse_cache_control('x="') == {"x": '"'}
    assert parse_cache_control('no-cache=""') == {"no-cache": ""}
    assert parse_cache_control('x="a"') == {"x": "a"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0), ("60", 60), ("-1", None), ("1.5", None), ("", None), (None, None), ("abc", None)],
)
def test_delta_seconds(value: str | None, expected: int | None) -> None:
    directives: dict[str, str | None] = {} if value is None else {"max-age": value}
    assert delta_seconds(directives, "max-age") == expected


# -- storability edges --------------------------------------------------------------------------


def _lifetime(headers: list[tuple[str, str]], **options: object) -> float | None:
    return storability(200, headers, default_timeout=300, now=NOW, **options).lifetime  # type: ignore[arg-type]


def test_lifetime_sources_in_order() -> None:
    assert _lifetime([("Cache-Control", "max-age=60, s-maxage=30")]) == 30
    assert _lifetime([("Cache-Control", "max-age=60")]) == 60
    assert _lifetime([("Expires", http.http_date(NOW + 90)), ("Date", http.http_date(NOW))]) == 90
    assert _lifetime([("Expires", http.http_date(NOW + 90))]) == 90  # no Date: now
    # Expires counts from the response's Date, not from our clock (RFC 9111 section 4.2.1).
    assert _lifetime([("Expires", http.http_date(NOW + 90)), ("Date", http.http_date(NOW - 100))]) == 190
    assert _lifetime([]) == 300


def test_lifetime_of_zero_or_past_is_not_stored() -> None:
    assert _lifetime([("Cache-Control", "max-age=0")]) is None
    assert _lifetime([("Cache-Control", "s-maxage=0, max-age=60")]) is None
    assert _lifetime([("Expires", http.http_date(NOW))]) is None
    assert _lifetime([("Expires", "garbage")]) is None  # an invalid Expires is already expired
    assert _lifetime([("Cache-Control", "max-age=1")]) == 1
    stale = storability(200, [("Cache-Control", "max-age=0")], default_timeout=300, now=NOW)
    assert stale.reason == "response is already stale (max-age=0 or past Expires)"


def test_no_default_lifetime_means_until_evicted() -> None:
    verdict = storability(200, [], default_timeout=None, now=NOW)
    assert verdict.lifetime is None
    assert verdict.reason == ""


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        pytest.param([("Set-Cookie", "a=1")], "response sets a cookie", id="set-cookie"),
        pytest.param([("Vary", "Accept, *")], "Vary: *", id="vary-star"),
        pytest.param([("Cache-Control", "no-store")], "Cache-Control: no-store", id="no-store"),
        pytest.param([("Cache-Control", "Private")], "Cache-Control: private", id="private"),
        pytest.param(
            [("Cache-Control", "public"), ("Cache-Control", "no-cache")],
            "Cache-Control: no-cache",
            id="no-cache",
        ),
    ],
)
def test_never_stored(headers: list[tuple[str, str]], reason: str) -> None:
    verdict = storability(200, headers, default_timeout=300, now=NOW)
    assert verdict.lifetime is None
    assert verdict.reason == reason
    assert not verdict.shareable_with_auth


def test_verdict_reasons_and_defaults() -> None:
    assert storability(
        500, [("Cache-Control", "max-age=60")], default_timeout=300, now=NOW
    ) == http.Storability(None, "status 500 is not cacheable")
    assert (
        storability(200, [], default_timeout=300, now=NOW, request_no_store=True).reason
        == "request said no-store"
    )
    verdict = storability(200, [], default_timeout=300, now=NOW)
    assert verdict == http.Storability(300, "", 0.0, 0.0, False, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.lifetime = 1  # type: ignore[misc]


def test_authorization_needs_public_or_s_maxage() -> None:
    refused = storability(200, [], default_timeout=300, now=NOW, has_authorization=True)
    assert refused.lifetime is None
    assert refused.reason == "request carried Authorization and the response is not public"
    for directive in ("public", "s-maxage=30"):
        verdict = storability(
            200, [("Cache-Control", directive)], default_timeout=300, now=NOW, has_authorization=True
        )
        assert verdict.storable
        assert verdict.shareable_with_auth
    # RFC 9111 also lets must-revalidate share it; cachekit promises only public or s-maxage.
    assert _lifetime([("Cache-Control", "must-revalidate")], has_authorization=True) is None
    assert not storability(200, [], default_timeout=300, now=NOW).shareable_with_auth


def test_status_and_request_no_store() -> None:
    assert storability(500, [], default_timeout=300, now=NOW).lifetime is None
    assert storability(200, [], default_timeout=300, now=NOW, request_no_store=True).lifetime is None
    assert storability(308, [], default_timeout=300, now=NOW).lifetime == 300
    assert storability(201, [], default_timeout=300, now=NOW, statuses={201}).lifetime == 300


@pytest.mark.parametrize("status", sorted(http.EXPLICIT_STATUSES))
def test_error_pages_need_their_own_freshness(status: int) -> None:
    verdict = storability(status, [], default_timeout=300, now=NOW)
    assert verdict.lifetime is None
    assert "explicit freshness" in verdict.reason
    assert storability(status, [("Cache-Control", "max-age=60")], default_timeout=300, now=NOW).lifetime == 60
    expires = [("Expires", http.http_date(NOW + 30))]
    assert storability(status, expires, default_timeout=300, now=NOW).lifetime == 30
    assert storability(status, [], default_timeout=300, now=NOW, explicit_statuses=()).lifetime is None


@pytest.mark.parametrize("directive", ["must-revalidate", "proxy-revalidate", "s-maxage=60"])
def test_no_stale_directives_close_the_stale_windows(directive: str) -> None:
    headers = [("Cache-Control", f"max-age=60, {directive}, stale-while-revalidate=9, stale-if-error=9")]
    verdict = storability(
        200, headers, default_timeout=300, now=NOW, stale_while_revalidate=5, stale_if_error=5
    )
    assert verdict.lifetime == 60
    assert verdict.must_revalidate
    assert (verdict.stale_while_revalidate, verdict.stale_if_error) == (0.0, 0.0)
    plain = storability(200, [("Cache-Control", "max-age=60")], default_timeout=300, now=NOW)
    assert not plain.must_revalidate


def test_delta_seconds_are_capped() -> None:
    cap = http.DELTA_SECONDS_MAX
    assert cap == 2**31
    assert delta_seconds({"max-age": str(cap)}, "max-age") == cap
    assert delta_seconds({"max-age": str(cap + 1)}, "max-age") == cap
    assert delta_seconds({"max-age": "9999999999"}, "max-age") == cap  # ten digits
    assert delta_seconds({"max-age": "1" * 11}, "max-age") == cap
    assert delta_seconds({"max-age": "1000000000"}, "max-age") == 1000000000  # ten digits, under the cap
    assert delta_seconds({"max-age": "9" * 5000}, "max-age") == cap  # longer than int() parses by default
    assert delta_seconds({"max-age": "٣"}, "max-age") is None  # a digit, but not an ASCII one
    for junk in ("1X", "X", "1 ", "+1", "0x10"):
        assert delta_seconds({"max-age": junk}, "max-age") is None, junk


def test_stale_extensions_win_over_the_arguments() -> None:
    verdict = storability(
        200,
        [("Cache-Control", "max-age=5, stale-while-revalidate=7")],
        default_timeout=300,
        now=NOW,
        stale_while_revalidate=1,
        stale_if_error=2,
    )
    assert (verdict.stale_while_revalidate, verdict.stale_if_error) == (7.0, 2.0)
    verdict = storability(
        200, [("Cache-Control", "stale-if-error=0")], default_timeout=300, now=NOW, stale_if_error=9
    )
    assert verdict.stale_if_error == 0.0
