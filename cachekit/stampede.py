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

The flow is written once, in ``cachekit/fronts/_async/stampede.py``; this
module's :func:`get_or_set_entry` is its generated sync twin.
"""

from __future__ import annotations

from cachekit.fronts._sync.stampede import get_or_set_entry
from cachekit.fronts.entries import CacheEntry

__all__ = ["CacheEntry", "get_or_set_entry"]
