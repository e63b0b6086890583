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
import time
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from functools import partial
from typing import Any
from typing import TypeVar

import redis
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

from cachekit.backends.breaker import CircuitBreaker
from cachekit.backends.redis._clients import SYNC
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
from cachekit.backends.redis._urls import DEFAULT_MAX_CONNECTIONS
from cachekit.backends.redis._urls import DEFAULT_MAX_VALUE_SIZE
from cachekit.backends.redis._urls import DEFAULT_POOL_TIMEOUT
from cachekit.backends.redis._urls import DEFAULT_SOCKET_CONNECT_TIMEOUT
from cachekit.backends.redis._urls import DEFAULT_SOCKET_TIMEOUT
from cachekit.backends.redis._urls import Standalone
from cachekit.backends.redis.lock import RedisLock as RedisLock
from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import ConfigurationError

_T = TypeVar("_T")


class RedisBackend(RedisCore):
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

    _clients = SYNC
    _kind = "RedisBackend"
    _near_variant = "cachekit.backends.redis._sync_near:NearRedisBackend"

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
        scan_count: int = BATCH,
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
        self._socket_timeout = socket_timeout
        self._guard = threading.Lock()
        stored = (max_value_size, flush_db_on_clear, scan_count)
        self._setup(server, client, stored, (breaker_failures, breaker_window, breaker_cooldown))

    # -- construction ------------------------------------------------------------

    def _connect(self) -> Any:
        """Build the client on first use (Cluster clients connect as they are built)."""
        self._breaker.before_call()
        with self._guard:
            if self._client is None:
                self._bind_new()
            return self._client

    # -- errors, retries and the breaker -------------------------------------------

    def _recover(
        self,
        breaker: CircuitBreaker,
        exc: BaseException,
        operation: str,
        key: str | None,
        again: Callable[[], _T] | None,
    ) -> _T:
        """After a failed call: run ``again`` (safe to repeat) up to ``retries`` times, or raise."""
        attempt = 0
        while again is not None and (pause := self._pause_before_retry(attempt, exc)) is not None:
            attempt += 1
            time.sleep(pause)
            try:
                result = again()
            except ERRORS as retried:
                exc = retried
            else:
                return self._succeeded(breaker, result)
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
        except ERRORS as exc:
            return self._recover(breaker, exc, operation, key, again)
        breaker.success()
        return result

    # -- the commands sent on the pool directly ------------------------------------

    @staticmethod
    def _command(pool: Any, command: tuple[Any, ...]) -> Any:
        """Send ``command`` on a connection of ``pool`` and return its reply (see ``direct_pool``).

        The connection disconnects itself on any error while sending or reading (a cut
        or partial reply leaves nothing behind for the next command); an error reply
        raises as from the client, leaving the connection clean.
        """
        connection = pool.get_connection(*CHECKOUT_ARGS)
        try:
            connection.send_packed_command(packed(connection, command))
            return connection.read_response()
        finally:
            pool.release(connection)

    def _run_script(self, name: str, keys: list[Any], args: list[Any], target: Any) -> Any:
        """Run the script ``name``: its ``EVALSHA`` sent directly when ``target`` is the direct client.

        After ``NOSCRIPT`` (a ``SCRIPT FLUSH``, a restart or a failover emptied the script
        cache) it is loaded and run by the redis-py ``Script`` call: ``SCRIPT LOAD`` and one
        more ``EVALSHA``, the round trips of the ``Script`` call alone. On a pipeline or any
        other client the ``Script`` call runs it, as without the direct path.
        """
        script = self._scripts[name]
        pool = self._direct
        if pool is not None and target is self._client:
            try:
                return self._command(pool, evalsha_command(script, keys, args))
            except NoScriptError:
                script.sha = target.script_load(script.script)
        return script(keys=keys, args=args, client=target)

    # -- reads ---------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """Return the value under ``key`` (``GET``), or ``None`` on a miss."""
        client = self._client or self._connect()
        wire = wire_key(key)
        breaker = self._breaker_for(wire) if self._cluster else self._breaker
        breaker.before_call()
        pool = self._direct
        try:
            value: bytes | None = client.get(wire) if pool is None else self._command(pool, ("GET", wire))
        except ERRORS as exc:
            read = partial(client.get, wire) if pool is None else partial(self._command, pool, ("GET", wire))
            again: bytes | None = self._recover(breaker, exc, "GET", key, read)
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
        wire = wire_keys(keys)
        if self._cluster:
            return self._cluster_get_many(client, keys, wire)
        return found(keys, self._read(client, wire))

    def get_values(self, keys: Sequence[str]) -> list[bytes | None]:
        """The value under each of ``keys``, in order, ``None`` for a miss: :meth:`get_many` by position.

        ``Cache.get_many`` reads this way: it names the values by position, so no dict
        of stored keys is built for it. It is ``get_many``'s twin, never a way around it:
        a ``get_many`` of a subclass (the near cache's), a mixin or a patch, on the class
        or on this backend, answers instead.
        """
        get_many = self.get_many
        if getattr(get_many, "__func__", None) is not _PLAIN_GET_MANY:
            hits = get_many(keys)
            return list(map(hits.get, keys))
        if not keys:
            return []
        client = self._client or self._connect()
        wire = wire_keys(keys)
        if self._cluster:
            return list(map(self._cluster_get_many(client, keys, wire).get, keys))
        return self._read(client, wire)

    def _read(self, client: Any, wire: Sequence[str | bytes]) -> list[bytes | None]:
        """The ``MGET`` of :meth:`get_many` behind the breaker, retried after a lost connection."""
        breaker = self._breaker
        breaker.before_call()
        try:
            values = self._mget(client, wire)
        except ERRORS as exc:
            values = self._recover(breaker, exc, "MGET", None, partial(self._mget, client, wire))
        else:
            breaker.success()
        return values

    def _mget(self, client: Any, wire: Sequence[str | bytes]) -> list[bytes | None]:
        """One ``MGET``: sent on a connection of the pool itself where that is safe (see ``direct_pool``)."""
        pool = self._direct
        values: list[bytes | None] = (
            client.mget(wire) if pool is None else self._command(pool, ("MGET", *wire))
        )
        return values

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
            except ERRORS as exc:
                failures.append(self._fail(breaker, exc, operation))
                continue
            breaker.success()
        self._raise_node_failures(failures, len(groups), operation)

    def _cluster_get_many(
        self, client: Any, keys: Sequence[str], wire: Sequence[str | bytes]
    ) -> dict[str, bytes]:
        hits: dict[str, bytes] = {}

        def run(indexes: list[int]) -> None:
            self._keep_hits(hits, keys, indexes, client.mget_nonatomic([wire[i] for i in indexes]))

        self._each_node(client, wire, "MGET", run)
        return hits

    def gets(self, key: str) -> tuple[bytes, Any] | None:
        """Return ``(value, token)`` for :meth:`cas`, or ``None``; the token is the value read."""
        value = self.get(key)
        return None if value is None else (value, value)

    # -- writes --------------------------------------------------------------------

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value`` (``SET ... PX``); ``ttl`` ``None`` keeps it until deleted.

        :raises BackendError: if ``value`` is larger than ``max_value_size``.
        """
        args = self._set_args(key, value, ttl)
        client = self._client or self._connect()
        breaker = self._breaker_for(args[1]) if self._cluster else self._breaker
        breaker.before_call()
        try:
            client.execute_command(*args)
        except ERRORS as exc:
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
        self._check_sizes(items)
        client = self._client or self._connect()
        if self._cluster:
            self._cluster_set_many(client, items, ttl)
            return
        for run in self._set_batches(client, items, ttl):
            self._call(None, "set_many", None, run, run)  # SET of a given value is safe to repeat

    def _cluster_set_many(self, client: Any, items: Mapping[str, bytes], ttl: float | None) -> None:
        pairs = [(wire_key(key), value) for key, value in items.items()]
        px = None if ttl is None else ms(ttl)

        def run(indexes: list[int]) -> None:
            pipe = client.pipeline(transaction=False)
            self._queue_sets(pipe, pairs, indexes, px)
            pipe.execute()

        self._each_node(client, [wire for wire, _ in pairs], "set_many", run)

    def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` holds nothing (``SET NX PX``).

        Retried after a lost connection by a script that also counts the key already
        holding this very value as added (the lost attempt stored it).
        """
        wire, calls = self._add_calls(key, value, ttl)
        return bool(self._write(wire, "SET NX", key, calls))

    def cas(self, key: str, value: bytes, token: Any, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` still holds ``token`` (the value :meth:`gets` read).

        One script run, atomic on the server; ``False`` if the key changed or vanished.
        Retried after a lost connection by a script that counts the key already holding
        ``value`` as stored (the lost run applied); the first run never does, so two
        writers of equal bytes from one token cannot both win.
        """
        planned = self._cas_calls(key, value, token, ttl)
        return planned is not None and bool(self._write(planned[0], "cas", key, planned[1]))

    def delete(self, key: str) -> bool:
        """Remove ``key`` (``UNLINK``); return whether it was there."""
        wire, calls = self._delete_calls(key)
        return bool(self._write(wire, "UNLINK", key, calls))

    def _write(self, route: str | bytes, operation: str, key: str | None, calls: WriteCalls) -> Any:
        """Run a write given as ``first(target)`` on the client, or, on a durable view, with ``WAIT``."""
        first, again = calls
        client = self._client or self._connect()
        if self._wait is None:
            return self._call(route, operation, key, partial(first, client), partial(again, client))
        replicas, timeout_ms = self._wait

        def waited(queue: Callable[[Any], Any]) -> Callable[[], list[Any]]:
            def run() -> list[Any]:
                pipe = client.pipeline(transaction=False)
                queue(pipe)
                pipe.execute_command("WAIT", replicas, timeout_ms)
                results: list[Any] = pipe.execute()
                return results

            return run

        return self._waited(self._call(route, operation, key, waited(first), waited(again)), operation, key)

    def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in one ``UNLINK`` (one per slot, pipelined per node, in Cluster mode)."""
        if not keys:
            return
        client = self._client or self._connect()
        wire = wire_keys(keys)
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
        wire, run = self._incr_call(key, delta)
        try:
            result = self._call(wire, "INCRBY", key, run)
        except BackendError as exc:
            raise incr_error(exc, key, delta) from exc.__cause__
        return self._incr_result(result, key)

    def touch(self, key: str, ttl: float | None) -> bool:
        """Give ``key`` a new ``ttl`` (``PEXPIRE``, or ``PERSIST`` for ``None``)."""
        wire, run = self._touch_call(self._client or self._connect(), key, ttl)
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
        for key in client.scan_iter(match=glob_escape(prefix) + "*", count=self.scan_count):
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
        except ERRORS as exc:
            raise self._error(exc, "close") from exc

    def server_stats(self) -> dict[str, Any]:
        """Return Redis's own ``INFO`` (per node for a Cluster), for ``cachekit stats``.

        :raises BackendUnavailableError: if the server cannot be reached.
        """
        try:
            info: dict[str, Any] = self.client.info()
        except ERRORS as exc:
            raise self._error(exc, "INFO") from exc
        return info

    def lock(self, name: str, *, ttl: float) -> RedisLock:
        """Return a lock named ``name`` held in Redis for at most ``ttl`` seconds."""
        return RedisLock(self, name, ttl)


#: The backend's own get_many, told from a subclass's, a mixin's or a patch's by get_values.
_PLAIN_GET_MANY = RedisBackend.get_many


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
