"""The cache front users hold: keys, timeouts, serialization, failure policy, stats.

A :class:`Cache` wraps one backend. It builds each stored key from a prefix, a
version and the user's key, turns user timeouts into backend TTLs, serializes
values, counts hits and misses, and decides what a backend outage means: by
default a read becomes a miss and a write a no-op, logged once per burst of
errors and counted; ``on_error="raise"`` lets the error through.

The class is generated (:mod:`cachekit.fronts`): its source is the async front
``cachekit/fronts/_async/cache.py``, the rules both share are in
``cachekit/fronts/_core.py`` and the counters in :mod:`cachekit.fronts.recorder`.
"""

from __future__ import annotations

from cachekit.fronts._core import DEFAULT_TIMEOUT
from cachekit.fronts._core import KeyFunction
from cachekit.fronts._core import Timeout
from cachekit.fronts._core import default_key_function
from cachekit.fronts._sync.cache import Cache

__all__ = ["DEFAULT_TIMEOUT", "Cache", "KeyFunction", "Timeout", "default_key_function"]
