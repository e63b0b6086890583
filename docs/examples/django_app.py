"""Django with cachekit, in one file: a cached page, a session counter and notes, login and logout.

Run it on local memory, or on Redis by setting CACHEKIT_URL, then open http://127.0.0.1:8000/::

    python docs/examples/django_app.py
    CACHEKIT_URL=redis://127.0.0.1:6379/0 python docs/examples/django_app.py

Several worker processes need Redis (or memcached) so they share sessions and pages::

    CACHEKIT_URL=redis://127.0.0.1:6379/0 gunicorn -w 4 --chdir docs/examples django_app:application

Django keeps its own ``SessionMiddleware`` and ``cache_page``; cachekit comes in
through two settings, ``CACHES`` and ``SESSION_ENGINE`` (see ``CACHEKIT_SETTINGS``).
Any other ``manage.py`` command works too: ``python docs/examples/django_app.py check``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import django
from demo_pages import home_page
from demo_pages import note_key
from demo_pages import rendered_page
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest
from django.http import HttpResponse
from django.http import HttpResponseRedirect
from django.urls import path
from django.views.decorators.cache import cache_page
from django.views.decorators.http import require_POST

#: What this app adds to a Django project's settings to use cachekit.
CACHEKIT_SETTINGS: dict[str, Any] = {
    "CACHES": {
        "default": {
            "BACKEND": "cachekit.contrib.django.CacheBackend",
            "LOCATION": os.environ.get("CACHEKIT_URL") or "locmem://",
        }
    },
    "SESSION_ENGINE": "sessions.contrib.django",
    "SESSION_COOKIE_NAME": "session",
    # No CSRF middleware, to stay short; a real site keeps CsrfViewMiddleware.
    "MIDDLEWARE": ["django.contrib.sessions.middleware.SessionMiddleware"],
    "ROOT_URLCONF": __name__,
}


def configure() -> None:
    """Configure Django for this file, unless something (a test suite) already did."""
    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY=os.environ.get("SECRET_KEY", "insecure-example-key-change-me"),
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        **CACHEKIT_SETTINGS,
    )
    django.setup()


configure()  # before the views: cache_page reads the settings when it decorates


def see_other(location: str) -> HttpResponseRedirect:
    """Redirect after a POST with 303, so the browser follows with a GET."""
    return HttpResponseRedirect(location, status=303)


def index(request: HttpRequest) -> HttpResponse:
    request.session["visits"] = request.session.get("visits", 0) + 1
    return HttpResponse(home_page(request.session))


@require_POST
def login(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "").strip()[:40]
    if name:
        request.session.cycle_key()  # a new session id at login: a planted one becomes worthless
        request.session["user"] = name
    return see_other("/")


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    request.session.flush()  # deletes the stored session; Django deletes the cookie
    return see_other("/")


@require_POST
def add_note(request: HttpRequest) -> HttpResponse:
    # One key per note: overlapping requests that add notes all keep theirs.
    request.session[note_key()] = request.POST.get("text", "")[:200]
    return see_other("/")


@cache_page(60)
def cached(request: HttpRequest) -> HttpResponse:
    # Sets no cookie and does not touch the session, so the page cache may keep it.
    return HttpResponse(rendered_page())


urlpatterns = [
    path("", index),
    path("login", login),
    path("logout", logout),
    path("notes", add_note),
    path("cached", cached),
]

#: The WSGI application, for gunicorn and other servers.
application: WSGIHandler = get_wsgi_application()

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    port = os.environ.get("PORT", "8000")
    execute_from_command_line(
        sys.argv if len(sys.argv) > 1 else [sys.argv[0], "runserver", "--noreload", port]
    )
