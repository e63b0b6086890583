# Generated from cachekit/backends/redis/_aio_near.py by .ci/unasync.py; do not edit.
"""The near cache in front of :class:`~cachekit.backends.redis.sync.RedisBackend`.

Generated from ``_aio_near.py``: edit that file, then run ``.ci/unasync.py``.
Both backends hold the same kind of :class:`~cachekit.backends.near.listener.NearCache`,
whose store and listeners (threads with one blocking RESP2 connection each) need no
event loop, so a near hit never waits on I/O; only the reads that miss locally and the
writes do.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from cachekit.backends.near.front import NearAccess
from cachekit.backends.near.front import dropping_writes
from cachekit.backends.near.store import monotonic
from cachekit.backends.redis._near import cluster_url
from cachekit.backends.redis._near import queue_reads
from cachekit.backends.redis._near import read_replies
from cachekit.backends.redis._near import redis_near
from cachekit.backends.redis._near import settle_reads
from cachekit.backends.redis._near import sync_listener
from cachekit.backends.redis._rules import wire_keys
from cachekit.backends.redis._urls import redact_url
from cachekit.backends.redis.sync import RedisBackend


@dropping_writes
class NearRedisBackend(NearAccess, RedisBackend):
    """The :class:`RedisBackend` (standalone, Sentinel or Cluster) with a near cache in front.

    Built by ``RedisBackend(near_cache=N, ...)``/``from_url(..., near_cache=N)``. Only
    ``get`` and ``get_many`` are served locally; ``gets``/``cas``, ``incr``, ``add``, the
    lock and every script always go to Redis, and every write drops its keys locally.
    """

    def __init__(self, *, near_cache: int, **options: Any) -> None:
        super().__init__(near_cache=near_cache, **options)
        self._near_cluster = cluster_url(options.get("client")) is not None
        self._near = redis_near(near_cache, options, partial(sync_listener, self, options))

    def __repr__(self) -> str:
        return f"RedisBackend({redact_url(self._location)!r}, near_cache={self._near.max_entries})"

    def get(self, key: str) -> bytes | None:
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
            return RedisBackend.get(self, key)
        value = near.lookup(key)
        if value is not None:
            return value
        return (self._read_through([key])).get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Local values where held, one pipelined ``MGET`` + ``PTTL`` round trip for the rest."""
        near = self._near
        if near.prefix and not near.keeps_all(keys):
            return RedisBackend.get_many(self, keys)
        found, missing = near.split(keys)
        if missing:
            found.update(self._read_through(missing))
        return found

    def _read_through(self, keys: list[str]) -> dict[str, bytes]:
        client = self._client or self._connect()
        wire = wire_keys(keys)
        cluster = self._near_cluster

        def run() -> list[Any]:
            pipe = client.pipeline() if cluster else client.pipeline(transaction=False)
            queue_reads(pipe, wire, cluster)
            return read_replies(pipe.execute(), len(wire), cluster)

        ticket = self._near.begin(keys)
        results: list[Any] = []
        try:
            results = self._call(None, "MGET", keys[0] if len(keys) == 1 else None, run, run)
        finally:
            found = settle_reads(self._near, ticket, keys, results)
        return found

    def gets(self, key: str) -> tuple[bytes, Any] | None:
        """Always from Redis: a ``cas`` token must be the server's current value."""
        value = RedisBackend.get(self, key)
        return None if value is None else (value, value)

    def close(self) -> None:
        """Stop the listener, drop local memory, close pooled connections."""
        self._near.close()
        super().close()
