"""The WSGI shell's plumbing: the held ``start_response``, the body handed on, status lines.

The parts of :mod:`cachekit.pages.wsgi` that move bytes and know nothing of pages
being stored: :class:`Capture` holds the app's start until the shell decides,
:func:`serve_page` sends a whole answer, :func:`background_environ` copies a
request's environ for a re-render after it was answered. Every name is
importable from :mod:`cachekit.pages.wsgi` as before.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import cast

from cachekit.pages.fields import with_status
from cachekit.pages.record import Page
from cachekit.pages.record import page_response
from cachekit.pages.urls import environ_key

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

Write = Callable[[bytes], object]

_ENVIRON_KEYS: dict[str, str] = {}

# Not carried into a background render: a condition or range would make the app answer
# 304 or 206 (not a page to store), and the server's handles are done with the response.
_NOT_BACKGROUND = frozenset(
    {
        "HTTP_IF_NONE_MATCH",
        "HTTP_IF_MODIFIED_SINCE",
        "HTTP_IF_MATCH",
        "HTTP_IF_UNMODIFIED_SINCE",
        "HTTP_IF_RANGE",
        "HTTP_RANGE",
        "wsgi.file_wrapper",
    }
)


def _environ_header(environ: WSGIEnvironment, name: str) -> str | None:
    """The engine's header reader for a WSGI environ (lower-case name in, value out)."""
    key = _ENVIRON_KEYS.get(name)
    if key is None:
        key = _ENVIRON_KEYS[name] = environ_key(name)
    value: str | None = environ.get(key)
    return value


def close_iterable(iterable: Iterable[bytes]) -> None:
    """Call ``close()`` on a WSGI response iterable if it has one."""
    close = getattr(iterable, "close", None)
    if close is not None:
        close()


def status_code(status: str | None, default: int = 0) -> int:
    """Return the numeric code of a WSGI status line such as ``"200 OK"`` (``default`` if malformed).

    The one parser of status lines: the page cache takes 0 (not storable), the
    session middleware 500 (``middleware._wsgi``).
    """
    try:
        return int(status[:3]) if status else default
    except ValueError:
        return default


class Capture:
    """A ``start_response`` stand-in that holds the status and headers until :meth:`send`.

    Data the app gives the ``write`` callable before then is kept in
    :attr:`written` (the shell sends it first); after, it goes straight on.
    """

    def __init__(self, start_response: StartResponse) -> None:
        self._start_response = start_response
        self._write: Write | None = None
        #: The status line given by the app, once it called ``start_response``.
        self.status: str | None = None
        #: The headers given by the app.
        self.headers: list[tuple[str, str]] = []
        #: The ``exc_info`` given by the app, if any.
        self.exc_info: OptExcInfo | None = None
        #: Body bytes the app passed to ``write()``, in order.
        self.written: list[bytes] = []

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Write:
        self.status, self.headers, self.exc_info = status, headers, exc_info
        if self._write is not None:  # already sent: the server decides (WSGI re-raises exc_info)
            self._write = self._start_response(status, headers, exc_info)
        return self.write

    def write(self, data: bytes) -> None:
        """The ``write`` callable handed to the app (WSGI's legacy imperative API)."""
        self.written.append(data)
        if self._write is not None:
            self._write(data)

    def send(self) -> list[bytes]:
        """Pass the held ``start_response`` call on; return what the app wrote before it."""
        if self._write is None and self.status is not None:
            self._write = self._start_response(self.status, self.headers, self.exc_info)
        return list(self.written)


class _Chained:
    """Yields ``first`` then ``rest``; closing it closes the app's iterable."""

    def __init__(self, first: list[bytes], rest: Iterator[bytes], iterable: Iterable[bytes]) -> None:
        self._first = first
        self._rest = rest
        self._iterable = iterable

    def __iter__(self) -> Iterator[bytes]:
        yield from self._first
        yield from self._rest

    def close(self) -> None:
        close_iterable(self._iterable)


def serve_page(
    answer: tuple[str, list[tuple[str, str]], bytes], start_response: StartResponse, method: str
) -> Iterable[bytes]:
    """Send one whole ``(status, headers, body)`` answer (its header list is its own)."""
    status, headers, body = answer
    start_response(status, headers)
    return [body] if body or (method != "HEAD" and status[:3] != "304") else []


def _answer(
    page: Page, environ: WSGIEnvironment, now: float, method: str
) -> tuple[str, list[tuple[str, str]], bytes]:
    return page_response(
        page, now, method, environ.get("HTTP_IF_NONE_MATCH"), environ.get("HTTP_IF_MODIFIED_SINCE")
    )


def _marking(start_response: StartResponse, member_of: Callable[[int], str | None]) -> StartResponse:
    """A ``start_response`` that adds the ``Cache-Status`` member ``member_of(status code)``."""

    def start(status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None) -> Write:
        member = member_of(status_code(status))
        return start_response(status, headers if member is None else with_status(headers, member), exc_info)

    return cast("StartResponse", start)


def _raise(exc: Exception) -> Iterator[bytes]:
    raise exc
    yield b""  # pragma: no cover - makes this a generator


def background_environ(environ: WSGIEnvironment) -> WSGIEnvironment:
    """A copy of ``environ`` for rendering the page after its request was answered.

    The input stream is an empty one (a cached ``GET`` has no body, and the
    server's stream is done); conditions and ranges are dropped (the render must
    produce the whole page), as are ``wsgi.file_wrapper`` and the server's sockets
    (``gunicorn.socket``...). Everything else, such as the session a middleware
    put there, stays: the engine still reads it to decide whether the page is stored.
    """
    copy = {key: value for key, value in environ.items() if key not in _NOT_BACKGROUND}
    for key in [key for key in copy if key.endswith(".socket")]:
        del copy[key]
    copy["wsgi.input"] = io.BytesIO(b"")
    return copy


def _discard(status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None) -> Write:
    """The ``start_response`` of a background render: nobody is listening."""
    return _ignore


def _ignore(data: bytes) -> None:
    return None
