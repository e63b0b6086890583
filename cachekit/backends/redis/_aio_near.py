"""The near cache in front of :class:`~cachekit.backends.redis.asyncio.AsyncRedisBackend`.

The same :class:`~cachekit.backends.near.listener.NearCache` as the sync backend's: its
store and its listener (a thread with one blocking RESP2 connection) need no event loop,
and a near hit never awaits. Only the reads that miss locally and the writes are awaited.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from collections.abc import Sequence
from functools import partial
from typing import Any

import redis

from cachekit.backends.near.front import NearAccess
from cachekit.backends.near.front import dropping_writes
from cachekit.backends.near.listener import listener_factory
from cachekit.backends.redis._clients import blocking_client
from cachekit.backends.redis._clients import sentinel_master as sync_sentinel_master
from cachekit.backends.redis._near import cluster_url
from cachekit.backends.redis._near import queue_reads
from cachekit.backends.redis._near import read_replies
from cachekit.backends.redis._near import redis_near
from cachekit.backends.redis._near import settle_reads
from cachekit.backends.redis._rules import wire_keys
from cachekit.backends.redis._urls import SentinelURL
from cachekit.backends.redis._urls import Standalone
from cachekit.backends.redis._urls import redact_url
from cachekit.backends.redis.asyncio import AsyncRedisBackend

_CONNECTION_FIELDS = {f.name for f in dataclasses.fields(Standalone)}


def _sentinel_url(client: object) -> SentinelURL | None:
    """The parsed ``redis+sentinel://`` URL behind a backend's client factory, if it is one."""
    if isinstance(client, partial) and isinstance(client.args[0] if client.args else None, SentinelURL):
        parsed: SentinelURL = client.args[0]
        return parsed
    return None


def _listener(options: dict[str, Any]) -> tuple[Callable[[], Any], float]:
    """The listener's connections and socket timeout: a thread's, so blocking ones."""
    sentinel = _sentinel_url(options.get("client"))
    if sentinel is not None:
        # A sync Sentinel-managed pool sends it to the current master (found again on every reconnect).
        pool = sync_sentinel_master(sentinel).connection_pool
        return listener_factory(pool), sentinel.connection["socket_timeout"]
    server = Standalone(**{name: value for name, value in options.items() if name in _CONNECTION_FIELDS})
    # A sync pool only to learn the connection class and arguments; it never connects.
    pool = blocking_client(redis, server).connection_pool
    return listener_factory(pool), server.socket_timeout


@dropping_writes
class AsyncNearRedisBackend(NearAccess, AsyncRedisBackend):
    """An :class:`AsyncRedisBackend` (standalone, Sentinel or Cluster) with a near cache.

    See ``NearRedisBackend``: the same :class:`NearCache`, its listeners threads.
    """

    def __init__(self, *, near_cache: int, **options: Any) -> None:
        super().__init__(near_cache=near_cache, **options)
        self._near_cluster = cluster_url(options.get("client")) is not None
        self._near = redis_near(near_cache, options, partial(_listener, options))

    def __repr__(self) -> str:
        return f"AsyncRedisBackend({redact_url(self._location)!r}, near_cache={self._near.max_entries})"

    async def get(self, key: str) -> bytes | None:
        """Return the local value of ``key`` if exact, else read Redis (and keep it locally)."""
        near = self._near
        if near.prefix and not key.startswith(near.prefix):
            return await AsyncRedisBackend.get(self, key)
        value = near.lookup(key)
        if value is not None:
            return value
        return (await self._read_through([key])).get(key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Local values where held, one pipelined ``MGET`` + ``PTTL`` round trip for the rest."""
        if not self._near.keeps_all(keys):
            return await AsyncRedisBackend.get_many(self, keys)
        found, missing = self._near.split(keys)
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
