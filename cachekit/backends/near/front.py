"""What every near-cache backend adds to its server backend, sync or async, Redis or memcached."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any
from typing import TypeVar
from typing import cast

from cachekit.backends.near.listener import NearCache
from cachekit.backends.near.store import DecodedMemo


class NearAccess:
    """The near cache's accessors, and what a write does to local memory (:meth:`_dropped`)."""

    _near: NearCache

    @property
    def near(self) -> NearCache:
        """The near cache (its counters, ``ready``, ``wait_ready()``)."""
        return self._near

    def near_stats(self) -> dict[str, int]:
        """``near_hits``, ``near_misses``, ``near_invalidations``, ``near_flushes``, ``near_ready``."""
        return self._near.stats()

    def near_memo(self) -> DecodedMemo:
        """Where a ``Cache`` keeps the decoded values of near hits (see :class:`DecodedMemo`)."""
        return self._near.decoded

    def _dropped(self, keys: Iterable[str] | None) -> None:
        """A write of ``keys`` (``None``: of everything) returned or failed: drop them locally."""
        if keys is None:
            self._near.flush()
        else:
            self._near.invalidate(keys)


#: The writes of the Backend protocol, each with the parameter naming what it writes (``None``:
#: every key).
WRITES: dict[str, str | None] = {
    "set": "key",
    "set_many": "items",
    "add": "key",
    "cas": "key",
    "delete": "key",
    "delete_many": "keys",
    "incr": "key",
    "touch": "key",  # the local copy's expiry is stale
    "clear": None,
}

N = TypeVar("N", bound=type[NearAccess])


def dropping_writes(cls: N) -> N:
    """Class decorator: each of :data:`WRITES` that ``cls`` inherits drops its keys locally.

    The server backend's method runs first; the keys go (:meth:`NearAccess._dropped`) when
    it returns and when it raises, as its outcome is then unknown.
    """
    for name, keys in WRITES.items():
        setattr(cls, name, then_drop(getattr(cls, name), keys))
    return cls


def then_drop(method: Callable[..., Any], keys: str | None) -> Callable[..., Any]:
    """``method`` (a server backend's write, sync or async), then :meth:`NearAccess._dropped`.

    :param keys: the name of the parameter holding the written key (``"key"``) or keys
        (``"items"``, ``"keys"``: any iterable of them); ``None``: the write reaches every key.
    """
    index = list(inspect.signature(method).parameters).index(keys) - 1 if keys is not None else -1

    def written(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterable[str] | None:
        if keys is None:
            return None
        found = args[index] if index < len(args) else kwargs[keys]
        return (found,) if keys == "key" else cast("Iterable[str]", found)

    if inspect.iscoroutinefunction(method):

        async def awaited(self: NearAccess, *args: Any, **kwargs: Any) -> Any:
            try:
                return await method(self, *args, **kwargs)
            finally:
                self._dropped(written(args, kwargs))

        run: Callable[..., Any] = awaited
    else:

        def called(self: NearAccess, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            finally:
                self._dropped(written(args, kwargs))

        run = called
    wrapped = functools.wraps(method)(run)
    action = "every key" if keys is None else f"``{keys}``"
    wrapped.__doc__ = f"{(method.__doc__ or '').rstrip()}\n\nThen drops {action} locally (near cache)."
    return wrapped
