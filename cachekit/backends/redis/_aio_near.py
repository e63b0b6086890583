"""The near cache in front of :class:`~cachekit.backends.redis.asyncio.AsyncRedisBackend`.

The source of ``_sync_near.py``, which ``.ci/unasync.py`` generates from it.
Both backends hold the same kind of :class:`~cachekit.backends.near.listener.NearCache`,
whose store and listeners (threads with one blocking RESP2 connection each) need no
event loop, so a near hit never waits on I/O; only the reads that miss locally and the
writes do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial
from typing import Any

from cachekit.backends.near.front import NearAccess
from cachekit.backends.near.front import dropping_writes
from cachekit.backends.near.store import monotonic
from cachekit.backends.redis._near import aio_listener
from cachekit.backends.redis._near import cluster_url
from cachekit.backends.redis._near import queue_reads
from cachekit.backends.redis._near import read_replies
from cachekit.backends.redis._near import redis_near
from cachekit.backends.redis._near import settle_reads
from cachekit.backends.redis._rules import wire_keys
from cachekit.backends.redis._urls import redact_url
from cachekit.backends.redis.asyncio import AsyncRedisBackend


@dropping_writes
class AsyncNearRedisBackend(NearAccess, AsyncRedisBackend):
    """The :class:`AsyncRedisBackend` (standalone, Sentinel or Cluster) with a near cache in front.

    Built by ``AsyncRedisBackend(near_cache=N, ...)``/``from_url(..., near_cache=N)``. Only
    ``get`` and ``get_many`` are served locally; ``gets``/``cas``, ``incr``, ``add``, the
    lock and every script always go to Redis, and every write drops its keys locally.
    """

    def __init__(self, *, near_cache: int, **options: Any) -> None:
        super().__init__(near_cache=near_cache, **options)
        self._near_cluster = cluster_url(options.get("client")) is not None
        self._near = redis_near(near_cache, options, partial(aio_listener, self, options))

    def __repr__(self) -> str:
        return f"AsyncRedisBackend({redact_url(self._location)!r}, near_cache={self._near.max_entries})"

    async def get(self, key: str) -> bytes | None:
        """Return the local value of ``key`` if exact, else read Redis (and keep it locally)."""
        near = self._near
        if near._healthy:  # the hit path, inlined: LocMemBackend.get on the near store's dict
            entry = near._data.get(key)
            if entry is not None:
                expires = entry.expires
                if expires is None or expires > monotonic():
                    entry.used = True
                    near.hits += 1
                    held: bytes = entry.value
                    return held
        if near.prefix and not key.startswith(near.prefix):
            return await AsyncRedisBackend.get(self, key)
        value = near.lookup(key)
        if value is not None:
            return value
        return (await self._read_through([key])).get(key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Local values where held, one pipelined ``MGET`` + ``PTTL`` round trip for the rest."""
        near = self._near
        if near.prefix and not near.keeps_all(keys):
            return await AsyncRedisBackend.get_many(self, keys)
        found, missing = near.split(keys)
        if missing:
            found.update(await self._read_through(missing))
        return found

    async def _read_through(self, keys: list[str]) -> dict[str, bytes]:
        client = self._client or self._connect()
        wire = wire_keys(keys)
        cluster = self._near_cluster

        async def run() -> list[Any]:
            pipe = client.pipeline() if cluster else client.pipeline(transaction=False)
            queue_reads(pipe, wire, cluster)
            return read_replies(await pipe.execute(), len(wire), cluster)

        ticket = self._near.begin(keys)
        results: list[Any] = []
        try:
            results = await self._call(None, "MGET", keys[0] if len(keys) == 1 else None, run, run)
        finally:
            found = settle_reads(self._near, ticket, keys, results)
        return found

    async def gets(self, key: str) -> tuple[bytes, Any] | None:
        """Always from Redis: a ``cas`` token must be the server's current value."""
        value = await AsyncRedisBackend.get(self, key)
        return None if value is None else (value, value)

    async def close(self) -> None:
        """Stop the listener (off the event loop), drop local memory, close pooled connections."""
        await asyncio.to_thread(self._near.close)
        await super().close()
