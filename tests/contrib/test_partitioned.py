"""A Partitioned (CHIPS) session cookie, on request, in SessionMiddleware and every adapter.

Flask's and Starlette's own options are checked against the peers in
test_flask_peer.py and test_starlette_sessions.py; this file covers the rest.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cachekit.backends.locmem import LocMemBackend
from cachekit.cache import Cache
from middleware import AsgiSessionMiddleware
from middleware import SessionMiddleware
from sessions.cookies import delete_cookie
from sessions.cookies import dump_cookie
from sessions.stores import CacheStore
from tests.asgi import AsgiClient
from tests.wsgi import Client
from tests.wsgi import header_values


def test_dump_and_delete_cookie_carry_partitioned() -> None:
    line = dump_cookie("s", "v", secure=True, samesite="None", partitioned=True)
    assert line.endswith("; SameSite=None; Partitioned")
    assert delete_cookie("s", secure=True, partitioned=True).endswith("; Partitioned")
    assert "Partitioned" not in dump_cookie("s", "v")


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    environ["cachekit.session"]["user"] = "ada"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


@pytest.mark.parametrize("partitioned", [True, False])
def test_wsgi_session_middleware(partitioned: bool) -> None:
    store = CacheStore(Cache(LocMemBackend(f"partitioned-wsgi-{partitioned}")))
    app = SessionMiddleware(wsgi_app, store, cookie_secure=True, cookie_partitioned=partitioned)
    _, headers, _ = Client(app).get("/")
    (line,) = header_values(headers, "Set-Cookie")
    assert ("; Partitioned" in line) is partitioned


def test_wsgi_session_middleware_from_settings() -> None:
    settings = {
        "SESSION_COOKIE_PARTITIONED": True,
        "SESSION_COOKIE_SECURE": True,
        "CACHES": {"default": {"BACKEND": "locmem", "LOCATION": "partitioned-settings"}},
    }
    app = SessionMiddleware.from_settings(wsgi_app, settings)
    _, headers, _ = Client(app).get("/")
    assert header_values(headers, "Set-Cookie")[0].endswith("; Partitioned")


def test_asgi_session_middleware() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["session"]["user"] = "ada"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    store = CacheStore(Cache(LocMemBackend("partitioned-asgi")))
    wrapped = AsgiSessionMiddleware(app, store, cookie_secure=True, cookie_partitioned=True)
    response = asyncio.run(AsgiClient(wrapped).get("/"))
    assert response.header_values("set-cookie")[0].endswith("; Partitioned")


def test_django_session_cookie() -> None:
    pytest.importorskip("django")
    from tests.django_settings import configure_django

    configure_django()
    from django.test import Client as DjangoClient
    from django.test import override_settings

    middleware = ["sessions.contrib.django.SessionMiddleware"]
    with override_settings(
        MIDDLEWARE=middleware, SESSION_COOKIE_PARTITIONED=True, SESSION_COOKIE_SECURE=True
    ):
        response = DjangoClient().get("/set", {"a": "1"})
    line = response.cookies["sessionid"].OutputString()
    assert "Partitioned" in line
    assert "Secure" in line
    with override_settings(MIDDLEWARE=middleware):
        plain = DjangoClient().get("/set", {"a": "1"})
    assert "Partitioned" not in plain.cookies["sessionid"].OutputString()
