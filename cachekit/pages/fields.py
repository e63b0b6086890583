"""Pure rules for the fields a page cache shares with caches in front of it.

* ``Cache-Status`` (RFC 9211): how this cache handled a response, for operators.
* Targeted ``Cache-Control`` (RFC 9213): ``CDN-Cache-Control`` and our own
  target field, read ahead of ``Cache-Control``.
* Surrogate keys (``Surrogate-Key``, ``Cache-Tag``, ``xkey``): tags a response
  declares for itself.

Like :mod:`cachekit.pages.rules`, nothing here touches a cache or a server:
header lists in, values out. Structured fields (RFC 8941) are parsed and
written with ``http_sf``.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any
from typing import cast

import http_sf
from http_sf.types import Token

Headers = Sequence[tuple[str, str]]

#: The header this cache reports in (RFC 9211).
CACHE_STATUS = "cache-status"
#: The ``fwd`` reasons of RFC 9211 section 2.2 this cache reports.
FWD_REASONS = frozenset({"bypass", "method", "uri-miss", "vary-miss", "miss", "request", "stale", "partial"})
#: Default target fields (RFC 9213), first wins: our own, then the CDN one.
TARGET_FIELDS = ("cachekit-cache-control", "cdn-cache-control")
#: Default response headers whose names become tags of the stored page.
SURROGATE_KEY_HEADERS = ("surrogate-key", "cache-tag", "xkey")


def parse_dictionary(value: str) -> dict[str, Any] | None:
    """Parse an RFC 8941 dictionary; ``None`` when it is invalid or empty."""
    try:
        parsed = http_sf.parse(value.encode("ascii"), tltype="dictionary")
    except (http_sf.StructuredFieldError, UnicodeEncodeError, ValueError):
        return None
    return cast("dict[str, Any]", parsed) or None


def _directive_value(value: Any) -> str | None:
    """A dictionary member's value as :func:`~cachekit.pages.rules.parse_cache_control` gives it."""
    if value is True:
        return None
    if isinstance(value, list):  # an inner list, such as no-cache=("set-cookie" "x-id")
        return ", ".join(str(item) for item, _ in value)
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    return str(value)


def targeted_directives(headers: Headers, fields: Sequence[str]) -> dict[str, str | None] | None:
    """The directives of the first of ``fields`` (lower-case, in order) holding a valid dictionary.

    RFC 9213 section 2.1: the first targeted field on the list with a valid,
    non-empty value sets the policy; invalid ones are ignored. ``None`` when
    none does (then ``Cache-Control`` and ``Expires`` apply as usual). A member
    whose value is the boolean false (``no-store=?0``) is not a directive.
    """
    if not fields:
        return None
    found: dict[str, list[str]] = {}
    for name, value in headers:
        lower = name.lower()
        if lower in fields:
            found.setdefault(lower, []).append(value)
    for name in fields:
        lines = found.get(name)
        if not lines:
            continue
        parsed = parse_dictionary(", ".join(lines))
        if parsed is None:
            continue
        return {key: _directive_value(item) for key, (item, _) in parsed.items() if item is not False}
    return None


def _serialize_directives(directives: dict[str, str | None]) -> str:
    parts = []
    for name, value in directives.items():
        if value is None:
            parts.append(name)
        elif value.isascii() and value.isdigit():
            parts.append(f"{name}={value}")
        else:
            quoted = value.replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'{name}="{quoted}"')
    return ", ".join(parts)


def effective_headers(headers: Headers, fields: Sequence[str]) -> Headers:
    """``headers`` as this cache's storage rules must read them (RFC 9213 section 2.1).

    When a targeted field of ``fields`` holds a valid dictionary, its
    directives replace ``Cache-Control``, and ``Expires`` is ignored; otherwise
    ``headers`` itself is returned. Only the storage decision reads the result:
    the client and caches downstream get the response's own headers.
    """
    directives = targeted_directives(headers, fields)
    if directives is None:
        return headers
    kept = [(name, value) for name, value in headers if name.lower() not in ("cache-control", "expires")]
    if directives:
        kept.append(("Cache-Control", _serialize_directives(directives)))
    return kept


def surrogate_keys(headers: Headers, names: Sequence[str]) -> tuple[str, ...]:
    """The tags a response declares in the headers ``names`` (lower-case).

    Values are lists of keys separated by spaces or commas (Fastly's
    ``Surrogate-Key`` and Varnish's ``xkey`` use spaces, Cloudflare's
    ``Cache-Tag`` commas); order is kept, duplicates dropped.
    """
    if not names:
        return ()
    keys: dict[str, None] = {}
    for name, value in headers:
        if name.lower() in names:
            for key in value.replace(",", " ").split():
                keys[key] = None
    return tuple(keys)


def without(headers: Headers, names: Iterable[str]) -> list[tuple[str, str]]:
    """``headers`` without the fields ``names`` (lower-case)."""
    drop = frozenset(names)
    return [(name, value) for name, value in headers if name.lower() not in drop]


def status_member(
    cache: str,
    *,
    hit: bool = False,
    fwd: str | None = None,
    fwd_status: int | None = None,
    ttl: float | None = None,
    stored: bool = False,
    collapsed: bool = False,
    detail: str | None = None,
) -> str:
    """One ``Cache-Status`` list member (RFC 9211): ``cache; hit; ttl=30`` or ``cache; fwd=uri-miss; ...``.

    :param cache: the cache's name (a token when it is one, else a string).
    :param ttl: remaining freshness in seconds (negative when stale); rounded down.
    :param detail: why, in words (an sf-string; characters outside printable ASCII dropped).
    """
    params: dict[str, Any] = {}
    if hit:
        params["hit"] = True
    if fwd is not None:
        params["fwd"] = Token(fwd)
    if fwd_status is not None:
        params["fwd-status"] = fwd_status
    if ttl is not None:
        params["ttl"] = int(ttl // 1)
    if stored:
        params["stored"] = True
    if collapsed:
        params["collapsed"] = True
    if detail:
        params["detail"] = "".join(ch for ch in detail if " " <= ch <= "~")
    try:
        item: Any = Token(cache)
        return str(http_sf.ser([(item, params)]))
    except (http_sf.StructuredFieldError, ValueError, TypeError):
        return str(http_sf.ser([(cache, params)]))


def with_status(headers: Iterable[tuple[str, str]], member: str) -> list[tuple[str, str]]:
    """``headers`` with ``member`` appended to ``Cache-Status`` (last: nearest the client)."""
    out = list(headers)
    for index, (name, value) in enumerate(out):
        if name.lower() == CACHE_STATUS:
            out[index] = (name, f"{value}, {member}" if value.strip() else member)
            return out
    out.append(("Cache-Status", member))
    return out


#: A response as the page cache serves it: status line, headers, body.
Answer = tuple[str, list[tuple[str, str]], bytes]


def marked(answer: Answer, member: str | None) -> Answer:
    """``answer`` with the ``Cache-Status`` member added (unchanged when ``member`` is ``None``)."""
    if member is None:
        return answer
    status, headers, body = answer
    return status, with_status(headers, member), body


__all__ = [
    "CACHE_STATUS",
    "Answer",
    "FWD_REASONS",
    "SURROGATE_KEY_HEADERS",
    "TARGET_FIELDS",
    "effective_headers",
    "marked",
    "parse_dictionary",
    "status_member",
    "surrogate_keys",
    "targeted_directives",
    "with_status",
    "without",
]
