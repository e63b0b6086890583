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

import contextlib
import copy
import random
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING
from typing import Any
from typing import ClassVar
from typing import TypeVar

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster
from redis.exceptions import AuthenticationError
from redis.exceptions import BusyLoadingError
from redis.retry import Retry
from redis.sentinel import Sentinel
from redis.sentinel import SentinelConnectionPool

from cachekit.backends.breaker import CircuitBreaker
from cachekit.backends.redis._errors import ERRORS
from cachekit.backends.redis._errors import translate_error as translate_error
from cachekit.backends.redis._urls import DEFAULT_BREAKER_COOLDOWN
from cachekit.backends.redis._urls import DEFAULT_BREAKER_FAILURES
from cachekit.backends.redis._urls import DEFAULT_BREAKER_WINDOW
from cachekit.backends.redis._urls import DEFAULT_MAX_CONNECTIONS
from cachekit.backends.redis._urls import DEFAULT_MAX_VALUE_SIZE as DEFAULT_MAX_VALUE_SIZE
from cachekit.backends.redis._urls import DEFAULT_POOL_TIMEOUT
from cachekit.backends.redis._urls import DEFAULT_SOCKET_CONNECT_TIMEOUT as DEFAULT_SOCKET_CONNECT_TIMEOUT
from cachekit.backends.redis._urls import DEFAULT_SOCKET_TIMEOUT as DEFAULT_SOCKET_TIMEOUT
from cachekit.backends.redis._urls import OPTIONS as URL_OPTIONS
from cachekit.backends.redis._urls import ClusterURL
from cachekit.backends.redis._urls import DirectURL
from cachekit.backends.redis._urls import ParsedURL
from cachekit.backends.redis._urls import SentinelURL
from cachekit.backends.redis._urls import Standalone
from cachekit.backends.redis._urls import parse_location
from cachekit.backends.redis._urls import parse_url
from cachekit.backends.redis._urls import redact_url as redact_url
from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import MissingKeyError

if TYPE_CHECKING:
    from redis.commands.core import Script

_T = TypeVar("_T")
_ERRORS = ERRORS

# Keys per command in set_many/clear batches: bounds the time one command blocks the server.
_BATCH = 1000
# How often a blocked lock.acquire() asks again.
_LOCK_POLL = 0.025

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
# Only when retried after a lost reply: a key already holding the new value counts as
# stored, because the first run most likely applied. Never on a first run: two writers
# that read the same token and write equal bytes (both turn 5 into 6) must not both win.
_CAS_AGAIN = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[2] and current ~= ARGV[1] then return 1 end
if current ~= ARGV[1] then return 0 end
if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[2])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""
# add() retried after a lost reply: the key holding exactly our value means the first
# attempt stored it (the bytes are the caller's own), so it reports True, not "taken".
_ADD_AGAIN = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""
_ADD_AGAIN_FOREVER = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""
# The lock: taken with a random token; a holder that finds its own token (its earlier
# attempt took the lock, the reply was lost) holds it, and refreshes its TTL.
_LOCK_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
# Delete the lock only if it still holds our token (it may have expired and been retaken).
_LOCK_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
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
            ("cas_again", _CAS_AGAIN),
            ("add_again", _ADD_AGAIN),
            ("add_again_forever", _ADD_AGAIN_FOREVER),
            ("lock_acquire", _LOCK_ACQUIRE),
            ("lock_release", _LOCK_RELEASE),
        )
    }


#: A write as the backends send it: ``first(target)`` once, ``again(target)`` after a lost reply.
WriteCalls = tuple[Callable[[Any], Any], Callable[[Any], Any]]


