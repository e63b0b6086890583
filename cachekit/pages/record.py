"""A stored page as plain data: its layout, its byte encoding, how it is built and served.

A page is a flat tuple of immutable values (status, headers, body, times,
validators, tags), so the local-memory backend keeps it as it is, without
pickling. Every other backend gets the page as bytes in one fixed, versioned
layout (:func:`encode`): a line naming the layout, a JSON list of the fields,
a newline, the body. :func:`decode` reads nothing else, so a value written to
the cache server by someone else is, at worst, a page served as written (never
code run in a worker), and a layout it does not know reads as a miss. Neither
depends on the cache's serializer, so pages are stored with ``serializer=json``
too.

The URL's lookup record (the learned ``Vary`` names and the purge nonce) is
kept the same way (:func:`encode_lookup`).
"""

from __future__ import annotations

import enum
import json
import secrets
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from cachekit.pages.rules import Storability
from cachekit.pages.rules import delta_seconds
from cachekit.pages.rules import header
from cachekit.pages.rules import header_values
from cachekit.pages.rules import is_not_modified
from cachekit.pages.rules import make_etag
from cachekit.pages.rules import not_modified_headers
from cachekit.pages.rules import parse_http_date
from cachekit.pages.rules import patch_served_headers
from cachekit.pages.rules import strip_hop_by_hop
from cachekit.pages.rules import with_vary
from cachekit.tags import Generations

#: A stored page; fields at the positions below. A plain tuple (not a NamedTuple)
#: because the local-memory cache keeps exact tuples of immutable values without
#: pickling, and a hit reads it with no conversion.
Page = tuple[Any, ...]
#: A URL's lookup record: ``(LOOKUP_MARK, vary names, nonce)``.
Lookup = tuple[str, tuple[str, ...], str]

MARK = "cachekit.page/2"
LOOKUP_MARK = "cachekit.vary/2"
STATUS, HEADERS, BODY, STORED_AT, FRESH_UNTIL, STALE_UNTIL, ERROR_UNTIL = 1, 2, 3, 4, 5, 6, 7
ETAG, LAST_MODIFIED, AUTH_OK, TAGS, MUST_REVALIDATE = 8, 9, 10, 11, 12
#: How many fields a page has.
FIELDS = 13
_FIELDS = FIELDS

_PAGE_HEAD = MARK.encode("ascii") + b"\n"
_LOOKUP_HEAD = LOOKUP_MARK.encode("ascii") + b"\n"


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
    patch_freshness: bool = True,
) -> Page:
    """Build the stored page for a response whose hop-by-hop headers are already stripped.

    The stored headers are those a hit serves, less ``Age``: with
    ``Cache-Control: max-age``, ``Expires`` and ``ETag`` added where missing
    (the first two not when ``patch_freshness`` is false: the lifetime came
    from a targeted field, meant for this cache only).
    """
    lifetime = verdict.lifetime
    served = patch_served_headers(
        headers, age=None, lifetime=lifetime if patch_freshness else None, stored_at=now, etag=etag
    )
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
        verdict.must_revalidate,
    )


def stored_page(
    status: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    now: float,
    verdict: Storability,
    generations: Generations,
    etag: bool,
    per_cookie: bool,
    patch_freshness: bool = True,
) -> Page:
    """Build the page for a response whose hop-by-hop headers are not yet stripped.

    :param etag: add a strong ``ETag`` to a ``200`` response that has none.
    :param per_cookie: serve it with ``Vary: Cookie`` (it used an anonymous session).
    :param patch_freshness: add ``Cache-Control: max-age`` and ``Expires`` where missing.
    """
    kept = strip_hop_by_hop(headers)
    if per_cookie:
        kept = with_vary(kept, "Cookie")
    page_etag = header(kept, "etag")
    if page_etag is None and etag and status[:3] == "200":
        page_etag = make_etag(body)
    return make_page(
        status,
        kept,
        body,
        now=now,
        verdict=verdict,
        etag=page_etag,
        generations=generations,
        patch_freshness=patch_freshness,
    )


