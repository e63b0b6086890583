"""``@memoize``: cache any function's result by its arguments, stampede-protected.

The key is built from the function's module, qualified name and its bound
arguments (defaults applied, so ``f(1)`` and ``f(x=1)`` share an entry) in a
canonical text form that is the same in every process: no ``hash()``, no
``id()``. Arguments may be ``None``, ``bool``, ``int``, ``float``, ``str``,
``bytes``, tuples, lists, dicts, sets, classes, enum members and objects with a
``__cache_key__()`` method or their own ``__repr__``; anything else raises a
:class:`TypeError` that says what to do. ``self`` and ``cls`` follow the same
rule, so an instance method needs its class to define ``__cache_key__`` (or a
``__repr__`` that identifies the instance).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from typing import ParamSpec
from typing import TypeVar

from cachekit.fronts._core import DEFAULT_TIMEOUT
from cachekit.fronts._core import Timeout
from cachekit.fronts._sync.cache import Cache
from cachekit.fronts._sync.memoize import Memoized
from cachekit.fronts.memokeys import KEY_PREFIX

P = ParamSpec("P")
R = TypeVar("R")


def memoize(
    timeout: Timeout = DEFAULT_TIMEOUT,
    *,
    cache: Cache | None = None,
    key: Callable[..., str] | None = None,
    tags: Iterable[str] = (),
    stale_while_revalidate: float = 0,
    stale_if_error: float = 0,
    beta: float = 0,
) -> Callable[[Callable[P, R]], Memoized[P, R]]:
    """Cache a function's results by its arguments (``None`` results included).

    ::

        @memoize(30, tags=["prices"])
        def price(product_id: int) -> Decimal: ...

        price(7)              # computed once, then served from the cache
        price.invalidate(7)   # forget one result
        price.uncached(7)     # call the original
        cache.invalidate_tags("prices")  # forget every result tagged "prices"

    One caller computes a missing result while concurrent callers wait for it,
    across processes (see :meth:`cachekit.Cache.get_or_set`).

    :param timeout: seconds to keep a result; ``None`` for ever.
    :param cache: default ``caches["default"]``, looked up on first call.
    :param key: ``f(*args, **kwargs) -> str`` replacing the argument-based key.
    :param tags: names for :meth:`cachekit.Cache.invalidate_tags`.
    :param stale_while_revalidate: see :mod:`cachekit.stampede`.
    :param stale_if_error: see :mod:`cachekit.stampede`.
    :param beta: XFetch early-refresh factor (``1.0`` recommended, ``0`` off).
    """

    def decorator(func: Callable[P, R]) -> Memoized[P, R]:
        return Memoized(func, timeout, cache, key, tags, stale_while_revalidate, stale_if_error, beta)

    return decorator


__all__ = ["KEY_PREFIX", "Memoized", "memoize"]
