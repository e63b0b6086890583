"""ASGI plumbing shared by the ASGI page cache and the ASGI middleware: types, headers, URLs.

Private: :mod:`cachekit.aio_views` and :mod:`middleware` use it. The types are
those of the ASGI spec (and of Starlette's ``starlette.types``), so any ASGI
app or server fits.
"""

from __future__ import annotations

from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import MutableMapping
from typing import Any
from typing import TypeAlias
from urllib.parse import quote
from urllib.parse import unquote_to_bytes

from cachekit._wsgi import _PATH_SAFE
from cachekit._wsgi import _canonical_host
from cachekit._wsgi import _canonical_query

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
#: Raw ASGI headers: lower-case names and values as bytes.
RawHeaders: TypeAlias = "list[tuple[bytes, bytes]]"


def request_header(scope: Scope, name: bytes) -> str | None:
    """Return request header ``name`` (lower-case bytes), repeated values joined with ``", "``."""
    found = [value for key, value in scope.get("headers", ()) if key == name]
    if not found:
        return None
    return (found[0] if len(found) == 1 else b", ".join(found)).decode("latin-1")


def request_headers(scope: Scope) -> dict[str, str]:
    """Return every request header as ``{lower-case name: value}``, repeated ones joined with ``", "``."""
    headers: dict[str, str] = {}
    for key, value in scope.get("headers", ()):
        name = key.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[name] = f"{headers[name]}, {text}" if name in headers else text
    return headers


def to_str_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """Raw ASGI headers as ``(str, str)`` pairs, the shape :mod:`cachekit.http` works on."""
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]


def to_raw_headers(headers: Iterable[tuple[str, str]]) -> RawHeaders:
    """``(str, str)`` header pairs as raw ASGI headers."""
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def scope_url(scope: Scope, *, normalize_query: bool = False) -> str:
    """Return the canonical URL of an HTTP scope, exactly as :func:`cachekit._wsgi.request_url` for WSGI.

    The same request served over WSGI and over ASGI gets the same URL, so the
    two kinds of app can share pages in one cache.
    """
    scheme = scope.get("scheme", "http")
    host = request_header(scope, b"host")
    if not host:
        server = scope.get("server") or ("", "")
        host = f"{server[0]}:{server[1]}"
    raw_path = scope.get("raw_path")
    if raw_path:
        # The request target as the client sent it: unambiguous, whatever root_path holds.
        path_bytes = unquote_to_bytes(raw_path.decode("latin-1").partition("?")[0])
    else:
        root, path = scope.get("root_path", ""), scope.get("path", "")
        path_bytes = (path if path.startswith(root) else root + path).encode("utf-8", "surrogateescape")
    path_text = quote(path_bytes, safe=_PATH_SAFE) or "/"
    query = _canonical_query(scope.get("query_string", b"").decode("latin-1"), normalize_query)
    url = f"{scheme}://{_canonical_host(scheme, host)}{path_text}"
    return f"{url}?{query}" if query else url


async def send_plain(send: Send, status: int, body: bytes, headers: Iterable[tuple[str, str]]) -> None:
    """Send a whole response with ``status``, ``headers`` and ``body``."""
    await send({"type": "http.response.start", "status": status, "headers": to_raw_headers(headers)})
    await send({"type": "http.response.body", "body": body, "more_body": False})


__all__ = [
    "ASGIApp",
    "Message",
    "RawHeaders",
    "Receive",
    "Scope",
    "Send",
    "request_header",
    "request_headers",
    "scope_url",
    "send_plain",
    "to_raw_headers",
    "to_str_headers",
]
