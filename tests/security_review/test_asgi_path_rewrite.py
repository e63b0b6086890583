"""An outer ASGI middleware that rewrites ``path`` must not make the page cache key what the app ignores.

The hole: the ASGI shell keyed pages on ``raw_path`` (the target the client
sent) even when an outer middleware had rewritten ``path``, which is what the
app routes on. One that honours ``X-Original-URL`` (as IIS-style rewriters do)
let a request for ``/`` store the ``/admin`` page under ``/`` for everyone.
The WSGI shell keys ``PATH_INFO``, what the app sees; the ASGI shell now keys
``path`` whenever ``raw_path`` no longer matches it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cachekit import aio
from middleware import AsgiCacheMiddleware
from tests.asgi import call_asgi
from tests.asgi import make_scope


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": f"page {scope['path']}".encode()})


def test_a_path_rewritten_from_a_header_cannot_poison_the_asgi_page_cache() -> None:
    async def main() -> None:
        cache = aio.from_url("locmem://security-review-path-rewrite")
        cached = AsgiCacheMiddleware(_app, cache=cache, timeout=60)

        async def rewrite(scope: dict[str, Any], receive: Any, send: Any) -> None:
            original = dict(scope["headers"]).get(b"x-original-url")
            if original:
                headers = [h for h in scope["headers"] if h[0] != b"x-original-url"]
                scope = dict(scope, path=original.decode(), headers=headers)
            await cached(scope, receive, send)

        try:
            attack = await call_asgi(rewrite, make_scope("/", headers={"X-Original-URL": "/admin"}))
            assert attack.body == b"page /admin"
            assert (await call_asgi(rewrite, make_scope("/"))).body == b"page /"
            # A rewrite that is a function of the target still caches (and keys what the app saw).
            assert (await call_asgi(rewrite, make_scope("/admin"))).body == b"page /admin"
        finally:
            await cache.clear()
            await cache.close()

    asyncio.run(main())
