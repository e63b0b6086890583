"""Tag generations read, created and bumped through a cache front; see :mod:`cachekit.tags`."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterable
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cachekit.exceptions import MissingKeyError
from cachekit.fronts.entries import Generations
from cachekit.fronts.entries import tag_key

if TYPE_CHECKING:
    from cachekit.fronts._async.cache import AsyncCache


async def current_generations(cache: AsyncCache, tags: Iterable[str]) -> Generations:
    """Return the current generation of each tag, creating missing counters.

    Call it *before* computing a value to be stored with these tags, so an
    invalidation that happens during the computation makes the new entry
    invalid too. One ``get_many``, plus one ``add`` per counter that was missing.
    """
    names = tuple(dict.fromkeys(tags))
    if not names:
        return ()
    keys = [tag_key(tag) for tag in names]
    found = await cache.get_many(keys)
    generations: list[tuple[str, int]] = []
    for tag, key in zip(names, keys, strict=True):
        generation = found.get(key)
        if not isinstance(generation, int):
            fresh = secrets.randbits(48)
            # add(): if another process created the counter first, adopt its value.
            if not await cache.add(key, fresh, timeout=None):
                stored = await cache.get(key)
                fresh = stored if isinstance(stored, int) else fresh
            generation = fresh
        generations.append((tag, generation))
    return tuple(generations)


async def generations_valid(cache: AsyncCache, generations: Sequence[tuple[str, int]]) -> bool:
    """Whether every tag still has the generation recorded in ``generations``."""
    if not generations:
        return True
    keys = [tag_key(tag) for tag, _ in generations]
    found = await cache.get_many(keys)
    return all(found.get(key) == generation for key, (_, generation) in zip(keys, generations, strict=True))


async def invalidate_tags(cache: AsyncCache, tags: Iterable[str]) -> None:
    """Make every entry stored with any of ``tags`` invalid: one ``incr`` per tag.

    A tag whose counter is missing needs nothing: entries recorded a value the
    next counter (a fresh random start) will not have.

    :raises BackendUnavailableError: if the backend is down, whatever the
        cache's failure policy: a purge that silently did nothing would leave
        stale content in place.
    """
    for tag in dict.fromkeys(tags):
        with contextlib.suppress(MissingKeyError):
            await cache.incr(tag_key(tag))


__all__ = ["current_generations", "generations_valid", "invalidate_tags"]
