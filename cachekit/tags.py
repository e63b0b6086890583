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

The functions take a :class:`~cachekit.Cache`; their ``async_`` twins (the source
they are generated from, ``cachekit/fronts/_async/tags.py``) take an
:class:`~cachekit.aio.AsyncCache` and are awaited.
"""

from __future__ import annotations

from cachekit.fronts._async.tags import current_generations as async_current_generations
from cachekit.fronts._async.tags import generations_valid as async_generations_valid
from cachekit.fronts._async.tags import invalidate_tags as async_invalidate_tags
from cachekit.fronts._sync.tags import current_generations
from cachekit.fronts._sync.tags import generations_valid
from cachekit.fronts._sync.tags import invalidate_tags
from cachekit.fronts.entries import TAG_KEY_PREFIX
from cachekit.fronts.entries import Generations

__all__ = [
    "TAG_KEY_PREFIX",
    "Generations",
    "async_current_generations",
    "async_generations_valid",
    "async_invalidate_tags",
    "current_generations",
    "generations_valid",
    "invalidate_tags",
]
