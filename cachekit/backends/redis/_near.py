"""The near cache on Redis: bounded local memory in front of it, kept exact by the server.

Private to :mod:`cachekit.backends.redis`; turned on with ``near_cache=N`` (entries) and
optionally ``near_cache_bytes=B`` on a ``redis://``, ``redis+sentinel://`` or
``redis+cluster://`` backend (sync and asyncio). The local store and its rules are
:mod:`cachekit.backends.near.store`'s, the ``CLIENT TRACKING`` listeners
:mod:`cachekit.backends.near.listener`'s. Here: what is Redis's own, the slot map a
Cluster's watcher reads (:func:`cluster_topology`), the read-through (one pipelined
``MGET`` + ``PTTL`` round trip, so a local copy expires with the server's), and
:class:`NearRedisBackend`; its asyncio twin is ``_aio_near.AsyncNearRedisBackend``.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from functools import partial
from typing import Any

import redis

from cachekit.backends.locmem import _tick
from cachekit.backends.near.front import NearAccess
from cachekit.backends.near.front import dropping_writes
from cachekit.backends.near.listener import NearCache
from cachekit.backends.near.listener import Topology
from cachekit.backends.near.listener import listener_factory
from cachekit.backends.near.store import monotonic
from cachekit.backends.redis._clients import aio_cluster_client
from cachekit.backends.redis._clients import cluster_client
from cachekit.backends.redis._rules import wire_keys
from cachekit.backends.redis._urls import ClusterURL
from cachekit.backends.redis._urls import redact_url
from cachekit.backends.redis.sync import RedisBackend


def cluster_topology(
    startup: Sequence[tuple[str, int]], connection: Mapping[str, Any]
) -> Callable[[], Topology]:
    """A :data:`Topology` reader for a Redis Cluster: ``CLUSTER SLOTS`` from any node that answers.

    :param startup: the cluster's addresses from the URL; the primaries last seen are asked first.
    :param connection: redis-py connection keywords (auth, TLS, timeouts) for every node.
    """
    known: list[tuple[str, int]] = list(startup)

    def factory(host: str, port: int) -> Callable[[], Any]:
        return listener_factory(redis.Redis(host=host, port=port, **connection).connection_pool)

    def read() -> Topology:
        error: Exception | None = None
        for host, port in list(known):
            conn = factory(host, port)()
            try:
                conn.connect()
                conn.send_command("CLUSTER", "SLOTS")
                reply = conn.read_response()
            except (redis.RedisError, OSError) as exc:
                error = exc
                continue
            finally:
                conn.disconnect()
            ranges: list[tuple[int, int, str]] = []
            owners: dict[str, tuple[str, int]] = {}
            for start, end, primary, *_ in reply:
                owner_host = primary[0].decode() if isinstance(primary[0], bytes) else str(primary[0])
                address = (owner_host or host, int(primary[1]))
                name = f"{address[0]}:{address[1]}"
                owners[name] = address
                ranges.append((int(start), int(end), name))
            known[:] = [*owners.values(), *(a for a in startup if a not in owners.values())]
            connects = {name: factory(*address) for name, address in owners.items()}
            return tuple(sorted(ranges)), connects
        raise error if error is not None else redis.ConnectionError("no cluster node to ask")

    return read


def cluster_url(client: object) -> ClusterURL | None:
    """The parsed ``redis+cluster://`` URL behind a backend's client factory, if it is one."""
    if isinstance(client, partial) and client.func in (cluster_client, aio_cluster_client):
        parsed = client.args[0]
        return parsed if isinstance(parsed, ClusterURL) else None
    return None


def redis_near(
    near_cache: int, options: Mapping[str, Any], server: Callable[[], tuple[Callable[[], Any], float]]
) -> NearCache:
    """The :class:`NearCache` of a Redis backend built with ``near_cache`` and ``options``.

    On a Cluster (a ``redis+cluster://`` client factory) it follows the slot map; else
    ``server()`` gives its listener's connection factory and socket timeout.
    """
    sizes: dict[str, Any] = {
        "max_entries": near_cache,
        "max_bytes": options.get("near_cache_bytes"),
        "prefix": options.get("near_cache_prefix", ""),
    }
    cluster = cluster_url(options.get("client"))
    if cluster is not None:
        return NearCache(
            topology=cluster_topology(cluster.nodes, cluster.connection),
            socket_timeout=cluster.connection["socket_timeout"],
            **sizes,
        )
    connect, timeout = server()
    return NearCache(connect, socket_timeout=timeout, **sizes)


def queue_reads(pipe: Any, wire: Sequence[str | bytes], cluster: bool) -> None:
    """Queue the read-through's commands: the values, then each key's ``PTTL``."""
    if cluster:  # one GET per key: the cluster pipeline sends each to its slot's master
        for name in wire:
            pipe.get(name)
    else:
        pipe.mget(wire)
    for name in wire:
        pipe.pttl(name)


def read_replies(results: list[Any], count: int, cluster: bool) -> list[Any]:
    """The pipeline's replies as ``[values, *pttls]``, also on a Cluster (``count`` GETs)."""
    if cluster:
        return [results[:count], *results[count:]]
    return results


def settle_reads(
    near: NearCache, ticket: int | None, keys: list[str], results: list[Any]
) -> dict[str, bytes]:
    """End the reads of ``keys`` begun with ``ticket``; their found values.

    ``results`` is empty when the read failed: nothing is filled then, and the guard still ends.
    """
    values = results[0] if results else [None] * len(keys)
    ttls = results[1:] if results else [-2] * len(keys)
    near.end(ticket, zip(keys, values, ttls, strict=True))
    return {key: value for key, value in zip(keys, values, strict=True) if value is not None}


@dropping_writes
class NearRedisBackend(NearAccess, RedisBackend):
    """A :class:`RedisBackend` (standalone, Sentinel or Cluster) with a :class:`NearCache` in front.

    Built by ``RedisBackend(near_cache=N, ...)``/``from_url(..., near_cache=N)``. Only
    ``get`` and ``get_many`` are served locally; ``gets``/``cas``, ``incr``, ``add``, the
    lock and every script always go to Redis, and every write drops its keys locally.
    """

    def __init__(self, *, near_cache: int, **options: Any) -> None:
        super().__init__(near_cache=near_cache, **options)
        self._near_cluster = cluster_url(options.get("client")) is not None
        self._near = redis_near(near_cache, options, self._listener)

    def _listener(self) -> tuple[Callable[[], Any], float]:
        return self._listener_connection, self._socket_timeout

    def _listener_connection(self) -> Any:
        # Through the client's pool: a Sentinel-managed pool points it at the current master.
        return listener_factory(self.client.connection_pool)()

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
                    entry.used = _tick()
                    near.hits += 1
                    held: bytes = entry.value
                    return held
        if near.prefix and not key.startswith(near.prefix):
            return RedisBackend.get(self, key)
        value = near.lookup(key)
        if value is not None:
            return value
        return self._read_through([key]).get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Local values where held, one pipelined ``MGET`` + ``PTTL`` round trip for the rest."""
        if not self._near.keeps_all(keys):
            return RedisBackend.get_many(self, keys)
        found, missing = self._near.split(keys)
        if missing:
            found.update(self._read_through(missing))
        return found

    def _read_through(self, keys: list[str]) -> dict[str, bytes]:
        client = self._client or self._connect()
        wire = wire_keys(keys)
        cluster = self._near_cluster

        def run() -> list[Any]:
            pipe = client.pipeline(transaction=False)
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
