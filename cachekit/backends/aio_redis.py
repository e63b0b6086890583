"""The async Redis backend: one Redis, Sentinel-managed Redis or Redis Cluster, on ``redis.asyncio``.

It takes the same URLs and options as :class:`~cachekit.backends.redis.RedisBackend`
and shares its rules rather than copying them: URLs and connection options are
parsed and checked by :mod:`cachekit.backends._redis_urls` into the same
parameter objects the sync backend builds its clients from, and the Lua scripts,
batch sizes, lock polling and the error classification
(:data:`~cachekit.backends.redis._UNAVAILABLE`) are imported from the sync
backend. Each call is one awaited round trip, as in the sync backend.

A ``redis.asyncio`` connection belongs to the event loop that opened it. Build
the backend (or the :class:`~cachekit.aio.AsyncCache` holding it) once per
process, use it from one loop, and ``await cache.close()`` before that loop ends
(an ASGI lifespan shutdown handler is the place).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING
from typing import Any
from typing import ClassVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import LockError
from redis.exceptions import ResponseError

from cachekit.backends._redis_urls import DEFAULT_MAX_VALUE_SIZE
from cachekit.backends._redis_urls import ClusterURL
from cachekit.backends._redis_urls import DirectURL
from cachekit.backends._redis_urls import ParsedURL
from cachekit.backends._redis_urls import SentinelURL
from cachekit.backends._redis_urls import Standalone
from cachekit.backends._redis_urls import parse_location
from cachekit.backends._redis_urls import parse_url
from cachekit.backends._redis_urls import redact_url
from cachekit.backends.redis import _BATCH
from cachekit.backends.redis import _ERRORS
from cachekit.backends.redis import _LOCK_POLL
from cachekit.backends.redis import RedisBackend
from cachekit.backends.redis import _glob_escape
from cachekit.backends.redis import _ms
from cachekit.backends.redis import check_value_size
from cachekit.backends.redis import register_scripts
from cachekit.backends.redis import translate_error
from cachekit.exceptions import BackendError
from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import MissingKeyError

if TYPE_CHECKING:
    from redis.asyncio.lock import Lock as _AioRedisPyLock
    from redis.commands.core import AsyncScript

AsyncClient = aioredis.Redis | RedisCluster


def _retry(retries: int) -> Retry:
    """The sync backend's retry rule (lost connections only, short jittered backoff), for asyncio."""
    return Retry(
        ExponentialWithJitterBackoff(base=0.01, cap=0.1),
        retries,
        supported_errors=(aioredis.ConnectionError,),
    )


