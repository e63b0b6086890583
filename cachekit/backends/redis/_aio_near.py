"""The near cache in front of :class:`~cachekit.backends.redis.asyncio.AsyncRedisBackend`.

The same :class:`~cachekit.backends.redis._near.NearCache` as the sync backend's: its store
and its listener (a thread with one blocking RESP2 connection) need no event loop, and
a near hit never awaits. Only the reads that miss locally and the writes are awaited.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from collections.abc import Sequence
from functools import partial
from typing import Any

import redis

from cachekit.backends.locmem import _tick
from cachekit.backends.redis._clients import sentinel_master as sync_sentinel_master
from cachekit.backends.redis._near import DecodedMemo
from cachekit.backends.redis._near import NearCache
from cachekit.backends.redis._near import _monotonic
from cachekit.backends.redis._near import cluster_topology
from cachekit.backends.redis._near import cluster_url
from cachekit.backends.redis._near import listener_factory
from cachekit.backends.redis._urls import SentinelURL
from cachekit.backends.redis._urls import Standalone
from cachekit.backends.redis.asyncio import AsyncRedisBackend
from cachekit.backends.redis.sync import blocking_client
from cachekit.backends.redis.sync import redact_url

_CONNECTION_FIELDS = {f.name for f in dataclasses.fields(Standalone)}


def _sentinel_url(client: object) -> SentinelURL | None:
    """The parsed ``redis+sentinel://`` URL behind a backend's client factory, if it is one."""
    if isinstance(client, partial) and isinstance(client.args[0] if client.args else None, SentinelURL):
        parsed: SentinelURL = client.args[0]
        return parsed
    return None


