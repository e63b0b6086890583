"""Old import path of :mod:`cachekit.backends.redis.asyncio`, kept working."""

from __future__ import annotations

from cachekit.backends.redis.asyncio import AsyncBlockingSentinelPool
from cachekit.backends.redis.asyncio import AsyncClient
from cachekit.backends.redis.asyncio import AsyncRedisBackend
from cachekit.backends.redis.asyncio import AsyncRedisLock

__all__ = ["AsyncBlockingSentinelPool", "AsyncClient", "AsyncRedisBackend", "AsyncRedisLock"]
