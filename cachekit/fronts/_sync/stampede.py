# Generated from cachekit/fronts/_async/stampede.py by .ci/unasync.py; do not edit.
"""``get_or_set`` with stale-while-revalidate, stale-if-error, XFetch and tags; see :mod:`cachekit.stampede`.

The value is stored in a :class:`~cachekit.fronts.entries.CacheEntry` envelope, so
sync and async callers of one cache read each other's entries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import Any
from typing import Generic
from typing import TypeVar

from cachekit.fronts._core import _MISSING
from cachekit.fronts._sync.lock import GoAheadLock
from cachekit.fronts._sync.lock import Turn
from cachekit.fronts._sync.tags import current_generations
from cachekit.fronts._sync.tags import generations_valid
from cachekit.fronts._sync_only import Compute
from cachekit.fronts._sync_only import call
from cachekit.fronts._sync_only import refresh_later
from cachekit.fronts.entries import REFRESHING
from cachekit.fronts.entries import CacheEntry
from cachekit.fronts.entries import EntryOptions
from cachekit.fronts.entries import envelope
from cachekit.fronts.entries import refresh_due
from cachekit.fronts.entries import stale_within

if TYPE_CHECKING:
    from cachekit.fronts._sync.cache import Cache

logger = logging.getLogger("cachekit.stampede")

T = TypeVar("T")


def get_or_set_entry(
    cache: Cache,
    key: str,
    compute: Compute[T],
    ttl: float | None,
    version: int | None = None,
    *,
    stale_while_revalidate: float = 0.0,
    stale_if_error: float = 0.0,
    beta: float = 0.0,
    tags: Iterable[str] = (),
    refresh_ahead: float = 0.0,
) -> T:
    """Implement ``get_or_set`` with an envelope; see :mod:`cachekit.stampede`.

    :param ttl: the normalized timeout: seconds > 0, or ``None`` for no expiry.
    :raises TypeError: if ``tags`` is one ``str`` rather than a list of names.
    """
    if isinstance(tags, str):
        raise TypeError(f"tags must be a list of names, not one str: use tags=[{tags!r}].")
    if refresh_ahead < 0:
        raise ValueError(f"refresh_ahead must be seconds >= 0, got {refresh_ahead!r}.")
    options = EntryOptions(ttl, stale_while_revalidate, stale_if_error, beta, tuple(tags), refresh_ahead)
    return EntryFlow(cache, key, compute, version, options).run()


class EntryFlow(Generic[T]):
    """One enveloped ``get_or_set`` call: fresh, refresh early, serve stale, or compute under the lock."""

    __slots__ = ("cache", "compute", "key", "options", "version")

    def __init__(
        self,
        cache: Cache,
        key: str,
        compute: Compute[T],
        version: int | None,
        options: EntryOptions,
    ) -> None:
        self.cache = cache
        self.key = key
        self.compute = compute
        self.version = version
        self.options = options

    def _valid_entry(self, stored: Any) -> CacheEntry[T] | None:
        if isinstance(stored, CacheEntry) and generations_valid(self.cache, stored.tags):
            return stored
        return None  # invalidated content is never served, not even as stale

    def run(self) -> T:
        """Answer the call; see :mod:`cachekit.stampede` for the states."""
        cache, options = self.cache, self.options
        entry = self._valid_entry(cache.get(self.key, _MISSING, self.version))
        now = cache.clock()
        if entry is not None:
            fresh = entry.is_fresh(now)
            due = entry.refresh_early(now, options.beta) or refresh_due(entry, now, options.refresh_ahead)
            if fresh and not due:
                return entry.value
            if fresh or stale_within(entry, now, options.stale_while_revalidate):
                # A stale value is at hand: never wait. Whoever gets the lock refreshes.
                stored_key = cache.make_key(self.key, self.version)
                if options.refresh_ahead:
                    # ...off the caller's path: one background recomputation per key and process.
                    refresh_later(lambda: self._refresh(entry), stored_key)
                    if not fresh:
                        cache.recorder.stale_serves += 1
                    return entry.value
                with GoAheadLock(cache, stored_key, blocking=False) as turn:
                    if turn is Turn.HELD:
                        return self._compute_and_store(entry)
                if not entry.is_fresh(now):
                    cache.recorder.stale_serves += 1
                return entry.value
        return cache._single_flight(self.key, self.version, lambda: self._locked(entry))

    def _refresh(self, seen: CacheEntry[T]) -> None:
        """Recompute in the background, under the key's lock, unless another caller already did.

        ``seen`` is the entry the caller was answered with: if the key holds another
        by the time the lock is ours, a process refreshed it meanwhile. A failure is
        logged; the stored value stays until it expires.
        """
        cache = self.cache
        refreshing = REFRESHING.set(True)  # in this thread's or task's own context, not the caller's
        try:
            with GoAheadLock(cache, cache.make_key(self.key, self.version), blocking=False) as turn:
                if turn is not Turn.HELD:
                    return  # another process is refreshing it, or the backend is down
                found = self._valid_entry(cache.get(self.key, _MISSING, self.version))
                if found is not None and found.fresh_until != seen.fresh_until:
                    return
                self._compute_and_store(None)
        except Exception:
            logger.exception(
                "cache %s: refreshing %r ahead of expiry failed; the stored value stays",
                cache.name or "-",
                self.key,
            )
        finally:
            REFRESHING.reset(refreshing)

    def _locked(self, fallback: CacheEntry[T] | None) -> T:
        cache = self.cache
        with GoAheadLock(cache, cache.make_key(self.key, self.version), blocking=True) as turn:
            if turn is not Turn.HELD:
                if turn is Turn.BUSY:
                    cache.recorder.lock_waits += 1  # the holder is slow or gone: compute rather than fail
                return self._compute_and_store(fallback)
            found = cache.get(self.key, _MISSING, self.version)
            stored: CacheEntry[T] | None = found if isinstance(found, CacheEntry) else None
            fresh = stored is not None and stored.is_fresh(cache.clock())
            if fresh and stored is not None and generations_valid(cache, stored.tags):
                cache.recorder.lock_waits += 1
                return stored.value
            return self._compute_and_store(fallback)

    def _compute_and_store(self, fallback: CacheEntry[T] | None) -> T:
        cache, options = self.cache, self.options
        generations = current_generations(cache, options.tags)
        started = cache.clock()
        began = time.perf_counter()
        try:
            value = call(self.compute)
        except Exception:
            if fallback is not None and stale_within(fallback, cache.clock(), options.stale_if_error):
                logger.exception(
                    "cache %s: recomputing %r failed; serving the stale value", cache.name or "-", self.key
                )
                cache.recorder.stale_serves += 1
                return fallback.value
            raise
        delta = time.perf_counter() - began
        entry, timeout = envelope(
            value,
            ttl=options.ttl,
            stale_window=max(options.stale_while_revalidate, options.stale_if_error),
            started=started,
            delta=delta,
            generations=generations,
        )
        cache.set(self.key, entry, timeout, self.version)
        return value


__all__ = ["EntryFlow", "get_or_set_entry"]
