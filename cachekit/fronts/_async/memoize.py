"""The memoized function of ``@memoize``, its cache calls awaited; see :mod:`cachekit.memoize`.

This is the source of :class:`~cachekit.aio.AsyncMemoized`; the sync
:class:`~cachekit.memoize.Memoized` is generated from it. Keys come from
:class:`~cachekit.fronts.memokeys.MemoKeys`, so sync and async memoization of one
function agree on them.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import Any
from typing import Generic
from typing import ParamSpec
from typing import TypeVar

from cachekit.fronts._async_only import default_async_cache
from cachekit.fronts._core import Timeout
from cachekit.fronts.memokeys import MemoKeys

if TYPE_CHECKING:
    from cachekit.fronts._async.cache import AsyncCache

P = ParamSpec("P")
R = TypeVar("R")


class AsyncMemoized(Generic[P, R]):
    """A memoized function: call it as the original; see ``memoize``."""

    def __init__(
        self,
        func: Callable[P, Awaitable[R]],
        timeout: Timeout,
        cache: AsyncCache | None,
        key: Callable[..., str] | None,
        tags: Iterable[str],
        stale_while_revalidate: float,
        stale_if_error: float,
        beta: float,
    ) -> None:
        if isinstance(tags, str):
            raise TypeError(f"tags must be a list of names, not one str: use tags=[{tags!r}].")
        functools.update_wrapper(self, func)
        #: The original function, uncached.
        self.uncached = func
        self._timeout = timeout
        self._cache = cache
        self._keys = MemoKeys(func, key)
        tag_names = tuple(tags)
        self._options: dict[str, Any] = {
            "stale_while_revalidate": stale_while_revalidate,
            "stale_if_error": stale_if_error,
            "beta": beta,
            "tags": tag_names,
        }
        self._enveloped = bool(stale_while_revalidate or stale_if_error or beta or tag_names)

    @property
    def cache(self) -> AsyncCache:
        """The cache results are stored in (sync ``@memoize``: ``caches["default"]`` unless one was given)."""
        if self._cache is None:
            self._cache = default_async_cache()
        return self._cache

    @cache.setter
    def cache(self, cache: AsyncCache) -> None:
        self._cache = cache

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        # Decorating a method: bind like a function would, keeping invalidate/uncached reachable.
        if instance is None:
            return self
        bound = functools.partial(self, instance)
        vars(bound).update(
            invalidate=functools.partial(self.invalidate, instance),
            uncached=functools.partial(self.uncached, instance),
        )
        return bound

    def make_key(self, *args: Any, **kwargs: Any) -> str:
        """Return the cache key a call with these arguments uses.

        :raises TypeError: if an argument has no stable key (see :mod:`cachekit.memoize`).
        """
        return self._keys.make_key(*args, **kwargs)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key = self._keys.make_key(*args, **kwargs)
        cache = self._cache or self.cache

        def compute() -> Awaitable[R]:
            return self.uncached(*args, **kwargs)

        # Named with its result type: mypy cannot tell R from get_or_set's ``Callable[[], T] | T``.
        get_or_set: Callable[..., Awaitable[R]] = cache.get_or_set
        if self._enveloped:
            return await get_or_set(key, compute, self._timeout, **self._options)
        return await get_or_set(key, compute, self._timeout)

    async def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Forget the result cached for these arguments; return whether one was stored."""
        return await self.cache.delete(self.make_key(*args, **kwargs))


__all__ = ["AsyncMemoized"]
