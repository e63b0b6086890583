"""The Redis backend: one Redis, Sentinel-managed Redis, or Redis Cluster, through redis-py.

Built from a URL::

    redis://[[user]:password@]host[:port][/db]      rediss://... (TLS)
    unix://[[user]:password@]/path/to/redis.sock     (db with the ``db`` option)
    redis+sentinel://[[user]:password@]host1:26379,host2:26379/service_name[/db]
    redis+cluster://[[user]:password@]host1:7000,host2:7001

or from a ready redis-py client (``RedisBackend(client=redis.Redis(...))``).
The backend owns its connection pool; redis-py uses hiredis when it is
installed, checks the process id on every checkout so a forked child never
reuses its parent's sockets, and reconnects after a server restart.

Every call is one round trip where Redis allows it: ``MGET``, one ``MSET`` or
one script for ``set_many``, one ``UNLINK`` for ``delete_many``. In Cluster
mode the many-key calls go through redis-py's slot-grouping helpers, one
pipeline per node. ``clear()`` deletes by ``SCAN`` + ``UNLINK`` in batches and
never uses ``KEYS``; it uses ``FLUSHDB`` only for a cache without a prefix
whose options say ``flush_db_on_clear=True``.

A Redis Cluster used as a cache should run with ``cluster-require-full-coverage
no``, so that losing one master loses only that master's keys.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING
from typing import Any
from typing import ClassVar

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster
from redis.exceptions import AuthenticationError
from redis.exceptions import AuthorizationError
from redis.exceptions import ClusterDownError
from redis.exceptions import InvalidResponse
from redis.exceptions import LockError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import ReadOnlyError
from redis.exceptions import RedisClusterException
from redis.exceptions import RedisError
from redis.exceptions import TryAgainError
from redis.retry import Retry
from redis.sentinel import Sentinel

from cachekit.backends._redis_urls import DEFAULT_MAX_VALUE_SIZE as DEFAULT_MAX_VALUE_SIZE
from cachekit.backends._redis_urls import DEFAULT_SOCKET_CONNECT_TIMEOUT as DEFAULT_SOCKET_CONNECT_TIMEOUT
from cachekit.backends._redis_urls import DEFAULT_SOCKET_TIMEOUT as DEFAULT_SOCKET_TIMEOUT
from cachekit.backends._redis_urls import OPTIONS as URL_OPTIONS
from cachekit.backends._redis_urls import ClusterURL
from cachekit.backends._redis_urls import DirectURL
from cachekit.backends._redis_urls import ParsedURL
from cachekit.backends._redis_urls import SentinelURL
from cachekit.backends._redis_urls import Standalone
from cachekit.backends._redis_urls import parse_location
from cachekit.backends._redis_urls import parse_url
from cachekit.backends._redis_urls import redact_url as redact_url
from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import MissingKeyError

if TYPE_CHECKING:
    from redis.commands.core import Script
    from redis.lock import Lock as _RedisPyLock

# Keys per command in set_many/clear batches: bounds the time one command blocks the server.
_BATCH = 1000
# How often a blocked lock.acquire() asks again.
_LOCK_POLL = 0.025

_ERRORS = (RedisError, RedisClusterException, OSError)
# Error replies that mean "not available right now" rather than "you asked wrongly":
# a cluster without quorum, a slot being migrated, a replica promoted by a failover.
_UNAVAILABLE = (
    ClusterDownError,
    TryAgainError,
    ReadOnlyError,
    # A full server (maxmemory with noeviction) cannot take writes right now, and a
    # reply that breaks the protocol leaves the connection out of step: both are
    # outages to the failure policy, so reads and other writes carry on.
    OutOfMemoryError,
    InvalidResponse,
    redis.ConnectionError,
    redis.TimeoutError,
    RedisClusterException,
    OSError,
)

# INCRBY creates a missing key, so check first; INCRBY keeps the key's TTL.
_INCR = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""
# PERSIST answers 0 both for a missing key and for one without a TTL.
_PERSIST = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('PERSIST', KEYS[1])
return 1
"""
# One round trip for set_many with a timeout (Redis 7 has no multi-key SET with PX).
_SET_MANY_PX = """
local px = ARGV[1]
for i, key in ipairs(KEYS) do redis.call('SET', key, ARGV[i + 1], 'PX', px) end
return #KEYS
"""
# The token is the value gets() saw; a vanished key reads as false and never matches.
_CAS = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[2])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""


