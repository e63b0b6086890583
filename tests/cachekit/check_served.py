"""Apps for tests/cachekit/test_check_servers.py: sessions on the local-memory default, under real servers.

Nothing is configured, so both session middlewares keep sessions in local
memory; built in each worker, they log the ``cachekit.check`` findings.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import Any

from cachekit import aio
from middleware.asgi_sessions import AsgiSessionMiddleware
from middleware.sessions import SessionMiddleware
from sessions.stores.aio_cache import AsyncCacheStore

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

# The servers' own logging leaves the root logger unconfigured: show our warnings on stderr.
logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")


def _page(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


async def _asgi_page(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


wsgi_app = SessionMiddleware(_page)
asgi_app = AsgiSessionMiddleware(_asgi_page, AsyncCacheStore(aio.from_url("locmem://check-served")))
