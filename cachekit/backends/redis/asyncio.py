"""The async Redis backend: one Redis, Sentinel-managed Redis or Redis Cluster, on ``redis.asyncio``.

It takes the same URLs and options as :class:`~cachekit.backends.redis.sync.RedisBackend`
and shares its rules rather than copying them: URLs and connection options are
parsed and checked by :mod:`cachekit.backends.redis._urls` into the same
parameter objects the sync backend builds its clients from, and the Lua scripts,
batch sizes, lock polling and the error classification
(:mod:`cachekit.backends.redis._errors`), the retry rule and the circuit breakers
are shared with the sync backend. Each call is one awaited round trip, as in the
sync backend.

A ``redis.asyncio`` connection belongs to the event loop that opened it. Build
the backend (or the :class:`~cachekit.aio.AsyncCache` holding it) once per
process, use it from one loop, and ``await cache.close()`` before that loop ends
(an ASGI lifespan shutdown handler is the place).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from functools import partial
from typing import Any
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from cachekit.backends.breaker import CircuitBreaker
from cachekit.backends.redis._clients import ASYNC
from cachekit.backends.redis._clients import AsyncBlockingSentinelPool as AsyncBlockingSentinelPool
from cachekit.backends.redis._core import RedisCore
from cachekit.backends.redis._errors import ERRORS
from cachekit.backends.redis._rules import BATCH
from cachekit.backends.redis._rules import CHECKOUT_ARGS
from cachekit.backends.redis._rules import WriteCalls
from cachekit.backends.redis._rules import evalsha_command
from cachekit.backends.redis._rules import found
from cachekit.backends.redis._rules import glob_escape
from cachekit.backends.redis._rules import incr_error
from cachekit.backends.redis._rules import ms
from cachekit.backends.redis._rules import packed
from cachekit.backends.redis._rules import wire_key
from cachekit.backends.redis._rules import wire_keys
from cachekit.backends.redis._urls import DEFAULT_BREAKER_COOLDOWN
from cachekit.backends.redis._urls import DEFAULT_BREAKER_FAILURES
from cachekit.backends.redis._urls import DEFAULT_BREAKER_WINDOW
from cachekit.backends.redis._urls import DEFAULT_MAX_VALUE_SIZE
from cachekit.backends.redis._urls import Standalone
from cachekit.backends.redis.lock import AsyncRedisLock as AsyncRedisLock
from cachekit.backends.redis.sync import _check_near
from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import ConfigurationError

_T = TypeVar("_T")

AsyncClient = aioredis.Redis | RedisCluster


class AsyncRedisBackend(RedisCore):
    """Stores bytes in Redis (standalone, Sentinel or Cluster) through ``redis.asyncio``.

    :param connection: the connection keyword arguments of
        :class:`~cachekit.backends.redis.sync.RedisBackend` (``host``, ``port``, ``db``,
        ``username``, ``password``, ``unix_socket_path``, ``ssl*``, ``socket_timeout``,
        ``socket_connect_timeout``, ``max_connections``, ``pool_timeout``,
        ``health_check_interval``, ``retries``, ``client_name``), with the same checks
        and defaults (a blocking pool of 100 connections, 0.5 s ``pool_timeout``).
    :param max_value_size: values above this many bytes are refused with :class:`BackendError`.
    :param flush_db_on_clear: let ``clear()`` without a prefix use ``FLUSHDB``.
    :param scan_count: keys per ``SCAN``/``UNLINK`` batch in ``clear()``.
    :param breaker_failures: outages within ``breaker_window`` seconds that open the
        circuit breaker (one per backend, one per master node in Cluster mode).
    :param breaker_window: see ``breaker_failures``.
    :param breaker_cooldown: seconds the open breaker fails calls fast before one probe.
    :param client: a ready ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``,
        or a callable returning one on first use; ``connection`` is then not allowed
        (except ``retries``).
    """

    _clients = ASYNC
    _kind = "AsyncRedisBackend"
    _near_variant = "cachekit.backends.redis._aio_near:AsyncNearRedisBackend"

    def __init__(
        self,
        *,
        client: AsyncClient | Callable[[], AsyncClient] | None = None,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        flush_db_on_clear: bool = False,
        scan_count: int = BATCH,
        near_cache: int = 0,
        near_cache_bytes: int | None = None,
        near_cache_prefix: str = "",
        breaker_failures: int = DEFAULT_BREAKER_FAILURES,
        breaker_window: float = DEFAULT_BREAKER_WINDOW,
        breaker_cooldown: float = DEFAULT_BREAKER_COOLDOWN,
        **connection: Any,
    ) -> None:
        _check_near(near_cache, near_cache_bytes, client, near_cache_prefix)
        if client is not None and set(connection) - {"retries"}:
            raise ConfigurationError(
                f"AsyncRedisBackend takes either client= or connection options, not both "
                f"(got {sorted(connection)!r}).",
                setting=sorted(connection)[0],
            )
        breaker = (breaker_failures, breaker_window, breaker_cooldown)
        self._setup(
            Standalone(**connection), client, (max_value_size, flush_db_on_clear, scan_count), breaker
        )

    # -- construction ------------------------------------------------------------

    def _connect(self) -> Any:
        """Build the client on first use; building an asyncio client does no I/O."""
        if self._client is None:
            self._bind_new()
        return self._client

    # -- errors, retries and the breaker -------------------------------------------

    async def _recover(
        self,
        breaker: CircuitBreaker,
        exc: BaseException,
        operation: str,
        key: str | None,
        again: Callable[[], Awaitable[_T]] | None,
    ) -> _T:
        """After a failed call: await ``again`` (safe to repeat) up to ``retries`` times, or raise."""
        attempt = 0
        while again is not None and (pause := self._pause_before_retry(attempt, exc)) is not None:
            attempt += 1
            await asyncio.sleep(pause)
            try:
                result = await again()
            except ERRORS as retried:
                exc = retried
            else:
                return self._succeeded(breaker, result)
        raise self._fail(breaker, exc, operation, key) from exc

    async def _call(
        self,
        route: str | bytes | None,
        operation: str,
        key: str | None,
        call: Callable[[], Awaitable[_T]],
        again: Callable[[], Awaitable[_T]] | None = None,
    ) -> _T:
        """Await ``call`` behind the breaker of ``route``'s node; see :meth:`RedisBackend._call`."""
        breaker = self._breaker_for(route) if self._cluster and route is not None else self._breaker
        breaker.before_call()
        try:
            result = await call()
        except ERRORS as exc:
            return await self._recover(breaker, exc, operation, key, again)
        breaker.success()
        return result

    async def _each_node(
        self,
        client: Any,
        wire: Sequence[str | bytes],
        operation: str,
        run: Callable[[list[int]], Awaitable[None]],
    ) -> None:
        """:meth:`RedisBackend._each_node <cachekit.backends.redis.sync.RedisBackend._each_node>`, awaited.

        The nodes are asked concurrently: besides being faster, this keeps a failing
        node from delaying the others, and redis.asyncio's cluster client, once one
        node failed, re-reads the slot map before the next command and can fail that
        command too.
        """
        await self._cluster_ready(client)
        groups = self._by_node(client, wire)

        async def one(name: str, indexes: list[int]) -> BackendError | None:
            breaker = self._node_breaker(name) if name else self._breaker
            try:
                breaker.before_call()
            except BackendUnavailableError as exc:
                return exc
            try:
                await run(indexes)
            except ERRORS as exc:
                return self._fail(breaker, exc, operation)
            breaker.success()
            return None

        results = await asyncio.gather(*(one(name, indexes) for name, indexes in groups.items()))
        failures = [failure for failure in results if failure is not None]
        self._raise_node_failures(failures, len(groups), operation)

    async def _cluster_ready(self, client: Any) -> None:
        """Let redis.asyncio's cluster client read the slot map (on first use, and after a node failed)."""
        await self._call(None, "connect", None, client.initialize)

    # -- the commands sent on the pool directly ------------------------------------

    @staticmethod
    async def _command(pool: Any, command: tuple[Any, ...]) -> Any:
        """:meth:`RedisBackend._command <cachekit.backends.redis.sync.RedisBackend._command>`, awaited.

        A cancellation while sending or reading disconnects the connection before it
        goes back to the pool, so its unread reply is never read by another command.
        """
        connection = await pool.get_connection(*CHECKOUT_ARGS)
        try:
            await connection.send_packed_command(packed(connection, command))
            return await connection.read_response()
        finally:
            await pool.release(connection)

    async def _run_script(self, name: str, keys: list[Any], args: list[Any], target: Any) -> Any:
        """Run the script ``name``: ``EVALSHA`` sent directly on the direct client, as the sync backend.

        See :meth:`RedisBackend._run_script <cachekit.backends.redis.sync.RedisBackend._run_script>`.
        """
        script = self._scripts[name]
        pool = self._direct
        if pool is not None and target is self._client:
            try:
                return await self._command(pool, evalsha_command(script, keys, args))
            except NoScriptError:
                script.sha = await target.script_load(script.script)
        return await script(keys=keys, args=args, client=target)

    # -- reads ---------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """Return the value under ``key`` (``GET``), or ``None`` on a miss."""
        client = self._client or self._connect()
        wire = wire_key(key)
        breaker = self._breaker_for(wire) if self._cluster else self._breaker
        breaker.before_call()
        pool = self._direct
        try:
            value: bytes | None = await (
                client.get(wire) if pool is None else self._command(pool, ("GET", wire))
            )
        except ERRORS as exc:
            read = partial(client.get, wire) if pool is None else partial(self._command, pool, ("GET", wire))
            again: bytes | None = await self._recover(breaker, exc, "GET", key, read)
            return again
        breaker.success()
        return value

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Return the found keys only: one ``MGET`` (per node in Cluster mode, partial results kept)."""
        if not keys:
            return {}
        client = self._client or self._connect()
        wire = wire_keys(keys)
        if self._cluster:
            hits: dict[str, bytes] = {}

            async def run(indexes: list[int]) -> None:
                self._keep_hits(hits, keys, indexes, await client.mget_nonatomic([wire[i] for i in indexes]))

            await self._each_node(client, wire, "MGET", run)
            return hits
        read = partial(self._mget, client, wire)
        return found(keys, await self._call(None, "MGET", None, read, read))

    async def get_values(self, keys: Sequence[str]) -> list[bytes | None]:
        """The value under each of ``keys``, in order, ``None`` for a miss: :meth:`get_many` by position.

        ``AsyncCache.get_many`` reads this way: it names the values by position, so no dict
        of stored keys is built for it. It is ``get_many``'s twin, never a way around it:
        a ``get_many`` of a subclass (the near cache's), a mixin or a patch, on the class
        or on this backend, answers instead.
        """
        get_many = self.get_many
        if getattr(get_many, "__func__", None) is not _PLAIN_GET_MANY:
            hits = await get_many(keys)
            return list(map(hits.get, keys))
        if not keys:
            return []
        client = self._client or self._connect()
        if self._cluster:
            return list(map((await self.get_many(keys)).get, keys))
        read = partial(self._mget, client, wire_keys(keys))
        values: list[bytes | None] = await self._call(None, "MGET", None, read, read)
        return values

    async def _mget(self, client: Any, wire: Sequence[str | bytes]) -> list[bytes | None]:
        """One ``MGET``: sent on a connection of the pool itself where that is safe (see ``direct_pool``)."""
        pool = self._direct
        values: list[bytes | None] = await (
            client.mget(wire) if pool is None else self._command(pool, ("MGET", *wire))
        )
        return values

    async def gets(self, key: str) -> tuple[bytes, Any] | None:
        """Return ``(value, token)`` for :meth:`cas`, or ``None``; the token is the value read."""
        value = await self.get(key)
        return None if value is None else (value, value)

    # -- writes --------------------------------------------------------------------

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value`` (``SET ... PX``); ``ttl`` ``None`` keeps it until deleted."""
        args = self._set_args(key, value, ttl)
        run = partial((self._client or self._connect()).execute_command, *args)
        await self._call(args[1], "SET", key, run, run)

    async def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        """Store every item in one round trip per batch of 1000: ``MSET`` or one ``SET ... PX`` script."""
        if not items:
            return
        self._check_sizes(items)
        client = self._client or self._connect()
        if self._cluster:
            pairs = [(wire_key(key), value) for key, value in items.items()]
            px = None if ttl is None else ms(ttl)

            async def run_node(indexes: list[int]) -> None:
                pipe = client.pipeline(transaction=False)
                self._queue_sets(pipe, pairs, indexes, px)
                await pipe.execute()

            await self._each_node(client, [wire for wire, _ in pairs], "set_many", run_node)
            return
        for run in self._set_batches(client, items, ttl):
            await self._call(None, "set_many", None, run, run)

    async def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` holds nothing (``SET NX PX``); retried as the sync backend is."""
        wire, calls = self._add_calls(key, value, ttl)
        return bool(await self._write(wire, "SET NX", key, calls))

    async def cas(self, key: str, value: bytes, token: Any, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` still holds ``token``; one atomic script run.

        Retried after a lost connection as the sync backend's :meth:`~RedisBackend.cas` is.
        """
        planned = self._cas_calls(key, value, token, ttl)
        return planned is not None and bool(await self._write(planned[0], "cas", key, planned[1]))

    async def delete(self, key: str) -> bool:
        """Remove ``key`` (``UNLINK``); return whether it was there."""
        wire, calls = self._delete_calls(key)
        return bool(await self._write(wire, "UNLINK", key, calls))

    async def _write(self, route: str | bytes, operation: str, key: str | None, calls: WriteCalls) -> Any:
        """:meth:`RedisBackend._write <cachekit.backends.redis.sync.RedisBackend._write>`, awaited.

        ``first(target)`` returns an awaitable on the client; on a pipeline it queues
        the command (a script's queueing is awaited too).
        """
        first, again = calls
        client = self._client or self._connect()
        if self._wait is None:
            return await self._call(route, operation, key, partial(first, client), partial(again, client))
        replicas, timeout_ms = self._wait

        def waited(queue: Callable[[Any], Any]) -> Callable[[], Awaitable[list[Any]]]:
            async def run() -> list[Any]:
                pipe = client.pipeline(transaction=False)
                queued = queue(pipe)
                if inspect.isawaitable(queued):
                    await queued
                pipe.execute_command("WAIT", replicas, timeout_ms)
                results: list[Any] = await pipe.execute()
                return results

            return run

        results = await self._call(route, operation, key, waited(first), waited(again))
        return self._waited(results, operation, key)

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in one ``UNLINK`` (per node in Cluster mode)."""
        if not keys:
            return
        client = self._client or self._connect()
        wire = wire_keys(keys)
        if self._cluster:

            async def run_node(indexes: list[int]) -> None:
                await client.unlink(*(wire[i] for i in indexes))

            await self._each_node(client, wire, "UNLINK", run_node)
            return
        run = partial(client.unlink, *wire)
        await self._call(None, "UNLINK", None, run, run)

    async def incr(self, key: str, delta: int) -> int:
        """Add ``delta`` to the integer under ``key`` on the server, keeping its TTL; never retried.

        :raises MissingKeyError: if ``key`` holds nothing.
        :raises BackendError: if the value is not an integer or the result overflows 64 bits.
        """
        wire, run = self._incr_call(key, delta)
        try:
            result = await self._call(wire, "INCRBY", key, run)
        except BackendError as exc:
            raise incr_error(exc, key, delta) from exc.__cause__
        return self._incr_result(result, key)

    async def touch(self, key: str, ttl: float | None) -> bool:
        """Give ``key`` a new ``ttl`` (``PEXPIRE``, or ``PERSIST`` for ``None``)."""
        wire, run = self._touch_call(self._client or self._connect(), key, ttl)
        return bool(await self._call(wire, "touch", key, run, run))

    async def clear(self, prefix: str = "") -> None:
        """Remove every key starting with ``prefix`` by ``SCAN`` + ``UNLINK`` in batches."""
        client = self._client or self._connect()
        run = partial(self._clear, client, prefix)
        await self._call(None, "clear", prefix, run, run)

    async def _clear(self, client: Any, prefix: str) -> None:
        if not prefix and self.flush_db_on_clear:
            if self._cluster:
                await client.flushdb(target_nodes=RedisCluster.PRIMARIES)
            else:
                await client.flushdb()
            return
        batch: list[bytes] = []
        async for key in client.scan_iter(match=glob_escape(prefix) + "*", count=self.scan_count):
            batch.append(key)
            if len(batch) >= self.scan_count:
                await client.unlink(*batch)
                batch = []
        if batch:
            await client.unlink(*batch)

    async def close(self) -> None:
        """Close pooled connections; the next call opens new ones."""
        client = self._client
        if client is None:
            return
        try:
            if self._cluster:
                await client.aclose()
                # A closed asyncio cluster client cannot be reused: build a new one next time.
                self._client = None
            else:
                pool = client.connection_pool
                await pool.disconnect()
                # A Sentinel-managed pool also holds connections to the sentinels.
                manager = getattr(pool, "sentinel_manager", None)
                for sentinel in getattr(manager, "sentinels", ()):
                    await sentinel.connection_pool.disconnect()
        except ERRORS as exc:
            raise self._error(exc, "close") from exc

    def lock(self, name: str, *, ttl: float) -> AsyncRedisLock:
        """Return a lock named ``name`` held in Redis for at most ``ttl`` seconds."""
        return AsyncRedisLock(self, name, ttl)


#: The backend's own get_many, told from a subclass's, a mixin's or a patch's by get_values.
_PLAIN_GET_MANY = AsyncRedisBackend.get_many
