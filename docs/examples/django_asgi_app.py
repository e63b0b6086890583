"""Django under ASGI with cachekit's ASGI middleware: a cached page, a session counter, login and logout.

Run it under uvicorn on local memory, or on Redis by setting CACHEKIT_URL, then
open http://127.0.0.1:8000/::

    uvicorn --app-dir docs/examples django_asgi_app:application
    CACHEKIT_URL=redis://127.0.0.1:6379/0 uvicorn --workers 4 --app-dir docs/examples \\
        django_asgi_app:application

Django's own session middleware is not used: ``AsgiSessionMiddleware`` wraps
Django's ASGI handler and puts a :class:`sessions.Session` at
``request.scope["session"]``, loaded from Redis with ``redis.asyncio`` without
blocking the event loop; ``AsgiCacheMiddleware`` caches whole pages on the same
async cache. The views are ``async def``, so no request needs a thread.
(For the sync stack, see ``django_app.py``: cachekit there plugs into Django's
own ``CACHES`` and ``SESSION_ENGINE``.)
"""

from __future__ import annotations

import os
import sys

import django
from demo_pages import home_page
from demo_pages import note_key
from demo_pages import rendered_page
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.http import HttpRequest
from django.http import HttpResponse
from django.http import HttpResponseRedirect
from django.urls import path
from django.views.decorators.http import require_POST

from cachekit import aio
from middleware import AsgiCacheMiddleware
from middleware import AsgiSessionMiddleware
from sessions.session import Session
from sessions.stores.aio_cache import AsyncCacheStore


def configure() -> None:
    """Configure Django for this file, unless something (a test suite) already did."""
    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY=os.environ.get("SECRET_KEY", "insecure-example-key-change-me"),
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        # No CSRF middleware, to stay short; a real site keeps CsrfViewMiddleware.
        MIDDLEWARE=[],
        ROOT_URLCONF=__name__,
    )
    django.setup()


configure()


def session_of(request: HttpRequest) -> Session:
    """The request's cachekit session (``AsgiSessionMiddleware`` puts it in the ASGI scope)."""
    session: Session = request.scope["session"]  # type: ignore[attr-defined]
    return session


def see_other(location: str) -> HttpResponseRedirect:
    """Redirect after a POST with 303, so the browser follows with a GET."""
    return HttpResponseRedirect(location, status=303)


async def index(request: HttpRequest) -> HttpResponse:
    session = session_of(request)
    session["visits"] = session.get("visits", 0) + 1
    return HttpResponse(home_page(session))


@require_POST
async def login(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "").strip()[:40]
    if name:
        session_of(request).cycle_key()  # a new session id at login: a planted one becomes worthless
        session_of(request)["user"] = name
    return see_other("/")


@require_POST
async def logout(request: HttpRequest) -> HttpResponse:
    session_of(request).flush()  # deletes the stored session; the middleware deletes the cookie
    return see_other("/")


@require_POST
async def add_note(request: HttpRequest) -> HttpResponse:
    # One key per note: overlapping requests that add notes all keep theirs.
    session_of(request)[note_key()] = request.POST.get("text", "")[:200]
    return see_other("/")


async def cached(request: HttpRequest) -> HttpResponse:
    # Sets no cookie and does not touch the session, so the page cache may keep it.
    response = HttpResponse(rendered_page())
    response["Cache-Control"] = "max-age=60"
    return response


urlpatterns = [
    path("", index),
    path("login", login),
    path("logout", logout),
    path("notes", add_note),
    path("cached", cached),
]

_cache = aio.from_url(os.environ.get("CACHEKIT_URL") or "locmem://")

#: The ASGI application, for uvicorn and other servers: Django inside cachekit's
#: sessions, inside the page cache (which so sees the session's "Vary: Cookie").
application = AsgiCacheMiddleware(
    AsgiSessionMiddleware(get_asgi_application(), AsyncCacheStore(_cache)), cache=_cache, timeout=60
)

if __name__ == "__main__":
    import uvicorn

    if len(sys.argv) > 1:
        from django.core.management import execute_from_command_line

        execute_from_command_line(sys.argv)
    else:
        uvicorn.run(application, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