def _ms(ttl: float) -> int:
    """Seconds to whole milliseconds, at least 1 (``PX 0`` is an error)."""
    return max(1, round(ttl * 1000))


def _glob_escape(text: str) -> str:
    """Escape ``SCAN MATCH`` glob characters so a prefix matches literally."""
    for char in "\\*?[]":
        text = text.replace(char, "\\" + char)
    return text


def register_scripts(client: Any) -> dict[str, Any]:
    """Register this backend's Lua scripts with a sync or async redis-py client."""
    return {
        name: client.register_script(source)
        for name, source in (
            ("incr", _INCR),
            ("persist", _PERSIST),
            ("set_many_px", _SET_MANY_PX),
            ("cas", _CAS),
        )
    }


def translate_error(
    backend: object, exc: BaseException, operation: str, key: str | None = None
) -> BackendError:
    """Translate a redis-py (or socket) error into cachekit's error tree; a method of both backends."""
    where = f"{operation} {key!r}" if key is not None else operation
    if isinstance(exc, (AuthenticationError, AuthorizationError)):
        return BackendError(
            f"Redis at {backend!r} refused the credentials during {where}: {exc}; "
            "check username and password."
        )
    if isinstance(exc, _UNAVAILABLE):
        return BackendUnavailableError(f"Redis at {backend!r} is unavailable ({where}): {exc}")
    return BackendError(f"Redis at {backend!r} answered {where} with an error: {exc}")


def check_value_size(backend: Any, key: str, value: bytes) -> None:
    """Refuse a value over ``backend.max_value_size``; a method of both backends."""
    if len(value) > backend.max_value_size:
        raise BackendError(
            f"Value for {key!r} is {len(value)} bytes, above max_value_size="
            f"{backend.max_value_size}; store less or raise the max_value_size option."
        )