def new_lookup(names: Iterable[str], previous: Any) -> Lookup:
    """The lookup record for ``names``, keeping the nonce of ``previous`` (a fresh one if none)."""
    nonce = previous[2] if is_lookup(previous) else secrets.token_hex(8)
    return (LOOKUP_MARK, tuple(names), nonce)


def is_lookup(value: Any) -> bool:
    """Whether ``value`` is a lookup record."""
    return type(value) is tuple and len(value) == 3 and value[0] == LOOKUP_MARK


def is_page(value: Any) -> bool:
    """Whether ``value`` is a page in this layout."""
    return type(value) is tuple and len(value) == _FIELDS and value[0] == MARK


# -- bytes ---------------------------------------------------------------------


def encode(record: tuple[Any, ...]) -> bytes:
    """Encode a page or lookup record as plain bytes (see the module docstring)."""
    if record[0] == LOOKUP_MARK:
        return _LOOKUP_HEAD + json.dumps([list(record[1]), record[2]]).encode("utf-8")
    fields = [record[i] for i in range(1, _FIELDS) if i != BODY]
    fields[HEADERS - 1] = [list(pair) for pair in record[HEADERS]]
    fields[TAGS - 2] = [list(pair) for pair in record[TAGS]]
    meta = json.dumps(fields, ensure_ascii=True, allow_nan=False).encode("ascii")
    body: bytes = record[BODY]
    return _PAGE_HEAD + meta + b"\n" + body


# Records decoded in this process, by their exact bytes: a hot page read from a server is
# parsed once, not on every hit (hashing the bytes costs a tenth of parsing them). Bounded
# in bytes, and only small records: a large page's hash would cost what its parse saves.
_DECODED: dict[bytes, tuple[Any, ...]] = {}
_DECODED_MAX_RECORD = 64 * 1024
_DECODED_BUDGET = 4 * 1024 * 1024
_decoded_bytes = 0


def decode(data: Any) -> Page | Lookup | None:
    """Decode what :func:`encode` wrote; ``None`` for anything else (read as a miss).

    Equal bytes give the same (immutable) tuple: the last decodes are kept per process.
    """
    if type(data) is not bytes:
        return None
    known = _DECODED.get(data)
    if known is not None:
        return known
    record = _decode(data)
    if record is not None and len(data) <= _DECODED_MAX_RECORD:
        global _decoded_bytes
        if _decoded_bytes + len(data) > _DECODED_BUDGET:
            _DECODED.clear()
            _decoded_bytes = 0
        _DECODED[data] = record
        _decoded_bytes += len(data)
    return record


def _decode(data: bytes) -> Page | Lookup | None:
    try:
        if data.startswith(_LOOKUP_HEAD):
            names, nonce = json.loads(data[len(_LOOKUP_HEAD) :])
            if type(nonce) is str and type(names) is list and all(type(n) is str for n in names):
                return (LOOKUP_MARK, tuple(names), nonce)
            return None
        if not data.startswith(_PAGE_HEAD):
            return None
        meta, sep, body = data[len(_PAGE_HEAD) :].partition(b"\n")
        fields = json.loads(meta) if sep else None
        return _page_from(fields, body)
    except (ValueError, TypeError):
        return None


_NUMBER = (int, float)


def _page_from(fields: Any, body: bytes) -> Page | None:
    if type(fields) is not list or len(fields) != _FIELDS - 2:
        return None
    status, headers, stored_at, fresh, stale, error, etag, modified, auth_ok, tags, revalidate = fields
    if not (type(status) is str and isinstance(stored_at, _NUMBER) and type(auth_ok) is bool):
        return None
    if type(revalidate) is not bool or not (etag is None or type(etag) is str):
        return None
    if not all(value is None or isinstance(value, _NUMBER) for value in (fresh, stale, error, modified)):
        return None
    pairs = tuple(_pairs(headers, str))
    generations = tuple(_pairs(tags, int))
    if len(pairs) != len(headers) or len(generations) != len(tags):
        return None
    return (
        MARK,
        status,
        pairs,
        body,
        stored_at,
        fresh,
        stale,
        error,
        etag,
        modified,
        auth_ok,
        generations,
        revalidate,
    )


