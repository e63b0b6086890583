"""Soft tag invalidation: stored pages become stale, not missing, and are served while one request re-renders.

A hard invalidation (:func:`cachekit.tags.invalidate_tags`) moves a tag's
generation counter, so every entry that recorded the old generation is gone.
A soft one moves it too (every ``get_or_set``/``@memoize`` entry treats it as
hard) and leaves a marker, ``cachekit.tagsoft:<tag>`` = ``(low, high, latest, times)``:
"generations ``low`` up to ``high - 1`` were retired softly, generation ``low + i``
at ``times[i]`` (``latest`` is the last of them), and ``high`` is current". The
page cache, finding a page whose tags moved, asks :func:`soft_since`: if every
moved tag is covered by its marker, the page is treated as having gone stale
when the generation it was stored with was retired (the earliest such time over
its tags), so it is served within its own ``stale-while-revalidate`` window,
counted from that purge, while one request re-renders it; past that window, or
without one, it is a miss as after a hard invalidation. A second soft purge
never extends the window of a page already stale since the first. A marker
keeps the last :data:`MAX_SOFT_GENERATIONS` generations: a page older than
those is a miss.

A hard invalidation after a soft one moves the counter past ``high``, so the
marker no longer covers it: hard always wins. Two purges racing may leave a
marker that covers less than it could; never more (a soft purge only ever
extends a marker whose ``high`` is the generation just before its own).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

from cachekit.exceptions import MissingKeyError
from cachekit.pages.record import ERROR_UNTIL
from cachekit.pages.record import FRESH_UNTIL
from cachekit.pages.record import STALE_UNTIL
from cachekit.pages.record import STORED_AT
from cachekit.pages.record import Page
from cachekit.tags import TAG_KEY_PREFIX

if TYPE_CHECKING:
    from cachekit.aio import AsyncCache
    from cachekit.cache import Cache
    from cachekit.pages.options import PageOptions

#: Prefix of the markers a soft invalidation leaves.
SOFT_KEY_PREFIX = "cachekit.tagsoft:"
#: Most retired generations one marker remembers (older pages are treated as hard-invalidated).
MAX_SOFT_GENERATIONS = 32


def _keys(tag: str) -> tuple[str, str]:
    if not isinstance(tag, str) or not tag:
        raise TypeError(f"Cache tags must be non-empty str, got {tag!r}.")
    return TAG_KEY_PREFIX + tag, SOFT_KEY_PREFIX + tag


def _marker(before: Any, new: int, now: float) -> tuple[int, int, float, tuple[float, ...]]:
    # Each retired generation keeps its own time: a page stored after the first purge gets its
    # whole window from the second, and one stale since the first keeps the first's.
    times: tuple[float, ...] = ()
    low = new - 1
    if isinstance(before, (tuple, list)) and len(before) in (3, 4) and before[1] == new - 1:
        low = int(before[0])
        if len(before) == 4 and isinstance(before[3], (tuple, list)) and len(before[3]) == before[1] - low:
            times = tuple(before[3])
        else:  # a marker written before per-generation times: all at its one time
            times = (float(before[2]),) * (new - 1 - low)
    times += (now,)
    if len(times) > MAX_SOFT_GENERATIONS:
        low, times = new - MAX_SOFT_GENERATIONS, times[-MAX_SOFT_GENERATIONS:]
    return (low, new, now, times)


def soft_invalidate_tags(cache: Cache, tags: Iterable[str]) -> None:
    """Mark every page stored with any of ``tags`` stale (see the module docstring); entries are invalidated.

    Two reads and two writes per tag. A tag with no counter needs nothing.

    :raises BackendUnavailableError: if the backend is down, as :meth:`cachekit.Cache.invalidate_tags`.
    """
    for tag in dict.fromkeys(tags):
        counter, soft = _keys(tag)
        before = cache.get(soft)
        with contextlib.suppress(MissingKeyError):
            new = cache.incr(counter)
            cache.set(soft, _marker(before, new, cache.clock()), timeout=None)


async def async_soft_invalidate_tags(cache: AsyncCache, tags: Iterable[str]) -> None:
    """:func:`soft_invalidate_tags` on an :class:`~cachekit.aio.AsyncCache`."""
    for tag in dict.fromkeys(tags):
        counter, soft = _keys(tag)
        before = await cache.get(soft)
        with contextlib.suppress(MissingKeyError):
            new = await cache.incr(counter)
            await cache.set(soft, _marker(before, new, cache.clock()), timeout=None)


def _names(generations: Sequence[tuple[str, int]]) -> list[str]:
    names: list[str] = []
    for tag, _ in generations:
        names += _keys(tag)
    return names


def _since(generations: Sequence[tuple[str, int]], found: dict[str, Any]) -> float | None:
    earliest: float | None = None
    for tag, generation in generations:
        counter, soft = _keys(tag)
        current = found.get(counter)
        if current == generation:
            continue
        marker = found.get(soft)
        if not isinstance(marker, (tuple, list)) or len(marker) not in (3, 4):
            return None
        low, high = marker[0], marker[1]
        if current != high or not low <= generation < high:
            return None
        if len(marker) == 4:
            times = marker[3]
            if not isinstance(times, (tuple, list)) or len(times) != high - low:
                return None
            at = times[generation - low]
        else:  # written before per-generation times
            at = marker[2]
        # The page went stale at the first of its tags' purges that retired its generation.
        earliest = at if earliest is None else min(earliest, at)
    return earliest


def soft_since(cache: Cache, generations: Sequence[tuple[str, int]]) -> float | None:
    """When an entry whose tags moved went stale, if every move was soft; ``None`` if any was hard.

    One ``get_many``.
    """
    return _since(generations, cache.get_many(_names(generations)))


async def async_soft_since(cache: AsyncCache, generations: Sequence[tuple[str, int]]) -> float | None:
    """:func:`soft_since` on an :class:`~cachekit.aio.AsyncCache`."""
    return _since(generations, await cache.get_many(_names(generations)))


def stale_from(page: Page, at: float, options: PageOptions) -> Page:
    """``page`` as if it went stale at ``at``: its stale windows keep their lengths, counted from ``at``.

    Its ``Age`` grows by as much as its freshness shrank, so a served copy says it is stale.

    A page stored to never expire has no windows of its own: the options' are used.
    """
    fresh_until = page[FRESH_UNTIL]
    if fresh_until is not None and fresh_until <= at:
        return page  # already stale: its own windows stand
    fields = list(page)
    if fresh_until is None:
        fields[STALE_UNTIL] = at + options.stale_while_revalidate
        fields[ERROR_UNTIL] = at + options.stale_if_error
    else:
        # Stored earlier by as much, too: its Age then tells caches downstream (Varnish,
        # a CDN) that the copy is stale, so a proxy refetching it does not keep it as fresh.
        shift = fresh_until - at
        for index in (STORED_AT, STALE_UNTIL, ERROR_UNTIL):
            if fields[index] is not None:
                fields[index] -= shift
    fields[FRESH_UNTIL] = at
    return tuple(fields)


__all__ = [
    "MAX_SOFT_GENERATIONS",
    "SOFT_KEY_PREFIX",
    "async_soft_since",
    "async_soft_invalidate_tags",
    "soft_invalidate_tags",
    "soft_since",
    "stale_from",
]
