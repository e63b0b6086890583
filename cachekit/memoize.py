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
from typing import TYPE_CHECKING
from typing import ParamSpec
from typing import TypeVar

from cachekit.fronts._core import DEFAULT_TIMEOUT
from cachekit.fronts._core import Timeout
from cachekit.fronts._sync.cache import Cache
from cachekit.fronts._sync.memoize import CacheInfo
from cachekit.fronts._sync.memoize import Memoized
from cachekit.fronts._sync.memoize import MemoOptions
from cachekit.fronts.memokeys import KEY_PREFIX

if TYPE_CHECKING:
    from typing_extensions import Unpack

P = ParamSpec("P")
R = TypeVar("R")


def memoize(
    timeout: Timeout = DEFAULT_TIMEOUT,
    *,
    cache: Cache | None = None,
    **options: Unpack[MemoOptions],
) -> Callable[[Callable[P, R]], Memoized[P, R]]:
    """Cache a function's results by its arguments (``None`` results included).

    ::

        @memoize(30, tags=["prices"])
        def price(product_id: int) -> Decimal: ...

        price(7)              # computed once, then served from the cache
        price.invalidate(7)   # forget one result
        price.uncached(7)     # call the original
        price.cache_clear()   # forget every result of price, in every process
        price.cache_info()    # CacheInfo(hits=..., misses=..., maxsize=None, currsize=None)
        cache.invalidate_tags("prices")  # forget every result tagged "prices"

    One caller computes a missing result while concurrent callers wait for it,
    across processes (see :meth:`cachekit.Cache.get_or_set`).

    :param timeout: seconds to keep a result; ``None`` for ever.
    :param cache: default ``caches["default"]``, looked up on first call.
    :param key: ``f(*args, **kwargs) -> str`` replacing the argument-based key.
    :param tags: names for :meth:`cachekit.Cache.invalidate_tags`, or a function
        of the call's arguments returning them (``tags=lambda user_id: [f"user:{user_id}"]``).
    :param stale_while_revalidate: see :mod:`cachekit.stampede`.
    :param stale_if_error: see :mod:`cachekit.stampede`.
    :param beta: XFetch early-refresh factor (``1.0`` recommended, ``0`` off).
    :param refresh_ahead: seconds before expiry from which a call returns the
        cached result and recomputes it on a background thread, once per key
        across processes (see :meth:`cachekit.Cache.get_or_set`).
    :param unless: a callable; when it returns true the call bypasses the cache
        (neither read nor written), as Flask-Caching's ``unless``. It gets the
        call's arguments, unless it takes none.
    """

    def decorator(func: Callable[P, R]) -> Memoized[P, R]:
        return Memoized(func, timeout, cache, **options)

    return decorator


__all__ = ["KEY_PREFIX", "CacheInfo", "Memoized", "memoize"]