def _pairs(items: Any, second: type) -> Iterable[tuple[Any, Any]]:
    if type(items) is not list:
        return
    for item in items:
        if type(item) is list and len(item) == 2 and type(item[0]) is str and type(item[1]) is second:
            yield (item[0], item[1])


# -- sessions ------------------------------------------------------------------


class SessionUse(enum.Enum):
    """How the session a response used bears on storing it (see :func:`session_use`)."""

    #: No session, or the response did not touch it: stored as usual.
    UNUSED = "unused"
    #: An anonymous session was read: the page is kept per ``Cookie`` header.
    PER_COOKIE = "per-cookie"
    #: A stored session was read, or the session will be saved: never stored.
    PRIVATE = "private"


def is_public(headers: Sequence[tuple[str, str]]) -> bool:
    """Whether the response's ``Cache-Control`` says ``public``."""
    return any(
        value.partition("=")[0].strip().lower() == "public"
        for value in header_values(headers, "cache-control")
    )


def session_use(session: Any, headers: Sequence[tuple[str, str]]) -> SessionUse:
    """Tell how a response with ``headers`` that ran with ``session`` may be stored.

    The session is duck-typed (``accessed``, ``loaded``, ``is_new``,
    ``modified``, ``flushed``: :class:`sessions.Session`'s attributes) because
    ``cachekit`` does not import ``sessions``. A session that is not ours (the
    dict Starlette's ``SessionMiddleware`` puts at ``scope["session"]``) holds
    its data itself: a non-empty one counts as a stored session that was read,
    an empty one that was read as an anonymous one.

    A stored session that was read makes the page one user's: not stored,
    unless the app said ``public`` (then it is kept per cookie). A session
    about to be saved or deleted gets a ``Set-Cookie``, and responses that set
    cookies are never stored. An anonymous session that was read keys the page
    on ``Cookie``.
    """
    if session is None:
        return SessionUse.UNUSED
    # Looked up on the type: on our Session ``is_new`` is a property that reads the store, and a
    # page that never touched its session must not read it (during an outage that raises).
    if not hasattr(type(session), "is_new"):
        # Not ours: a mapping such as Starlette's session, which holds the data itself.
        if isinstance(session, Mapping) and session:
            return SessionUse.PER_COOKIE if is_public(headers) else SessionUse.PRIVATE
        return SessionUse.PER_COOKIE if getattr(session, "accessed", False) else SessionUse.UNUSED
    if not getattr(session, "accessed", False):
        return SessionUse.UNUSED
    if getattr(session, "modified", False) or getattr(session, "flushed", False):
        return SessionUse.PRIVATE
    if getattr(session, "loaded", False) and not getattr(session, "is_new", True) and not is_public(headers):
        return SessionUse.PRIVATE
    return SessionUse.PER_COOKIE


# -- serving -----------------------------------------------------------------------


def page_for(stored: Any, *, has_auth: bool) -> Page | None:
    """Return ``stored`` if it is a page a request (with ``Authorization`` or not) may get, else ``None``.

    The tags are not checked here: that needs the cache.
    """
    if not is_page(stored) or (has_auth and not stored[AUTH_OK]):
        return None
    return stored  # type: ignore[no-any-return]


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
    return page is not None and not page[MUST_REVALIDATE] and now < (page[STALE_UNTIL] or 0.0)


def error_fallback(page: Page | None, now: float) -> Page | None:
    """Return ``page`` if it may stand in for an error (stale-if-error) now, else ``None``."""
    if page is None or page[MUST_REVALIDATE] or now >= (page[ERROR_UNTIL] or 0.0):
        return None
    return page


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


def gateway_timeout() -> tuple[str, list[tuple[str, str]], bytes]:
    """The answer when the origin failed and the stale copy may not stand in (RFC 9111 section 4.2.4).

    A new header list each time: PEP 3333 lets a middleware outside us append to the one it is
    handed (``Set-Cookie``...), so a list shared between requests would carry one user's headers
    to the next.
    """
    return (
        "504 Gateway Timeout",
        [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")],
        b"504 Gateway Timeout: the page must be revalidated and the origin failed.\n",
    )
