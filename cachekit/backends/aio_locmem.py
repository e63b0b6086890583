"""The async local-memory backend: the sync locmem store, called inline from coroutines.

Every locmem operation is a few dictionary steps under a mutex held for
microseconds and never waits on I/O, so running it in the event loop is both
correct and the fastest option: no thread pool, no hand-off. The store is the
one :class:`~cachekit.backends.locmem.LocMemBackend` uses for the same
``location``, so a sync :class:`~cachekit.Cache` and an
:class:`~cachekit.aio.AsyncCache` on ``locmem://name`` see the same data.

Only the lock differs: waiting for it must not block the loop. A waiter
sleeps on a future that an async holder's ``release()`` resolves at once, and
polls (up to every 50 ms) to notice sync holders releasing and locks expiring.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any
from typing import ClassVar

from cachekit.backends.locmem import LocMemBackend
from cachekit.backends.locmem import LocMemLock
from cachekit.backends.locmem import LocMemOptions

if TYPE_CHECKING:
    from typing_extensions import Unpack

# Longest sleep between two tries of a contended lock.
_MAX_POLL = 0.05
# Waiters by (location, lock name); each future belongs to its waiter's loop.
_waiters: dict[tuple[str, str], set[asyncio.Future[None]]] = {}


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class AsyncLocMemLock:
    """A named local-memory lock with a ``ttl`` whose waits do not block the event loop.

    It is the same lock :class:`~cachekit.backends.locmem.LocMemLock` takes, so
    sync and async holders of one name exclude each other.
    """

    def __init__(self, lock: LocMemLock, location: str, name: str) -> None:
        self._lock = lock
        self._key = (location, name)

    async def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock, waiting up to ``timeout`` seconds (``-1``: no limit) when ``blocking``."""
        if self._lock.acquire(blocking=False):
            return True
        if not blocking:
            return False
        loop = asyncio.get_running_loop()
        deadline = None if timeout < 0 else time.monotonic() + timeout
        delay = 0.001
        while True:
            wait = delay
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                wait = min(wait, remaining)
            future: asyncio.Future[None] = loop.create_future()
            waiters = _waiters.setdefault(self._key, set())
            waiters.add(future)
            try:
                await asyncio.wait((future,), timeout=wait)
            finally:
                waiters.discard(future)
                if not waiters and _waiters.get(self._key) is waiters:
                    del _waiters[self._key]
            if self._lock.acquire(blocking=False):
                return True
            delay = min(delay * 2, _MAX_POLL)

    async def release(self) -> None:
        """Release the lock if this holder still owns it, and wake async waiters."""
        self._lock.release()
        for future in list(_waiters.get(self._key, ())):
            future.get_loop().call_soon_threadsafe(_wake, future)

    async def __aenter__(self) -> AsyncLocMemLock:
        await self.acquire()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.release()

    def __repr__(self) -> str:
        return f"AsyncLocMemLock({self._key[1]!r})"


class AsyncLocMemBackend:
    """In-process LRU store with coroutine methods; the data is shared with the sync locmem.

    :param location: stores are shared by name within the process (sync and async alike).
    :param max_entries: least recently used entries are evicted above this count.
    :param max_bytes: bound on the summed size of stored values
        (:data:`~cachekit.backends.locmem.DEFAULT_MAX_BYTES` unless given; ``None``: no bound).
    :param clock: a monotonic clock in seconds; tests pass a fake one.
    """

    OPTIONS: ClassVar[Mapping[str, type]] = LocMemBackend.OPTIONS
    stores_objects: ClassVar[bool] = True

    def __init__(self, location: str = "", **options: Unpack[LocMemOptions]) -> None:
        #: The sync backend doing the work (it owns the options' defaults and checks).
        self.sync = LocMemBackend(location, **options)

    @classmethod
    def from_sync(cls, backend: LocMemBackend) -> AsyncLocMemBackend:
        """Wrap an existing sync backend (same store, same options)."""
        self = cls.__new__(cls)
        self.sync = backend
        return self

    @classmethod
    def from_url(cls, url: str, **options: Any) -> AsyncLocMemBackend:
        """Build from ``locmem://name``, as the sync :class:`~cachekit.backends.locmem.LocMemBackend`."""
        return cls.from_sync(LocMemBackend.from_url(url, **options))

    @classmethod
    def from_location(cls, location: str | Sequence[str] | None, **options: Any) -> AsyncLocMemBackend:
        """Build from a settings ``LOCATION`` (a store name)."""
        return cls.from_sync(LocMemBackend.from_location(location, **options))

    def __repr__(self) -> str:
        return f"Async{self.sync!r}"

    async def get(self, key: str) -> Any:
        """Return the stored value or ``None``."""
        return self.sync.get(key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """Return the found keys only."""
        return self.sync.get_many(keys)

    async def set(self, key: str, value: Any, ttl: float | None) -> None:
        """Store ``value`` under ``key``; over ``max_bytes``: :class:`BackendError`, old value deleted."""
        self.sync.set(key, value, ttl)

    async def set_many(self, items: Mapping[str, Any], ttl: float | None) -> None:
        """Store every item with the same ``ttl``; see the sync backend for values over ``max_bytes``."""
        self.sync.set_many(items, ttl)

    async def add(self, key: str, value: Any, ttl: float | None) -> bool:
        """Store only if absent or expired; over ``max_bytes``: :class:`BackendError`, nothing stored."""
        return self.sync.add(key, value, ttl)

    async def delete(self, key: str) -> bool:
        """Remove ``key``; return whether a live value was there."""
        return self.sync.delete(key)

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in ``keys``."""
        self.sync.delete_many(keys)

    async def incr(self, key: str, delta: int) -> int:
        """Add ``delta`` to the integer under ``key``; see the sync backend."""
        return self.sync.incr(key, delta)

    async def touch(self, key: str, ttl: float | None) -> bool:
        """Give ``key`` a new ``ttl``."""
        return self.sync.touch(key, ttl)

    async def gets(self, key: str) -> tuple[Any, Any] | None:
        """Return ``(value, token)`` for :meth:`cas`, or ``None``."""
        return self.sync.gets(key)

    async def cas(self, key: str, value: Any, token: Any, ttl: float | None) -> bool:
        """Store ``value`` if ``key`` still holds what :meth:`gets` returned; refuses as :meth:`add`."""
        return self.sync.cas(key, value, token, ttl)

    async def clear(self, prefix: str = "") -> None:
        """Remove every key starting with ``prefix``."""
        self.sync.clear(prefix)

    async def close(self) -> None:
        """Nothing to release: the store outlives the backend."""

    def lock(self, name: str, *, ttl: float) -> AsyncLocMemLock:
        """Return a lock named ``name`` shared by every backend (sync or async) of this location."""
        return AsyncLocMemLock(self.sync.lock(name, ttl=ttl), self.sync.location, name)
