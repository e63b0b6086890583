"""Bottle with cachekit: a cached page, a session counter and notes, login and logout.

Run it on local memory, or on Redis by setting CACHEKIT_URL, then open http://127.0.0.1:8000/::

    python docs/examples/bottle_app.py
    CACHEKIT_URL=redis://127.0.0.1:6379/0 python docs/examples/bottle_app.py

Several worker processes need Redis (or memcached) so they share sessions and pages::

    CACHEKIT_URL=redis://127.0.0.1:6379/0 gunicorn -w 4 --chdir docs/examples 'bottle_app:create_app()'

The views read the session from ``request.environ["cachekit.session"]``; the
lines that add cachekit to the app are at the end of :func:`create_app`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import bottle
from bottle import redirect
from bottle import request
from demo_pages import home_page
from demo_pages import note_key
from demo_pages import rendered_page

import cachekit
from middleware import CacheMiddleware
from middleware import SessionMiddleware
from sessions import CacheStore
from sessions import Session

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


def session() -> Session:
    """The current request's session."""
    current: Session = request.environ["cachekit.session"]
    return current


def create_app(url: str | None = None) -> WSGIApplication:
    """Build the app on the cache at ``url`` (default: ``$CACHEKIT_URL``, else local memory)."""
    cache = cachekit.from_url(url or os.environ.get("CACHEKIT_URL") or "locmem://")
    app = bottle.Bottle()

    @app.get("/")
    def index() -> str:
        session()["visits"] = session().get("visits", 0) + 1
        return home_page(session())

    @app.post("/login")
    def login() -> None:
        name = (request.forms.getunicode("name") or "").strip()[:40]
        if name:
            session().cycle_key()  # a new session id at login: a planted one becomes worthless
            session()["user"] = name
        redirect("/", 303)

    @app.post("/logout")
    def logout() -> None:
        session().flush()  # deletes the stored session; the middleware deletes the cookie
        redirect("/", 303)

    @app.post("/notes")
    def add_note() -> None:
        # One key per note: overlapping requests that add notes all keep theirs.
        text = (request.forms.getunicode("text") or "")[:200]
        session()[note_key()] = text
        redirect("/", 303)

    @app.get("/cached")
    def cached() -> str:
        # Sets no cookie and does not touch the session, so the page cache may keep it.
        return rendered_page()

    # cachekit: a session on every request, and the page cache outside it so
    # that it sees the "Vary: Cookie" of pages that used the session.
    wrapped = SessionMiddleware(app, CacheStore(cache))
    return CacheMiddleware(wrapped, cache=cache, timeout=60)


if __name__ == "__main__":
    bottle.run(create_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
