"""CacheMiddleware: the site-wide page cache for any WSGI application.

Use it to cache every cacheable page of an app without touching its views::

    app = CacheMiddleware(app, cache=cachekit.from_url("redis://127.0.0.1:6379/0"), timeout=60)

It is a thin shell around :class:`cachekit.views.PageCache`, the engine that
``@cache_page`` also uses, so the rules are the same: only ``GET``/``HEAD``,
only responses a shared HTTP cache may store (no ``Set-Cookie``, no
``private``/``no-store``/``no-cache``, ``Vary`` honoured), ``304`` answers to
conditional requests, stale-while-revalidate and stale-if-error windows, tags
and :meth:`purge`.

What it will not do: cache responses that set cookies or answer requests with
``Authorization`` (unless the response says ``public``), change a response it
does not serve from cache (those pass through byte for byte and stream as the
app yields them), or buffer a body beyond ``max_body_size``. Put it *outside*
``SessionMiddleware`` so that it sees the ``Vary: Cookie`` the session adds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import Any

from cachekit import check
from cachekit.cache import Cache
from cachekit.pages.wsgi import PageCache

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment


class CacheMiddleware:
    """Cache an application's pages; see the module docstring and :class:`~cachekit.pages.wsgi.PageCache`.

    :param app: the WSGI application to wrap.
    :param cache: the :class:`~cachekit.Cache` to store pages in; default ``caches["default"]``.
    :param settings: ``timeout`` (lifetime of responses that state none; default the
        cache's), ``options`` (a ready :class:`~cachekit.pages.options.PageOptions`), or its
        fields (``key_prefix``, ``vary_on``, ``trusted_forwarded``...) as keywords.
    """

    def __init__(self, app: WSGIApplication, *, cache: Cache | None = None, **settings: Any) -> None:
        #: The wrapped application.
        self.app = app
        #: The engine doing the work, shared in behaviour with ``@cache_page``.
        self.page_cache = PageCache(cache=cache, **settings)
        # Once per process: a proxy-header middleware inside the cache could poison it.
        check.warn_once(check.page_cache_findings(app))

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve the request from the cache or through the app."""
        return self.page_cache(self.app, environ, start_response)

    def purge(self, url: str) -> bool:
        """Remove every stored variant of the page at absolute ``url``; return whether it was cached."""
        return self.page_cache.purge(url)
