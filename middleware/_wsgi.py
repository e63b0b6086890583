"""Small WSGI helpers shared by the middleware: status codes, headers, closing iterables."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import Any

from cachekit.pages.rules import with_vary
from cachekit.pages.wsgi import status_code as _status_code

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse

Headers = list[tuple[str, str]]


def status_code(status: str) -> int:
    """Return the integer code of a WSGI status line such as ``"200 OK"`` (500 if malformed)."""
    return _status_code(status, default=500)


def add_vary(headers: Headers, field: str) -> None:
    """Add ``field`` to the response's ``Vary`` header in place (the rule is :func:`with_vary`'s)."""
    headers[:] = with_vary(headers, field)


def close_iterable(iterable: Iterable[bytes]) -> None:
    """Call ``close()`` on a WSGI response iterable if it has one, as PEP 3333 requires."""
    close = getattr(iterable, "close", None)
    if close is not None:
        close()


def plain_response(
    start_response: StartResponse,
    status: str,
    body: bytes,
    headers: Headers | None = None,
    exc_info: Any = None,
) -> list[bytes]:
    """Start a ``text/plain`` response and return its body as a WSGI iterable."""
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))), *(headers or [])],
        exc_info,
    )
    return [body]


class ReplaceableBody:
    """Iterate an app's body, but switch to another body if ``replacement()`` says so.

    Used when the app calls ``start_response`` only while its body is being
    iterated (a generator app): a middleware that must change the response at
    that moment (for instance to a 503) can only do so here. ``close()`` always
    reaches the app's iterable.

    :param app_iter: the app's response iterable.
    :param replacement: called after the app's first chunk; returns the body to
        send instead, or ``None`` to pass the app's body through.
    """

    def __init__(self, app_iter: Iterable[bytes], replacement: Callable[[], list[bytes] | None]) -> None:
        self._app_iter = app_iter
        self._replacement = replacement
        self._chunks: Iterator[bytes] | None = None
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        chunks = self._chunks
        if chunks is None:
            chunks = iter(self._app_iter)
            try:
                first = next(chunks)
            except StopIteration:
                first = None
            replaced = self._replacement()
            if replaced is not None:
                self.close()
                chunks = iter(replaced)
            elif first is not None:
                self._chunks = chunks
                return first
            self._chunks = chunks
        return next(chunks)

    def close(self) -> None:
        """Close the app's iterable (once)."""
        if not self._closed:
            self._closed = True
            close_iterable(self._app_iter)
