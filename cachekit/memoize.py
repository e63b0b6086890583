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

import enum
import functools
import hashlib
import inspect
import re
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any
from typing import Generic
from typing import ParamSpec
from typing import TypeVar

from cachekit.cache import DEFAULT_TIMEOUT
from cachekit.cache import Cache
from cachekit.cache import Timeout

P = ParamSpec("P")
R = TypeVar("R")

_SIMPLE = (type(None), bool, int, float, str, bytes)

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")

#: Prefix of memoized keys: ``cachekit.memo.<module>.<qualname>:<digest>``.
KEY_PREFIX = "cachekit.memo."


def _canonical(value: Any) -> str:
    """Return a text form of ``value`` that is equal across processes for equal values."""
    kind = type(value)
    if kind in _SIMPLE:
        return f"{kind.__name__}:{value!r}"
    if kind is tuple or kind is list:
        return f"{kind.__name__}(" + ",".join(_canonical(item) for item in value) + ")"
    if kind is dict:
        items = sorted((_canonical(k), _canonical(v)) for k, v in value.items())
        return "dict(" + ",".join(f"{k}={v}" for k, v in items) + ")"
    if kind is set or kind is frozenset:
        return f"{kind.__name__}(" + ",".join(sorted(_canonical(item) for item in value)) + ")"
    if isinstance(value, type):
        return f"type:{value.__module__}.{value.__qualname__}"
    if isinstance(value, enum.Enum):
        return f"enum:{kind.__module__}.{kind.__qualname__}.{value.name}"
    cache_key = getattr(value, "__cache_key__", None)
    if cache_key is not None:
        return f"{kind.__module__}.{kind.__qualname__}:{cache_key()}"
    if kind.__repr__ is not object.__repr__:  # type: ignore[comparison-overlap]
        text = repr(value)
        # Functions, lambdas, partials and bound methods have a repr of their own,
        # but it holds a memory address: another object may reuse it later.
        if not _ADDRESS.search(text):
            return f"{kind.__module__}.{kind.__qualname__}:{text}"
    raise TypeError(
        f"Cannot build a stable cache key from {kind.__qualname__!r} objects: their repr holds an "
        f"address that differs between processes. Give {kind.__qualname__} a __cache_key__() method "
        f"returning a str, or pass key= to @memoize."
    )


class Memoized(Generic[P, R]):
    """A memoized function: call it as the original; see :func:`memoize`."""

    def __init__(
        self,
        func: Callable[P, R],
        *,
        timeout: Timeout,
        cache: Cache | None,
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
        self._key = key
        self._tags = tuple(tags)
        self._options = {
            "stale_while_revalidate": stale_while_revalidate,
            "stale_if_error": stale_if_error,
            "beta": beta,
            "tags": self._tags,
        }
        self._enveloped = bool(stale_while_revalidate or stale_if_error or beta or self._tags)
        self._signature = inspect.signature(func)
        self._name = f"{KEY_PREFIX}{func.__module__}.{func.__qualname__}"

    @property
    def cache(self) -> Cache:
        """The cache results are stored in (``caches["default"]`` unless one was given)."""
        if self._cache is None:
            from cachekit.config import caches

            self._cache = caches["default"]
        return self._cache

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        # Decorating a method: bind like a function would, keeping invalidate/uncached reachable.
        if instance is None:
            return self
        bound = functools.partial(self, instance)
        bound.invalidate = functools.partial(self.invalidate, instance)  # type: ignore[attr-defined]
        bound.uncached = functools.partial(self.uncached, instance)  # type: ignore[attr-defined]
        return bound

    def make_key(self, *args: Any, **kwargs: Any) -> str:
        """Return the cache key a call with these arguments uses.

        :raises TypeError: if an argument has no stable key (see the module docstring).
        """
        if self._key is not None:
            return f"{self._name}:{self._key(*args, **kwargs)}"
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        text = ",".join(f"{name}={_canonical(value)}" for name, value in bound.arguments.items())
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
        return f"{self._name}:{digest}"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key = self.make_key(*args, **kwargs)
        cache = self._cache or self.cache

        def compute() -> R:
            return self.uncached(*args, **kwargs)

        if self._enveloped:
            return cache.get_or_set(key, compute, self._timeout, **self._options)  # type: ignore[arg-type]
        return cache.get_or_set(key, compute, self._timeout)  # type: ignore[arg-type]

    def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Forget the result cached for these arguments; return whether one was stored."""
        return self.cache.delete(self.make_key(*args, **kwargs))


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
        return Memoized(
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


__all__ = ["KEY_PREFIX", "Memoized", "memoize"]
