"""``@memoize`` for ``async def`` functions, on an :class:`~cachekit.aio.AsyncCache`.

Import it from :mod:`cachekit.aio`; keys are built by the sync
:class:`~cachekit.memoize.Memoized`, so sync and async memoization of one
function agree on them.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import Any
from typing import Generic
from typing import ParamSpec
from typing import TypeVar

from cachekit.cache import DEFAULT_TIMEOUT
from cachekit.cache import Timeout

if TYPE_CHECKING:
    from cachekit.aio import AsyncCache

P = ParamSpec("P")
R = TypeVar("R")


class AsyncMemoized(Generic[P, R]):
    """A memoized ``async def`` function: await it as the original; see :func:`memoize`."""

    def __init__(
        self,
        func: Callable[P, Awaitable[R]],
        *,
        timeout: Timeout,
        cache: AsyncCache,
        key: Callable[..., str] | None,
        tags: Iterable[str],
        stale_while_revalidate: float,
        stale_if_error: float,
        beta: float,
    ) -> None:
        from cachekit.memoize import Memoized

        functools.update_wrapper(self, func)
        #: The original function, uncached.
        self.uncached = func
        #: The cache results are stored in.
        self.cache = cache
        self._timeout = timeout
        # The sync decorator builds the keys, so sync and async memoization agree on them.
        self._keys: Memoized[P, Awaitable[R]] = Memoized(
            func,
            timeout=timeout,
            cache=None,
            key=key,
            tags=tags,
            stale_while_revalidate=stale_while_revalidate,
            stale_if_error=stale_if_error,
            beta=beta,
        )
        self._options = {
            "stale_while_revalidate": stale_while_revalidate,
            "stale_if_error": stale_if_error,
            "beta": beta,
            "tags": tuple(tags),
        }

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        bound = functools.partial(self, instance)
        bound.invalidate = functools.partial(self.invalidate, instance)  # type: ignore[attr-defined]
        bound.uncached = functools.partial(self.uncached, instance)  # type: ignore[attr-defined]
        return bound

    def make_key(self, *args: Any, **kwargs: Any) -> str:
        """Return the cache key a call with these arguments uses (as the sync ``@memoize``)."""
        return self._keys.make_key(*args, **kwargs)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key = self.make_key(*args, **kwargs)
        return await self.cache.get_or_set(
            key,
            lambda: self.uncached(*args, **kwargs),
            self._timeout,
            **self._options,  # type: ignore[arg-type]
        )

    async def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Forget the result cached for these arguments; return whether one was stored."""
        return await self.cache.delete(self.make_key(*args, **kwargs))


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
        return AsyncMemoized(
            func,
            timeout=timeout,
            cache=cache,
            key=key,
            tags=tags,
            stale_while_revalidate=stale_while_revalidate,
            stale_if_error=stale_if_error,
            beta=beta,
        )

    return decorator
