"""Per-view caching: the page-cache engine, ``@cache_page`` and ``purge``.

:class:`PageCache` caches whole WSGI responses with the rules of a shared HTTP
cache (:mod:`cachekit.http`). ``@cache_page`` wraps one WSGI callable with it
and ``middleware.CacheMiddleware`` wraps a whole application; both run this
one engine.

What is cached: responses to ``GET`` whose status is in ``statuses`` and which
neither set a cookie, nor say ``private``, ``no-store``, ``no-cache`` or
``Vary: *``, nor answer a request carrying ``Authorization`` (unless they say
``public`` or ``s-maxage``). A ``HEAD`` is answered from a stored ``GET``.
The response's ``s-maxage``/``max-age``/``Expires`` set its lifetime, else the
``timeout``.

Sessions: when the engine runs inside a session middleware (``@cache_page``
on a view of an app wrapped in ``SessionMiddleware``), it sees the response
before the middleware adds ``Vary: Cookie``, ``Cache-Control: private`` and
``Set-Cookie``, so it applies the same rules itself from the session at
``environ["cachekit.session"]``: a page that read a stored session is not
stored (unless it says ``public``: then it is kept per ``Cookie``), nor one
whose session will be saved; a page that read an anonymous session is kept
per ``Cookie`` and served with ``Vary: Cookie``.

How entries are keyed: by scheme, host, path and query string, plus the values
of the request headers the response varies on. The ``Vary`` list is learned
per URL (as Django's ``learn_cache_key`` does) and stored with a per-URL
nonce that is part of every variant's key, so :func:`purge` drops every
variant of a URL by deleting one key. A render already running when the purge
happens does not store its page: it may hold data from before the purge.

What is not changed: a response that is not served from cache passes through
byte for byte, with its headers untouched, even when it is stored; served
copies get ``Age`` and, if the app set none, ``Cache-Control: max-age``,
``Expires`` and a strong ``ETag`` computed from the body. Bodies stream
through as the app yields them; a body longer than ``max_body_size`` is
served but not stored. The app's iterable is always closed.

Stampedes: on a miss, one request per page computes while the others wait for
it (up to ``lock_timeout``, then compute themselves), across processes through
the backend's lock. Within a ``stale_while_revalidate`` window one request
regenerates while the others get the stale page at once; within a
``stale_if_error`` window a regeneration that raises or answers 5xx is
replaced by the stale page, and the error logged.
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
