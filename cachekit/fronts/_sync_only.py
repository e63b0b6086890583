"""What only the sync front has, written by hand; its async half is :mod:`cachekit.fronts._async_only`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeAlias
from typing import TypeVar

from cachekit.backends.base import Backend
from cachekit.background import ThreadWorkers
from cachekit.fronts._core import FrontCore

T = TypeVar("T")

#: What ``get_or_set`` computes with: a function of no arguments.
Compute: TypeAlias = Callable[[], T]


def call(compute: Compute[T]) -> T:
    """Call ``compute`` (the sync twin of :func:`acall`)."""
    return compute()


class SyncExtras(FrontCore[Backend]):
    """The sync front's own part: ``in``, and no in-process single flight (threads share the lock)."""

    if TYPE_CHECKING:

        def has_key(self, key: str, version: int | None = None) -> bool: ...

    def __contains__(self, key: str) -> bool:
        return self.has_key(key)

    def _single_flight(self, key: str, version: int | None, work: Callable[[], T]) -> T:
        """Run ``work``: concurrent threads and processes meet at the backend lock instead."""
        return work()


#: The refresh-ahead recomputations of ``get_or_set``/``@memoize`` (``refresh_ahead``) in this
#: process: at most 4 threads at once, one per key, the pool made on first use in each process
#: (safe across ``fork``); ``REFRESHES.wait(timeout)`` waits for them.
REFRESHES = ThreadWorkers(4, name="cachekit-refresh")


def refresh_later(job: Callable[[], object], key: str) -> bool:
    """Run ``job`` on a background thread unless one for ``key`` runs or all are busy."""
    return REFRESHES.submit(job, key)


def default_cache() -> Any:
    """The sync ``@memoize``'s cache when none was given: ``caches["default"]``, looked up on first call."""
    from cachekit.config import caches

    return caches["default"]
