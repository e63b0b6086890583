"""Async stampede protection with the options of :func:`cachekit.stampede.get_or_set_entry`.

:meth:`cachekit.aio.AsyncCache.get_or_set` hands a call with
``stale_while_revalidate``, ``stale_if_error``, ``beta`` or ``tags`` to
:func:`get_or_set_entry`: the same states as the sync flow (fresh, refresh early,
serve stale while one caller revalidates, serve stale on error, invalidated by a
tag), with the value stored as a :class:`~cachekit.stampede.CacheEntry` so sync
and async callers of one cache read each other's entries. It is the source the
sync flow is generated from (``cachekit/fronts/_async/stampede.py``).
"""

from __future__ import annotations

from cachekit.fronts._async.stampede import get_or_set_entry

__all__ = ["get_or_set_entry"]
