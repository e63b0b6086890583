"""A bare WSGI app with cachekit: a cached page, a session counter and notes, login and logout.

Run it on local memory, or on Redis by setting CACHEKIT_URL, then open http://127.0.0.1:8000/::

    python docs/examples/wsgi_app.py
    CACHEKIT_URL=redis://127.0.0.1:6379/0 python docs/examples/wsgi_app.py

Several worker processes need Redis (or memcached) so they share sessions and pages::

    CACHEKIT_URL=redis://127.0.0.1:6379/0 gunicorn -w 4 --chdir docs/examples 'wsgi_app:create_app()'

No framework: the views are WSGI callables, ``/cached`` is decorated with
``@cache_page`` and the whole app is wrapped in ``SessionMiddleware``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from demo_pages import home_page
from demo_pages import note_key
from demo_pages import rendered_page

import cachekit
from cachekit.views import cache_page
from middleware import SessionMiddleware
from sessions import CacheStore
from sessions import Session

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment


def respond(start_response: StartResponse, status: str, body: str = "", location: str = "") -> list[bytes]:
    """Send an HTML page, or a redirect when ``location`` is given."""
    data = body.encode()
    headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(data)))]
    if location:
        headers.append(("Location", location))
    start_response(status, headers)
    return [data]


def form_field(environ: WSGIEnvironment, name: str) -> str:
    """Read one field of a url-encoded POST body."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body: bytes = environ["wsgi.input"].read(min(length, 64 * 1024))
    fields = parse_qs(body.decode("utf-8", "replace"))
    return (fields.get(name) or [""])[0]


def create_app(url: str | None = None) -> WSGIApplication:
    """Build the app on the cache at ``url`` (default: ``$CACHEKIT_URL``, else local memory)."""
    cache = cachekit.from_url(url or os.environ.get("CACHEKIT_URL") or "locmem://")

    def index(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        session: Session = environ["cachekit.session"]
        session["visits"] = session.get("visits", 0) + 1
        return respond(start_response, "200 OK", home_page(session))

    def login(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        session: Session = environ["cachekit.session"]
        name = form_field(environ, "name").strip()[:40]
        if name:
            session.cycle_key()  # a new session id at login: a planted one becomes worthless
            session["user"] = name
        return respond(start_response, "303 See Other", location="/")

    def logout(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["cachekit.session"].flush()  # deletes the stored session; the middleware deletes the cookie
        return respond(start_response, "303 See Other", location="/")

    def add_note(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # One key per note: overlapping requests that add notes all keep theirs.
        text = form_field(environ, "text")[:200]
        environ["cachekit.session"][note_key()] = text
        return respond(start_response, "303 See Other", location="/")

    @cache_page(60, cache=cache)
    def cached(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # Sets no cookie and does not touch the session, so the page cache may keep it.
        body = rendered_page()
        return respond(start_response, "200 OK", body)

    views: dict[tuple[str, str], Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]] = {
        ("GET", "/"): index,
        ("POST", "/login"): login,
        ("POST", "/logout"): logout,
        ("POST", "/notes"): add_note,
        ("GET", "/cached"): cached,
        ("HEAD", "/cached"): cached,
    }

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        view = views.get((environ["REQUEST_METHOD"], environ.get("PATH_INFO") or "/"))
        if view is None:
            return respond(start_response, "404 Not Found", "<h1>Not found</h1>")
        return view(environ, start_response)

    # cachekit: a session on every request (the page cache is the @cache_page above).
    return SessionMiddleware(app, CacheStore(cache))


if __name__ == "__main__":
    from wsgiref.simple_server import make_server

    port = int(os.environ.get("PORT", "8000"))
    with make_server("127.0.0.1", port, create_app()) as server:
        print(f"Serving on http://127.0.0.1:{port}/")
        server.serve_forever()
