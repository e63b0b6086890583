"""The ASGI twin of tests/servers_matrix/app.py, served by uvicorn and hypercorn in the matrix.

The same routes for sessions and pages (``/login``, ``/me``, ``/add``, ``/items``,
``/count``, ``/page/<n>``, ``/echo``) over an :class:`~cachekit.aio.AsyncCache`,
``AsyncCacheStore`` and ``AsgiCacheMiddleware(AsgiSessionMiddleware(views))``,
all built at import time. uvicorn and hypercorn start their workers as fresh
processes (``spawn``), so nothing is shared across a fork here; the cache is
closed at lifespan shutdown and the pid appended to ``$CACHEKIT_MATRIX_CLOSE_LOG``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import parse_qs

from cachekit import aio
from middleware import AsgiCacheMiddleware
from middleware import AsgiSessionMiddleware
from sessions.stores.aio_cache import AsyncCacheStore
from tests.servers_matrix.names import CLOSE_LOG_VAR
from tests.servers_matrix.names import INSTANCE_VAR
from tests.servers_matrix.names import RENDER_SECONDS
from tests.servers_matrix.names import RENDERS_KEY
from tests.servers_matrix.names import URL_VAR

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Scope]]
Send = Callable[[Scope], Awaitable[None]]

cache = aio.from_url(os.environ[URL_VAR])
store = AsyncCacheStore(cache)


async def _reply(send: Send, body: str, status: int = 200) -> None:
    data = body.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _echo(token: str, count: int) -> str:
    bad = 0
    for i in range(count):
        key = f"matrix.echo:{token}:{i}"
        await cache.set(key, f"{token}:{i}", timeout=60)
        if await cache.get(key) != f"{token}:{i}":
            bad += 1
    return f"bad={bad}"


async def views(scope: Scope, receive: Receive, send: Send) -> None:
    """The routes in the module docstring."""
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    query = {name: values[0] for name, values in parse_qs(scope["query_string"].decode()).items()}
    if path.startswith("/page/"):
        await cache.add(RENDERS_KEY + path, 0, timeout=None)
        await cache.incr(RENDERS_KEY + path)
        await asyncio.sleep(RENDER_SECONDS)
        return await _reply(send, f"{path} rendered by {os.getpid()} at {time.time():.6f}")
    if path == "/echo":
        return await _reply(send, await _echo(query["token"], int(query.get("n", "20"))))
    session = scope["session"]
    if method == "POST" and path == "/login":
        session.cycle_key()
        session["user"] = query["name"]
        return await _reply(send, "logged in")
    if path == "/me":
        return await _reply(send, f"user={session.get('user')}")
    if method == "POST" and path == "/add":
        session[f"item.{query['item']}"] = 1
        return await _reply(send, "added")
    if path == "/items":
        return await _reply(send, "\n".join(sorted(key[5:] for key in session if key.startswith("item."))))
    if path == "/count":
        session["count"] = session.get("count", 0) + 1
        return await _reply(send, str(session["count"]))
    return await _reply(send, "not found", 404)


_cached = AsgiCacheMiddleware(AsgiSessionMiddleware(views, store), cache=cache, timeout=60)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await cache.close()
            path = os.environ.get(CLOSE_LOG_VAR)
            if path:
                with open(path, "a") as log:
                    log.write(f"{os.getpid()}\n")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    """The app the servers load: the cached, session-aware views plus the worker's identity."""
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    identity = [
        (b"x-worker-pid", str(os.getpid()).encode()),
        (b"x-instance", os.environ.get(INSTANCE_VAR, "").encode()),
    ]

    async def send_with_identity(message: Scope) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *identity]}
        await send(message)

    await _cached(scope, receive, send_with_identity)
