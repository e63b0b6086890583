"""Pure HTTP caching rules for a shared cache (RFC 9111, RFC 9110 conditionals, RFC 5861).

Nothing here touches a cache, a WSGI environ or an ASGI scope: every function
takes header values and returns a decision, so the rules are tested as a table
and reused by the page engine (:mod:`cachekit.pages.engine`) under every shell.

Headers are handled as WSGI gives them: a list of ``(name, value)`` pairs whose
names may have any case.
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass

Headers = Sequence[tuple[str, str]]

#: Methods a shared cache may answer from storage; a ``HEAD`` is answered from a stored ``GET``.
CACHEABLE_METHODS = frozenset({"GET", "HEAD"})

#: Statuses stored with the default lifetime when the response states none.
CACHEABLE_STATUSES = frozenset({200, 203, 204, 300, 301, 308})

#: Statuses stored only when the response states its own freshness (``s-maxage``,
#: ``max-age`` or ``Expires``): error pages never get the default lifetime.
EXPLICIT_STATUSES = frozenset({404, 405, 410, 414, 501})

#: The largest delta-seconds value; larger ones mean this (RFC 9111 section 1.2.2).
DELTA_SECONDS_MAX = 2**31

#: Hop-by-hop headers (RFC 9110 section 7.6.1) plus ``Proxy-Connection``; never stored.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

#: Headers a ``304 Not Modified`` repeats from the stored response (RFC 9110 section 15.4.5).
NOT_MODIFIED_HEADERS = frozenset(
    {"cache-control", "content-location", "date", "etag", "expires", "last-modified", "vary", "age"}
)

# Response Cache-Control directives that forbid a shared cache to store the response.
_NO_STORE_DIRECTIVES = ("no-store", "private", "no-cache")
# Directives that let a shared cache answer a request carrying Authorization. RFC 9111
# section 3.5 also lets must-revalidate do it; we promise "only public or s-maxage".
_AUTH_OK_DIRECTIVES = ("public", "s-maxage")
# Directives that forbid serving the response stale (RFC 9111 sections 4.2.4, 5.2.2.2, 5.2.2.8).
_NO_STALE_DIRECTIVES = ("must-revalidate", "proxy-revalidate", "s-maxage")
_ASCII_DIGITS = frozenset("0123456789")


def header(headers: Headers, name: str) -> str | None:
    """Return the first value of header ``name`` (any case), or ``None``."""
    name = name.lower()
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def joined(headers: Headers, name: str) -> str | None:
    """Return every line of header ``name`` as one comma-joined value, or ``None``.

    Several field lines of one name are one list (RFC 9110 section 5.3): a
    ``private`` on the second ``Cache-Control`` line counts as much as on the first.
    """
    name = name.lower()
    values = [value for key, value in headers if key.lower() == name]
    return ", ".join(values) if values else None


def header_values(headers: Headers, name: str) -> list[str]:
    """Return every value of header ``name``, comma lists split and stripped."""
    name = name.lower()
    values: list[str] = []
    for key, value in headers:
        if key.lower() == name:
            values.extend(part.strip() for part in value.split(",") if part.strip())
    return values


def parse_cache_control(value: str | None) -> dict[str, str | None]:
    """Parse a ``Cache-Control`` value into ``{directive: argument or None}``.

    Directive names are lower-cased, quoted arguments unquoted; the first
    occurrence of a repeated directive wins.

    >>> parse_cache_control('public, max-age=60, no-cache="Set-Cookie"')
    {'public': None, 'max-age': '60', 'no-cache': 'Set-Cookie'}
    """
    directives: dict[str, str | None] = {}
    if not value:
        return directives
    for part in _split_list(value):
        name, sep, argument = part.partition("=")
        name = name.strip().lower()
        if not name or name in directives:
            continue
        arg = argument.strip() if sep else None
        if arg is not None and len(arg) >= 2 and arg[0] == arg[-1] == '"':
            arg = arg[1:-1]
        directives[name] = arg
    return directives


def _split_list(value: str) -> list[str]:
    """Split a header list on commas outside quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return [part for part in parts if part]


def delta_seconds(directives: Mapping[str, str | None], name: str) -> int | None:
    """Return directive ``name`` as non-negative seconds, or ``None`` if absent or malformed.

    RFC 9111 section 1.2.2: ASCII digits only (``str.isdigit`` also accepts
    ``"\u00b2"``, which ``int`` refuses), and a value past 2**31 means 2**31,
    so a 5,000-digit value is neither an error nor slow to read.
    """
    value = directives.get(name)
    if not value or not _ASCII_DIGITS.issuperset(value):
        return None
    if len(value) > 10:
        return DELTA_SECONDS_MAX
    return min(int(value), DELTA_SECONDS_MAX)


def http_date(timestamp: float) -> str:
    """Format a Unix timestamp as an IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``)."""
    return email.utils.formatdate(timestamp, usegmt=True)


