"""The stampede lock of one key, where a backend outage counts and lets the caller go ahead."""

from __future__ import annotations

import enum
from types import TracebackType
from typing import TYPE_CHECKING

from cachekit.exceptions import BackendUnavailableError

if TYPE_CHECKING:
    from cachekit.backends.aio_base import AsyncLock
    from cachekit.fronts._async.cache import AsyncCache

#: What every stampede lock's name starts with, before the key it guards.
LOCK_PREFIX = "cachekit.lock:"


class Turn(enum.Enum):
    """What taking a :class:`GoAheadLock` gave the caller."""

    #: This caller holds the lock until the ``with`` block ends.
    HELD = "held"
    #: Another caller holds it: a blocking wait timed out, or a try found it taken.
    BUSY = "busy"
    #: The backend is down: counted and logged by the cache, and the caller goes ahead unlocked.
    OUTAGE = "outage"


class GoAheadLock:
    """``async with GoAheadLock(cache, stored_key, blocking=True) as turn:`` take one key's lock.

    A blocking take waits up to the cache's ``lock_timeout``; a non-blocking one
    only tries. The lock is released when the block ends (an outage then is
    counted, never raised, under ``on_error="ignore"``).
    """

    __slots__ = ("_blocking", "_cache", "_held", "_name")

    def __init__(self, cache: AsyncCache, stored_key: str, *, blocking: bool) -> None:
        self._cache = cache
        self._name = LOCK_PREFIX + stored_key
        self._blocking = blocking
        self._held: AsyncLock | None = None

    async def __aenter__(self) -> Turn:
        cache = self._cache
        try:
            lock = cache.backend.lock(self._name, ttl=cache.lock_ttl)
            wait = cache.lock_timeout if self._blocking else -1
            acquired = await lock.acquire(self._blocking, wait)
        except BackendUnavailableError as exc:
            cache.recorder.failed("lock", exc)
            return Turn.OUTAGE
        if not acquired:
            return Turn.BUSY
        self._held = lock
        return Turn.HELD

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        lock, self._held = self._held, None
        if lock is None:
            return
        try:
            await lock.release()
        except BackendUnavailableError as failure:
            self._cache.recorder.failed("unlock", failure)


__all__ = ["LOCK_PREFIX", "GoAheadLock", "Turn"]
