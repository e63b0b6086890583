"""Starlette (or FastAPI) with cachekit, natively async: a cached page, a session counter, login and logout.

Run it under uvicorn on local memory, or on Redis by setting CACHEKIT_URL, then
open http://127.0.0.1:8000/::

    uvicorn --factory --app-dir docs/examples starlette_app:create_app
    CACHEKIT_URL=redis://127.0.0.1:6379/0 uvicorn --factory --workers 4 --app-dir docs/examples \\
        starlette_app:create_app

Several worker processes need Redis (or memcached) so they share sessions and pages.

The views use Starlette's own ``request.session``: ``AsgiSessionMiddleware``
puts a :class:`sessions.Session` at ``scope["session"]``, where Starlette looks.
The lines that add cachekit to the app are at the end of :func:`create_app`;
a FastAPI app is wrapped the same way (``app = AsgiSessionMiddleware(FastAPI(...), store)``).
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs

from demo_pages import home_page
from demo_pages import note_key
from demo_pages import rendered_page
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.responses import RedirectResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from cachekit import aio
from middleware import AsgiCacheMiddleware
from middleware import AsgiSessionMiddleware
from sessions.stores.aio_cache import AsyncCacheStore


async def field(request: Request, name: str) -> str:
    """One field of a urlencoded form (parsed here, so python-multipart is not needed)."""
    values = parse_qs((await request.body()).decode("utf-8", "replace")).get(name)
    return values[0] if values else ""


async def index(request: Request) -> HTMLResponse:
    request.session["visits"] = request.session.get("visits", 0) + 1
    return HTMLResponse(home_page(request.session))


async def login(request: Request) -> RedirectResponse:
    name = (await field(request, "name")).strip()[:40]
    if name:
        request.session.cycle_key()  # a new session id at login: a planted one becomes worthless
        request.session["user"] = name
    return RedirectResponse("/", 303)


async def logout(request: Request) -> RedirectResponse:
    request.session.flush()  # deletes the stored session; the middleware deletes the cookie
    return RedirectResponse("/", 303)


async def add_note(request: Request) -> RedirectResponse:
    # One key per note: overlapping requests that add notes all keep theirs.
    text = (await field(request, "text"))[:200]
    request.session[note_key()] = text
    return RedirectResponse("/", 303)


async def cached(request: Request) -> HTMLResponse:
    # Sets no cookie and does not touch the session, so the page cache may keep it.
    return HTMLResponse(rendered_page())


def create_app(url: str | None = None) -> ASGIApp:
    """Build the app on the cache at ``url`` (default: ``$CACHEKIT_URL``, else local memory)."""
    routes = [
        Route("/", index),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/notes", add_note, methods=["POST"]),
        Route("/cached", cached),
    ]
    app: ASGIApp = Starlette(routes=routes)
    # cachekit: an async cache (redis.asyncio for Redis), sessions on it, and the
    # page cache outside them so that it sees the "Vary: Cookie" of pages that
    # used the session.
    cache = aio.from_url(url or os.environ.get("CACHEKIT_URL") or "locmem://")
    app = AsgiSessionMiddleware(app, AsyncCacheStore(cache))
    return AsgiCacheMiddleware(app, cache=cache, timeout=60)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
