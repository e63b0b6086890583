"""Native async caching: :class:`AsyncCache`, the awaitable twin of :class:`~cachekit.Cache`.

::

    from cachekit.aio import AsyncCache
    from cachekit.backends.aio_redis import AsyncRedisBackend

    cache = AsyncCache(AsyncRedisBackend.from_url("redis://127.0.0.1:6379/0"), key_prefix="app")
    await cache.set("greeting", "hello", timeout=60)
    await cache.get("greeting")
    await cache.get_or_set("report", build_report)   # build_report may be ``async def``

Why a separate class rather than ``a*`` methods on ``Cache`` (Django's
``aget``/``aset``): an ``AsyncCache`` drives an *async* backend
(:class:`~cachekit.backends.aio_base.AsyncBackend`: ``redis.asyncio``, the
in-process store, memcached in a bounded thread pool), while a ``Cache`` drives a
sync one. Putting both on one class would mean a ``Cache`` holding two backends,
or async methods that run the sync backend in a thread, which is exactly the
Django behaviour this module exists to avoid. Two classes also let each keep the
method names users know (``get``, ``set``, ``get_or_set``...), and a type checker
tells the two apart.

The rules are not copied: ``AsyncCache`` is the source the sync ``Cache`` is
generated from (``.ci/unasync.py``, see :mod:`cachekit.fronts`), and both derive
from ``cachekit.fronts._core.FrontCore``, which owns the settings checks, key
building (:meth:`make_key`), the lifetime rules, serialization and sampling; the
failure policy (an unavailable backend turns reads into misses and writes into
no-ops, logged and counted, unless ``on_error="raise"``) and the counters
(:meth:`stats`) are the front's :class:`~cachekit.fronts.recorder.Recorder`. ``get_or_set``'s
enveloped options reuse :class:`~cachekit.stampede.CacheEntry` and the tag
counters of :mod:`cachekit.tags`.

Stampede protection (:meth:`AsyncCache.get_or_set`, :func:`memoize`): one
computation per missing key. Tasks of one process that ask for the same key
while it is being computed await that computation instead of starting their
own; across processes the computing task holds the backend's lock (Redis
``SET NX PX`` with a token), and other processes wait for it up to
``lock_timeout`` without blocking their event loop.
"""

from __future__ import annotations

from typing import Any

from cachekit.aio_memoize import AsyncMemoized
from cachekit.aio_memoize import memoize
from cachekit.fronts._async.cache import AsyncCache


def from_url(url: str, *, name: str = "", **options: Any) -> AsyncCache:
    """Build an :class:`AsyncCache` from a URL, exactly as :func:`cachekit.from_url` builds a Cache.

    ``locmem://``, ``redis://`` (and ``rediss://``, ``unix://``,
    ``redis+sentinel://``, ``redis+cluster://``) and ``memcached://`` take the
    same options as their sync backends.

    :raises ConfigurationError: for a malformed URL, an unknown scheme or option.
    """
    from cachekit.backends.aio_base import load_async_backend
    from cachekit.config import cache_from_url

    cache: AsyncCache = cache_from_url(
        url, name=name, options=options, load=load_async_backend, cache_class=AsyncCache
    )
    return cache


__all__ = ["AsyncCache", "AsyncMemoized", "from_url", "memoize"]
