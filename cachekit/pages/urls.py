"""WSGI plumbing for the page cache: canonical URLs, start_response capture, closing iterators.

Private: :mod:`cachekit.views` is the API. ``middleware`` has its own helpers
because ``cachekit`` may not import it.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import Any
from urllib.parse import quote
from urllib.parse import unquote_to_bytes
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

# Characters kept as they are in a canonical path: unreserved, sub-delims, ":@/" (RFC 3986).
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_DEFAULT_PORTS = {"http": "80", "https": "443"}

Write = Callable[[bytes], object]

#: Where a session middleware puts the request's session; ``middleware.sessions``
#: uses this same key (its ``ENVIRON_KEY``). The page cache reads it to learn
#: whether a response used the session (see ``cachekit._page.session_use``).
SESSION_ENVIRON_KEY = "cachekit.session"


def _canonical_host(scheme: str, host: str) -> str:
    # Percent-encode all but host characters: a Host header holding "/", "?" or "#" must not
    # be read as part of the path or query ("Host: site/admin" + "/x" is not site/admin/x).
    host = quote(host.lower(), safe=":[]!$&'()*+,;=", encoding="latin-1", errors="replace")
    name, sep, port = host.rpartition(":")
    if sep and "]" not in port and port == _DEFAULT_PORTS.get(scheme):
        return name
    return host


def _canonical_query(query: str, normalize: bool) -> str:
    if normalize and query:
        # Sort the raw pieces, decoding nothing: decoding and re-encoding would make
        # "a=%FE" and "a=%FF", or "x=1%3By%3D2" and "x=1;y=2", share one cache entry.
        return "&".join(sorted(query.split("&")))
    return query


def request_url(environ: WSGIEnvironment, *, normalize_query: bool = False) -> str:
    """Return the canonical ``scheme://host/path?query`` of a request, as the page cache keys it."""
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST")
    if not host:
        host = f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    # WSGI hands over the decoded path as latin-1 text; re-encode it the one canonical way.
    path = quote(path.encode("latin-1", "replace"), safe=_PATH_SAFE) or "/"
    query = _canonical_query(environ.get("QUERY_STRING", ""), normalize_query)
    url = f"{scheme}://{_canonical_host(scheme, host)}{path}"
    return f"{url}?{query}" if query else url


def canonical_url(url: str, *, normalize_query: bool = False) -> str:
    """Return the canonical form of an absolute URL, matching :func:`request_url`.

    :raises ValueError: if ``url`` has no scheme or host.
    """
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"Expected an absolute URL such as 'https://example.com/page', got {url!r}.")
    scheme = parts.scheme.lower()
    path = quote(unquote_to_bytes(parts.path), safe=_PATH_SAFE) or "/"
    query = _canonical_query(parts.query, normalize_query)
    base = f"{scheme}://{_canonical_host(scheme, parts.netloc)}{path}"
    return f"{base}?{query}" if query else base


def environ_key(header_name: str) -> str:
    """Return the environ key of a request header: ``Accept-Language`` -> ``HTTP_ACCEPT_LANGUAGE``."""
    name = header_name.upper().replace("-", "_")
    if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        return name
    return "HTTP_" + name


def close_iterable(iterable: Iterable[bytes]) -> None:
    """Call ``close()`` on a WSGI response iterable if it has one."""
    close = getattr(iterable, "close", None)
    if close is not None:
        close()


