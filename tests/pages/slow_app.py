"""Apps for the slow-reader test (``test_servers.py``): an 8 MiB page behind the page cache on Redis.

``wsgi_app`` for gunicorn, ``asgi_app`` for uvicorn; the cache URL comes from
``CACHEKIT_URL`` and the key prefix from ``PAGES_PREFIX``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import cachekit
from cachekit import aio
from middleware import AsgiCacheMiddleware
from middleware import CacheMiddleware

CHUNK = b"x" * 65536
CHUNKS = 128  # 8 MiB
LOCK_TIMEOUT = 30.0  # what a request would wait behind a lock a slow client holds


def _big(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Cache-Control", "max-age=60")])
    for _ in range(CHUNKS):
        yield CHUNK


async def _big_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"application/octet-stream"), (b"cache-control", b"max-age=60")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for _ in range(CHUNKS):
        await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


_URL = os.environ.get("CACHEKIT_URL", "locmem://slow")
_PREFIX = os.environ.get("PAGES_PREFIX", "slow")

wsgi_app = CacheMiddleware(
    _big, cache=cachekit.from_url(_URL, key_prefix=_PREFIX), timeout=60, lock_timeout=LOCK_TIMEOUT
)
asgi_app = AsgiCacheMiddleware(
    _big_asgi, cache=aio.from_url(_URL, key_prefix=_PREFIX), timeout=60, lock_timeout=LOCK_TIMEOUT
)


_renders = {"n": 0}


async def _links(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    _renders["n"] += 1
    host = dict(scope["headers"]).get(b"host", b"").decode()
    body = f'<a href="{scope["scheme"]}://{host}/next">render {_renders["n"]}</a>'.encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"cache-control", b"max-age=60")]})
    await send({"type": "http.response.body", "body": body})


#: Behind ``uvicorn --proxy-headers``: the scheme comes from X-Forwarded-Proto, which the cache keys.
links_app = AsgiCacheMiddleware(
    _links,
    cache=aio.from_url(_URL, key_prefix=_PREFIX + "links"),
    timeout=60,
    trusted_forwarded=["x-forwarded-proto"],
)
