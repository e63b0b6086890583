"""A stored page: its layout, how it is built from a response, and how it is served.

Private to :mod:`cachekit.views` and :mod:`cachekit.aio_views`. A page is a
flat tuple of immutable values, so the local-memory backend keeps it without
pickling; other backends pickle it like any value.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any
from typing import NamedTuple

from cachekit.http import Storability
from cachekit.http import delta_seconds
from cachekit.http import header
from cachekit.http import header_values
from cachekit.http import is_not_modified
from cachekit.http import make_etag
from cachekit.http import not_modified_headers
from cachekit.http import parse_http_date
from cachekit.http import patch_served_headers
from cachekit.http import strip_hop_by_hop
from cachekit.http import vary_headers
from cachekit.tags import Generations
from cachekit.tags import generations_valid

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

    from cachekit.cache import Cache

#: A stored page; see the field positions below.
Page = tuple[Any, ...]

MARK = "cachekit.page/1"
STATUS, HEADERS, BODY, STORED_AT, FRESH_UNTIL, STALE_UNTIL, ERROR_UNTIL = 1, 2, 3, 4, 5, 6, 7
ETAG, LAST_MODIFIED, AUTH_OK, TAGS = 8, 9, 10, 11


def _after(start: float, seconds: float | None) -> float | None:
    return None if seconds is None else start + seconds


def make_page(
    status: str,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    now: float,
    verdict: Storability,
    etag: str | None,
    generations: Generations,
) -> Page:
    """Build the stored page for a response whose hop-by-hop headers are already stripped.

    The stored headers are those a hit serves, less ``Age``: with
    ``Cache-Control: max-age``, ``Expires`` and ``ETag`` added where missing.
    """
    lifetime = verdict.lifetime
    served = patch_served_headers(headers, age=None, lifetime=lifetime, stored_at=now, etag=etag)
    return (
        MARK,
        status,
        tuple((str(name), str(value)) for name, value in served),
        bytes(body),
        now,
        _after(now, lifetime),
        _after(now, None if lifetime is None else lifetime + verdict.stale_while_revalidate),
        _after(now, None if lifetime is None else lifetime + verdict.stale_if_error),
        etag,
        parse_http_date(header(headers, "last-modified")),
        verdict.shareable_with_auth,
        generations,
    )


class PageWrite(NamedTuple):
    """What storing one response writes: the URL's learned ``Vary`` and the page under its variant key."""

    #: ``(names, nonce)`` for the URL's headers key.
    learned: tuple[tuple[str, ...], str]
    #: The variant key the page goes under.
    page_key: str
    #: The page itself.
    page: Page
    #: The timeout of both entries.
    keep: float | None


def page_write(
    variant_key: Callable[[tuple[Any, ...]], str],
    status: str,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    now: float,
    verdict: Storability,
    generations: Generations,
    previous: Any,
    vary_on: Iterable[str],
    etag: bool,
    per_cookie: bool = False,
) -> PageWrite:
    """Build the writes that store a response whose hop-by-hop headers are not yet stripped.

    The engines write the page only while the URL's headers key still holds the
    nonce it was looked up with (a purge meanwhile wins); see ``PageCache._store``.

    :param variant_key: the page key of this request for a learned ``(names, nonce)``.
    :param previous: what the URL's headers key held when the request looked it
        up; its nonce is kept, else a new one is drawn.
    :param vary_on: header names the page always varies on, lowercased.
    :param etag: whether to add an ``ETag`` to a ``200`` response that has none.
    :param per_cookie: key the page on the ``Cookie`` header and serve it with
        ``Vary: Cookie`` (the response used an anonymous session).
    """
    stored_headers = strip_hop_by_hop(headers)
    if per_cookie:
        stored_headers = _vary_on_cookie(stored_headers)
    names = tuple(dict.fromkeys((*vary_on, *vary_headers(stored_headers))))
    nonce = previous[1] if type(previous) is tuple else secrets.token_hex(8)
    learned = (names, nonce)
    lifetime = verdict.lifetime
    stale = max(verdict.stale_while_revalidate, verdict.stale_if_error)
    keep = None if lifetime is None else lifetime + stale
    page_etag = header(stored_headers, "etag")
    if page_etag is None and etag and status[:3] == "200":
        page_etag = make_etag(body)
    page = make_page(
        status, stored_headers, body, now=now, verdict=verdict, etag=page_etag, generations=generations
    )
    return PageWrite(learned, variant_key(learned), page, keep)