def parse_http_date(value: str | None) -> float | None:
    """Parse an HTTP date into a Unix timestamp; ``None`` if absent or invalid."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
        if parsed.tzinfo is None:  # RFC 850 and asctime dates are GMT by definition
            parsed = parsed.replace(tzinfo=datetime.timezone.utc)
        return parsed.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        # A client controls If-Modified-Since: an absurd year is "no date", not a 500.
        return None


def vary_headers(headers: Headers) -> list[str]:
    """Return the request header names a response varies on, lower-cased, in order."""
    seen: list[str] = []
    for name in header_values(headers, "vary"):
        lowered = name.lower()
        if lowered not in seen:
            seen.append(lowered)
    return seen


def with_vary(headers: Headers, field: str) -> list[tuple[str, str]]:
    """Return a copy of ``headers`` whose ``Vary`` names ``field``, added to the first ``Vary`` once.

    ``Vary: *`` already covers every field and is left alone.
    """
    merged = list(headers)
    present = vary_headers(merged)
    if field.lower() in present or "*" in present:
        return merged
    for index, (name, value) in enumerate(merged):
        if name.lower() == "vary":
            merged[index] = (name, f"{value}, {field}" if value.strip() else field)
            return merged
    merged.append(("Vary", field))
    return merged


def strip_hop_by_hop(headers: Headers) -> list[tuple[str, str]]:
    """Drop hop-by-hop headers, including any named by ``Connection``, from ``headers``."""
    drop = set(HOP_BY_HOP)
    drop.update(name.lower() for name in header_values(headers, "connection"))
    return [(name, value) for name, value in headers if name.lower() not in drop]


def make_etag(body: bytes) -> str:
    """Return a strong entity tag for ``body``: a quoted 128-bit BLAKE2b digest."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def etag_matches(if_none_match: str, etag: str | None) -> bool:
    """Whether ``If-None-Match`` matches ``etag`` by weak comparison (RFC 9110 section 13.1.2)."""
    if etag is None:
        return False
    value = if_none_match.strip()
    if value == "*":
        return True
    wanted = _opaque(etag)
    return any(_opaque(tag) == wanted for tag in _split_list(value))


def is_not_modified(
    method: str,
    if_none_match: str | None,
    if_modified_since: str | None,
    etag: str | None,
    last_modified: float | None,
) -> bool:
    """Whether a stored response answers this conditional ``GET``/``HEAD`` with ``304``.

    ``If-None-Match`` takes precedence: ``If-Modified-Since`` counts only when
    the request has no ``If-None-Match`` (RFC 9110 section 13.2.2).
    """
    if method not in CACHEABLE_METHODS:
        return False
    if if_none_match is not None:
        return etag_matches(if_none_match, etag)
    if if_modified_since is None or last_modified is None:
        return False
    since = parse_http_date(if_modified_since)
    return since is not None and int(last_modified) <= since


@dataclass(frozen=True)
class Storability:
    """The verdict on one response: whether a shared cache may store it, and for how long.

    ``lifetime`` is ``None`` (do not store) or seconds > 0.
    """

    #: Seconds the response stays fresh, or ``None`` when it must not be stored.
    lifetime: float | None
    #: Why it must not be stored (for logs and tests); empty when storable.
    reason: str = ""
    #: Seconds a stale copy may be served while one request revalidates (RFC 5861).
    stale_while_revalidate: float = 0.0
    #: Seconds a stale copy may stand in for an error (RFC 5861).
    stale_if_error: float = 0.0
    #: True when the response may answer requests that carry ``Authorization``.
    shareable_with_auth: bool = False
    #: True when a stale copy must never be served (``must-revalidate``,
    #: ``proxy-revalidate``, ``s-maxage``): the stale windows are then 0.
    must_revalidate: bool = False

    @property
    def storable(self) -> bool:
        """True when the response may be stored."""
        return self.lifetime is not None


