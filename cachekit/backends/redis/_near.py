"""The near cache on Redis: bounded local memory in front of it, kept exact by the server.

Private to :mod:`cachekit.backends.redis`; turned on with ``near_cache=N`` (entries) and
optionally ``near_cache_bytes=B`` on a ``redis://``, ``redis+sentinel://`` or
``redis+cluster://`` backend (sync and asyncio). The local store and its rules are
:mod:`cachekit.backends.near.store`'s, the ``CLIENT TRACKING`` listeners
:mod:`cachekit.backends.near.listener`'s. Here are the parts that are Redis's own and
shared by both backends: the slot map a Cluster's watcher reads (:func:`cluster_topology`),
where each backend's listener connects, and the read-through (one pipelined ``MGET`` +
``PTTL`` round trip, so a local copy expires with the server's). The backends themselves:
``_aio_near.AsyncNearRedisBackend``, written by hand, and ``_sync_near.NearRedisBackend``,
generated from it by ``.ci/unasync.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING
from typing import Any

import redis

from cachekit.backends.near.listener import NearCache
from cachekit.backends.near.listener import Topology
from cachekit.backends.near.listener import listener_factory
from cachekit.backends.redis._clients import aio_cluster_client
from cachekit.backends.redis._clients import blocking_client
from cachekit.backends.redis._clients import cluster_client
from cachekit.backends.redis._clients import sentinel_master
from cachekit.backends.redis._urls import ClusterURL
from cachekit.backends.redis._urls import SentinelURL
from cachekit.backends.redis._urls import Standalone

if TYPE_CHECKING:
    from cachekit.backends.redis.sync import RedisBackend

_CONNECTION_FIELDS = {f.name for f in dataclasses.fields(Standalone)}


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


def sync_listener(backend: RedisBackend, options: Mapping[str, Any]) -> tuple[Callable[[], Any], float]:
    """The sync backend's listener: connections through its client's pool, and its socket timeout.

    Through the pool at each connect: a Sentinel-managed pool points it at the current master.
    """
    return partial(_from_pool, backend), backend._socket_timeout


def _from_pool(backend: RedisBackend) -> Any:
    return listener_factory(backend.client.connection_pool)()


def aio_listener(backend: object, options: Mapping[str, Any]) -> tuple[Callable[[], Any], float]:
    """The asyncio backend's listener: a thread's, so blocking connections, and their socket timeout."""
    sentinel = _sentinel_url(options.get("client"))
    if sentinel is not None:
        # A sync Sentinel-managed pool sends it to the current master (found again on every reconnect).
        pool = sentinel_master(sentinel).connection_pool
        return listener_factory(pool), sentinel.connection["socket_timeout"]
    server = Standalone(**{name: value for name, value in options.items() if name in _CONNECTION_FIELDS})
    # A sync pool only to learn the connection class and arguments; it never connects.
    pool = blocking_client(redis, server).connection_pool
    return listener_factory(pool), server.socket_timeout


def _sentinel_url(client: object) -> SentinelURL | None:
    """The parsed ``redis+sentinel://`` URL behind a backend's client factory, if it is one."""
    if isinstance(client, partial) and isinstance(client.args[0] if client.args else None, SentinelURL):
        parsed: SentinelURL = client.args[0]
        return parsed
    return None


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
