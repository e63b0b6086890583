"""Tag invalidation by generation counters: O(number of tags), no key scans, any backend.

Each tag has a counter stored in the cache under ``cachekit.tag:<tag>``. An
entry written with tags records the counters it saw; it is valid only while
every one of them is unchanged. :func:`invalidate_tags` increments the
counters (``incr`` runs inside Redis and memcached, so concurrent invalidations
never lose an increment), which makes every entry carrying those tags invalid
at once; the entries themselves simply age out.

A counter starts at a random 48-bit value, so a counter that was evicted and
created again does not repeat an old generation and revive entries written
under it. A missing counter at read time therefore means "invalid".
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterable
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cachekit.exceptions import MissingKeyError

if TYPE_CHECKING:
    from cachekit.cache import Cache

#: Prefix of the cache keys holding tag counters.
TAG_KEY_PREFIX = "cachekit.tag:"

#: What an entry records: ``((tag, generation), ...)``, a tuple so it stays immutable.
Generations = tuple[tuple[str, int], ...]


def _tag_key(tag: str) -> str:
    if not isinstance(tag, str) or not tag:
        raise TypeError(f"Cache tags must be non-empty str, got {tag!r}.")
    return TAG_KEY_PREFIX + tag


def current_generations(cache: Cache, tags: Iterable[str]) -> Generations:
    """Return the current generation of each tag, creating missing counters.

    Call it *before* computing a value to be stored with these tags, so an
    invalidation that happens during the computation makes the new entry
    invalid too. One ``get_many``, plus one ``add`` per counter that was missing.
    """
    names = tuple(dict.fromkeys(tags))
    if not names:
        return ()
    keys = [_tag_key(tag) for tag in names]
    found = cache.get_many(keys)
    generations: list[tuple[str, int]] = []
    for tag, key in zip(names, keys, strict=True):
        generation = found.get(key)
        if not isinstance(generation, int):
            fresh = secrets.randbits(48)
            # add(): if another process created the counter first, adopt its value.
            if not cache.add(key, fresh, timeout=None):
                stored = cache.get(key)
                fresh = stored if isinstance(stored, int) else fresh
            generation = fresh
        generations.append((tag, generation))
    return tuple(generations)


def generations_valid(cache: Cache, generations: Sequence[tuple[str, int]]) -> bool:
    """Whether every tag still has the generation recorded in ``generations``."""
    if not generations:
        return True
    keys = [_tag_key(tag) for tag, _ in generations]
    found = cache.get_many(keys)
    return all(found.get(key) == generation for key, (_, generation) in zip(keys, generations, strict=True))


def invalidate_tags(cache: Cache, tags: Iterable[str]) -> None:
    """Make every entry stored with any of ``tags`` invalid: one ``incr`` per tag.

    A tag whose counter is missing needs nothing: entries recorded a value the
    next counter (a fresh random start) will not have.

    :raises BackendUnavailableError: if the backend is down, whatever the
        cache's failure policy: a purge that silently did nothing would leave
        stale content in place.
    """
    for tag in dict.fromkeys(tags):
        with contextlib.suppress(MissingKeyError):
            cache.incr(_tag_key(tag))


__all__ = ["TAG_KEY_PREFIX", "Generations", "current_generations", "generations_valid", "invalidate_tags"]