class AsyncNearRedisBackend(AsyncRedisBackend):
    """An :class:`AsyncRedisBackend` (standalone, Sentinel or Cluster) with a near cache.

    See ``NearRedisBackend``: the same :class:`NearCache`, its listeners threads.
    """

    def __init__(
        self,
        *,
        near_cache: int,
        near_cache_bytes: int | None = None,
        near_cache_prefix: str = "",
        **options: Any,
    ) -> None:
        super().__init__(
            near_cache=near_cache,
            near_cache_bytes=near_cache_bytes,
            near_cache_prefix=near_cache_prefix,
            **options,
        )
        client = options.get("client")
        cluster = cluster_url(client)
        self._near_cluster = cluster is not None
        sizes: dict[str, Any] = {"max_entries": near_cache, "max_bytes": near_cache_bytes}
        if cluster is not None:
            self._near = NearCache(
                topology=cluster_topology(cluster.nodes, cluster.connection),
                prefix=near_cache_prefix,
                socket_timeout=cluster.connection["socket_timeout"],
                **sizes,
            )
            return
        sentinel = _sentinel_url(client)
        if sentinel is not None:
            # The listener is a thread with a blocking connection: a sync Sentinel-managed
            # pool sends it to the current master (found again on every reconnect).
            pool = sync_sentinel_master(sentinel).connection_pool
            timeout = sentinel.connection["socket_timeout"]
        else:
            server = Standalone(
                **{name: value for name, value in options.items() if name in _CONNECTION_FIELDS}
            )
            # A sync pool only to learn the connection class and arguments; it never connects.
            pool = blocking_client(redis, server).connection_pool
            timeout = server.socket_timeout
        self._near = NearCache(
            listener_factory(pool), prefix=near_cache_prefix, socket_timeout=timeout, **sizes
        )

    def __repr__(self) -> str:
        return f"AsyncRedisBackend({redact_url(self._location)!r}, near_cache={self._near.max_entries})"

    @property
    def near(self) -> NearCache:
        """The near cache (its counters, ``ready``, ``wait_ready()``)."""
        return self._near

    def near_stats(self) -> dict[str, int]:
        """``near_hits``, ``near_misses``, ``near_invalidations``, ``near_flushes``, ``near_ready``."""
        return self._near.stats()

    def near_memo(self) -> DecodedMemo:
        """Where an ``AsyncCache`` keeps the decoded values of near hits (see ``DecodedMemo``)."""
        return self._near.decoded

    async def get(self, key: str) -> bytes | None:
        """Return the local value of ``key`` if exact, else read Redis (and keep it locally)."""
        near = self._near
        if near._healthy:  # the hit path, inlined as in NearRedisBackend.get
            entry = near._data.get(key)
            if entry is not None:
                expires = entry.expires
                if expires is None or expires > _monotonic():
                    entry.used = _tick()
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
        found: dict[str, bytes] = {}
        missing: list[str] = []
        if near.prefix and not all(key.startswith(near.prefix) for key in keys):
            return await AsyncRedisBackend.get_many(self, keys)
        for key in keys:
            value = near.lookup(key)
            if value is None:
                missing.append(key)
            else:
                found[key] = value
        if missing:
            found.update(await self._read_through(list(dict.fromkeys(missing))))
        return found

    async def _read_through(self, keys: list[str]) -> dict[str, bytes]:
        near = self._near
        client = self._client or self._connect()
        cluster = self._near_cluster

        async def run() -> list[Any]:
            pipe = client.pipeline(transaction=False) if not cluster else client.pipeline()
            if cluster:  # one GET per key: the cluster pipeline sends each to its slot's master
                for name in keys:
                    pipe.get(name)
            else:
                pipe.mget(keys)
            for name in keys:
                pipe.pttl(name)
            results: list[Any] = await pipe.execute()
            if cluster:
                return [results[: len(keys)], *results[len(keys) :]]
            return results

        ticket = near.begin(keys)
        results: list[Any] = []
        try:
            results = await self._call(None, "MGET", keys[0] if len(keys) == 1 else None, run, run)
        finally:
            values = results[0] if results else [None] * len(keys)
            ttls = results[1:] if results else [-2] * len(keys)
            near.end(ticket, zip(keys, values, ttls, strict=True))
        return {key: value for key, value in zip(keys, values, strict=True) if value is not None}

    async def gets(self, key: str) -> tuple[bytes, Any] | None:
        """Always from Redis: a ``cas`` token must be the server's current value."""
        value = await AsyncRedisBackend.get(self, key)
        return None if value is None else (value, value)

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """``SET``, then drop ``key`` locally."""
        try:
            await super().set(key, value, ttl)
        finally:
            self._near.invalidate((key,))

    async def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        """``MSET``/script, then drop the keys locally."""
        try:
            await super().set_many(items, ttl)
        finally:
            self._near.invalidate(items)

    async def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        """``SET NX``, then drop ``key`` locally."""
        try:
            return await super().add(key, value, ttl)
        finally:
            self._near.invalidate((key,))

    async def cas(self, key: str, value: bytes, token: Any, ttl: float | None) -> bool:
        """The compare-and-set script, then drop ``key`` locally."""
        try:
            return await super().cas(key, value, token, ttl)
        finally:
            self._near.invalidate((key,))

    async def delete(self, key: str) -> bool:
        """``UNLINK``, then drop ``key`` locally."""
        try:
            return await super().delete(key)
        finally:
            self._near.invalidate((key,))

    async def delete_many(self, keys: Sequence[str]) -> None:
        """``UNLINK``, then drop the keys locally."""
        try:
            await super().delete_many(keys)
        finally:
            self._near.invalidate(keys)

    async def incr(self, key: str, delta: int) -> int:
        """``INCRBY`` on the server, then drop ``key`` locally."""
        try:
            return await super().incr(key, delta)
        finally:
            self._near.invalidate((key,))

    async def touch(self, key: str, ttl: float | None) -> bool:
        """``PEXPIRE``/``PERSIST``, then drop ``key`` locally (its local expiry is stale)."""
        try:
            return await super().touch(key, ttl)
        finally:
            self._near.invalidate((key,))

    async def clear(self, prefix: str = "") -> None:
        """Clear Redis, then drop all local memory."""
        try:
            await super().clear(prefix)
        finally:
            self._near.flush()

    async def close(self) -> None:
        """Stop the listener (off the event loop), drop local memory, close pooled connections."""
        await asyncio.to_thread(self._near.close)
        await super().close()