def add_calls(script: Callable[[str], Any], wire: str | bytes, value: bytes, ttl: float | None) -> WriteCalls:
    """``add``'s two calls, for the sync and async clients alike: ``SET NX``, then the retry script.

    The retry counts the key already holding this very value as added (the lost attempt stored it).
    """
    args: list[Any]
    if ttl is None:
        again_script, args = script("add_again_forever"), [value]
        command: tuple[Any, ...] = ("SET", wire, value, "NX")
    else:
        again_script, args = script("add_again"), [value, _ms(ttl)]
        command = ("SET", wire, value, "PX", _ms(ttl), "NX")

    def first(target: Any) -> Any:
        return target.execute_command(*command)

    def again(target: Any) -> Any:
        return again_script(keys=[wire], args=args, client=target)

    return first, again


def cas_calls(
    script: Callable[[str], Any], wire: str | bytes, token: bytes, value: bytes, ttl: float | None
) -> WriteCalls:
    """``cas``'s two calls: the strict script, then the retry that counts ``value`` there as stored."""
    first_script, again_script = script("cas"), script("cas_again")
    args = [token, value, "" if ttl is None else _ms(ttl)]

    def first(target: Any) -> Any:
        return first_script(keys=[wire], args=args, client=target)

    def again(target: Any) -> Any:
        return again_script(keys=[wire], args=args, client=target)

    return first, again


def check_value_size(backend: Any, key: str, value: bytes) -> None:
    """Refuse a value over ``backend.max_value_size``; a method of both backends."""
    if len(value) > backend.max_value_size:
        raise BackendError(
            f"Value for {key!r} is {len(value)} bytes, above max_value_size="
            f"{backend.max_value_size}; store less or raise the max_value_size option."
        )


# Connection errors that a prompt retry would only repeat: an exhausted pool, a full server.
_NOT_RETRIED = ("No connection available", "max number of clients reached")


def retryable(exc: BaseException) -> bool:
    """Whether a call that failed with ``exc`` may be sent again.

    Only a lost connection (a restarted server, a pooled socket closed under us) is
    retried. A timeout is not: the server may be hung, and waiting again would cost a
    second socket timeout; nor is a pool that had no free connection in time, a
    server at its client limit, one still loading its data, or refused credentials.
    """
    return (
        isinstance(exc, redis.ConnectionError)
        # redis-py files these replies under ConnectionError; repeating them at once is no use.
        and not isinstance(exc, (redis.TimeoutError, BusyLoadingError, AuthenticationError))
        and not any(text in str(exc) for text in _NOT_RETRIED)
    )


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): 10 ms doubling, jittered, at most 100 ms."""
    return float(min(0.1, 0.01 * 2.0**attempt)) * random.uniform(0.5, 1.0)


class BreakerMixin:
    """The circuit-breaker bookkeeping both Redis backends share (no I/O, so written once)."""

    _breaker: CircuitBreaker
    _breaker_options: dict[str, Any]
    _node_breakers: dict[str, CircuitBreaker]
    _node_guard = threading.Lock()
    _cluster: bool
    _client: Any
    _error = translate_error

    def breakers(self) -> list[CircuitBreaker]:
        """The circuit breakers: the backend's own, plus one per Cluster node seen so far."""
        return [self._breaker, *self._node_breakers.values()]

    def _breaker_for(self, wire_key: str | bytes) -> CircuitBreaker:
        """The breaker guarding ``wire_key``: its master node's in Cluster mode, else the backend's."""
        if not self._cluster:
            return self._breaker
        try:
            node = self._client.get_node_from_key(wire_key)
        except _ERRORS:
            return self._breaker  # no node covers the slot: count it against the cluster
        return self._node_breaker(node.name)

    def _node_breaker(self, name: str) -> CircuitBreaker:
        breaker = self._node_breakers.get(name)
        if breaker is None:
            with self._node_guard:
                breaker = self._node_breakers.setdefault(
                    name, CircuitBreaker(**self._breaker_options, name=f"redis node {name}")
                )
        return breaker

    def _fail(
        self, breaker: CircuitBreaker, exc: BaseException, operation: str, key: str | None = None
    ) -> BackendError:
        """Translate ``exc``; an outage counts against ``breaker``, any reply proves the server is up."""
        error = self._error(exc, operation, key)
        if isinstance(error, BackendUnavailableError):
            breaker.failure()
        else:
            breaker.success()
        return error

    def _by_node(self, client: Any, wire: Sequence[str | bytes]) -> dict[str, list[int]]:
        """Indexes of ``wire`` grouped by the name of the master node holding each key's slot."""
        groups: dict[str, list[int]] = {}
        for index, key in enumerate(wire):
            try:
                name = client.get_node_from_key(key).name
            except _ERRORS:
                name = ""  # no node covers the slot: its own group, which fails alone
            groups.setdefault(name, []).append(index)
        return groups