class AsyncRedisLock:
    """A lock held in Redis (``SET NX PX`` + token, compare-and-delete release), awaited.

    ``redis.asyncio``'s lock behind cachekit's :class:`~cachekit.backends.aio_base.AsyncLock`;
    a blocked ``acquire`` polls Redis every 25 ms with ``asyncio.sleep``, so other
    tasks run meanwhile.
    """

    def __init__(self, backend: AsyncRedisBackend, client: Any, name: str, ttl: float) -> None:
        self._backend = backend
        self._name = name
        self._lock: _AioRedisPyLock = client.lock(
            name, timeout=max(ttl, 0.001), sleep=_LOCK_POLL, thread_local=False
        )

    async def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock; wait up to ``timeout`` seconds (``-1``: no limit) if ``blocking``.

        :raises BackendUnavailableError: if Redis cannot be reached.
        """
        try:
            return bool(
                await self._lock.acquire(blocking=blocking, blocking_timeout=None if timeout < 0 else timeout)
            )
        except _ERRORS as exc:
            raise self._backend._error(exc, "lock acquire", self._name) from exc

    async def release(self) -> None:
        """Release the lock if this holder still owns it; otherwise do nothing."""
        try:
            await self._lock.release()
        except LockError:
            pass  # not held, or expired and taken by another holder: theirs now
        except _ERRORS as exc:
            raise self._backend._error(exc, "lock release", self._name) from exc

    async def __aenter__(self) -> AsyncRedisLock:
        await self.acquire()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.release()

    def __repr__(self) -> str:
        return f"AsyncRedisLock({self._name!r})"


class AsyncRedisBackend:
    """Stores bytes in Redis (standalone, Sentinel or Cluster) through ``redis.asyncio``.

    :param connection: the connection keyword arguments of
        :class:`~cachekit.backends.redis.RedisBackend` (``host``, ``port``, ``db``,
        ``username``, ``password``, ``unix_socket_path``, ``ssl*``, ``socket_timeout``,
        ``socket_connect_timeout``, ``max_connections``, ``health_check_interval``,
        ``retries``, ``client_name``), with the same checks and defaults.
    :param max_value_size: values above this many bytes are refused with :class:`BackendError`.
    :param flush_db_on_clear: let ``clear()`` without a prefix use ``FLUSHDB``.
    :param scan_count: keys per ``SCAN``/``UNLINK`` batch in ``clear()``.
    :param client: a ready ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``,
        or a callable returning one on first use; ``connection`` is then not allowed.
    """

    OPTIONS: ClassVar[Mapping[str, type]] = RedisBackend.OPTIONS
    stores_objects: ClassVar[bool] = False

    def __init__(
        self,
        *,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        flush_db_on_clear: bool = False,
        scan_count: int = _BATCH,
        client: AsyncClient | Callable[[], AsyncClient] | None = None,
        **connection: Any,
    ) -> None:
        if client is not None and connection:
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
        redis_client = aioredis.Redis(retry=_retry(server.retries), **server.client_kwargs())
        self._factory = lambda: redis_client
        self._bind(redis_client)

    # -- construction ------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **options: Any) -> AsyncRedisBackend:
        """Build the backend from any URL :meth:`RedisBackend.from_url
        <cachekit.backends.redis.RedisBackend.from_url>` accepts, with the same options.

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
        backend = cls(client=connect, **parsed.backend_options)
        backend._location = parsed.location
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
                raise self._error(exc, "connect") from exc
        return self._client

    @property
    def client(self) -> Any:
        """The underlying ``redis.asyncio`` client (``Redis`` or ``RedisCluster``)."""
        client = self._client
        return client if client is not None else self._connect()

    def __repr__(self) -> str:
        return f"AsyncRedisBackend({redact_url(self._location)!r})"

    # -- errors --------------------------------------------------------------------

    _error = translate_error
    _check_size = check_value_size

    # -- reads ---------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """Return the value under ``key`` (``GET``), or ``None`` on a miss."""
        client = self._client or self._connect()
        try:
            value: bytes | None = await client.get(key)
        except _ERRORS as exc:
            raise self._error(exc, "GET", key) from exc
        return value

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Return the found keys only: one ``MGET`` (per node in Cluster mode)."""
        if not keys:
            return {}
        client = self._client or self._connect()
        try:
            values = await (client.mget_nonatomic(keys) if self._cluster else client.mget(keys))
        except _ERRORS as exc:
            raise self._error(exc, "MGET") from exc
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
        try:
            await client.set(key, value, px=None if ttl is None else _ms(ttl))
        except _ERRORS as exc:
            raise self._error(exc, "SET", key) from exc

    async def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        """Store every item in one round trip per batch of 1000: ``MSET`` or one ``SET ... PX`` script."""
        if not items:
            return
        for key, value in items.items():
            if len(value) > self.max_value_size:
                self._check_size(key, value)
        client = self._client or self._connect()
        try:
            if self._cluster:
                if ttl is None:
                    await client.mset_nonatomic(items)
                    return
                pipe = client.pipeline(transaction=False)
                for key, value in items.items():
                    pipe.set(key, value, px=_ms(ttl))
                await pipe.execute()
                return
            pairs = list(items.items())
            for start in range(0, len(pairs), _BATCH):
                batch = pairs[start : start + _BATCH]
                if ttl is None:
                    await client.mset(dict(batch))
                else:
                    await self._scripts["set_many_px"](
                        keys=[key for key, _ in batch], args=[_ms(ttl), *(value for _, value in batch)]
                    )
        except _ERRORS as exc:
            raise self._error(exc, "set_many") from exc

    async def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` holds nothing (``SET NX PX``)."""
        if len(value) > self.max_value_size:
            self._check_size(key, value)
        client = self._client or self._connect()
        try:
            added = await client.set(key, value, nx=True, px=None if ttl is None else _ms(ttl))
        except _ERRORS as exc:
            raise self._error(exc, "SET NX", key) from exc
        return bool(added)

    async def cas(self, key: str, value: bytes, token: Any, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` still holds ``token``; one atomic script run."""
        if len(value) > self.max_value_size:
            self._check_size(key, value)
        if not isinstance(token, bytes):
            return False
        self._client or self._connect()
        try:
            stored = await self._scripts["cas"](
                keys=[key], args=[token, value, "" if ttl is None else _ms(ttl)]
            )
        except _ERRORS as exc:
            raise self._error(exc, "cas", key) from exc
        return bool(stored)

    async def delete(self, key: str) -> bool:
        """Remove ``key`` (``UNLINK``); return whether it was there."""
        client = self._client or self._connect()
        try:
            removed = await client.unlink(key)
        except _ERRORS as exc:
            raise self._error(exc, "UNLINK", key) from exc
        return bool(removed)

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in one ``UNLINK`` (one per slot in Cluster mode)."""
        if not keys:
            return
        client = self._client or self._connect()
        try:
            await client.unlink(*keys)
        except _ERRORS as exc:
            raise self._error(exc, "UNLINK") from exc

    async def incr(self, key: str, delta: int) -> int:
        """Add ``delta`` to the integer under ``key`` on the server, keeping its TTL.

        :raises MissingKeyError: if ``key`` holds nothing.
        :raises BackendError: if the value is not an integer or the result overflows 64 bits.
        """
        self._client or self._connect()
        try:
            result = await self._scripts["incr"](keys=[key], args=[delta])
        except ResponseError as exc:
            if "not an integer" in str(exc):
                raise BackendError(
                    f"Value under {key!r} is not an integer (or {delta!r} would overflow it)."
                ) from exc
            raise self._error(exc, "INCRBY", key) from exc
        except _ERRORS as exc:
            raise self._error(exc, "INCRBY", key) from exc
        if result is None:
            raise MissingKeyError(key)
        return int(result)

    async def touch(self, key: str, ttl: float | None) -> bool:
        """Give ``key`` a new ``ttl`` (``PEXPIRE``, or ``PERSIST`` for ``None``)."""
        client = self._client or self._connect()
        try:
            if ttl is None:
                found = await self._scripts["persist"](keys=[key])
            else:
                found = await client.pexpire(key, _ms(ttl))
        except _ERRORS as exc:
            raise self._error(exc, "touch", key) from exc
        return bool(found)

    async def clear(self, prefix: str = "") -> None:
        """Remove every key starting with ``prefix`` by ``SCAN`` + ``UNLINK`` in batches."""
        client = self._client or self._connect()
        try:
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
        except _ERRORS as exc:
            raise self._error(exc, "clear", prefix) from exc

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
        try:
            return AsyncRedisLock(self, self._client or self._connect(), name, ttl)
        except _ERRORS as exc:
            raise self._error(exc, "lock", name) from exc


def _sentinel_master(parsed: SentinelURL) -> aioredis.Redis:
    sentinel = Sentinel(parsed.nodes, sentinel_kwargs=parsed.sentinel_kwargs(), **parsed.connection)  # type: ignore[no-untyped-call]
    client: aioredis.Redis = sentinel.master_for(
        parsed.service, db=parsed.db, max_connections=parsed.max_connections, retry=_retry(parsed.retries)
    )
    return client


def _cluster_client(parsed: ClusterURL) -> RedisCluster:
    # Unlike the sync client, redis.asyncio's cluster reads the slot map on first use.
    nodes = [ClusterNode(host, port) for host, port in parsed.nodes]
    return RedisCluster(startup_nodes=nodes, retry=_retry(parsed.retries), **parsed.connection)
