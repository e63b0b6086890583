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

from cachekit.cache import DEFAULT_TIMEOUT
from cachekit.cache import Cache
from cachekit.cache import Timeout
from cachekit.http import CACHEABLE_STATUSES
from cachekit.views import MAX_BODY_SIZE
from cachekit.views import PageCache
from cachekit.views import PageTags

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment


class CacheMiddleware:
    """Cache an application's pages; see the module docstring and :class:`~cachekit.views.PageCache`.

    :param app: the WSGI application to wrap.
    :param cache: the :class:`~cachekit.Cache` to store pages in; default ``caches["default"]``.
    :param timeout: lifetime of responses that state none; ``DEFAULT_TIMEOUT`` uses the cache's.

    The other keyword arguments are :class:`~cachekit.views.PageCache`'s.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        cache: Cache | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        key_prefix: str = "",
        vary_on: Iterable[str] = (),
        tags: PageTags = (),
        stale_while_revalidate: float = 0,
        stale_if_error: float = 0,
        max_body_size: int = MAX_BODY_SIZE,
        etag: bool = True,
        normalize_query: bool = False,
        statuses: Iterable[int] = CACHEABLE_STATUSES,
        lock: bool = True,
        lock_timeout: float | None = None,
    ) -> None:
        #: The wrapped application.
        self.app = app
        #: The engine doing the work, shared in behaviour with ``@cache_page``.
        self.page_cache = PageCache(
            timeout,
            cache=cache,
            key_prefix=key_prefix,
            vary_on=vary_on,
            tags=tags,
            stale_while_revalidate=stale_while_revalidate,
            stale_if_error=stale_if_error,
            max_body_size=max_body_size,
            etag=etag,
            normalize_query=normalize_query,
            statuses=statuses,
            lock=lock,
            lock_timeout=lock_timeout,
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve the request from the cache or through the app."""
        return self.page_cache(self.app, environ, start_response)

    def purge(self, url: str) -> bool:
        """Remove every stored variant of the page at absolute ``url``; return whether it was cached."""
        return self.page_cache.purge(url)
