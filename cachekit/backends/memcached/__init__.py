"""The Memcached backends, over pymemcache.

:mod:`~cachekit.backends.memcached.sync` holds :class:`MemcachedBackend` (its
docstring explains the namespace generations and the key rules),
:mod:`~cachekit.backends.memcached.asyncio` the asyncio backend that runs it in
worker threads; the key rules (``_keys``) and the connection pool (``_pool``)
are private to this package. The names below keep the import paths of the
single-module ``cachekit.backends.memcached`` working.
"""

from __future__ import annotations

from cachekit.backends.memcached._pool import parse_server
from cachekit.backends.memcached.sync import DEFAULT_BREAKER_COOLDOWN
from cachekit.backends.memcached.sync import DEFAULT_BREAKER_FAILURES
from cachekit.backends.memcached.sync import DEFAULT_BREAKER_WINDOW
from cachekit.backends.memcached.sync import DEFAULT_CONNECT_TIMEOUT
from cachekit.backends.memcached.sync import DEFAULT_MAX_ITEM_SIZE
from cachekit.backends.memcached.sync import DEFAULT_TIMEOUT
from cachekit.backends.memcached.sync import MemcachedBackend
from cachekit.backends.memcached.sync import MemcachedLock
from cachekit.backends.memcached.sync import expire_time

__all__ = [
    "DEFAULT_BREAKER_COOLDOWN",
    "DEFAULT_BREAKER_FAILURES",
    "DEFAULT_BREAKER_WINDOW",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_ITEM_SIZE",
    "DEFAULT_TIMEOUT",
    "MemcachedBackend",
    "MemcachedLock",
    "expire_time",
    "parse_server",
]
