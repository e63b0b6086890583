"""Async stampede protection with the options of :func:`cachekit.stampede.get_or_set_entry`.

:meth:`cachekit.aio.AsyncCache.get_or_set` hands a call with
``stale_while_revalidate``, ``stale_if_error``, ``beta`` or ``tags`` to
:class:`_EntryFlow`: the same states as the sync flow (fresh, refresh early,
serve stale while one caller revalidates, serve stale on error, invalidated by a
tag), with the value stored as a :class:`~cachekit.stampede.CacheEntry` so sync
and async callers of one cache read each other's entries.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any
from typing import Generic
from typing import TypeVar

from cachekit.cache import _MISSING
from cachekit.clock import ServerClock
from cachekit.stampede import CacheEntry
from cachekit.stampede import _envelope
from cachekit.stampede import _stale_within

if TYPE_CHECKING:
    from cachekit.aio import AsyncCache

# The flow logs as part of AsyncCache, where it lived first; log filters name that logger.
logger = logging.getLogger("cachekit.aio")

T = TypeVar("T")


async def _call(compute: Callable[[], Awaitable[T] | T]) -> T:
    """Call ``compute``; await its result when it is awaitable (``async def``, a coroutine...)."""
    result = compute()
    if inspect.isawaitable(result):
        return await result
    return result


class _EntryOptions:
    __slots__ = ("beta", "stale_if_error", "stale_while_revalidate", "tags", "ttl")

    def __init__(self, ttl: float | None, swr: float, sie: float, beta: float, tags: tuple[str, ...]) -> None:
        self.ttl = ttl
        self.stale_while_revalidate = swr
        self.stale_if_error = sie
        self.beta = beta
        self.tags = tags


class _EntryFlow(Generic[T]):
    """:func:`cachekit.stampede.get_or_set_entry`, awaited: the same states, see that module."""

    def __init__(
        self,
        cache: AsyncCache,
        key: str,
        compute: Callable[[], Awaitable[T] | T],
        version: int | None,
        options: _EntryOptions,
    ) -> None:
        self.cache = cache
        self.key = key
        self.compute = compute
        self.version = version
        self.options = options

    async def _valid_entry(self, stored: Any) -> CacheEntry | None:
        if isinstance(stored, CacheEntry) and await self.cache._generations_valid(stored.tags):
            return stored
        return None  # invalidated content is never served, not even as stale

    async def run(self) -> T:
        cache, options = self.cache, self.options
        clock = cache.clock
        if isinstance(clock, ServerClock) and clock.due:
            await clock.aresync()  # calling the clock itself must not block the loop
        entry = await self._valid_entry(await cache.get(self.key, _MISSING, self.version))
        now = cache.clock()
        if entry is not None:
            if entry.is_fresh(now) and not entry.refresh_early(now, options.beta):
                return entry.value  # type: ignore[no-any-return]
            if entry.is_fresh(now) or _stale_within(entry, now, options.stale_while_revalidate):
                # A stale value is at hand: never wait. Whoever gets the lock refreshes.
                lock = await cache._lock(self.key, self.version)
                if lock is None or not await cache._acquire(lock, blocking=False):
                    if not entry.is_fresh(now):
                        cache._stale_serves += 1
                    return entry.value  # type: ignore[no-any-return]
                try:
                    return await self._compute_and_store(entry)
                finally:
                    await cache._release(lock)
        return await cache._single_flight(self.key, self.version, lambda: self._locked(entry))

    async def _locked(self, fallback: CacheEntry | None) -> T:
        cache = self.cache
        lock = await cache._lock(self.key, self.version)
        acquired = None if lock is None else await cache._acquire(lock, blocking=True)
        if lock is None or not acquired:
            if acquired is False:
                cache._lock_waits += 1  # the holder is slow or gone: compute rather than fail
            return await self._compute_and_store(fallback)
        try:
            stored = await cache.get(self.key, _MISSING, self.version)
            fresh = isinstance(stored, CacheEntry) and stored.is_fresh(cache.clock())
            if fresh and await cache._generations_valid(stored.tags):
                cache._lock_waits += 1
                return stored.value  # type: ignore[no-any-return]
            return await self._compute_and_store(fallback)
        finally:
            await cache._release(lock)

    async def _compute_and_store(self, fallback: CacheEntry | None) -> T:
        cache, options = self.cache, self.options
        generations = await cache._current_generations(options.tags)
        started = cache.clock()
        began = time.perf_counter()
        try:
            value = await _call(self.compute)
        except Exception:
            if fallback is not None and _stale_within(fallback, cache.clock(), options.stale_if_error):
                logger.exception(
                    "cache %s: recomputing %r failed; serving the stale value", cache.name or "-", self.key
                )
                cache._stale_serves += 1
                return fallback.value  # type: ignore[no-any-return]
            raise
        delta = time.perf_counter() - began
        entry, timeout = _envelope(
            value,
            ttl=options.ttl,
            stale_window=max(options.stale_while_revalidate, options.stale_if_error),
            started=started,
            delta=delta,
            generations=generations,
        )
        await cache.set(self.key, entry, timeout, self.version)
        return value
