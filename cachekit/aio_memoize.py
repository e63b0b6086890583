"""``@memoize`` for ``async def`` functions, on an :class:`~cachekit.aio.AsyncCache`.

Import it from :mod:`cachekit.aio`. :class:`AsyncMemoized` is the source the sync
:class:`~cachekit.memoize.Memoized` is generated from (``cachekit/fronts/_async/memoize.py``);
both build keys with :class:`~cachekit.fronts.memokeys.MemoKeys`, so sync and async
memoization of one function agree on them.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import ParamSpec
from typing import TypeVar

from cachekit.fronts._async.memoize import AsyncMemoized
from cachekit.fronts._async.memoize import CacheInfo
from cachekit.fronts._async.memoize import MemoOptions
from cachekit.fronts._core import DEFAULT_TIMEOUT
from cachekit.fronts._core import Timeout

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from cachekit.aio import AsyncCache

P = ParamSpec("P")
R = TypeVar("R")


def memoize(
    timeout: Timeout = DEFAULT_TIMEOUT,
    *,
    cache: AsyncCache,
    **options: Unpack[MemoOptions],
) -> Callable[[Callable[P, Awaitable[R]]], AsyncMemoized[P, R]]:
    """Cache an ``async def`` function's results by its arguments, one computation per key.

    ::

        @memoize(30, cache=cache)
        async def price(product_id: int) -> Decimal: ...

        await price(7)             # computed once, then served from the cache
        await price.invalidate(7)  # forget one result
        await price.cache_clear()  # forget every result of price
        price.cache_info()         # CacheInfo(hits=..., misses=..., maxsize=None, currsize=None)

    Keys are those of the sync :func:`cachekit.memoize.memoize` for the same
    function and arguments. Concurrent calls with the same arguments share one
    computation (see :meth:`~cachekit.aio.AsyncCache.get_or_set`).

    :param cache: the :class:`~cachekit.aio.AsyncCache` to store results in (there is no async
        ``caches`` registry: async clients belong to one event loop).
    :param timeout: seconds to keep a result; ``None`` for ever.
    :param key: ``f(*args, **kwargs) -> str`` replacing the argument-based key.
    :param tags: names for :meth:`~cachekit.aio.AsyncCache.invalidate_tags`, or a
        function of the call's arguments returning them.
    :param stale_while_revalidate: see :mod:`cachekit.stampede`.
    :param stale_if_error: see :mod:`cachekit.stampede`.
    :param beta: XFetch early-refresh factor (``1.0`` recommended, ``0`` off).
    :param refresh_ahead: seconds before expiry from which a call returns the
        cached result and recomputes it in a background task, once per key
        across processes.
    :param unless: a callable (not awaited); when it returns true the call
        bypasses the cache. It gets the call's arguments, unless it takes none.
    :raises TypeError: if the decorated function is not ``async def``.
    """

    def decorator(func: Callable[P, Awaitable[R]]) -> AsyncMemoized[P, R]:
        if not inspect.iscoroutinefunction(func):
            raise TypeError(
                f"cachekit.aio.memoize decorates async def functions; "
                f"use cachekit.memoize.memoize for {func!r}."
            )
        return AsyncMemoized(func, timeout, cache, **options)

    return decorator


__all__ = ["AsyncMemoized", "CacheInfo", "memoize"]
