"""Stale-while-revalidate, stale-if-error, XFetch early refresh and tags for ``get_or_set``.

:meth:`cachekit.Cache.get_or_set` hands over to :func:`get_or_set_entry` when
any of those options is given. The value is then stored in a
:class:`CacheEntry` envelope that records when it stops being fresh, and the
backend keeps it for ``timeout`` plus the longest stale window, so a stale
copy is still there to serve. Keys written this way should be read through
``get_or_set`` (or ``@memoize``); a plain :meth:`~cachekit.Cache.get` returns
the envelope.

What callers see for one key:

* **fresh** (and tags unchanged): the stored value.
* **stale within** ``stale_while_revalidate``: one caller takes the backend
  lock without waiting and recomputes; every other caller gets the stale value
  at once.
* **missing, expired or tag-invalidated**: one caller computes under the lock;
  the others wait for it (up to ``lock_timeout``, then compute themselves).
* **computation raises within** ``stale_if_error``: the stale value is returned
  and the error logged.

XFetch (Vattani, Chierichetti, Lowenstein, "Optimal Probabilistic Cache
Stampede Prevention", VLDB 2015) refreshes a fresh value early with a
probability that rises as expiry nears: a caller recomputes when
``now - delta * beta * log(random()) >= expiry``, where ``delta`` is how long
the last computation took. ``beta = 1`` is the paper's optimum; larger values
refresh earlier, ``0`` disables it. The early refresher holds the lock, so a
hot key is recomputed by one caller and never expires under load.

Clocks. An envelope's deadline is a wall-clock time written by one machine and
read by others, through the cache's ``clock``. With the default ``time.time``
machines whose clocks disagree disagree about freshness (a reader 40 s ahead of
the writer recomputes a value fresh for 15 s at once); give every cache a
:class:`cachekit.clock.ServerClock` and they all tell the cache server's time
(``tests/cachekit/test_clock_skew.py``).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeVar

from cachekit.exceptions import BackendUnavailableError
from cachekit.tags import Generations
from cachekit.tags import current_generations
from cachekit.tags import generations_valid

if TYPE_CHECKING:
    from cachekit.backends.base import Lock
    from cachekit.cache import Cache

logger = logging.getLogger(__name__)

T = TypeVar("T")

_MISSING: Any = object()


@dataclass(frozen=True)
class CacheEntry:
    """A stored value with its freshness deadline, computation time and tag generations."""

    #: The cached value.
    value: Any
    #: Wall-clock time after which the value is stale; ``None``: fresh for ever.
    fresh_until: float | None
    #: Seconds the computation took (XFetch's ``delta``).
    delta: float
    #: ``((tag, generation), ...)`` recorded when the value was computed.
    tags: Generations

    def is_fresh(self, now: float) -> bool:
        """Whether the value is still fresh at ``now``."""
        return self.fresh_until is None or now < self.fresh_until

    def refresh_early(self, now: float, beta: float, rand: Callable[[], float] = random.random) -> bool:
        """XFetch: whether a caller at ``now`` should recompute this still-fresh value."""
        if beta <= 0 or self.fresh_until is None or self.delta <= 0:
            return False
        # 1 - random() lies in (0, 1], so the logarithm is finite.
        return now - self.delta * beta * math.log(1.0 - rand()) >= self.fresh_until


def _stale_within(entry: CacheEntry, now: float, window: float) -> bool:
    """Whether ``entry`` went stale less than ``window`` seconds before ``now``."""
    return entry.fresh_until is not None and now < entry.fresh_until + window


def _envelope(
    value: Any,
    *,
    ttl: float | None,
    stale_window: float,
    started: float,
    delta: float,
    generations: Generations,
) -> tuple[CacheEntry, float | None]:
    """The entry to store for ``value`` computed at ``started``, and the backend timeout to keep it."""
    entry = CacheEntry(value, None if ttl is None else started + ttl, delta, generations)
    return entry, None if ttl is None else ttl + stale_window


def _release(cache: Cache, lock: Lock) -> None:
    try:
        lock.release()
    except BackendUnavailableError as exc:
        cache._failed("unlock", exc)


def get_or_set_entry(
    cache: Cache,
    key: str,
    compute: Callable[[], T],
    ttl: float | None,
    version: int | None = None,
    *,
    stale_while_revalidate: float = 0.0,
    stale_if_error: float = 0.0,
    beta: float = 0.0,
    tags: Iterable[str] = (),
) -> T:
    """Implement :meth:`cachekit.Cache.get_or_set` with an envelope; see the module docstring.

    :param ttl: the normalized timeout: seconds > 0, or ``None`` for no expiry.
    """
    if isinstance(tags, str):
        raise TypeError(f"tags must be a list of names, not one str: use tags=[{tags!r}].")
    tag_names = tuple(tags)
    clock = cache.clock
    stored = cache.get(key, _MISSING, version)
    entry = stored if isinstance(stored, CacheEntry) else None
    if entry is not None and not generations_valid(cache, entry.tags):
        entry = None  # invalidated content is never served, not even as stale
    now = clock()
    if entry is not None and entry.is_fresh(now) and not entry.refresh_early(now, beta):
        return entry.value  # type: ignore[no-any-return]

    def recompute() -> T:
        return _compute_and_store(
            cache,
            key,
            compute,
            ttl,
            version,
            tag_names,
            stale_while_revalidate,
            stale_if_error,
            fallback=entry,
        )

    if entry is not None and (entry.is_fresh(now) or _stale_within(entry, now, stale_while_revalidate)):
        # A stale value is at hand: never wait. Whoever gets the lock refreshes.
        lock = _lock(cache, key, version)
        if lock is None or not _try(cache, lock, blocking=False):
            if not entry.is_fresh(now):
                cache._stale_serves += 1
            return entry.value  # type: ignore[no-any-return]
        try:
            return recompute()
        finally:
            _release(cache, lock)
    lock = _lock(cache, key, version)
    if lock is None:
        return recompute()
    if not _try(cache, lock, blocking=True):
        # The holder is slow or gone: compute rather than fail, keeping the stale fallback.
        cache._lock_waits += 1
        return recompute()
    try:
        stored = cache.get(key, _MISSING, version)
        if (
            isinstance(stored, CacheEntry)
            and stored.is_fresh(clock())
            and (generations_valid(cache, stored.tags))
        ):
            cache._lock_waits += 1
            return stored.value  # type: ignore[no-any-return]
        return recompute()
    finally:
        _release(cache, lock)


def _lock(cache: Cache, key: str, version: int | None) -> Lock | None:
    try:
        return cache.backend.lock("cachekit.lock:" + cache.make_key(key, version), ttl=cache.lock_ttl)
    except BackendUnavailableError as exc:
        cache._failed("lock", exc)
        return None


def _try(cache: Cache, lock: Lock, *, blocking: bool) -> bool:
    try:
        return lock.acquire(blocking, cache.lock_timeout if blocking else -1)
    except BackendUnavailableError as exc:
        cache._failed("lock", exc)
        return False


def _compute_and_store(
    cache: Cache,
    key: str,
    compute: Callable[[], T],
    ttl: float | None,
    version: int | None,
    tags: tuple[str, ...],
    stale_while_revalidate: float,
    stale_if_error: float,
    *,
    fallback: CacheEntry | None,
) -> T:
    generations = current_generations(cache, tags)
    started = cache.clock()
    began = time.perf_counter()
    try:
        value = compute()
    except Exception:
        if fallback is not None and _stale_within(fallback, cache.clock(), stale_if_error):
            logger.exception(
                "cache %s: recomputing %r failed; serving the stale value", cache.name or "-", key
            )
            cache._stale_serves += 1
            return fallback.value  # type: ignore[no-any-return]
        raise
    delta = time.perf_counter() - began
    entry, timeout = _envelope(
        value,
        ttl=ttl,
        stale_window=max(stale_while_revalidate, stale_if_error),
        started=started,
        delta=delta,
        generations=generations,
    )
    cache.set(key, entry, timeout, version)
    return value


__all__ = ["CacheEntry", "get_or_set_entry"]