def _vary_on_cookie(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if "cookie" in vary_headers(headers):
        return headers
    headers = list(headers)
    for index, (name, value) in enumerate(headers):
        if name.lower() == "vary":
            headers[index] = (name, f"{value}, Cookie" if value.strip() else "Cookie")
            return headers
    headers.append(("Vary", "Cookie"))
    return headers


class SessionUse(enum.Enum):
    """How the session a response used bears on storing it (see :func:`session_use`)."""

    #: No session, or the response did not touch it: stored as usual.
    UNUSED = "unused"
    #: An anonymous session was read: the page is kept per ``Cookie`` header.
    PER_COOKIE = "per-cookie"
    #: A stored session was read, or the session will be saved: never stored.
    PRIVATE = "private"


def session_use(session: Any, headers: Sequence[tuple[str, str]]) -> SessionUse:
    """Tell how a response with ``headers`` that ran with ``session`` may be stored.

    The session middleware wraps the page cache when ``@cache_page`` decorates a
    view inside it, so the engine sees the response before the middleware adds
    ``Vary: Cookie``, ``Cache-Control: private`` and ``Set-Cookie``; this
    applies the same rules first. The session is duck-typed (``accessed``,
    ``loaded``, ``is_new``, ``modified``, ``flushed``) because ``cachekit``
    does not import ``sessions``.

    A stored session that was read makes the page one user's: not stored,
    unless the app said ``public`` (then it is kept per cookie, as any shared
    cache downstream would keep it). A session about to be saved or deleted
    gets a ``Set-Cookie``, and responses that set cookies are never stored.
    An anonymous session that was only read keys the page on ``Cookie``.
    """
    if session is None or not getattr(session, "accessed", False):
        return SessionUse.UNUSED
    if getattr(session, "modified", False) or getattr(session, "flushed", False):
        return SessionUse.PRIVATE
    if getattr(session, "loaded", False) and not getattr(session, "is_new", True):
        public = any(
            value.partition("=")[0].strip().lower() == "public"
            for value in header_values(headers, "cache-control")
        )
        if not public:
            return SessionUse.PRIVATE
    return SessionUse.PER_COOKIE


def page_for(stored: Any, *, has_auth: bool) -> Page | None:
    """Return ``stored`` if it is a page a request (with ``Authorization`` or not) may get, else ``None``.

    The tags are not checked here: that needs the cache (:func:`usable_page`).
    """
    if type(stored) is not tuple or not stored or stored[0] != MARK:
        return None
    if has_auth and not stored[AUTH_OK]:
        return None
    return stored


def usable_page(cache: Cache, stored: Any, *, has_auth: bool) -> Page | None:
    """Return ``stored`` if it is a page this request may get (any freshness), else ``None``."""
    page = page_for(stored, has_auth=has_auth)
    if page is not None and page[TAGS] and not generations_valid(cache, page[TAGS]):
        return None  # invalidated by tag: not even a stale copy may be served
    return page


def is_fresh(page: Page, now: float) -> bool:
    """Whether ``page`` is fresh at ``now``."""
    fresh_until = page[FRESH_UNTIL]
    return fresh_until is None or now < fresh_until


def servable(page: Page, now: float, directives: Mapping[str, str | None]) -> bool:
    """Whether ``page`` may answer a request now: fresh, and no older than the request's ``max-age``."""
    fresh_until = page[FRESH_UNTIL]
    if fresh_until is not None and now >= fresh_until:
        return False
    max_age = delta_seconds(directives, "max-age") if directives else None
    return max_age is None or now - page[STORED_AT] <= max_age


def in_revalidate_window(page: Page | None, now: float) -> bool:
    """Whether a stale ``page`` may still be served while one request regenerates it."""
    return page is not None and now < (page[STALE_UNTIL] or 0.0)


def error_fallback(page: Page | None, now: float) -> Page | None:
    """Return ``page`` if it may stand in for an error (stale-if-error) now, else ``None``."""
    return page if page is not None and now < (page[ERROR_UNTIL] or 0.0) else None


def page_response(
    page: Page, now: float, method: str, if_none_match: str | None, if_modified_since: str | None
) -> tuple[str, list[tuple[str, str]], bytes]:
    """Return the ``(status line, headers, body)`` answering a request from ``page``.

    With ``Age``; a ``304`` when a condition matches; no body for ``HEAD``.
    """
    headers = list(page[HEADERS])
    headers.append(("Age", str(max(int(now - page[STORED_AT]), 0))))
    status: str = page[STATUS]
    if (
        status[:3] == "200"
        and (if_none_match is not None or if_modified_since is not None)
        and is_not_modified(method, if_none_match, if_modified_since, page[ETAG], page[LAST_MODIFIED])
    ):
        return "304 Not Modified", not_modified_headers(headers), b""
    return status, headers, b"" if method == "HEAD" else page[BODY]


def serve_page(
    page: Page, environ: WSGIEnvironment, start_response: StartResponse, now: float, method: str
) -> Iterable[bytes]:
    """Answer a WSGI request from ``page`` (see :func:`page_response`)."""
    status, headers, body = page_response(
        page, now, method, environ.get("HTTP_IF_NONE_MATCH"), environ.get("HTTP_IF_MODIFIED_SINCE")
    )
    start_response(status, headers)
    return [body] if body or (method != "HEAD" and status[:3] != "304") else []
