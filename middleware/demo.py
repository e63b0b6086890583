"""The demo app behind ``cachekit demo``: a cached page, a session counter, login and stats.

It runs on the local-memory default with no server, or on any cache URL::

    cachekit demo --url redis://127.0.0.1:6379/0

Pages: ``/`` (a session visit counter and login/logout), ``/cached`` (a page
cached for 30 s showing when it was rendered and whether this response came
from the cache), ``/stats`` (hit/miss counters; ``/stats.json`` for machines).
"""

from __future__ import annotations

import html
import json
import os
import socketserver
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler
from wsgiref.simple_server import WSGIServer
from wsgiref.simple_server import make_server

from cachekit.cache import Cache
from cachekit.config import DEFAULT_URL
from cachekit.config import ENV_VAR
from cachekit.config import from_url
from cachekit.views import cache_page
from middleware.sessions import SessionMiddleware
from sessions.session import Session
from sessions.stores import CacheStore

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

CACHED_FOR = 30
_MARKER = b"<!--cache-status-->"

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; }
nav a { margin-right: 1rem; } .hit { color: #087f23; } .miss { color: #b35c00; }
table { border-collapse: collapse; } td, th { padding: .25rem .75rem; border-bottom: 1px solid #ddd; }
"""


def _page(title: str, body: str) -> bytes:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} · cachekit demo</title>"
        f"<style>{_STYLE}</style></head><body><nav><a href='/'>Home</a><a href='/cached'>Cached page</a>"
        f"<a href='/stats'>Stats</a></nav><h1>{html.escape(title)}</h1>{body}</body></html>"
    ).encode()


def _respond(
    start_response: StartResponse, status: str, body: bytes, content_type: str = "text/html"
) -> list[bytes]:
    start_response(
        status, [("Content-Type", f"{content_type}; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _redirect(start_response: StartResponse, location: str) -> list[bytes]:
    start_response("303 See Other", [("Location", location), ("Content-Length", "0")])
    return []


class DemoApp:
    """The demo's WSGI app; wrap it in :class:`SessionMiddleware` (see :func:`build_app`)."""

    def __init__(self, page_cache: Cache, store: CacheStore) -> None:
        self.page_cache = page_cache
        self.store = store
        self.session_cache = store.records
        self.cached_page = cache_page(CACHED_FOR, cache=page_cache)(self._render_cached)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/" and method in ("GET", "HEAD"):
            return self.index(environ, start_response)
        if path == "/cached":
            return self.cached(environ, start_response)
        if path == "/login" and method == "POST":
            return self.login(environ, start_response)
        if path == "/logout" and method == "POST":
            return self.logout(environ, start_response)
        if path == "/stats":
            return _respond(start_response, "200 OK", _page("Stats", self._stats_table()))
        if path == "/stats.json":
            return _respond(start_response, "200 OK", json.dumps(self.stats()).encode(), "application/json")
        return _respond(start_response, "404 Not Found", _page("Not found", "<p>No such page.</p>"))

    def index(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        session: Session = environ["cachekit.session"]
        visits = session.get("visits", 0) + 1
        session["visits"] = visits
        user = session.get("user")
        if user:
            account = (
                f"<p>Logged in as <strong id='user'>{html.escape(user)}</strong>.</p>"
                "<form method='post' action='/logout'><button id='logout'>Log out</button></form>"
            )
        else:
            account = (
                "<form method='post' action='/login'><label>Name <input name='name' id='name' required>"
                "</label> <button id='login'>Log in</button></form>"
            )
        body = (
            f"<p>You have visited this page <strong id='visits'>{visits}</strong> times in this session.</p>"
            f"{account}<p>The <a href='/cached'>cached page</a> is rendered at most every {CACHED_FOR} s.</p>"
        )
        return _respond(start_response, "200 OK", _page("cachekit demo", body))

    def _render_cached(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        rendered = time.strftime("%H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"
        body = (
            f"<p>Rendered at <strong id='rendered'>{rendered}</strong>.</p>"
            f"<p id='status'>{_MARKER.decode()}</p>"
            f"<p>Open it again from the menu: the time stays the same for {CACHED_FOR} s. "
            "(The reload button asks for a fresh copy, and the cache honours that.)</p>"
        )
        return _respond(start_response, "200 OK", _page("Cached page", body))

    def cached(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve the cached page, marking whether this response came from the cache.

        The marker is filled in here, outside the page cache, so the stored
        page stays the same and every response tells the truth about itself.
        """
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        chunks = self.cached_page(environ, capture)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        age = next((v for k, v in headers if k.lower() == "age"), None)
        status_text = (
            f"<span class='hit' id='cache-status'>Served from cache (age {age} s)</span>"
            if age is not None
            else "<span class='miss' id='cache-status'>Freshly rendered (cache miss)</span>"
        )
        body = body.replace(_MARKER, status_text.encode())
        headers.append(("X-Cache", "HIT" if age is not None else "MISS"))
        headers.append(("Content-Length", str(len(body))))
        start_response(captured["status"], headers)
        return [body] if environ.get("REQUEST_METHOD") != "HEAD" else []

    def login(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        session: Session = environ["cachekit.session"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        form = parse_qs(environ["wsgi.input"].read(min(length, 10_000)).decode("utf-8", "replace"))
        name = (form.get("name") or [""])[0].strip()[:40]
        if name:
            session.cycle_key()  # a new id on login: no session fixation
            session["user"] = name
        return _redirect(start_response, "/")

    def logout(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        session: Session = environ["cachekit.session"]
        session.flush()  # deletes the stored session and, with it, the cookie
        body = "<p id='logged-out'>You are logged out; your session is gone.</p><p><a href='/'>Home</a></p>"
        return _respond(start_response, "200 OK", _page("Logged out", body))

    def stats(self) -> dict[str, Any]:
        pages = self.page_cache.stats()
        sessions = self.session_cache.stats()
        count = getattr(self.session_cache.backend, "count", None)
        return {
            "pages": pages,
            "sessions": sessions,
            "session_count": count(self.session_cache.key_prefix + ":") if callable(count) else None,
        }

    def _stats_table(self) -> str:
        stats = self.stats()
        rows = []
        for section in ("pages", "sessions"):
            for name, value in stats[section].items():
                shown = f"{value:.1%}" if name == "hit_ratio" else str(value)
                rows.append(
                    f"<tr><td>{section}</td><td>{name}</td><td id='{section}-{name}'>{shown}</td></tr>"
                )
        count = stats["session_count"]
        rows.append(
            "<tr><td>sessions</td><td>stored sessions</td>"
            f"<td id='session-count'>{count if count is not None else 'n/a for this backend'}</td></tr>"
        )
        return "<table><tr><th>cache</th><th>counter</th><th>value</th></tr>" + "".join(rows) + "</table>"


def build_app(url: str | None = None) -> WSGIApplication:
    """Return the demo WSGI app on ``url`` (default: ``$CACHEKIT_URL`` or ``locmem://``)."""
    url = url or os.environ.get(ENV_VAR) or DEFAULT_URL
    page_cache = from_url(url, key_prefix="demo-pages", name="pages")
    session_cache = from_url(url, key_prefix="demo-sessions", name="sessions", timeout=None)
    store = CacheStore(session_cache)
    app = DemoApp(page_cache, store)
    wrapped = SessionMiddleware(app, store)
    wrapped.demo = app  # type: ignore[attr-defined]
    return wrapped


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def serve(host: str = "127.0.0.1", port: int = 8000, url: str | None = None) -> None:
    """Serve the demo until interrupted."""
    app = build_app(url)
    with make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler) as server:
        shown = url or os.environ.get(ENV_VAR) or DEFAULT_URL
        print(f"cachekit demo on http://{host}:{server.server_port}/ (cache: {shown}); Ctrl-C stops it")
        sys.stdout.flush()
        server.serve_forever()
