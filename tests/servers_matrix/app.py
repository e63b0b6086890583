"""The WSGI app every server in the matrix serves: one cache, one session store, one page cache.

All three are built **at import time**, and the cache is used once right away
(``matrix.booted``), so a server that imports the app before it forks
(gunicorn ``--preload``, uWSGI without ``--lazy-apps``) hands every worker a
cache whose connection pool already held a socket: the test that each worker
gets its own replies is only meaningful that way. ``close()`` runs at process
exit (``atexit``) and appends the pid to ``$CACHEKIT_MATRIX_CLOSE_LOG``.

``CacheMiddleware(SessionMiddleware(views))``, as a site deploys it; the
outermost layer adds ``X-Worker-Pid`` and ``X-Instance`` (``$CACHEKIT_MATRIX_INSTANCE``)
to every response, outside all caching. Routes:

* ``POST /login?name=N``: new session id (``cycle_key``), ``session["user"] = N``;
* ``GET /me``: ``user=<name>`` from the session;
* ``POST /add?item=I``: ``session["item.I"] = 1`` (concurrent adds change different keys);
* ``GET /items``: the session's items, one per line;
* ``GET /count``: adds 1 to ``session["count"]`` and answers it;
* ``GET /slow?seconds=S``: sets ``session["item.slow"]``, then sleeps (for uWSGI's harakiri);
* ``GET /page/<n>``: a public page cached for 60 s, tagged ``pages`` and ``page:<n>``;
  each render sleeps 0.3 s (so a stampede overlaps it) and adds 1 to the
  counter ``matrix.renders:/page/<n>`` in the shared cache;
* ``GET /echo?token=T&n=N``: sets and reads back ``N`` distinct keys and answers how
  many replies did not match their key (``bad=…``): crossed replies on a shared socket show here;
* ``POST /purge?url=U`` and ``POST /invalidate?tag=T``: purge one page, invalidate a tag.
"""

from __future__ import annotations

import atexit
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import cachekit
from cachekit.views import purge
from middleware import CacheMiddleware
from middleware import SessionMiddleware
from sessions import CacheStore
from tests.servers_matrix.names import CLOSE_LOG_VAR
from tests.servers_matrix.names import INSTANCE_VAR
from tests.servers_matrix.names import RENDER_SECONDS
from tests.servers_matrix.names import RENDERS_KEY
from tests.servers_matrix.names import URL_VAR

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

cache = cachekit.from_url(os.environ[URL_VAR])
cache.set("matrix.booted", os.getpid(), timeout=None)  # a socket in the pool before any fork
store = CacheStore(cache)


def _close_at_exit() -> None:
    cache.close()
    path = os.environ.get(CLOSE_LOG_VAR)
    if path:
        with open(path, "a") as log:
            log.write(f"{os.getpid()}\n")


atexit.register(_close_at_exit)


def _reply(start_response: StartResponse, body: str, status: str = "200 OK") -> list[bytes]:
    data = body.encode()
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))]
    )
    return [data]


def _echo(token: str, count: int) -> str:
    bad = 0
    for i in range(count):
        key = f"matrix.echo:{token}:{i}"
        cache.set(key, f"{token}:{i}", timeout=60)
        if cache.get(key) != f"{token}:{i}":
            bad += 1
    keys = [f"matrix.echo:{token}:{i}" for i in range(count)]
    found = cache.get_many(keys)
    bad += sum(1 for i, key in enumerate(keys) if found.get(key) != f"{token}:{i}")
    return f"bad={bad}"


def views(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The routes in the module docstring."""
    path = environ.get("PATH_INFO") or "/"
    method = environ.get("REQUEST_METHOD", "GET")
    query = {name: values[0] for name, values in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path.startswith("/page/"):
        cache.add(RENDERS_KEY + path, 0, timeout=None)
        cache.incr(RENDERS_KEY + path)
        time.sleep(RENDER_SECONDS)
        return _reply(start_response, f"{path} rendered by {os.getpid()} at {time.time():.6f}")
    if path == "/echo":
        return _reply(start_response, _echo(query["token"], int(query.get("n", "20"))))
    if method == "POST" and path == "/purge":
        return _reply(start_response, f"purged={purge(query['url'], cache=cache)}")
    if method == "POST" and path == "/invalidate":
        cache.invalidate_tags(query["tag"])
        return _reply(start_response, "invalidated")
    session = environ["cachekit.session"]
    if method == "POST" and path == "/login":
        session.cycle_key()
        session["user"] = query["name"]
        return _reply(start_response, "logged in")
    if path == "/me":
        return _reply(start_response, f"user={session.get('user')}")
    if method == "POST" and path == "/add":
        session[f"item.{query['item']}"] = 1
        return _reply(start_response, "added")
    if path == "/items":
        return _reply(
            start_response, "\n".join(sorted(key[5:] for key in session if key.startswith("item.")))
        )
    if path == "/slow":
        session["item.slow"] = 1  # saved only if the response is completed
        time.sleep(float(query["seconds"]))
        return _reply(start_response, "slow")
    if path == "/count":
        session["count"] = session.get("count", 0) + 1
        return _reply(start_response, str(session["count"]))
    return _reply(start_response, "not found", "404 Not Found")


def _page_tags(environ: WSGIEnvironment) -> list[str]:
    path = environ.get("PATH_INFO") or "/"
    return ["pages", f"page:{path.rsplit('/', 1)[-1]}"]


_cached = CacheMiddleware(SessionMiddleware(views, store), cache=cache, timeout=60, tags=_page_tags)


def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The app the servers load: the cached, session-aware views plus the worker's identity."""

    def start(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> object:
        identity = [("X-Worker-Pid", str(os.getpid())), ("X-Instance", os.environ.get(INSTANCE_VAR, ""))]
        return start_response(status, [*headers, *identity], exc_info)  # type: ignore[arg-type]

    return _cached(environ, start)  # type: ignore[arg-type]
