"""The app the reliability suite serves: a session counter and cached pages behind both middlewares.

``CacheMiddleware(SessionMiddleware(views))`` on one cache URL, as a site
would deploy it. gunicorn serves it as ``tests.reliability.app:app`` with the
cache URL in ``$CACHEKIT_RELIABILITY_URL``; in-process tests call
:func:`build_app` with a URL of their own.

Routes:

* ``GET /count``: adds 1 to ``session["count"]`` and answers the new value
  (the session is saved, so the response sets a cookie and is never cached);
* ``GET /page/<n>``: a public page that touches no session, cached for 60 s;
  its body names the process and the moment it was rendered;
* ``GET /me``: private data: the logged-in user's name from the session;
* ``POST /login?name=...`` (cycles the session id) and ``POST /logout`` (flushes it);
* ``GET /stats.json``: this worker's cache counters, never cached.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import cachekit
from cachekit.backends.base import Backend
from cachekit.cache import Cache
from middleware.cache import CacheMiddleware
from middleware.sessions import SessionMiddleware
from sessions.stores.base import Store
from sessions.stores.cache import CacheStore

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

#: Environment variable holding the cache URL gunicorn's workers use.
URL_VAR = "CACHEKIT_RELIABILITY_URL"
PAGE_TIMEOUT = 60


def _reply(
    start_response: StartResponse, body: bytes, headers: list[tuple[str, str]] | None = None
) -> list[bytes]:
    start_response(
        "200 OK",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))), *(headers or [])],
    )
    return [body]


class Views:
    """The routes above; the session is at ``environ["cachekit.session"]``."""

    def __init__(self, pages: Cache, sessions: Cache) -> None:
        self.pages = pages
        self.sessions = sessions
        #: How many times each path was rendered by this process (cache misses reach here).
        self.renders: dict[str, int] = {}

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        self.renders[path] = self.renders.get(path, 0) + 1
        session = environ["cachekit.session"]
        if path == "/count":
            count = session.get("count", 0) + 1
            session["count"] = count
            return _reply(start_response, str(count).encode())
        if path.startswith("/page/"):
            body = f"page {path[6:]} rendered by {os.getpid()} at {time.time():.6f}".encode()
            return _reply(start_response, body)
        if path == "/me":
            return _reply(start_response, f"user={session.get('user')}".encode())
        if path == "/login" and method == "POST":
            name = (parse_qs(environ.get("QUERY_STRING", "")).get("name") or [""])[0]
            session.cycle_key()
            session["user"] = name
            return _reply(start_response, b"logged in")
        if path == "/logout" and method == "POST":
            session.flush()
            return _reply(start_response, b"logged out")
        if path == "/stats.json":
            stats = {"pid": os.getpid(), "pages": self.pages.stats(), "sessions": self.sessions.stats()}
            return _reply(start_response, json.dumps(stats).encode(), [("Cache-Control", "no-store")])
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
        return []


def build_app(url: str | Backend, *, store: Store | None = None, **page_options: object) -> WSGIApplication:
    """Return ``CacheMiddleware(SessionMiddleware(Views))`` on the cache at ``url``.

    :param url: a cache URL, or a ready backend that pages and sessions share.
    :param store: the session store; default a :class:`CacheStore` on ``url``.
    :param page_options: more keyword arguments for :class:`CacheMiddleware`.
    """
    if isinstance(url, str):
        pages = cachekit.from_url(url, key_prefix="pages", name="pages")
        sessions = cachekit.from_url(url, key_prefix="sessions", name="sessions", timeout=None)
    else:
        pages = Cache(url, key_prefix="pages", name="pages")
        sessions = Cache(url, key_prefix="sessions", name="sessions", default_timeout=None)
    views = Views(pages, sessions)
    session_store = store if store is not None else CacheStore(sessions)
    app = CacheMiddleware(
        SessionMiddleware(views, session_store),
        cache=pages,
        timeout=PAGE_TIMEOUT,
        **page_options,  # type: ignore[arg-type]
    )
    app.views = views  # type: ignore[attr-defined]
    app.store = session_store  # type: ignore[attr-defined]
    app.close = lambda: (pages.close(), sessions.close())  # type: ignore[attr-defined]
    return app


def __getattr__(name: str) -> WSGIApplication:
    # gunicorn imports ``app``; building it lazily keeps in-process imports free of the env var.
    if name == "app":
        return build_app(os.environ[URL_VAR])
    raise AttributeError(name)
