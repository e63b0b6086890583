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
from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import ParamSpec
from typing import TypeVar

from cachekit.fronts._async.memoize import AsyncMemoized
from cachekit.fronts._core import DEFAULT_TIMEOUT
from cachekit.fronts._core import Timeout

if TYPE_CHECKING:
    from cachekit.aio import AsyncCache

P = ParamSpec("P")
R = TypeVar("R")


def memoize(
    timeout: Timeout = DEFAULT_TIMEOUT,
    *,
    cache: AsyncCache,
    key: Callable[..., str] | None = None,
    tags: Iterable[str] = (),
    stale_while_revalidate: float = 0,
    stale_if_error: float = 0,
    beta: float = 0,
) -> Callable[[Callable[P, Awaitable[R]]], AsyncMemoized[P, R]]:
    """Cache an ``async def`` function's results by its arguments, one computation per key.

    ::

        @memoize(30, cache=cache)
        async def price(product_id: int) -> Decimal: ...

        await price(7)             # computed once, then served from the cache
        await price.invalidate(7)  # forget one result

    Keys are those of the sync :func:`cachekit.memoize.memoize` for the same
    function and arguments. Concurrent calls with the same arguments share one
    computation (see :meth:`~cachekit.aio.AsyncCache.get_or_set`).

    :param cache: the :class:`~cachekit.aio.AsyncCache` to store results in (there is no async
        ``caches`` registry: async clients belong to one event loop).
    :param timeout: seconds to keep a result; ``None`` for ever.
    :param key: ``f(*args, **kwargs) -> str`` replacing the argument-based key.
    :param tags: names for :meth:`~cachekit.aio.AsyncCache.invalidate_tags`.
    :param stale_while_revalidate: see :mod:`cachekit.stampede`.
    :param stale_if_error: see :mod:`cachekit.stampede`.
    :param beta: XFetch early-refresh factor (``1.0`` recommended, ``0`` off).
    :raises TypeError: if the decorated function is not ``async def``.
    """

    def decorator(func: Callable[P, Awaitable[R]]) -> AsyncMemoized[P, R]:
        if not inspect.iscoroutinefunction(func):
            raise TypeError(
                f"cachekit.aio.memoize decorates async def functions; "
                f"use cachekit.memoize.memoize for {func!r}."
            )
        return AsyncMemoized(func, timeout, cache, key, tags, stale_while_revalidate, stale_if_error, beta)

    return decorator


__all__ = ["AsyncMemoized", "memoize"]
