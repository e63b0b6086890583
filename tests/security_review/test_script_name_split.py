"""Where the mount prefix ends (``SCRIPT_NAME`` / ASGI ``root_path``) is part of a page's key.

The hole: pages were keyed on ``SCRIPT_NAME + PATH_INFO`` (ASGI: ``root_path``
joined with the path), so the split between the two was not keyed. The
well-known Flask "ReverseProxied" snippet, outside the cache, moves a prefix
named by ``X-Script-Name`` from ``PATH_INFO`` to ``SCRIPT_NAME``: one request
for ``/blog/post`` with ``X-Script-Name: /blog`` stored the page of the route
``/post`` as ``/blog/post`` for everyone. The split now goes into the variant
key (purging the URL still drops every variant).
"""

from __future__ import annotations

import asyncio
from typing import Any

from cachekit import Cache
from cachekit import aio
from cachekit.backends.locmem import LocMemBackend
from middleware import AsgiCacheMiddleware
from middleware import CacheMiddleware
from tests.asgi import call_asgi
from tests.asgi import make_scope
from tests.wsgi import Client


def _routes(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"route={environ['PATH_INFO']} links={environ['SCRIPT_NAME']}/next".encode()]


def _reverse_proxied(app: Any) -> Any:
    """The Flask snippet: the prefix in X-Script-Name moves from PATH_INFO to SCRIPT_NAME."""

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        script_name = environ.get("HTTP_X_SCRIPT_NAME", "")
        if script_name:
            environ["SCRIPT_NAME"] = script_name
            if environ["PATH_INFO"].startswith(script_name):
                environ["PATH_INFO"] = environ["PATH_INFO"][len(script_name) :]
        return app(environ, start_response)

    return wrapped


def test_a_script_name_moved_by_a_header_cannot_poison_the_wsgi_page_cache() -> None:
    renders: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        renders.append(environ["SCRIPT_NAME"])
        return _routes(environ, start_response)

    pages = Cache(LocMemBackend("security-review-script-name"))
    cached = CacheMiddleware(app, cache=pages, timeout=60)
    client = Client(_reverse_proxied(cached))
    try:
        attack = client.get("/blog/post", headers={"X-Script-Name": "/blog"})[2]
        assert attack == b"route=/post links=/blog/next"
        assert client.get("/blog/post")[2] == b"route=/blog/post links=/next"
        assert client.get("/blog/post")[2] == b"route=/blog/post links=/next"  # stored, apart
        assert renders == ["/blog", ""]
        assert cached.purge("http://testserver/blog/post")  # one purge drops both variants
        client.get("/blog/post", headers={"X-Script-Name": "/blog"})
        client.get("/blog/post")
        assert renders == ["/blog", "", "/blog", ""]
    finally:
        pages.clear()


def test_a_root_path_moved_by_a_header_cannot_poison_the_asgi_page_cache() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        route = scope["path"][len(scope["root_path"]) :]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        body = f"route={route} links={scope['root_path']}/next".encode()
        await send({"type": "http.response.body", "body": body})

    async def main() -> None:
        cache = aio.from_url("locmem://security-review-root-path-split")
        cached = AsgiCacheMiddleware(app, cache=cache, timeout=60)

        async def proxy_prefix(scope: dict[str, Any], receive: Any, send: Any) -> None:
            prefix = dict(scope["headers"]).get(b"x-script-name", b"").decode()
            headers = [h for h in scope["headers"] if h[0] != b"x-script-name"]
            await cached(dict(scope, root_path=prefix, headers=headers), receive, send)

        try:
            attack = await call_asgi(
                proxy_prefix, make_scope("/blog/post", headers={"X-Script-Name": "/blog"})
            )
            assert attack.body == b"route=/post links=/blog/next"
            victim = await call_asgi(proxy_prefix, make_scope("/blog/post"))
            assert victim.body == b"route=/blog/post links=/next"
        finally:
            await cache.clear()
            await cache.close()

    asyncio.run(main())