def storability(
    status: int,
    headers: Headers,
    *,
    default_timeout: float | None,
    now: float,
    has_authorization: bool = False,
    request_no_store: bool = False,
    statuses: Iterable[int] = CACHEABLE_STATUSES,
    explicit_statuses: Iterable[int] = EXPLICIT_STATUSES,
    stale_while_revalidate: float = 0.0,
    stale_if_error: float = 0.0,
) -> Storability:
    """Decide whether a shared cache may store a response to a ``GET``, and for how long.

    The response's own ``s-maxage``, ``max-age`` or ``Expires`` (in that order)
    wins over ``default_timeout``; ``None`` as the default means "until
    evicted". Its ``stale-while-revalidate``/``stale-if-error`` extensions win
    over the arguments of the same name, and ``must-revalidate``,
    ``proxy-revalidate`` or ``s-maxage`` set both windows to 0.

    :param status: the response status code.
    :param headers: the response headers.
    :param default_timeout: lifetime when the response states none.
    :param now: the current Unix time, to read ``Expires``.
    :param has_authorization: the request carried ``Authorization``.
    :param request_no_store: the request said ``Cache-Control: no-store``.
    :param statuses: the status codes that may be stored with ``default_timeout``.
    :param explicit_statuses: further status codes stored only with the
        response's own freshness.
    """
    explicit_only = status not in statuses
    if explicit_only and status not in explicit_statuses:
        return Storability(None, f"status {status} is not cacheable")
    if request_no_store:
        return Storability(None, "request said no-store")
    if header(headers, "set-cookie") is not None:
        return Storability(None, "response sets a cookie")
    if "*" in vary_headers(headers):
        return Storability(None, "Vary: *")
    cc = parse_cache_control(joined(headers, "cache-control"))
    for directive in _NO_STORE_DIRECTIVES:
        if directive in cc:
            return Storability(None, f"Cache-Control: {directive}")
    shareable = any(directive in cc for directive in _AUTH_OK_DIRECTIVES)
    if has_authorization and not shareable:
        return Storability(None, "request carried Authorization and the response is not public")
    lifetime: float | None
    s_maxage = delta_seconds(cc, "s-maxage")
    max_age = delta_seconds(cc, "max-age")
    if s_maxage is not None:
        lifetime = float(s_maxage)
    elif max_age is not None:
        lifetime = float(max_age)
    elif header(headers, "expires") is not None:
        expires = parse_http_date(header(headers, "expires"))
        # An invalid Expires means "already expired" (RFC 9111 section 5.3).
        date = parse_http_date(header(headers, "date")) or now
        lifetime = 0.0 if expires is None else expires - date
    elif explicit_only:
        return Storability(None, f"status {status} is stored only with explicit freshness")
    else:
        lifetime = default_timeout
    if lifetime is not None and lifetime <= 0:
        return Storability(None, "response is already stale (max-age=0 or past Expires)")
    if any(directive in cc for directive in _NO_STALE_DIRECTIVES):
        return Storability(lifetime, shareable_with_auth=shareable, must_revalidate=True)
    swr = delta_seconds(cc, "stale-while-revalidate")
    sie = delta_seconds(cc, "stale-if-error")
    return Storability(
        lifetime,
        stale_while_revalidate=float(stale_while_revalidate if swr is None else swr),
        stale_if_error=float(stale_if_error if sie is None else sie),
        shareable_with_auth=shareable,
    )


def patch_served_headers(
    headers: Headers, *, age: float | None, lifetime: float | None, stored_at: float, etag: str | None
) -> list[tuple[str, str]]:
    """Return stored headers as served from cache: with ``Age`` and, if absent, freshness headers.

    Adds ``Cache-Control: max-age`` (appended to an existing ``Cache-Control``
    that has no ``max-age``/``s-maxage``), ``Expires`` and ``ETag`` when the
    stored response lacks them, and replaces any ``Age`` (dropped when ``age``
    is ``None``, for a caller that adds it on each hit).
    """
    served = [(name, value) for name, value in headers if name.lower() != "age"]
    if lifetime is not None:
        position = next((i for i, (name, _) in enumerate(served) if name.lower() == "cache-control"), None)
        if position is None:
            served.append(("Cache-Control", f"max-age={int(lifetime)}"))
        else:
            name, value = served[position]
            cc = parse_cache_control(joined(served, "cache-control"))
            if "max-age" not in cc and "s-maxage" not in cc:
                served[position] = (name, f"{value}, max-age={int(lifetime)}")
        if header(served, "expires") is None:
            served.append(("Expires", http_date(stored_at + lifetime)))
    if etag is not None and header(served, "etag") is None:
        served.append(("ETag", etag))
    if age is not None:
        served.append(("Age", str(max(int(age), 0))))
    return served


def not_modified_headers(headers: Headers) -> list[tuple[str, str]]:
    """Keep only the headers a ``304 Not Modified`` repeats."""
    return [(name, value) for name, value in headers if name.lower() in NOT_MODIFIED_HEADERS]


def bypass_reason(*, off: bool, has_body: bool, untrusted_forwarded: bool) -> str | None:
    """Why a ``GET``/``HEAD`` must go past the page cache untouched, or ``None`` if it need not.

    :param off: the cache's default lifetime is 0.
    :param has_body: the request carries a body (a "fat GET"): the app may read it, and it is
        not part of the key, so its answer must never be shared.
    :param untrusted_forwarded: it carries a forwarded header (host, scheme, prefix) the
        operator did not declare trusted, which an app may use to build absolute URLs.
    """
    if off:
        return "caching is off (timeout 0)"
    if has_body:
        return "request carries a body"
    if untrusted_forwarded:
        return "request carries an untrusted forwarded header"
    return None


__all__ = [
    "CACHEABLE_METHODS",
    "CACHEABLE_STATUSES",
    "DELTA_SECONDS_MAX",
    "EXPLICIT_STATUSES",
    "HOP_BY_HOP",
    "NOT_MODIFIED_HEADERS",
    "Storability",
    "bypass_reason",
    "delta_seconds",
    "etag_matches",
    "header",
    "header_values",
    "joined",
    "http_date",
    "is_not_modified",
    "make_etag",
    "not_modified_headers",
    "parse_cache_control",
    "parse_http_date",
    "patch_served_headers",
    "storability",
    "strip_hop_by_hop",
    "vary_headers",
]
