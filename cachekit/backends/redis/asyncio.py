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
import contextlib
import copy
import inspect
import time
import uuid
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING
from typing import Any
from typing import ClassVar
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff
from redis.backoff import NoBackoff

from cachekit.backends.breaker import CircuitBreaker
from cachekit.backends.redis._errors import ERRORS as _ERRORS
from cachekit.backends.redis._urls import DEFAULT_BREAKER_COOLDOWN
from cachekit.backends.redis._urls import DEFAULT_BREAKER_FAILURES
from cachekit.backends.redis._urls import DEFAULT_BREAKER_WINDOW
from cachekit.backends.redis._urls import DEFAULT_MAX_VALUE_SIZE
from cachekit.backends.redis._urls import ClusterURL
from cachekit.backends.redis._urls import DirectURL
from cachekit.backends.redis._urls import ParsedURL
from cachekit.backends.redis._urls import SentinelURL
from cachekit.backends.redis._urls import Standalone
from cachekit.backends.redis._urls import parse_location
from cachekit.backends.redis._urls import parse_url
from cachekit.backends.redis._urls import redact_url
from cachekit.backends.redis.sync import _BATCH
from cachekit.backends.redis.sync import _LOCK_POLL
from cachekit.backends.redis.sync import BreakerMixin
from cachekit.backends.redis.sync import RedisBackend
from cachekit.backends.redis.sync import _check_near
from cachekit.backends.redis.sync import _glob_escape
from cachekit.backends.redis.sync import _incr_error
from cachekit.backends.redis.sync import _ms
from cachekit.backends.redis.sync import add_calls
from cachekit.backends.redis.sync import backoff
from cachekit.backends.redis.sync import blocking_client
from cachekit.backends.redis.sync import cas_calls
from cachekit.backends.redis.sync import check_value_size
from cachekit.backends.redis.sync import register_scripts
from cachekit.backends.redis.sync import retryable
from cachekit.backends.redis.sync import translate_error
from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import MissingKeyError

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

_T = TypeVar("_T")

AsyncClient = aioredis.Redis | RedisCluster


def _retry(retries: int) -> Retry:
    """The Cluster client's own retry (lost connections, short jittered backoff), for asyncio."""
    return Retry(
        ExponentialWithJitterBackoff(base=0.01, cap=0.1),
        retries,
        supported_errors=(aioredis.ConnectionError,),
    )