class RedisLock:
    """A lock held in Redis behind cachekit's Lock protocol.

    Taken with ``SET NX PX`` and a random token in one script that also recognises
    the token: when a reply is lost and the acquisition is retried, the retry finds
    the lock its own first attempt took and holds it, instead of waiting for
    "another holder" until the lock expires. Released by compare-and-delete, so a
    holder whose lock expired and was taken by someone else never deletes the new
    holder's lock. The token is not thread-local: a lock taken in one thread may be
    released in another, as with :class:`threading.Lock`.

    If an acquisition times out (the reply never came), the lock may be held on the
    server without the caller knowing; a background thread then releases it by its
    token, so the next caller does not wait for an orphan until its TTL.
    """

    def __init__(self, backend: RedisBackend, name: str, ttl: float) -> None:
        self._backend = backend
        self._name = name
        self._wire = _wire(name)
        self._ttl_ms = _ms(max(ttl, 0.001))
        self._token: bytes | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock; wait up to ``timeout`` seconds (``-1``: no limit) if ``blocking``.

        :raises BackendUnavailableError: if Redis cannot be reached.
        """
        token = uuid.uuid4().hex.encode()
        deadline = None if timeout < 0 else time.monotonic() + timeout
        backend = self._backend
        # The script recognises its own token, so repeating it after a lost reply is safe.
        attempt = partial(backend._script("lock_acquire"), keys=[self._wire], args=[token, self._ttl_ms])
        while True:
            try:
                taken = backend._call(self._wire, "lock acquire", self._name, attempt, attempt)
            except BackendUnavailableError:
                # The script may have run and only its reply been lost: let go of what we
                # may hold, off the request's path, so nobody waits for an orphan.
                threading.Thread(target=self._abandon, args=(token,), daemon=True).start()
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
            time.sleep(pause)

    def _release(self, token: bytes, operation: str) -> None:
        backend = self._backend
        run = partial(backend._script("lock_release"), keys=[self._wire], args=[token])
        backend._call(self._wire, operation, self._name, run, run)

    def _abandon(self, token: bytes) -> None:
        with contextlib.suppress(BackendError):  # else the lock expires by its TTL
            self._release(token, "lock abandon")

    def release(self) -> None:
        """Release the lock if this holder still owns it; otherwise do nothing."""
        token, self._token = self._token, None
        if token is not None:
            self._release(token, "lock release")

    def __enter__(self) -> RedisLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"RedisLock({self._name!r})"


class RedisBackend(BreakerMixin):
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
    :param max_connections: pooled connections (default 100). The pool blocks: a call
        finding every connection busy waits up to ``pool_timeout`` for one.
    :param pool_timeout: seconds a call waits for a free connection before it fails
        as an outage (default 0.5).
    :param health_check_interval: ``PING`` a connection idle longer than this many seconds
        before reusing it; 0 turns checks off.
    :param retries: times a call is retried, with a short jittered backoff, after a lost
        connection (e.g. a server restart). Timeouts are not retried, so a hung server
        costs at most ``socket_timeout``. Retries know what they retry: ``add``, ``cas``
        and the lock recognise their own earlier write; ``incr`` is never retried, as
        it cannot tell whether the lost attempt was applied.
    :param client_name: ``CLIENT SETNAME`` for each connection, to spot them in ``CLIENT LIST``.
    :param max_value_size: values above this many bytes are refused with :class:`BackendError`.
    :param flush_db_on_clear: let ``clear()`` without a prefix use ``FLUSHDB`` instead of
        ``SCAN`` + ``UNLINK``; only safe when the database holds nothing but this cache.
    :param scan_count: keys per ``SCAN``/``UNLINK`` batch in ``clear()``.
    :param breaker_failures: outages within ``breaker_window`` seconds that open the
        circuit breaker (one per backend, one per master node in Cluster mode); while
        open, calls fail fast for ``breaker_cooldown`` seconds, then one probe goes.
    :param breaker_window: see ``breaker_failures``.
    :param breaker_cooldown: see ``breaker_failures``.
    :param client: a ready ``redis.Redis`` or ``redis.cluster.RedisCluster``, or a
        callable returning one on first use (a ``RedisCluster`` connects as it is
        built, so a callable keeps construction from failing while the cluster is
        down); the connection parameters above are then ignored.
    :param near_cache: keep up to this many values in local memory in front of Redis,
        kept exact by ``CLIENT TRACKING`` invalidations (see :mod:`cachekit.backends.redis._near`
        and docs/backends.md); 0 (the default) turns it off. Standalone, Sentinel and Cluster.
    :param near_cache_bytes: bound on the summed size of the near cache's values.
    :param near_cache_prefix: keep only keys starting with this locally, and ask Redis for
        invalidations of those only (``BCAST PREFIX``); other keys are read from Redis.
    """

    #: Options accepted by :meth:`from_url`/:meth:`from_location` (and URL query strings).
    OPTIONS: ClassVar[Mapping[str, type]] = URL_OPTIONS
    stores_objects: ClassVar[bool] = False

    def __new__(cls, *args: Any, near_cache: int = 0, **options: Any) -> RedisBackend:
        if near_cache and cls is RedisBackend:
            from cachekit.backends.redis._near import NearRedisBackend

            cls = NearRedisBackend
        return super().__new__(cls)

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
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
        health_check_interval: float = 30.0,
        retries: int = 1,
        client_name: str | None = None,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        flush_db_on_clear: bool = False,
        scan_count: int = _BATCH,
        breaker_failures: int = DEFAULT_BREAKER_FAILURES,
        breaker_window: float = DEFAULT_BREAKER_WINDOW,
        breaker_cooldown: float = DEFAULT_BREAKER_COOLDOWN,
        client: redis.Redis | RedisCluster | Callable[[], redis.Redis | RedisCluster] | None = None,
        near_cache: int = 0,
        near_cache_bytes: int | None = None,
        near_cache_prefix: str = "",
    ) -> None:
        _check_near(near_cache, near_cache_bytes, client, near_cache_prefix)
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
            pool_timeout=pool_timeout,
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
        #: Times a call is retried after a lost connection.
        self.retries = retries
        self._socket_timeout = socket_timeout
        self._breaker_options: dict[str, Any] = {
            "failures": breaker_failures,
            "window": breaker_window,
            "cooldown": breaker_cooldown,
        }
        self._breaker = CircuitBreaker(**self._breaker_options, name="redis")
        self._node_breakers: dict[str, CircuitBreaker] = {}
        self._guard = threading.Lock()
        # (replicas, timeout in ms) on a durable() view: writes then WAIT for replicas.
        self._wait: tuple[int, int] | None = None
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
        self._breaker.name = f"redis {server.location}"
        # redis.Redis connects on the first command, not here.
        redis_client = blocking_client(redis, server)
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
        backend = cls(client=connect, retries=parsed.retries, **parsed.backend_options)
        backend._location = parsed.location
        backend._breaker.name = f"redis {redact_url(parsed.location)}"
        return backend

    def _bind(self, client: Any) -> None:
        """Adopt ``client`` and register the scripts with it."""
        self._cluster = isinstance(client, RedisCluster)
        self._scripts = register_scripts(client)
        self._client = client

    def _connect(self) -> Any:
        """Build the client on first use (Cluster clients connect as they are built)."""
        self._breaker.before_call()
        with self._guard:
            if self._client is None:
                try:
                    self._bind(self._factory())
                except _ERRORS as exc:
                    raise self._fail(self._breaker, exc, "connect") from exc
            return self._client

    @property
    def client(self) -> Any:
        """The underlying redis-py client (``redis.Redis`` or ``RedisCluster``)."""
        client = self._client
        return client if client is not None else self._connect()

    def __repr__(self) -> str:
        return f"RedisBackend({redact_url(self._location)!r})"

    # -- errors, retries and the breaker -------------------------------------------

    _error = translate_error
    _check_size = check_value_size

    def _recover(
        self,
        breaker: CircuitBreaker,
        exc: BaseException,
        operation: str,
        key: str | None,
        again: Callable[[], _T] | None,
    ) -> _T:
        """After a failed call: run ``again`` (safe to repeat) up to ``retries`` times, or raise."""
        if again is not None:
            for attempt in range(self.retries):
                if not retryable(exc):
                    break
                time.sleep(backoff(attempt))
                try:
                    result = again()
                except _ERRORS as retried:
                    exc = retried
                    continue
                breaker.success()
                return result
        raise self._fail(breaker, exc, operation, key) from exc

    def _call(
        self,
        route: str | bytes | None,
        operation: str,
        key: str | None,
        call: Callable[[], _T],
        again: Callable[[], _T] | None = None,
    ) -> _T:
        """Run ``call`` behind the breaker of ``route``'s node; on a lost connection run ``again``.

        ``again`` is what may be sent after the first attempt was perhaps applied
        (``call`` itself when repeating it is harmless); ``None`` means never retry.
        """
        breaker = self._breaker_for(route) if self._cluster and route is not None else self._breaker
        breaker.before_call()
        try:
            result = call()
        except _ERRORS as exc:
            return self._recover(breaker, exc, operation, key, again)
        breaker.success()
        return result

    def _script(self, name: str) -> Any:
        """The registered script ``name``, connecting first if needed."""
        if self._client is None:
            self._connect()
        return self._scripts[name]

    # -- reads ---------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """Return the value under ``key`` (``GET``), or ``None`` on a miss."""
        client = self._client or self._connect()
        wire = _wire(key)
        breaker = self._breaker_for(wire) if self._cluster else self._breaker
        breaker.before_call()
        try:
            value: bytes | None = client.get(wire)
        except _ERRORS as exc:
            again: bytes | None = self._recover(breaker, exc, "GET", key, partial(client.get, wire))
            return again
        breaker.success()
        return value

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Return the found keys only: one ``MGET`` (per node in Cluster mode).

        In Cluster mode a node that is down costs only its own keys: they read as
        misses and the other nodes' hits are kept. Only when every node fails does
        the call raise.
        """
        if not keys:
            return {}
        client = self._client or self._connect()
        wire = _wire_all(keys)
        if self._cluster:
            return self._cluster_get_many(client, keys, wire)
        breaker = self._breaker
        breaker.before_call()
        try:
            values = client.mget(wire)
        except _ERRORS as exc:
            values = self._recover(breaker, exc, "MGET", None, partial(client.mget, wire))
        else:
            breaker.success()
        return {key: value for key, value in zip(keys, values, strict=True) if value is not None}

    def _each_node(
        self, client: Any, wire: Sequence[str | bytes], operation: str, run: Callable[[list[int]], None]
    ) -> None:
        """Run ``run`` on each node's share of ``wire``, each behind its node's breaker.

        A failing node does not stop the others; the first failure is raised at the
        end, once every node was tried, unless ``operation`` is ``"MGET"`` and some
        node answered (a partial read is kept).
        """
        failures: list[BackendError] = []
        groups = self._by_node(client, wire)
        for name, indexes in groups.items():
            breaker = self._node_breaker(name) if name else self._breaker
            try:
                breaker.before_call()
            except BackendUnavailableError as exc:
                failures.append(exc)
                continue
            try:
                run(indexes)
            except _ERRORS as exc:
                failures.append(self._fail(breaker, exc, operation))
                continue
            breaker.success()
        if failures and (operation != "MGET" or len(failures) == len(groups)):
            raise failures[0]

    def _cluster_get_many(
        self, client: Any, keys: Sequence[str], wire: list[str | bytes]
    ) -> dict[str, bytes]:
        found: dict[str, bytes] = {}

        def run(indexes: list[int]) -> None:
            values = client.mget_nonatomic([wire[i] for i in indexes])
            for index, value in zip(indexes, values, strict=True):
                if value is not None:
                    found[keys[index]] = value

        self._each_node(client, wire, "MGET", run)
        return found

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
        client = self._client or self._connect()
        wire = _wire(key)
        # execute_command skips the option checks of redis-py's set(), which has a dozen.
        args: tuple[Any, ...] = ("SET", wire, value) if ttl is None else ("SET", wire, value, "PX", _ms(ttl))
        breaker = self._breaker_for(wire) if self._cluster else self._breaker
        breaker.before_call()
        try:
            client.execute_command(*args)
        except _ERRORS as exc:
            self._recover(breaker, exc, "SET", key, partial(client.execute_command, *args))
            return
        breaker.success()

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        """Store every item in one round trip: ``MSET``, or one script doing ``SET ... PX``.

        In Cluster mode: one pipeline per node, each node behind its own breaker (a
        node that is down does not stop the others; the call then raises). Above
        1000 items the work is split into batches of 1000 so no single command
        blocks the server long.
        """
        if not items:
            return
        for key, value in items.items():
            if len(value) > self.max_value_size:
                self._check_size(key, value)
        client = self._client or self._connect()
        if self._cluster:
            self._cluster_set_many(client, items, ttl)
            return
        pairs = list(items.items())
        for start in range(0, len(pairs), _BATCH):
            batch = dict(pairs[start : start + _BATCH]) if len(pairs) > _BATCH else items
            # SET of a given value is safe to repeat.
            run = partial(self._set_batch, client, batch, ttl)
            self._call(None, "set_many", None, run, run)

    def _set_batch(self, client: Any, items: Mapping[str, bytes], ttl: float | None) -> None:
        if ttl is None:
            client.mset({_wire(key): value for key, value in items.items()})
        else:
            self._scripts["set_many_px"](keys=_wire_all(list(items)), args=[_ms(ttl), *items.values()])

    def _cluster_set_many(self, client: Any, items: Mapping[str, bytes], ttl: float | None) -> None:
        pairs = [(_wire(key), value) for key, value in items.items()]
        px = None if ttl is None else _ms(ttl)

        def run(indexes: list[int]) -> None:
            pipe = client.pipeline(transaction=False)
            for index in indexes:
                wire, value = pairs[index]
                pipe.set(wire, value, px=px)
            pipe.execute()

        self._each_node(client, [wire for wire, _ in pairs], "set_many", run)

    def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` holds nothing (``SET NX PX``).

        Retried after a lost connection by a script that also counts the key already
        holding this very value as added (the lost attempt stored it).
        """
        if len(value) > self.max_value_size:
            self._check_size(key, value)
        wire = _wire(key)
        first, again = add_calls(self._script, wire, value, ttl)
        return bool(self._write(wire, "SET NX", key, first, again))

    def cas(self, key: str, value: bytes, token: Any, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` still holds ``token`` (the value :meth:`gets` read).

        One script run, atomic on the server; ``False`` if the key changed or vanished.
        Retried after a lost connection by a script that counts the key already holding
        ``value`` as stored (the lost run applied); the first run never does, so two
        writers of equal bytes from one token cannot both win.
        """
        if len(value) > self.max_value_size:
            self._check_size(key, value)
        if not isinstance(token, bytes):
            return False
        wire = _wire(key)
        first, again = cas_calls(self._script, wire, token, value, ttl)
        return bool(self._write(wire, "cas", key, first, again))

    def delete(self, key: str) -> bool:
        """Remove ``key`` (``UNLINK``); return whether it was there."""
        wire = _wire(key)

        def run(target: Any) -> Any:
            return target.unlink(wire)

        return bool(self._write(wire, "UNLINK", key, run, run))

    # -- durable writes (WAIT) -------------------------------------------------------

    def durable(self, replicas: int, timeout: float) -> RedisBackend:
        """A view of this backend whose ``add``, ``cas`` and ``delete`` wait for replicas.

        Each of those writes is sent with ``WAIT replicas timeout`` on the same
        connection, in one round trip; when fewer replicas than ``replicas``
        acknowledged it within ``timeout`` seconds the call fails with
        :class:`BackendUnavailableError` (the session middleware answers 503), so a
        write is acknowledged only once a failover cannot lose it. Keep ``timeout``
        below ``socket_timeout``. The view shares the client, pool and breakers.

        :raises ConfigurationError: for ``replicas`` below 1 or a ``timeout`` not above 0.
        """
        if replicas < 1 or not timeout > 0:
            raise ConfigurationError(
                f"durable() needs replicas >= 1 and timeout > 0, got {replicas!r} and {timeout!r}.",
                setting="replicas",
            )
        view = copy.copy(self)
        view._wait = (replicas, _ms(timeout))
        return view

    def _write(
        self,
        route: str | bytes,
        operation: str,
        key: str | None,
        first: Callable[[Any], Any],
        again: Callable[[Any], Any] | None,
    ) -> Any:
        """Run a write given as ``first(target)`` on the client, or, on a durable view, with ``WAIT``."""
        client = self._client or self._connect()
        if self._wait is None:
            return self._call(route, operation, key, partial(first, client), again and partial(again, client))
        replicas, timeout_ms = self._wait

        def waited(queue: Callable[[Any], Any]) -> Callable[[], list[Any]]:
            def run() -> list[Any]:
                pipe = client.pipeline(transaction=False)
                queue(pipe)
                pipe.execute_command("WAIT", replicas, timeout_ms)
                results: list[Any] = pipe.execute()
                return results

            return run

        results = self._call(route, operation, key, waited(first), again and waited(again))
        if int(results[-1]) < replicas:
            raise BackendUnavailableError(
                f"Redis at {self!r}: {operation} {key!r} reached the primary but only {results[-1]} of "
                f"{replicas} replicas acknowledged it within {timeout_ms} ms; it may be lost in a failover."
            )
        return results[0]

    def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in one ``UNLINK`` (one per slot, pipelined per node, in Cluster mode)."""
        if not keys:
            return
        client = self._client or self._connect()
        wire = _wire_all(keys)
        if self._cluster:
            self._each_node(
                client, wire, "UNLINK", lambda indexes: client.unlink(*(wire[i] for i in indexes))
            )
            return
        run = partial(client.unlink, *wire)
        self._call(None, "UNLINK", None, run, run)

    def incr(self, key: str, delta: int) -> int:
        """Add ``delta`` to the integer under ``key`` on the server (``INCRBY``), keeping its TTL.

        Never retried: after a lost reply nobody can tell whether the increment was
        applied, so the call fails as an outage rather than risk adding twice.

        :raises MissingKeyError: if ``key`` holds nothing.
        :raises BackendError: if the value is not an integer or the result overflows 64 bits.
        """
        wire = _wire(key)
        try:
            result = self._call(wire, "INCRBY", key, partial(self._script("incr"), keys=[wire], args=[delta]))
        except BackendError as exc:
            raise _incr_error(exc, key, delta) from exc.__cause__
        if result is None:
            raise MissingKeyError(key)
        return int(result)

    def touch(self, key: str, ttl: float | None) -> bool:
        """Give ``key`` a new ``ttl`` (``PEXPIRE``, or ``PERSIST`` for ``None``)."""
        client = self._client or self._connect()
        wire = _wire(key)
        run = (
            partial(self._scripts["persist"], keys=[wire])
            if ttl is None
            else partial(client.pexpire, wire, _ms(ttl))
        )
        return bool(self._call(wire, "touch", key, run, run))

    def clear(self, prefix: str = "") -> None:
        """Remove every key starting with ``prefix`` by ``SCAN`` + ``UNLINK`` in batches.

        ``FLUSHDB`` is used only when ``prefix`` is empty and ``flush_db_on_clear``
        is set; ``KEYS`` never is.
        """
        client = self._client or self._connect()
        run = partial(self._clear, client, prefix)
        self._call(None, "clear", prefix, run, run)

    def _clear(self, client: Any, prefix: str) -> None:
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
        return RedisLock(self, name, ttl)


def _incr_error(exc: BackendError, key: str, delta: int) -> BackendError:
    """The message for a refused ``incr``: not an integer, an overflow, or the error as it came."""
    text = str(exc.__cause__ or exc)
    if isinstance(exc, BackendUnavailableError):
        return exc
    if "not an integer" in text:
        return BackendError(f"Value under {key!r} is not an integer; incr needs one.")
    if "overflow" in text:
        return BackendError(f"Adding {delta!r} to {key!r} would overflow 64 bits.")
    return exc


def _check_near(near_cache: int, near_cache_bytes: int | None, client: object, prefix: str = "") -> None:
    """:raises ConfigurationError: for a bad near-cache option, or one where it is not built yet."""
    if near_cache < 0:
        raise ConfigurationError(
            f"near_cache must be 0 (off) or more, got {near_cache!r}.", setting="near_cache"
        )
    if near_cache_bytes is not None and (not near_cache or near_cache_bytes < 1):
        raise ConfigurationError(
            f"near_cache_bytes={near_cache_bytes!r} needs near_cache > 0 and a positive size.",
            setting="near_cache_bytes",
        )
    if prefix and not near_cache:
        raise ConfigurationError("near_cache_prefix needs near_cache > 0.", setting="near_cache_prefix")
    # A URL's client factory (Sentinel, Cluster) is fine: the listeners are built from the URL.
    if near_cache and client is not None and not isinstance(client, partial):
        raise ConfigurationError(
            "near_cache needs the backend to build its own client (a URL or host/port), "
            "not a ready client: its listeners connect as the client does.",
            setting="near_cache",
        )


def no_retry() -> Retry:
    """redis-py's own retry turned off: the backend retries, knowing what it retries."""
    return Retry(NoBackoff(), 0)


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


def _aio_no_retry() -> Any:
    from redis.asyncio.retry import Retry as AsyncRetry

    return AsyncRetry(NoBackoff(), 0)


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
        "retry": no_retry(),
    }
    sentinel = Sentinel(parsed.nodes, sentinel_kwargs=sentinel_kwargs, **parsed.connection)  # type: ignore[no-untyped-call]
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        parsed.service,
        db=parsed.db,
        max_connections=parsed.max_connections,
        timeout=parsed.pool_timeout,
        retry=no_retry(),
        connection_pool_class=BlockingSentinelPool,
    )
    return client


class BlockingSentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """redis-py's Sentinel pool (finds the master) that waits for a free connection (blocks).

    The two compose: the Sentinel pool only decides where connections go, the
    blocking pool how many there are and how long a caller waits for one.
    """


def _cluster_client(parsed: ClusterURL) -> RedisCluster:
    # RedisCluster asks a node for the slot map as it is built, so this connects.
    # Its own retry follows MOVED/ASK and re-reads the slot map after a failover; the
    # backend's retry of lost connections comes on top, knowing what it retries.
    nodes = [ClusterNode(host, port) for host, port in parsed.nodes]  # type: ignore[no-untyped-call]
    return RedisCluster(startup_nodes=nodes, retry=_cluster_retry(parsed.retries), **parsed.connection)


def _cluster_retry(retries: int) -> Retry:
    from redis.backoff import ExponentialWithJitterBackoff

    return Retry(
        ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries, supported_errors=(redis.ConnectionError,)
    )
