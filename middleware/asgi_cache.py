"""AsgiCacheMiddleware: the site-wide page cache for any ASGI application.

Use it to cache every cacheable page of an ASGI app (Starlette, FastAPI,
Django ASGI, Quart...) without touching its views::

    cache = cachekit.aio.from_url("redis://127.0.0.1:6379/0")
    app = AsgiCacheMiddleware(app, cache=cache, timeout=60)

It is a thin ASGI shell around :class:`cachekit.aio_views.AsyncPageCache`,
which runs the rules of the WSGI :class:`~middleware.cache.CacheMiddleware`
(the same :class:`~cachekit.views.PageCache` rules, awaited on an
:class:`~cachekit.aio.AsyncCache`): only ``GET``/``HEAD``, only responses a
shared HTTP cache may store (no ``Set-Cookie``, no ``private``/``no-store``/
``no-cache``, ``Vary`` honoured), ``304`` answers to conditional requests,
stale-while-revalidate and stale-if-error windows, tags and :meth:`purge`.
Pages are keyed as in WSGI, so a WSGI and an ASGI app on one cache share them.

What it will not do: cache responses that set cookies or answer requests with
``Authorization`` (unless the response says ``public``), change a response it
does not serve from cache (every message passes through as the app sends it,
body chunks streamed one by one), buffer a body beyond ``max_body_size``, or
touch ``lifespan`` and ``websocket`` scopes. Put it *outside*
:class:`~middleware.asgi_sessions.AsgiSessionMiddleware` so that it sees the
``Vary: Cookie`` the session adds.
"""

from __future__ import annotations

from typing import Any

from cachekit import check
from cachekit.aio import AsyncCache
from cachekit.pages.asgi import ASGIApp
from cachekit.pages.asgi import AsyncPageCache
from cachekit.pages.asgi import Receive
from cachekit.pages.asgi import Scope
from cachekit.pages.asgi import Send


class AsgiCacheMiddleware:
    """Cache an ASGI app's pages; see the module docstring and :class:`~cachekit.pages.asgi.AsyncPageCache`.

    :param app: the ASGI application to wrap.
    :param cache: the :class:`~cachekit.aio.AsyncCache` to store pages in.
    :param settings: ``timeout`` (lifetime of responses that state none; default the
        cache's), ``options`` (a ready :class:`~cachekit.pages.options.PageOptions`), or its
        fields as keywords (``tags`` may be a function of the ASGI scope).
    """

    def __init__(self, app: ASGIApp, *, cache: AsyncCache, **settings: Any) -> None:
        #: The wrapped application.
        self.app = app
        #: The engine doing the work, shared in rules with ``CacheMiddleware`` and ``@cache_page``.
        self.page_cache = AsyncPageCache(cache=cache, **settings)
        # Once per process: a proxy-header middleware inside the cache could poison it.
        check.warn_once(check.page_cache_findings(app))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request from the cache or through the app."""
        await self.page_cache(self.app, scope, receive, send)

    async def purge(self, url: str) -> bool:
        """Remove every stored variant of the page at absolute ``url``; return whether it was cached."""
        return await self.page_cache.purge(url)
