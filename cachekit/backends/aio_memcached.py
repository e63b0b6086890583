"""Old import path of :mod:`cachekit.backends.memcached.asyncio`, kept working."""

from __future__ import annotations

from cachekit.backends.memcached.asyncio import DEFAULT_MAX_THREADS
from cachekit.backends.memcached.asyncio import AsyncMemcachedBackend
from cachekit.backends.memcached.asyncio import AsyncMemcachedLock

__all__ = ["DEFAULT_MAX_THREADS", "AsyncMemcachedBackend", "AsyncMemcachedLock"]
