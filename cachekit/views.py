"""Per-view caching: ``@cache_page``, :class:`PageCache` and ``purge`` (they live in :mod:`cachekit.pages`).

:class:`PageCache` caches whole WSGI responses with the rules of a shared HTTP
cache; ``@cache_page`` wraps one WSGI callable with it, ``middleware.CacheMiddleware``
a whole application, and the ASGI twins (:mod:`cachekit.aio_views`,
``middleware.AsgiCacheMiddleware``) drive the same engine
(:mod:`cachekit.pages.engine`) with the same :class:`PageOptions`.

What is cached: responses to ``GET`` with status 200, 203, 204, 300, 301 or
308 (404, 405, 410, 414 and 501 only with their own freshness) that neither
set a cookie, nor say ``private``, ``no-store``, ``no-cache`` or ``Vary: *``,
nor answer a request carrying ``Authorization`` (unless they say ``public`` or
``s-maxage``), nor vary on ``Cookie`` for a request that carried cookies
(unless ``public``, an anonymous session, or only ``shareable_cookies``), nor
answer a request with a forwarded header not in ``trusted_forwarded``. A
``HEAD`` is answered from a stored ``GET``; a successful ``POST``/``PUT``/
``PATCH``/``DELETE`` drops the stored page of its URL.

Sessions: the engine reads the session at ``environ["cachekit.session"]``
(``scope["session"]`` on ASGI): a page that read a stored session is not
stored (unless it says ``public``: then it is kept per ``Cookie``), nor one
whose session will be saved; a page that read an anonymous session is kept per
``Cookie`` and served with ``Vary: Cookie``.

Keys: scheme, host, path (with ``SCRIPT_NAME``) and query string, trusted
forwarded headers, plus the values of the request headers the response varies
on, learned per URL with a nonce that :func:`purge` deletes in one key. At most
``max_variants`` variants per path are kept.

Stampedes: on a miss one request renders while the others wait (the lock under
the cache's prefix, one per URL). A storable body is read from the app up to
``max_body_size`` before it is sent, so the page is stored and the lock
released when the app is done, never when the client is. Stale pages are
served within ``stale_while_revalidate``/``stale_if_error``, never against
``must-revalidate``, ``proxy-revalidate`` or ``s-maxage`` (an origin that
raises is then a 504).

Pages are plain data (:mod:`cachekit.pages.record`), never pickles. See
``docs/views.md`` for each rule and the test that shows it.
"""

from __future__ import annotations

from cachekit.memoize import memoize
from cachekit.pages.options import MAX_BODY_SIZE
from cachekit.pages.options import PageOptions
from cachekit.pages.options import PageTags
from cachekit.pages.wsgi import PageCache
from cachekit.pages.wsgi import cache_page
from cachekit.pages.wsgi import purge

__all__ = [
    "MAX_BODY_SIZE",
    "PageCache",
    "PageOptions",
    "PageTags",
    "cache_page",
    "memoize",
    "purge",
]
