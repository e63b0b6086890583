"""How the Redis backends build their redis-py clients: pools, Sentinel, Cluster.

Private to :mod:`cachekit.backends.redis`. The sync and the asyncio builders differ
only in the redis-py module they take their classes from; :class:`Clients` names
those per side, so :class:`~cachekit.backends.redis._core.RedisCore` builds either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel
from redis.sentinel import SentinelConnectionPool

from cachekit.backends.redis._urls import ClusterURL
from cachekit.backends.redis._urls import SentinelURL
from cachekit.backends.redis._urls import Standalone


class Clients(NamedTuple):
    """One side's client builders: its redis-py module, Sentinel and Cluster clients."""

    module: Any
    cluster_class: type
    sentinel: Callable[[SentinelURL], Any]
    cluster: Callable[[ClusterURL], Any]


def no_retry() -> Retry:
    """redis-py's own retry turned off: the backend retries, knowing what it retries."""
    return Retry(NoBackoff(), 0)


def _aio_no_retry() -> AsyncRetry:
    return AsyncRetry(NoBackoff(), 0)


def _cluster_backoff() -> ExponentialWithJitterBackoff:
    return ExponentialWithJitterBackoff(base=0.01, cap=0.1)


def blocking_client(module: Any, server: Standalone) -> Any:
    """A ``module.Redis`` (``redis`` or ``redis.asyncio``) on a ``BlockingConnectionPool``.

    redis.Redis works out the connection class (TCP, TLS or Unix socket) and its
    arguments; a blocking pool with the same ones replaces the pool it built, so a
    burst beyond ``max_connections`` waits up to ``pool_timeout`` for a connection
    instead of failing at once with "Too many connections".
    """
    retry = no_retry() if module is redis else _aio_no_retry()
    plain = module.Redis(retry=retry, **server.client_kwargs())
    pool = plain.connection_pool
    blocking = module.BlockingConnectionPool(
        connection_class=pool.connection_class,
        max_connections=server.max_connections,
        timeout=server.pool_timeout,
        **pool.connection_kwargs,
    )
    client = module.Redis(connection_pool=blocking)
    client.auto_close_connection_pool = True
    return client


class BlockingSentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """redis-py's Sentinel pool (finds the master) that waits for a free connection (blocks).

    The two compose: the Sentinel pool only decides where connections go, the
    blocking pool how many there are and how long a caller waits for one.
    """


class AsyncBlockingSentinelPool(AsyncSentinelConnectionPool, aioredis.BlockingConnectionPool):
    """:class:`BlockingSentinelPool` for ``redis.asyncio``."""


def _master_for(parsed: SentinelURL, sentinel_class: Any, pool_class: type, retry: Callable[[], Any]) -> Any:
    """The master's client from ``sentinel_class`` (sync or asyncio; redis-py leaves both untyped)."""
    # redis-py's own default retries ten times with backoff: seconds per call.
    sentinel_kwargs = {**parsed.sentinel_kwargs(), "retry": retry()}
    sentinel = sentinel_class(parsed.nodes, sentinel_kwargs=sentinel_kwargs, **parsed.connection)
    return sentinel.master_for(
        parsed.service,
        db=parsed.db,
        max_connections=parsed.max_connections,
        timeout=parsed.pool_timeout,
        retry=retry(),
        connection_pool_class=pool_class,
    )


def sentinel_master(parsed: SentinelURL) -> redis.Redis:
    """The sync client of the Sentinel-managed master named by ``parsed``."""
    client: redis.Redis = _master_for(parsed, Sentinel, BlockingSentinelPool, no_retry)
    return client


def aio_sentinel_master(parsed: SentinelURL) -> aioredis.Redis:
    """:func:`sentinel_master` for ``redis.asyncio``."""
    client: aioredis.Redis = _master_for(parsed, AsyncSentinel, AsyncBlockingSentinelPool, _aio_no_retry)
    return client


def _nodes(node_class: Any, parsed: ClusterURL) -> list[Any]:
    """The startup nodes as ``node_class`` (sync or asyncio ``ClusterNode``; the sync one is untyped)."""
    return [node_class(host, port) for host, port in parsed.nodes]


def cluster_client(parsed: ClusterURL) -> RedisCluster:
    """The sync Cluster client; it asks a node for the slot map as it is built, so this connects.

    Its own retry follows MOVED/ASK and re-reads the slot map after a failover; the
    backend's retry of lost connections comes on top, knowing what it retries.
    """
    nodes = _nodes(ClusterNode, parsed)
    retry = Retry(_cluster_backoff(), parsed.retries, supported_errors=(redis.ConnectionError,))
    return RedisCluster(startup_nodes=nodes, retry=retry, **parsed.connection)


def aio_cluster_client(parsed: ClusterURL) -> AsyncRedisCluster:
    """The asyncio Cluster client; unlike the sync one it reads the slot map on first use."""
    nodes = _nodes(AsyncClusterNode, parsed)
    retry = AsyncRetry(_cluster_backoff(), parsed.retries, supported_errors=(aioredis.ConnectionError,))
    client = AsyncRedisCluster(startup_nodes=nodes, retry=retry, **parsed.connection)
    _load_commands_once(client)
    return client


def _load_commands_once(client: AsyncRedisCluster) -> None:
    """Keep redis.asyncio's cluster client from asking ``COMMAND`` again on each slot-map re-read.

    redis-py 8.1 sends it to the default node, which stays the first master even
    while that master is down: every re-read after a node failure then fails, and
    takes the live nodes' commands with it. The command table does not change
    while the client runs, so the first answer is kept.
    """
    parser = client.commands_parser
    first_load = parser.initialize

    async def initialize(node: Any = None) -> None:
        if not parser.commands:
            await first_load(node)

    parser.initialize = initialize  # type: ignore[method-assign]


SYNC = Clients(redis, RedisCluster, sentinel_master, cluster_client)
ASYNC = Clients(aioredis, AsyncRedisCluster, aio_sentinel_master, aio_cluster_client)
