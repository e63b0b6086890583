"""Pyramid with cachekit: a cached page, a session counter and notes, login and logout.

Run it on local memory, or on Redis by setting CACHEKIT_URL, then open http://127.0.0.1:8000/::

    python docs/examples/pyramid_app.py
    CACHEKIT_URL=redis://127.0.0.1:6379/0 python docs/examples/pyramid_app.py

Several worker processes need Redis (or memcached) so they share sessions and pages::

    CACHEKIT_URL=redis://127.0.0.1:6379/0 gunicorn -w 4 --chdir docs/examples 'pyramid_app:create_app()'

The views read the session from ``request.environ["cachekit.session"]``; the
lines that add cachekit to the app are at the end of :func:`create_app`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from demo_pages import home_page
from demo_pages import note_key
from demo_pages import rendered_page
from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response

import cachekit
from middleware import CacheMiddleware
from middleware import SessionMiddleware
from sessions import CacheStore
from sessions import Session

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


def session(request: Request) -> Session:
    """The request's session."""
    current: Session = request.environ["cachekit.session"]
    return current


def index(request: Request) -> Response:
    session(request)["visits"] = session(request).get("visits", 0) + 1
    return Response(home_page(session(request)))


def login(request: Request) -> Response:
    name = request.POST.get("name", "").strip()[:40]
    if name:
        session(request).cycle_key()  # a new session id at login: a planted one becomes worthless
        session(request)["user"] = name
    return HTTPSeeOther("/")


def logout(request: Request) -> Response:
    session(request).flush()  # deletes the stored session; the middleware deletes the cookie
    return HTTPSeeOther("/")


def add_note(request: Request) -> Response:
    # One key per note: overlapping requests that add notes all keep theirs.
    session(request)[note_key()] = request.POST.get("text", "")[:200]
    return HTTPSeeOther("/")


def cached(request: Request) -> Response:
    # Sets no cookie and does not touch the session, so the page cache may keep it.
    return Response(rendered_page())


def create_app(url: str | None = None) -> WSGIApplication:
    """Build the app on the cache at ``url`` (default: ``$CACHEKIT_URL``, else local memory)."""
    cache = cachekit.from_url(url or os.environ.get("CACHEKIT_URL") or "locmem://")
    with Configurator() as config:
        for name, pattern, view, method in [
            ("index", "/", index, "GET"),
            ("login", "/login", login, "POST"),
            ("logout", "/logout", logout, "POST"),
            ("notes", "/notes", add_note, "POST"),
            ("cached", "/cached", cached, "GET"),
        ]:
            config.add_route(name, pattern)
            config.add_view(view, route_name=name, request_method=method)
        app = config.make_wsgi_app()
    # cachekit: a session on every request, and the page cache outside it so
    # that it sees the "Vary: Cookie" of pages that used the session.
    wrapped = SessionMiddleware(app, CacheStore(cache))
    return CacheMiddleware(wrapped, cache=cache, timeout=60)


if __name__ == "__main__":
    from wsgiref.simple_server import make_server

    port = int(os.environ.get("PORT", "8000"))
    with make_server("127.0.0.1", port, create_app()) as server:
        print(f"Serving on http://127.0.0.1:{port}/")
        server.serve_forever()