class Capture:
    """A ``start_response`` stand-in that records the status and headers.

    With ``forward`` set it passes the call on at once (and data given to the
    ``write`` callable too, while recording it); without, it holds everything
    until :meth:`send` is called, so the caller can still answer differently.
    """

    def __init__(self, start_response: StartResponse, *, forward: bool) -> None:
        self._start_response = start_response
        self._forward = forward
        self._write: Write | None = None
        #: The status line given by the app, once it called ``start_response``.
        self.status: str | None = None
        #: The headers given by the app.
        self.headers: list[tuple[str, str]] = []
        #: The ``exc_info`` given by the app, if any.
        self.exc_info: OptExcInfo | None = None
        #: Body bytes the app passed to ``write()``, in order.
        self.written: list[bytes] = []
        #: Called with ``(status, headers)`` the first time the app starts its response.
        self.on_start: Callable[[str, list[tuple[str, str]]], None] | None = None

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Write:
        first = self.status is None
        self.status, self.headers, self.exc_info = status, headers, exc_info
        if first and self.on_start is not None:
            self.on_start(status, headers)
        if self._forward:
            self._write = self._start_response(status, headers, exc_info)
        return self.write

    def write(self, data: bytes) -> None:
        """The ``write`` callable handed to the app (WSGI's legacy imperative API)."""
        self.written.append(data)
        if self._write is not None:
            self._write(data)

    def send(self) -> None:
        """Pass a held ``start_response`` call on to the server."""
        if self._forward or self.status is None:
            return
        self._forward = True
        self._write = self._start_response(self.status, self.headers, self.exc_info)


class Recorder:
    """Iterates a WSGI body through unchanged while keeping up to ``limit`` bytes of it.

    ``on_close(body)`` gets the complete body as soon as it has been iterated
    to the end within ``limit``, or ``None`` from ``close()`` if it never was;
    ``finally_`` runs right after it. Handing over at the end of iteration, not
    only at ``close()``, means a caller that forgets ``close()`` (a careless
    test client) still stores the page and never leaves its lock held.
    ``close()`` always closes the app's iterable.
    """

    def __init__(
        self,
        iterable: Iterable[bytes],
        *,
        limit: int,
        head: Iterable[bytes] = (),
        prefix: Iterable[bytes] = (),
        on_close: Callable[[bytes | None], None],
        finally_: Callable[[], None] | None = None,
    ) -> None:
        self._iterable = iterable
        self._head = list(head)
        self._prefix = list(prefix)
        self._chunks: list[bytes] | None = list(self._prefix)
        self._size = sum(len(chunk) for chunk in self._prefix)
        self._limit = limit
        self._complete = False
        self._closed = False
        self._handed_over = False
        self._on_close = on_close
        self._finally = finally_
        if self._size > limit:
            self._chunks = None

    def __iter__(self) -> Iterator[bytes]:
        # ``head`` is body the app wrote through ``write()`` before returning: recorded
        # in ``prefix`` already; it still has to reach the client first.
        for chunk in self._head:
            yield chunk
        for chunk in self._iterable:
            chunks = self._chunks
            if chunks is not None:
                self._size += len(chunk)
                if self._size > self._limit:
                    self._chunks = None  # too large to store: stop keeping it, keep streaming
                else:
                    chunks.append(chunk)
            yield chunk
        self._complete = True
        self._hand_over()

    def _hand_over(self) -> None:
        if self._handed_over:
            return
        self._handed_over = True
        try:
            chunks = self._chunks
            self._on_close(b"".join(chunks) if self._complete and chunks is not None else None)
        finally:
            if self._finally is not None:
                self._finally()

    def close(self) -> None:
        """Close the app's iterable, then hand the body over if iteration did not."""
        if self._closed:
            return
        self._closed = True
        try:
            close_iterable(self._iterable)
        finally:
            self._hand_over()


def prepend(first: list[bytes], rest: Iterator[bytes], iterable: Iterable[bytes]) -> Iterable[bytes]:
    """Return an iterable yielding ``first`` then ``rest`` that closes ``iterable`` when closed."""
    return _Chained(first, rest, iterable)


class _Chained:
    def __init__(self, first: list[bytes], rest: Iterator[bytes], iterable: Iterable[bytes]) -> None:
        self._first = first
        self._rest = rest
        self._iterable = iterable

    def __iter__(self) -> Iterator[bytes]:
        yield from self._first
        yield from self._rest

    def close(self) -> None:
        close_iterable(self._iterable)


def status_code(status: str) -> int:
    """Return the numeric code of a WSGI status line such as ``"200 OK"`` (0 if malformed)."""
    try:
        return int(status[:3])
    except ValueError:
        return 0


def any_value(environ: WSGIEnvironment, key: str) -> Any:
    """Return ``environ[key]`` or ``None`` (typed for mypy's WSGIEnvironment)."""
    return environ.get(key)