class RedisLock:
    """A lock held in Redis: redis-py's :class:`redis.lock.Lock` behind cachekit's Lock protocol.

    Taken with ``SET NX PX`` and a random token, released by redis-py's
    compare-and-delete script, so a holder whose lock expired and was taken
    by someone else never deletes the new holder's lock. The token is not
    thread-local: a lock taken in one thread may be released in another, as
    with :class:`threading.Lock`.
    """

    def __init__(self, backend: RedisBackend, name: str, ttl: float) -> None:
        self._backend = backend
        self._name = name
        self._lock: _RedisPyLock = backend.client.lock(
            _wire(name), timeout=max(ttl, 0.001), sleep=_LOCK_POLL, thread_local=False
        )

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock; wait up to ``timeout`` seconds (``-1``: no limit) if ``blocking``.

        :raises BackendUnavailableError: if Redis cannot be reached.
        """
        try:
            return bool(
                self._lock.acquire(blocking=blocking, blocking_timeout=None if timeout < 0 else timeout)
            )
        except _ERRORS as exc:
            raise self._backend._error(exc, "lock acquire", self._name) from exc

    def release(self) -> None:
        """Release the lock if this holder still owns it; otherwise do nothing."""
        try:
            self._lock.release()
        except LockError:
            pass  # not held, or expired and taken by another holder: theirs now
        except _ERRORS as exc:
            raise self._backend._error(exc, "lock release", self._name) from exc

    def __enter__(self) -> RedisLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"RedisLock({self._name!r})"


class RedisBackend:
    """Stores bytes in Redis (standalone, Sentinel or Cluster) through redis-py.

    Connection parameters are keyword-only and used only when ``client`` is not
    given; :meth:`from_url` builds Sentinel and Cluster clients from their URLs.

    :param host: server host name or address.
    :param port: server port.
    :param db: database number (standalone and Sentinel only).
    :param username: ACL user name, if any.
    :param password: password; never shown in reprs or messages.
    :param unix_socket_path: connect to this Unix socket instead of ``host:port``.
    :param ssl: use TLS (``rediss://``).
    :param ssl_ca_certs: CA bundle to verify the server with.
    :param ssl_certfile: client certificate, for mutual TLS.
    :param ssl_keyfile: client key, for mutual TLS.
    :param ssl_cert_reqs: ``"required"`` (default), ``"optional"`` or ``"none"``.
    :param ssl_check_hostname: check the server's host name against its certificate.
    :param socket_timeout: seconds to wait for a reply before the call fails as unavailable.
    :param socket_connect_timeout: seconds to wait for a connection.
    :param max_connections: upper bound on pooled connections (default: no bound).
    :param health_check_interval: ``PING`` a connection idle longer than this many seconds
        before reusing it; 0 turns checks off.
    :param retries: times a call is retried, with a short jittered backoff, after a lost
        connection (e.g. a server restart). Timeouts are not retried, so a hung server
        costs at most ``socket_timeout``.
    :param client_name: ``CLIENT SETNAME`` for each connection, to spot them in ``CLIENT LIST``.
    :param max_value_size: values above this many bytes are refused with :class:`BackendError`.
    :param flush_db_on_clear: let ``clear()`` without a prefix use ``FLUSHDB`` instead of
        ``SCAN`` + ``UNLINK``; only safe when the database holds nothing but this cache.
    :param scan_count: keys per ``SCAN``/``UNLINK`` batch in ``clear()``.
    :param client: a ready ``redis.Redis`` or ``redis.cluster.RedisCluster``, or a
        callable returning one on first use (a ``RedisCluster`` connects as it is
        built, so a callable keeps construction from failing while the cluster is
        down); the connection parameters above are then ignored.
    """

    #: Options accepted by :meth:`from_url`/:meth:`from_location` (and URL query strings).
    OPTIONS: ClassVar[Mapping[str, type]] = URL_OPTIONS
    stores_objects: ClassVar[bool] = False

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        unix_socket_path: str | None = None,
        ssl: bool = False,
        ssl_ca_certs: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        ssl_cert_reqs: str = "required",
        ssl_check_hostname: bool = True,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        socket_connect_timeout: float = DEFAULT_SOCKET_CONNECT_TIMEOUT,
        max_connections: int | None = None,
        health_check_interval: float = 30.0,
        retries: int = 1,
        client_name: str | None = None,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        flush_db_on_clear: bool = False,
        scan_count: int = _BATCH,
        client: redis.Redis | RedisCluster | Callable[[], redis.Redis | RedisCluster] | None = None,
    ) -> None:
        server = Standalone(
            host=host,
            port=port,
            db=db,
            username=username,
            password=password,
            unix_socket_path=unix_socket_path,
            ssl=ssl,
            ssl_ca_certs=ssl_ca_certs,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            ssl_cert_reqs=ssl_cert_reqs,
            ssl_check_hostname=ssl_check_hostname,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_connect_timeout,
            max_connections=max_connections,
            health_check_interval=health_check_interval,
            retries=retries,
            client_name=client_name,
        )
        server.check(max_value_size=max_value_size, scan_count=scan_count)
        #: Largest value accepted, in bytes.
        self.max_value_size = max_value_size
        #: Whether ``clear()`` without a prefix may use ``FLUSHDB``.
        self.flush_db_on_clear = flush_db_on_clear
        #: Keys per ``SCAN``/``UNLINK`` batch in ``clear()``.
        self.scan_count = scan_count
        self._guard = threading.Lock()
        self._client: Any = None
        self._scripts: dict[str, Script] = {}
        self._cluster = False
        if client is not None:
            self._location = f"client={getattr(client, '__name__', type(client).__name__)}"
            self._factory: Callable[[], Any] = client if callable(client) else lambda: client
            if not callable(client):
                self._bind(client)
            return
        self._location = server.location
        # redis.Redis connects on the first command, not here.
        redis_client = redis.Redis(retry=_retry(server.retries), **server.client_kwargs())
        self._factory = lambda: redis_client
        self._bind(redis_client)

    # -- construction ------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBackend:
        """Build the backend from a Redis URL without a query string.

        Schemes: ``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``
        and ``redis+cluster://`` (see the module docstring for their forms).

        :param options: typed options from :attr:`OPTIONS` (``cachekit.config`` converts
            a URL's query string into these).
        :raises ConfigurationError: for a malformed URL or a bad option.
        """
        return cls._build(parse_url(url, options))

    @classmethod
    def from_location(cls, location: str | Sequence[str] | None, **options: Any) -> RedisBackend:
        """Build the backend from a settings ``LOCATION``.

        ``LOCATION`` is a URL, ``"host:port"``, ``None`` (``redis://127.0.0.1:6379/0``),
        or a list of ``redis+sentinel://``/``redis+cluster://`` URLs whose hosts are
        merged. Several plain ``redis://`` URLs are refused: this backend does not
        shard or split reads on the client.
        """
        return cls._build(parse_location(location, options))

    @classmethod
    def _build(cls, parsed: ParsedURL) -> RedisBackend:
        if isinstance(parsed, DirectURL):
            return cls(**parsed.kwargs)
        connect: Callable[[], redis.Redis | RedisCluster]
        if isinstance(parsed, SentinelURL):
            connect = partial(_sentinel_master, parsed)
        else:
            connect = partial(_cluster_client, parsed)
        backend = cls(client=connect, **parsed.backend_options)
        backend._location = parsed.location
        return backend

    def _bind(self, client: Any) -> None:
        """Adopt ``client`` and register the scripts with it."""
        self._cluster = isinstance(client, RedisCluster)
        self._scripts = register_scripts(client)
        self._client = client

    def _connect(self) -> Any:
        """Build the client on first use (Cluster clients connect as they are built)."""
        with self._guard:
            if self._client is None:
                try:
                    self._bind(self._factory())
                except _ERRORS as exc:
                    raise self._error(exc, "connect") from exc
            return self._client

    @property
    def client(self) -> Any:
        """The underlying redis-py client (``redis.Redis`` or ``RedisCluster``)."""
        client = self._client
        return client if client is not None else self._connect()

    def __repr__(self) -> str:
        return f"RedisBackend({redact_url(self._location)!r})"

    # -- errors --------------------------------------------------------------------

    _error = translate_error
    _check_size = check_value_size

    # -- reads ---------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """Return the value under ``key`` (``GET``), or ``None`` on a miss."""
        client = self._client
        try:
            if client is None:
                client = self._connect()
            value: bytes | None = client.get(_wire(key))
        except _ERRORS as exc:
            raise self._error(exc, "GET", key) from exc
        return value

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Return the found keys only: one ``MGET`` (per node in Cluster mode)."""
        if not keys:
            return {}
        client = self._client
        try:
            if client is None:
                client = self._connect()
            wire = _wire_all(keys)
            values = client.mget_nonatomic(wire) if self._cluster else client.mget(wire)
        except _ERRORS as exc:
            raise self._error(exc, "MGET") from exc
        return {key: value for key, value in zip(keys, values, strict=True) if value is not None}

    def gets(self, key: str) -> tuple[bytes, Any] | None:
        """Return ``(value, token)`` for :meth:`cas`, or ``None``; the token is the value read."""
        value = self.get(key)
        return None if value is None else (value, value)

    # -- writes --------------------------------------------------------------------

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value`` (``SET ... PX``); ``ttl`` ``None`` keeps it until deleted.

        :raises BackendError: if ``value`` is larger than ``max_value_size``.
        """
        if len(value) > self.max_value_size:
            self._check_size(key, value)
        client = self._client
        try:
            if client is None:
                client = self._connect()
            # execute_command skips the option checks of redis-py's set(), which has a dozen.
            if ttl is None:
                client.execute_command("SET", _wire(key), value)
            else:
                client.execute_command("SET", _wire(key), value, "PX", _ms(ttl))
        except _ERRORS as exc:
            raise self._error(exc, "SET", key) from exc

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        """Store every item in one round trip: ``MSET``, or one script doing ``SET ... PX``.

        In Cluster mode: one pipeline per node. Above 1000 items the work is
        split into batches of 1000 so no single command blocks the server long.
        """
        if not items:
            return
        for key, value in items.items():
            if len(value) > self.max_value_size:
                self._check_size(key, value)
        client = self._client
        try:
            if client is None:
                client = self._connect()
            if self._cluster:
                self._cluster_set_many(client, items, ttl)
                return
            if len(items) <= _BATCH:
                self._set_batch(client, items, ttl)
                return
            pairs = list(items.items())
            for start in range(0, len(pairs), _BATCH):
                self._set_batch(client, dict(pairs[start : start + _BATCH]), ttl)
        except _ERRORS as exc:
            raise self._error(exc, "set_many") from exc

    def _set_batch(self, client: Any, items: Mapping[str, bytes], ttl: float | None) -> None:
        if ttl is None:
            client.mset({_wire(key): value for key, value in items.items()})
        else:
            self._scripts["set_many_px"](keys=_wire_all(list(items)), args=[_ms(ttl), *items.values()])

    def _cluster_set_many(self, client: Any, items: Mapping[str, bytes], ttl: float | None) -> None:
        if ttl is None:
            client.mset_nonatomic({_wire(key): value for key, value in items.items()})
            return
        px = _ms(ttl)
        pipe = client.pipeline(transaction=False)
        for key, value in items.items():
            pipe.set(_wire(key), value, px=px)
        pipe.execute()

    def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` holds nothing (``SET NX PX``)."""
        if len(value) > self.max_value_size:
            self._check_size(key, value)
        client = self._client
        try:
            if client is None:
                client = self._connect()
            if ttl is None:
                added = client.execute_command("SET", _wire(key), value, "NX")
            else:
                added = client.execute_command("SET", _wire(key), value, "PX", _ms(ttl), "NX")
        except _ERRORS as exc:
            raise self._error(exc, "SET NX", key) from exc
        return bool(added)

    def cas(self, key: str, value: bytes, token: Any, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` still holds ``token`` (the value :meth:`gets` read).

        One script run, atomic on the server; ``False`` if the key changed or vanished.
        """
        if len(value) > self.max_value_size:
            self._check_size(key, value)
        if not isinstance(token, bytes):
            return False
        client = self._client
        try:
            if client is None:
                client = self._connect()
            stored = self._scripts["cas"](
                keys=[_wire(key)], args=[token, value, "" if ttl is None else _ms(ttl)]
            )
        except _ERRORS as exc:
            raise self._error(exc, "cas", key) from exc
        return bool(stored)

    def delete(self, key: str) -> bool:
        """Remove ``key`` (``UNLINK``); return whether it was there."""
        client = self._client
        try:
            if client is None:
                client = self._connect()
            removed = client.unlink(_wire(key))
        except _ERRORS as exc:
            raise self._error(exc, "UNLINK", key) from exc
        return bool(removed)

    def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in one ``UNLINK`` (one per slot, pipelined per node, in Cluster mode)."""
        if not keys:
            return
        client = self._client
        try:
            if client is None:
                client = self._connect()
            client.unlink(*_wire_all(keys))
        except _ERRORS as exc:
            raise self._error(exc, "UNLINK") from exc

    def incr(self, key: str, delta: int) -> int:
        """Add ``delta`` to the integer under ``key`` on the server (``INCRBY``), keeping its TTL.

        :raises MissingKeyError: if ``key`` holds nothing.
        :raises BackendError: if the value is not an integer or the result overflows 64 bits.
        """
        client = self._client
        try:
            if client is None:
                client = self._connect()
            result = self._scripts["incr"](keys=[_wire(key)], args=[delta])
        except redis.ResponseError as exc:
            if "not an integer" in str(exc):
                raise BackendError(f"Value under {key!r} is not an integer; incr needs one.") from exc
            if "overflow" in str(exc):
                raise BackendError(f"Adding {delta!r} to {key!r} would overflow 64 bits.") from exc
            raise self._error(exc, "INCRBY", key) from exc
        except _ERRORS as exc:
            raise self._error(exc, "INCRBY", key) from exc
        if result is None:
            raise MissingKeyError(key)
        return int(result)

    def touch(self, key: str, ttl: float | None) -> bool:
        """Give ``key`` a new ``ttl`` (``PEXPIRE``, or ``PERSIST`` for ``None``)."""
        client = self._client
        try:
            if client is None:
                client = self._connect()
            found = (
                self._scripts["persist"](keys=[_wire(key)])
                if ttl is None
                else client.pexpire(_wire(key), _ms(ttl))
            )
        except _ERRORS as exc:
            raise self._error(exc, "touch", key) from exc
        return bool(found)

    def clear(self, prefix: str = "") -> None:
        """Remove every key starting with ``prefix`` by ``SCAN`` + ``UNLINK`` in batches.

        ``FLUSHDB`` is used only when ``prefix`` is empty and ``flush_db_on_clear``
        is set; ``KEYS`` never is.
        """
        client = self._client
        try:
            if client is None:
                client = self._connect()
            if not prefix and self.flush_db_on_clear:
                if self._cluster:
                    client.flushdb(target_nodes=RedisCluster.PRIMARIES)
                else:
                    client.flushdb()
                return
            batch: list[bytes] = []
            for key in client.scan_iter(match=_glob_escape(prefix) + "*", count=self.scan_count):
                batch.append(key)
                if len(batch) >= self.scan_count:
                    client.unlink(*batch)
                    batch = []
            if batch:
                client.unlink(*batch)
        except _ERRORS as exc:
            raise self._error(exc, "clear", prefix) from exc

    def close(self) -> None:
        """Close pooled connections; the next call opens new ones."""
        client = self._client
        if client is None:
            return
        try:
            if self._cluster:
                client.disconnect_connection_pools()
            else:
                client.connection_pool.disconnect()
        except _ERRORS as exc:
            raise self._error(exc, "close") from exc

    def server_stats(self) -> dict[str, Any]:
        """Return Redis's own ``INFO`` (per node for a Cluster), for ``cachekit stats``.

        :raises BackendUnavailableError: if the server cannot be reached.
        """
        try:
            info: dict[str, Any] = self.client.info()
        except _ERRORS as exc:
            raise self._error(exc, "INFO") from exc
        return info

    def lock(self, name: str, *, ttl: float) -> RedisLock:
        """Return a lock named ``name`` held in Redis for at most ``ttl`` seconds."""
        try:
            return RedisLock(self, name, ttl)
        except _ERRORS as exc:
            raise self._error(exc, "lock", name) from exc


def _retry(retries: int) -> Retry:
    """Retry lost connections briefly; a timeout is not retried, so it costs one socket_timeout."""
    return Retry(
        ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries, supported_errors=(redis.ConnectionError,)
    )


def _wire(key: str) -> str | bytes:
    """The key as sent: itself when ASCII, else UTF-8 with surrogates kept.

    hiredis encodes ``str`` arguments as strict UTF-8, so a key holding a lone
    surrogate would raise; encoding it here keeps every ``str`` a storable key.
    """
    return key if key.isascii() else key.encode("utf-8", "surrogatepass")


def _wire_all(keys: Sequence[str]) -> list[str | bytes]:
    return [_wire(key) for key in keys]


def _sentinel_master(parsed: SentinelURL) -> redis.Redis:
    sentinel_kwargs = {
        **parsed.sentinel_kwargs(),
        # redis-py's own default retries ten times with backoff: seconds per call.
        "retry": _retry(parsed.retries),
    }
    sentinel = Sentinel(parsed.nodes, sentinel_kwargs=sentinel_kwargs, **parsed.connection)  # type: ignore[no-untyped-call]
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        parsed.service, db=parsed.db, max_connections=parsed.max_connections, retry=_retry(parsed.retries)
    )
    return client


def _cluster_client(parsed: ClusterURL) -> RedisCluster:
    # RedisCluster asks a node for the slot map as it is built, so this connects.
    nodes = [ClusterNode(host, port) for host, port in parsed.nodes]  # type: ignore[no-untyped-call]
    return RedisCluster(startup_nodes=nodes, retry=_retry(parsed.retries), **parsed.connection)
