"""Call WSGI apps in-process: an environ builder, ``call_app`` and a cookie-keeping ``Client``.

``call_app`` is :func:`werkzeug.test.run_wsgi_app` for our tests: it runs the
app, honours the ``write`` callable, drains the body, calls ``close()`` and
checks that the app started its response exactly once (or again with
``exc_info``).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

Headers = list[tuple[str, str]]


def make_environ(
    path: str = "/",
    method: str = "GET",
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    host: str = "testserver",
    scheme: str = "http",
    **extra: Any,
) -> dict[str, Any]:
    """Build a PEP 3333 environ for ``method path`` (``path`` may hold a query string).

    ``headers`` become ``HTTP_*`` keys (``Content-Type``/``Content-Length`` their
    own); header values are str as WSGI requires (latin-1 code points);
    ``extra`` entries are added last and win.
    """
    parts = urlsplit(path)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": parts.path or "/",
        "QUERY_STRING": parts.query,
        "SERVER_NAME": host,
        "SERVER_PORT": "443" if scheme == "https" else "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": host,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    for name, value in items:
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        if key in environ and key.startswith("HTTP_") and key != "HTTP_HOST":
            sep = "; " if key == "HTTP_COOKIE" else ", "
            environ[key] = f"{environ[key]}{sep}{value}"
        else:
            environ[key] = value
    environ.update(extra)
    return environ


def call_app(app: WSGIApplication, environ: WSGIEnvironment) -> tuple[str, Headers, bytes]:
    """Run ``app`` on ``environ``; return ``(status, headers, body)`` with the body drained and closed."""
    started: list[tuple[str, Headers]] = []
    written: list[bytes] = []

    def start_response(status: str, headers: Headers, exc_info: Any = None) -> Any:
        if started and not exc_info:
            raise AssertionError("start_response called twice without exc_info")
        if exc_info and written:
            raise exc_info[1].with_traceback(exc_info[2])
        assert isinstance(status, str), status
        assert status[:3].isdigit(), status
        for name, value in headers:
            assert isinstance(name, str), name
            assert isinstance(value, str), (name, value)
        started.append((status, list(headers)))
        return written.append

    app_iter = app(environ, start_response)
    chunks: list[bytes] = []
    try:
        for chunk in app_iter:
            assert isinstance(chunk, bytes), chunk
            if not started:
                raise AssertionError("body sent before start_response")
            chunks.append(chunk)
    finally:
        close = getattr(app_iter, "close", None)
        if close is not None:
            close()
    if not started:
        raise AssertionError("the app never called start_response")
    status, headers = started[-1]
    return status, headers, b"".join(written) + b"".join(chunks)


def header_values(headers: Headers, name: str) -> list[str]:
    """Return every value of header ``name`` (case-insensitive), in order."""
    lower = name.lower()
    return [value for key, value in headers if key.lower() == lower]


class Client:
    """Send requests to a WSGI app in-process, keeping cookies like a browser (one host, any path).

    Cookies are stored by name; ``Max-Age=0`` or an ``Expires`` in the past
    removes them. ``cookies`` may be edited to forge what the client sends.
    """

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        #: The cookies sent with each request.
        self.cookies: dict[str, str] = {}

    def request(
        self,
        path: str = "/",
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> tuple[str, Headers, bytes]:
        """Send one request; update :attr:`cookies` from the ``Set-Cookie`` headers."""
        sent = dict(headers or {})
        if self.cookies and "Cookie" not in sent:
            sent["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        status, response_headers, data = call_app(self.app, make_environ(path, method, sent, body))
        for line in header_values(response_headers, "Set-Cookie"):
            pair, *attributes = line.split(";")
            name, _, value = pair.partition("=")
            removed = any(
                a.strip().lower() == "max-age=0" or a.strip().lower().startswith("expires=thu, 01 jan 1970")
                for a in attributes
            )
            if removed:
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = value
        return status, response_headers, data

    def get(self, path: str = "/", headers: Mapping[str, str] | None = None) -> tuple[str, Headers, bytes]:
        """Send a GET request."""
        return self.request(path, "GET", headers)