class AsyncRedisLock:
    """A lock held in Redis (``SET NX PX`` + token, compare-and-delete release), awaited.

    The same scripts as :class:`~cachekit.backends.redis.sync.RedisLock`: a retried
    acquisition recognises its own token, and an acquisition whose reply timed out
    is released by its token in a background task. A blocked ``acquire`` polls
    Redis every 25 ms with ``asyncio.sleep``, so other tasks run meanwhile.
    """

    def __init__(self, backend: AsyncRedisBackend, name: str, ttl: float) -> None:
        self._backend = backend
        self._name = name
        self._ttl_ms = _ms(max(ttl, 0.001))
        self._token: bytes | None = None

    async def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock; wait up to ``timeout`` seconds (``-1``: no limit) if ``blocking``.

        :raises BackendUnavailableError: if Redis cannot be reached.
        """
        token = uuid.uuid4().hex.encode()
        deadline = None if timeout < 0 else time.monotonic() + timeout
        backend = self._backend
        script = backend._script("lock_acquire")

        def attempt() -> Awaitable[Any]:
            return script(keys=[self._name], args=[token, self._ttl_ms])  # type: ignore[no-any-return]

        while True:
            try:
                taken = await backend._call(self._name, "lock acquire", self._name, attempt, attempt)
            except BackendUnavailableError:
                task = asyncio.get_running_loop().create_task(self._abandon(token))
                _BACKGROUND.add(task)
                task.add_done_callback(_BACKGROUND.discard)
                raise
            if taken:
                self._token = token
                return True
            if not blocking:
                return False
            pause = _LOCK_POLL
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                pause = min(pause, left)
            await asyncio.sleep(pause)

    async def _release(self, token: bytes, operation: str) -> None:
        backend = self._backend
        script = backend._script("lock_release")

        def run() -> Awaitable[Any]:
            return script(keys=[self._name], args=[token])  # type: ignore[no-any-return]

        await backend._call(self._name, operation, self._name, run, run)

    async def _abandon(self, token: bytes) -> None:
        with contextlib.suppress(BackendError):  # else the lock expires by its TTL
            await self._release(token, "lock abandon")

    async def release(self) -> None:
        """Release the lock if this holder still owns it; otherwise do nothing."""
        token, self._token = self._token, None
        if token is not None:
            await self._release(token, "lock release")

    async def __aenter__(self) -> AsyncRedisLock:
        await self.acquire()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.release()

    def __repr__(self) -> str:
        return f"AsyncRedisLock({self._name!r})"


# Background lock clean-ups, kept referenced until they finish.
_BACKGROUND: set[asyncio.Task[None]] = set()


class AsyncRedisBackend(BreakerMixin):
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

    OPTIONS: ClassVar[Mapping[str, type]] = RedisBackend.OPTIONS
    stores_objects: ClassVar[bool] = False

    def __new__(cls, *args: Any, near_cache: int = 0, **options: Any) -> AsyncRedisBackend:
        if near_cache and cls is AsyncRedisBackend:
            from cachekit.backends.redis._aio_near import AsyncNearRedisBackend

            cls = AsyncNearRedisBackend
        return super().__new__(cls)

    def __init__(
        self,
        *,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        flush_db_on_clear: bool = False,
        scan_count: int = _BATCH,
        breaker_failures: int = DEFAULT_BREAKER_FAILURES,
        breaker_window: float = DEFAULT_BREAKER_WINDOW,
        breaker_cooldown: float = DEFAULT_BREAKER_COOLDOWN,
        client: AsyncClient | Callable[[], AsyncClient] | None = None,
        near_cache: int = 0,
        near_cache_bytes: int | None = None,
        near_cache_prefix: str = "",
        **connection: Any,
    ) -> None:
        _check_near(near_cache, near_cache_bytes, client, near_cache_prefix)
        if client is not None and set(connection) - {"retries"}:
            raise ConfigurationError(
                f"AsyncRedisBackend takes either client= or connection options, not both "
                f"(got {sorted(connection)!r}).",
                setting=sorted(connection)[0],
            )
        server = Standalone(**connection)
        server.check(max_value_size=max_value_size, scan_count=scan_count)
        #: Largest value accepted, in bytes.
        self.max_value_size = max_value_size
        #: Whether ``clear()`` without a prefix may use ``FLUSHDB``.
        self.flush_db_on_clear = flush_db_on_clear
        #: Keys per ``SCAN``/``UNLINK`` batch in ``clear()``.
        self.scan_count = scan_count
        #: Times a call is retried after a lost connection.
        self.retries = server.retries
        self._breaker_options: dict[str, Any] = {
            "failures": breaker_failures,
            "window": breaker_window,
            "cooldown": breaker_cooldown,
        }
        self._breaker = CircuitBreaker(**self._breaker_options, name="redis")
        self._node_breakers: dict[str, CircuitBreaker] = {}
        # (replicas, timeout in ms) on a durable() view: writes then WAIT for replicas.
        self._wait: tuple[int, int] | None = None
        self._client: Any = None
        self._scripts: dict[str, AsyncScript] = {}
        self._cluster = False
        if client is not None:
            self._location = f"client={getattr(client, '__name__', type(client).__name__)}"
            self._factory: Callable[[], AsyncClient] = client if callable(client) else lambda: client
            if not callable(client):
                self._bind(client)
            return
        self._location = server.location
        self._breaker.name = f"redis {server.location}"
        redis_client = blocking_client(aioredis, server)
        self._factory = lambda: redis_client
        self._bind(redis_client)

    # -- construction ------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **options: Any) -> AsyncRedisBackend:
        """Build the backend from any URL :meth:`RedisBackend.from_url
        <cachekit.backends.redis.sync.RedisBackend.from_url>` accepts, with the same options.

        :raises ConfigurationError: for a malformed URL or a bad option.
        """
        return cls._build(parse_url(url, options))

    @classmethod
    def from_location(cls, location: str | Sequence[str] | None, **options: Any) -> AsyncRedisBackend:
        """Build the backend from a settings ``LOCATION``, as the sync backend does."""
        return cls._build(parse_location(location, options))

    @classmethod
    def _build(cls, parsed: ParsedURL) -> AsyncRedisBackend:
        if isinstance(parsed, DirectURL):
            return cls(**parsed.kwargs)
        connect: Callable[[], AsyncClient]
        if isinstance(parsed, SentinelURL):
            connect = partial(_sentinel_master, parsed)
        else:
            connect = partial(_cluster_client, parsed)
        backend = cls(client=connect, retries=parsed.retries, **parsed.backend_options)
        backend._location = parsed.location
        backend._breaker.name = f"redis {redact_url(parsed.location)}"
        return backend

    def _bind(self, client: Any) -> None:
        """Adopt ``client`` and register the sync backend's scripts with it."""
        self._cluster = isinstance(client, RedisCluster)
        self._scripts = register_scripts(client)
        self._client = client

    def _connect(self) -> Any:
        """Build the client on first use; building an asyncio client does no I/O."""
        if self._client is None:
            try:
                self._bind(self._factory())
            except _ERRORS as exc:
                raise self._fail(self._breaker, exc, "connect") from exc
        return self._client

    @property
    def client(self) -> Any:
        """The underlying ``redis.asyncio`` client (``Redis`` or ``RedisCluster``)."""
        client = self._client
        return client if client is not None else self._connect()

    def __repr__(self) -> str:
        return f"AsyncRedisBackend({redact_url(self._location)!r})"

    # -- errors, retries and the breaker -------------------------------------------

    _error = translate_error
    _check_size = check_value_size

    async def _recover(
        self,
        breaker: CircuitBreaker,
        exc: BaseException,
        operation: str,
        key: str | None,
        again: Callable[[], Awaitable[_T]] | None,
    ) -> _T:
        """After a failed call: await ``again`` (safe to repeat) up to ``retries`` times, or raise."""
        if again is not None:
            for attempt in range(self.retries):
                if not retryable(exc):
                    break
                await asyncio.sleep(backoff(attempt))
                try:
                    result = await again()
                except _ERRORS as retried:
                    exc = retried
                    continue
                breaker.success()
                return result
        raise self._fail(breaker, exc, operation, key) from exc

    async def _call(
        self,
        route: str | None,
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
        except _ERRORS as exc:
            return await self._recover(breaker, exc, operation, key, again)
        breaker.success()
        return result

    def _script(self, name: str) -> Any:
        """The registered script ``name``, building the client first if needed."""
        if self._client is None:
            self._connect()
        return self._scripts[name]

    async def _each_node(
        self,
        client: Any,
        keys: Sequence[str],
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
        groups = self._by_node(client, keys)

        async def one(name: str, indexes: list[int]) -> BackendError | None:
            breaker = self._node_breaker(name) if name else self._breaker
            try:
                breaker.before_call()
            except BackendUnavailableError as exc:
                return exc
            try:
                await run(indexes)
            except _ERRORS as exc:
                return self._fail(breaker, exc, operation)
            breaker.success()
            return None

        results = await asyncio.gather(*(one(name, indexes) for name, indexes in groups.items()))
        failures = [failure for failure in results if failure is not None]
        if failures and (operation != "MGET" or len(failures) == len(groups)):
            raise failures[0]

    async def _cluster_ready(self, client: Any) -> None:
        """Let redis.asyncio's cluster client read the slot map (on first use, and after a node failed)."""
        await self._call(None, "connect", None, client.initialize)

    # -- reads ---------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """Return the value under ``key`` (``GET``), or ``None`` on a miss."""
        client = self._client or self._connect()
        breaker = self._breaker_for(key) if self._cluster else self._breaker
        breaker.before_call()
        try:
            value: bytes | None = await client.get(key)
        except _ERRORS as exc:
            again: bytes | None = await self._recover(breaker, exc, "GET", key, partial(client.get, key))
            return again
        breaker.success()
        return value

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Return the found keys only: one ``MGET`` (per node in Cluster mode, partial results kept)."""
        if not keys:
            return {}
        client = self._client or self._connect()
        if self._cluster:
            found: dict[str, bytes] = {}

            async def run(indexes: list[int]) -> None:
                values = await client.mget_nonatomic([keys[i] for i in indexes])
                for index, value in zip(indexes, values, strict=True):
                    if value is not None:
                        found[keys[index]] = value

            await self._each_node(client, keys, "MGET", run)
            return found
        values = await self._call(None, "MGET", None, partial(client.mget, keys), partial(client.mget, keys))
        return {key: value for key, value in zip(keys, values, strict=True) if value is not None}

    async def gets(self, key: str) -> tuple[bytes, Any] | None:
        """Return ``(value, token)`` for :meth:`cas`, or ``None``; the token is the value read."""
        value = await self.get(key)
        return None if value is None else (value, value)

    # -- writes --------------------------------------------------------------------

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value`` (``SET ... PX``); ``ttl`` ``None`` keeps it until deleted."""
        if len(value) > self.max_value_size:
            self._check_size(key, value)
        client = self._client or self._connect()
        run = partial(client.set, key, value, px=None if ttl is None else _ms(ttl))
        await self._call(key, "SET", key, run, run)

    async def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        """Store every item in one round trip per batch of 1000: ``MSET`` or one ``SET ... PX`` script."""
        if not items:
            return
        for key, value in items.items():
            if len(value) > self.max_value_size:
                self._check_size(key, value)
        client = self._client or self._connect()
        pairs = list(items.items())
        if self._cluster:
            px = None if ttl is None else _ms(ttl)

            async def run_node(indexes: list[int]) -> None:
                pipe = client.pipeline(transaction=False)
                for index in indexes:
                    pipe.set(pairs[index][0], pairs[index][1], px=px)
                await pipe.execute()

            await self._each_node(client, [key for key, _ in pairs], "set_many", run_node)
            return
        for start in range(0, len(pairs), _BATCH):
            batch = pairs[start : start + _BATCH]
            run: Callable[[], Awaitable[Any]]
            if ttl is None:
                run = partial(client.mset, dict(batch))
            else:
                run = partial(
                    self._scripts["set_many_px"],
                    keys=[key for key, _ in batch],
                    args=[_ms(ttl), *(value for _, value in batch)],
                )
            await self._call(None, "set_many", None, run, run)

    async def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` holds nothing (``SET NX PX``); retried as the sync backend is."""
        if len(value) > self.max_value_size:
            self._check_size(key, value)
        first, again = add_calls(self._script, key, value, ttl)
        return bool(await self._write(key, "SET NX", key, first, again))

    async def cas(self, key: str, value: bytes, token: Any, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` still holds ``token``; one atomic script run.

        Retried after a lost connection as the sync backend's :meth:`~RedisBackend.cas` is.
        """
        if len(value) > self.max_value_size:
            self._check_size(key, value)
        if not isinstance(token, bytes):
            return False
        first, again = cas_calls(self._script, key, token, value, ttl)
        return bool(await self._write(key, "cas", key, first, again))

    async def delete(self, key: str) -> bool:
        """Remove ``key`` (``UNLINK``); return whether it was there."""

        def run(target: Any) -> Any:
            return target.unlink(key)

        return bool(await self._write(key, "UNLINK", key, run, run))

    # -- durable writes (WAIT) -------------------------------------------------------

    def durable(self, replicas: int, timeout: float) -> AsyncRedisBackend:
        """A view whose ``add``, ``cas`` and ``delete`` wait for replicas; see
        :meth:`RedisBackend.durable <cachekit.backends.redis.sync.RedisBackend.durable>`.
        """
        if replicas < 1 or not timeout > 0:
            raise ConfigurationError(
                f"durable() needs replicas >= 1 and timeout > 0, got {replicas!r} and {timeout!r}.",
                setting="replicas",
            )
        view = copy.copy(self)
        view._wait = (replicas, _ms(timeout))
        return view

    async def _write(
        self,
        route: str,
        operation: str,
        key: str | None,
        first: Callable[[Any], Any],
        again: Callable[[Any], Any] | None,
    ) -> Any:
        """:meth:`RedisBackend._write <cachekit.backends.redis.sync.RedisBackend._write>`, awaited.

        ``first(target)`` returns an awaitable on the client; on a pipeline it queues
        the command (a script's queueing is awaited too).
        """
        client = self._client or self._connect()
        if self._wait is None:
            return await self._call(
                route, operation, key, partial(first, client), again and partial(again, client)
            )
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

        results = await self._call(route, operation, key, waited(first), again and waited(again))
        if int(results[-1]) < replicas:
            raise BackendUnavailableError(
                f"Redis at {self!r}: {operation} {key!r} reached the primary but only {results[-1]} of "
                f"{replicas} replicas acknowledged it within {timeout_ms} ms; it may be lost in a failover."
            )
        return results[0]

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in one ``UNLINK`` (per node in Cluster mode)."""
        if not keys:
            return
        client = self._client or self._connect()
        if self._cluster:

            async def run_node(indexes: list[int]) -> None:
                await client.unlink(*(keys[i] for i in indexes))

            await self._each_node(client, keys, "UNLINK", run_node)
            return
        run = partial(client.unlink, *keys)
        await self._call(None, "UNLINK", None, run, run)

    async def incr(self, key: str, delta: int) -> int:
        """Add ``delta`` to the integer under ``key`` on the server, keeping its TTL; never retried.

        :raises MissingKeyError: if ``key`` holds nothing.
        :raises BackendError: if the value is not an integer or the result overflows 64 bits.
        """
        try:
            result = await self._call(
                key, "INCRBY", key, partial(self._script("incr"), keys=[key], args=[delta])
            )
        except BackendError as exc:
            raise _incr_error(exc, key, delta) from exc.__cause__
        if result is None:
            raise MissingKeyError(key)
        return int(result)

    async def touch(self, key: str, ttl: float | None) -> bool:
        """Give ``key`` a new ``ttl`` (``PEXPIRE``, or ``PERSIST`` for ``None``)."""
        client = self._client or self._connect()
        run = (
            partial(self._scripts["persist"], keys=[key])
            if ttl is None
            else partial(client.pexpire, key, _ms(ttl))
        )
        return bool(await self._call(key, "touch", key, run, run))

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
        async for key in client.scan_iter(match=_glob_escape(prefix) + "*", count=self.scan_count):
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
        except _ERRORS as exc:
            raise self._error(exc, "close") from exc

    def lock(self, name: str, *, ttl: float) -> AsyncRedisLock:
        """Return a lock named ``name`` held in Redis for at most ``ttl`` seconds."""
        return AsyncRedisLock(self, name, ttl)


def _sentinel_master(parsed: SentinelURL) -> aioredis.Redis:
    sentinel_kwargs = {**parsed.sentinel_kwargs(), "retry": Retry(NoBackoff(), 0)}
    sentinel = Sentinel(parsed.nodes, sentinel_kwargs=sentinel_kwargs, **parsed.connection)  # type: ignore[no-untyped-call]
    client: aioredis.Redis = sentinel.master_for(
        parsed.service,
        db=parsed.db,
        max_connections=parsed.max_connections,
        timeout=parsed.pool_timeout,
        retry=Retry(NoBackoff(), 0),
        connection_pool_class=AsyncBlockingSentinelPool,
    )
    return client


class AsyncBlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """:class:`~cachekit.backends.redis.sync.BlockingSentinelPool` for ``redis.asyncio``."""


def _cluster_client(parsed: ClusterURL) -> RedisCluster:
    # Unlike the sync client, redis.asyncio's cluster reads the slot map on first use.
    nodes = [ClusterNode(host, port) for host, port in parsed.nodes]
    client = RedisCluster(startup_nodes=nodes, retry=_retry(parsed.retries), **parsed.connection)
    _load_commands_once(client)
    return client


def _load_commands_once(client: RedisCluster) -> None:
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
