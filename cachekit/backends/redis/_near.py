"""The near cache: bounded local memory in front of Redis, kept exact by the server.

Private to :mod:`cachekit.backends.redis`; turned on with ``near_cache=N`` (entries) and
optionally ``near_cache_bytes=B`` on a ``redis://``, ``redis+sentinel://`` or
``redis+cluster://`` backend (sync and asyncio).

Coherence comes from Redis ``CLIENT TRACKING`` in ``BCAST`` mode: one listener
connection per process (per primary on a Cluster) asks for invalidations of every key
and redirects them to itself (RESP2 ``SUBSCRIBE __redis__:invalidate``). Because
broadcast tracking does not depend on which connection read a key, the pooled data
connections need no tracking of their own, and losing one of them loses no
invalidation. On a Cluster a watcher reads ``CLUSTER SLOTS`` every ping interval: a
new primary gets a listener, and any change of the slot map (a moved slot, a failover)
flushes local memory. The rules:

- A key is dropped from local memory as soon as its invalidation is read (another
  process's write, an expiry, an eviction), and everything is dropped on ``FLUSHDB``/
  ``FLUSHALL`` (a null invalidation).
- While the listener is not subscribed (starting, reconnecting after a lost connection
  or a server restart, or silent for longer than the ping interval plus the socket
  timeout) local memory is empty and serves nothing; every read goes to Redis.
- A read in flight when an invalidation of its key arrives (or a local write of it
  happens, or the listener reconnects) does not fill local memory: the reply may predate
  the write (the known hazard of client-side caching).
- Writes made through this backend drop their keys locally when they return (and when
  they fail, as their outcome is then unknown).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from functools import partial
from typing import Any

import redis

from cachekit.backends.locmem import LocMemBackend
from cachekit.backends.locmem import _tick
from cachekit.backends.redis._clients import aio_cluster_client
from cachekit.backends.redis._clients import cluster_client
from cachekit.backends.redis._urls import ClusterURL
from cachekit.backends.redis.sync import RedisBackend
from cachekit.backends.redis.sync import _wire_all
from cachekit.backends.redis.sync import redact_url
from cachekit.exceptions import BackendError

logger = logging.getLogger(__name__)

#: Seconds between PINGs on an idle listener; a listener that does not answer within
#: ``socket_timeout`` after one is treated as lost and local memory is flushed.
PING_INTERVAL = 1.0
_monotonic = time.monotonic
_CHANNEL = b"__redis__:invalidate"


class DecodedMemo(dict[str, tuple[bytes, object, Any]]):
    """Decoded values beside the near cache's bytes: ``stored key -> (bytes, serializer, value)``.

    Filled and read by the ``Cache`` front (``FrontCore.near_memo``) with immutable values
    only (copy isolation as local memory gives). An entry answers only while the near
    cache returns the very ``bytes`` object it was decoded from (``is``), so it can never
    outlive the local value: a refill, an invalidation or an expiry hands out other bytes.
    """

    def __init__(self, bound: int) -> None:
        super().__init__()
        self.bound = bound

    def keep(self, key: str, data: bytes, serializer: object, value: Any) -> None:
        """Remember ``value`` decoded from ``data`` by ``serializer``; emptied when over the bound."""
        if len(self) >= self.bound:
            self.clear()  # entries of evicted keys linger until then; they can no longer match
        self[key] = (data, serializer, value)


#: A topology: a signature of the slot map (compared for changes) and the primaries'
#: listener connections, by ``host:port``.
Topology = tuple[object, dict[str, Callable[[], Any]]]


class NearCache:
    """A local store of Redis values, emptied by the server's invalidations.

    :param connect: returns a new, unconnected RESP2 ``redis.Connection`` to the server
        (standalone and Sentinel: one listener).
    :param topology: instead of ``connect`` (Cluster): returns the current
        :data:`Topology`; polled every ``ping_interval``, one listener per primary, and
        local memory is flushed whenever the slot map changes (a moved slot, a failover).
    :param max_entries: least recently used entries are evicted above this count.
    :param max_bytes: bound on the summed size of the stored values (``None``: locmem's default).
    :param socket_timeout: seconds a listener waits for a PING's answer.
    :param prefix: only keys starting with this are kept locally; Redis then sends
        invalidations for those only (``BCAST PREFIX``).
    :param channel: instead of ``CLIENT TRACKING``, listen on this Redis pub/sub channel,
        where writers publish the keys they wrote (:func:`invalidation_message`); for
        backends without server help (memcached).
    :param local_only: neither ``connect`` nor ``topology``: no listener, always ready;
        entries live only as long as the fill's TTL (memcached's ``near_cache_ttl``).
    """

    def __init__(
        self,
        connect: Callable[[], Any] | None = None,
        *,
        topology: Callable[[], Topology] | None = None,
        max_entries: int,
        max_bytes: int | None = None,
        socket_timeout: float = 0.5,
        ping_interval: float = PING_INTERVAL,
        prefix: str = "",
        channel: str | None = None,
        local_only: bool = False,
    ) -> None:
        if sum((connect is not None, topology is not None, local_only)) != 1:
            raise TypeError("NearCache needs one of connect, topology and local_only")
        self._connect = connect
        self._topology = topology
        self._channel = channel
        self.local_only = local_only
        #: Only keys starting with this are kept (and invalidated by the server).
        self.prefix = prefix
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._socket_timeout = socket_timeout
        self._ping_interval = ping_interval
        self._new_store()
        #: Decoded values for the ``Cache`` front (see :class:`DecodedMemo`).
        self.decoded = DecodedMemo(max_entries)
        self._lock = threading.Lock()
        #: Bumped on every reconnect and flush; a read that began in another generation never fills.
        self._generation = 0
        self._healthy = False
        self._reading: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._started = False
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        #: Listener threads by node (``""`` for the one server), each with its stop event.
        self._listeners: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self._expected: set[str] = set()
        self._subscribed: set[str] = set()
        self._signature: object = None
        self.hits = self.misses = self.invalidations = self.flushes = 0
        if local_only:
            self._started = self._healthy = True
            self._expected = self._subscribed = {""}
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    def _new_store(self) -> None:
        options: dict[str, Any] = {"max_entries": self.max_entries}
        if self.max_bytes is not None:
            options["max_bytes"] = self.max_bytes
        self._store = LocMemBackend(f"cachekit-near-{uuid.uuid4().hex}", **options)
        self._data = self._store._data  # the read path's dict (see NearRedisBackend.get)

    # -- the read path ---------------------------------------------------------------

    def lookup(self, key: str) -> bytes | None:
        """The local value of ``key``, or ``None`` (also while not subscribed)."""
        if self._healthy:
            value: bytes | None = self._store.get(key)
            if value is not None:
                self.hits += 1
                return value
        elif not self._started:
            self._start()
        self.misses += 1
        return None

    def begin(self, keys: Iterable[str]) -> int | None:
        """Register reads of ``keys`` about to be sent; returns the ticket for :meth:`end`."""
        with self._lock:
            if not self._healthy:
                return None
            for key in keys:
                self._reading[key] = self._reading.get(key, 0) + 1
            return self._generation

    def end(self, ticket: int | None, found: Iterable[tuple[str, bytes | None, int]]) -> None:
        """Finish reads begun with ``ticket``; ``found`` holds ``(key, value, pttl_ms)``.

        A value is stored only if no invalidation of its key, local write or reconnect
        happened since :meth:`begin`.
        """
        if ticket is None:
            return
        with self._lock:
            fill = ticket == self._generation and self._healthy
            for key, value, pttl in found:
                left = self._reading.get(key, 0) - 1
                clean = key not in self._dirty
                if left <= 0:
                    self._reading.pop(key, None)
                    self._dirty.discard(key)
                else:
                    self._reading[key] = left
                if fill and clean and value is not None and pttl != -2:
                    self._store.set(key, value, None if pttl < 0 else max(pttl, 1) / 1000)

    # -- invalidation --------------------------------------------------------------------

    def invalidate(self, keys: Iterable[str]) -> None:
        """Drop ``keys`` locally; reads of them in flight will not fill."""
        with self._lock:
            for key in keys:
                self._store.delete(key)
                self.decoded.pop(key, None)
                if key in self._reading:
                    self._dirty.add(key)

    def flush(self) -> None:
        """Drop everything; reads in flight will not fill."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        self._generation += 1
        self._store.clear()
        self.decoded.clear()
        self._dirty.update(self._reading)
        self.flushes += 1

    def _lost(self, node: str | None = None) -> None:
        """``node``'s stream (or, with ``None``, every stream) is gone: serve nothing until back."""
        with self._lock:
            if node is None:
                self._subscribed.clear()
                self._healthy = False
            else:
                self._subscribed.discard(node)
                self._settle_locked()  # False unless ``node`` is no longer a primary
            self._flush_locked()

    def _settle_locked(self) -> None:
        # On a Cluster also the slot map must be known: an unreadable one may hide a new primary.
        known = self._topology is None or self._signature is not None
        self._healthy = known and bool(self._expected) and self._expected <= self._subscribed

    # -- the listeners -----------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            self._stop.clear()
        if self._topology is None:
            with self._lock:
                self._expected = {""}
            assert self._connect is not None
            self._add_listener("", self._connect)
        else:
            watcher = threading.Thread(target=self._watch, name="cachekit-near-topology", daemon=True)
            self._watcher = watcher
            watcher.start()

    def _add_listener(self, node: str, connect: Callable[[], Any]) -> None:
        stop = threading.Event()
        thread = threading.Thread(
            target=self._listen, args=(node, connect, stop), name=f"cachekit-near-cache {node}", daemon=True
        )
        thread.start()  # before it is listed: close() joins what it finds listed
        self._listeners[node] = (thread, stop)

    def wait_ready(self, timeout: float) -> bool:
        """Start the listener(s) if needed; wait until subscribed. For tests and warm-up."""
        if not self._started:
            self._start()
        deadline = time.monotonic() + timeout
        while not self._healthy and time.monotonic() < deadline:
            time.sleep(0.005)
        return self._healthy

    @property
    def ready(self) -> bool:
        """Whether every listener is subscribed (local memory may serve)."""
        return self._healthy

    def _watch(self) -> None:
        """Cluster: follow the slot map; a change flushes, and each primary gets a listener."""
        assert self._topology is not None
        while not self._stop.is_set():
            try:
                signature, primaries = self._topology()
            except (redis.RedisError, OSError, BackendError) as exc:
                if self._signature is not None:
                    logger.info("near cache: cluster slot map unreadable (%s); local memory dropped", exc)
                with self._lock:
                    self._signature = None  # unknown: the next map read counts as a change
                    self._healthy = False
                    self._flush_locked()
            except Exception:  # a bug must not leave local memory serving an unwatched map
                logger.exception("near cache: reading the cluster slot map failed; local memory dropped")
                self._lost()
            else:
                self._apply(signature, primaries)
            self._stop.wait(self._ping_interval)

    def _apply(self, signature: object, primaries: dict[str, Callable[[], Any]]) -> None:
        with self._lock:
            if signature == self._signature:
                return
            changed = self._signature is not None
            self._signature = signature
            self._expected = set(primaries)
            self._flush_locked()  # a slot moved or a primary changed: what it sent before may be gone
            self._settle_locked()
        if changed:
            logger.info("near cache: cluster slot map changed; local memory dropped")
        for node in [node for node in self._listeners if node not in primaries]:
            _, stop = self._listeners.pop(node)
            stop.set()
        for node, connect in primaries.items():
            if node not in self._listeners:
                self._add_listener(node, connect)

    def _listen(self, node: str, connect: Callable[[], Any], stop: threading.Event) -> None:
        pause = 0.05
        while not (stop.is_set() or self._stop.is_set()):
            conn: Any = None
            try:
                conn = connect()
                self._subscribe(node, conn)
                pause = 0.05
                self._pump(conn, stop)
            except (redis.RedisError, OSError, BackendError) as exc:
                logger.info(
                    "near cache listener %slost (%s); local memory dropped, reconnecting",
                    f"of {node} " if node else "",
                    exc,
                )
            except Exception:  # a bug must not leave the listener dead and local memory off for good
                logger.exception("near cache listener failed; local memory dropped, reconnecting")
            finally:
                self._lost(node)
                if conn is not None:
                    conn.disconnect()
            stop.wait(pause)
            pause = min(1.0, pause * 2)

    def _subscribe(self, node: str, conn: Any) -> None:
        conn.connect()
        if self._channel is not None:
            conn.send_command("SUBSCRIBE", self._channel)
            conn.read_response()
        else:
            conn.send_command("CLIENT", "ID")
            own_id = conn.read_response()
            prefix = ("PREFIX", self.prefix.encode("utf-8", "surrogatepass")) if self.prefix else ()
            conn.send_command("CLIENT", "TRACKING", "on", "BCAST", "REDIRECT", own_id, *prefix)
            conn.read_response()
            conn.send_command("SUBSCRIBE", _CHANNEL)
            conn.read_response()
        with self._lock:
            self._flush_locked()  # nothing read before this point was tracked
            self._subscribed.add(node)
            self._settle_locked()

    def _pump(self, conn: Any, stop: threading.Event) -> None:
        """Apply invalidations; PING after ``ping_interval`` of silence, give up without an answer."""
        heard = time.monotonic()
        ping_deadline: float | None = None
        while not (stop.is_set() or self._stop.is_set()):
            if conn.can_read(timeout=0.1):
                message = conn.read_response()
                heard, ping_deadline = time.monotonic(), None  # any traffic proves the link alive
                if isinstance(message, list) and len(message) == 3 and message[0] == b"message":
                    if self._channel is None:
                        self._on_invalidate(message[2])
                    else:
                        self._on_published(message[2])
                continue
            now = time.monotonic()
            if ping_deadline is not None:
                if now > ping_deadline:
                    raise redis.TimeoutError("near cache listener: no answer to PING")
            elif now - heard >= self._ping_interval:
                conn.send_command("PING")
                ping_deadline = now + self._socket_timeout

    def _on_invalidate(self, keys: list[bytes] | None) -> None:
        if keys is None:
            self.flush()
            return
        names: list[str] = []
        for key in keys:
            try:
                names.append(key.decode("utf-8", "surrogatepass"))
            except UnicodeDecodeError:
                continue  # not UTF-8, so not a key this backend wrote or reads
        self.invalidations += len(names)
        self.invalidate(names)

    def _on_published(self, payload: bytes) -> None:
        """A writer's message on the channel: a JSON list of keys, or ``null`` (flush)."""
        try:
            keys = json.loads(payload)
        except ValueError:
            keys = None  # not ours, or damaged: dropping everything is the safe reading
        if not isinstance(keys, list):
            self.flush()
            return
        names = [key for key in keys if isinstance(key, str)]
        self.invalidations += len(names)
        self.invalidate(names)

    def close(self) -> None:
        """Stop the listeners and drop local memory."""
        self._stop.set()
        threads = [thread for thread, _ in self._listeners.values()]
        if self._watcher is not None:
            threads.append(self._watcher)
        self._listeners = {}
        self._watcher = None
        for thread in threads:
            if thread is not threading.current_thread() and thread.ident is not None:
                thread.join(timeout=2)
        with self._lock:
            self._started = self.local_only
            self._signature = None
        if self.local_only:
            self.flush()
        else:
            self._lost()

    def stats(self) -> dict[str, int]:
        """Near-cache counters for ``Cache.stats()``."""
        return {
            "near_hits": self.hits,
            "near_misses": self.misses,
            "near_invalidations": self.invalidations,
            "near_flushes": self.flushes,
            "near_ready": int(self._healthy),
        }


def _after_fork(ref: weakref.ref[NearCache]) -> None:
    """In a forked child: no listener thread survived, so serve nothing until new ones run."""
    near = ref()
    if near is None:
        return
    near._lock = threading.Lock()
    near._healthy = near._started = near.local_only
    near._stop = threading.Event()
    near._watcher = None
    near._listeners = {}
    near._subscribed = set()
    near._signature = None
    near._reading = {}
    near._dirty = set()
    near._generation += 1
    near._new_store()
    near.decoded.clear()


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


def invalidation_message(keys: Iterable[str] | None) -> str:
    """What a writer publishes on a near cache's channel: the keys it wrote, or ``None`` for all."""
    return json.dumps(None if keys is None else list(keys))


def listener_factory(pool: Any) -> Callable[[], Any]:
    """New RESP2 connections like ``pool``'s (TCP, TLS or Unix socket), for the listener.

    Without health checks: redis-py's would expect ``PONG``, which a subscribed
    connection answers as ``["pong", ""]``; the listener pings by itself.
    """
    kwargs = {**pool.connection_kwargs, "protocol": 2, "health_check_interval": 0}
    kwargs.pop("retry", None)
    connection_class = pool.connection_class
    return lambda: connection_class(**kwargs)


def cluster_url(client: object) -> ClusterURL | None:
    """The parsed ``redis+cluster://`` URL behind a backend's client factory, if it is one."""
    if isinstance(client, partial) and client.func in (cluster_client, aio_cluster_client):
        parsed = client.args[0]
        return parsed if isinstance(parsed, ClusterURL) else None
    return None


class NearRedisBackend(RedisBackend):
    """A :class:`RedisBackend` (standalone, Sentinel or Cluster) with a :class:`NearCache` in front.

    Built by ``RedisBackend(near_cache=N, ...)``/``from_url(..., near_cache=N)``. Only
    ``get`` and ``get_many`` are served locally; ``gets``/``cas``, ``incr``, ``add``, the
    lock and every script always go to Redis, and every write drops its keys locally.
    """

    def __init__(
        self,
        *,
        near_cache: int,
        near_cache_bytes: int | None = None,
        near_cache_prefix: str = "",
        **options: Any,
    ) -> None:
        super().__init__(
            near_cache=near_cache,
            near_cache_bytes=near_cache_bytes,
            near_cache_prefix=near_cache_prefix,
            **options,
        )
        cluster = cluster_url(options.get("client"))
        self._near_cluster = cluster is not None
        sizes: dict[str, Any] = {"max_entries": near_cache, "max_bytes": near_cache_bytes}
        if cluster is not None:
            self._near = NearCache(
                topology=cluster_topology(cluster.nodes, cluster.connection),
                prefix=near_cache_prefix,
                socket_timeout=cluster.connection["socket_timeout"],
                **sizes,
            )
        else:
            self._near = NearCache(
                self._listener_connection,
                prefix=near_cache_prefix,
                socket_timeout=self._socket_timeout,
                **sizes,
            )

    def _listener_connection(self) -> Any:
        # Through the client's pool: a Sentinel-managed pool points it at the current master.
        return listener_factory(self.client.connection_pool)()

    def __repr__(self) -> str:
        return f"RedisBackend({redact_url(self._location)!r}, near_cache={self._near.max_entries})"

    @property
    def near(self) -> NearCache:
        """The near cache (its counters, ``ready``, ``wait_ready()``)."""
        return self._near

    def near_stats(self) -> dict[str, int]:
        """``near_hits``, ``near_misses``, ``near_invalidations``, ``near_flushes``, ``near_ready``."""
        return self._near.stats()

    def near_memo(self) -> DecodedMemo:
        """Where a ``Cache`` keeps the decoded values of near hits (see :class:`DecodedMemo`)."""
        return self._near.decoded

    def get(self, key: str) -> bytes | None:
        """Return the local value of ``key`` if exact, else read Redis (and keep it locally)."""
        near = self._near
        if near._healthy:  # the hit path, inlined: LocMemBackend.get on the near store's dict
            entry = near._data.get(key)
            if entry is not None:
                expires = entry.expires
                if expires is None or expires > _monotonic():
                    entry.used = _tick()
                    near.hits += 1
                    held: bytes = entry.value
                    return held
        if near.prefix and not key.startswith(near.prefix):
            return RedisBackend.get(self, key)
        value = near.lookup(key)
        if value is not None:
            return value
        found = self._read_through([key])
        return found.get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Local values where held, one pipelined ``MGET`` + ``PTTL`` round trip for the rest."""
        near = self._near
        found: dict[str, bytes] = {}
        missing: list[str] = []
        if near.prefix and not all(key.startswith(near.prefix) for key in keys):
            return RedisBackend.get_many(self, keys)
        for key in keys:
            value = near.lookup(key)
            if value is None:
                missing.append(key)
            else:
                found[key] = value
        if missing:
            found.update(self._read_through(list(dict.fromkeys(missing))))
        return found

    def _read_through(self, keys: list[str]) -> dict[str, bytes]:
        near = self._near
        client = self._client or self._connect()
        wire = _wire_all(keys)
        cluster = self._near_cluster

        def run() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            if cluster:  # one GET per key: the cluster pipeline sends each to its slot's master
                for name in wire:
                    pipe.get(name)
            else:
                pipe.mget(wire)
            for name in wire:
                pipe.pttl(name)
            results: list[Any] = pipe.execute()
            if cluster:
                return [results[: len(wire)], *results[len(wire) :]]
            return results

        ticket = near.begin(keys)
        results: list[Any] = []
        try:
            results = self._call(None, "MGET", keys[0] if len(keys) == 1 else None, run, run)
        finally:
            values = results[0] if results else [None] * len(keys)
            ttls = results[1:] if results else [-2] * len(keys)
            near.end(ticket, zip(keys, values, ttls, strict=True))
        return {key: value for key, value in zip(keys, values, strict=True) if value is not None}

    def gets(self, key: str) -> tuple[bytes, Any] | None:
        """Always from Redis: a ``cas`` token must be the server's current value."""
        value = RedisBackend.get(self, key)
        return None if value is None else (value, value)

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """``SET``, then drop ``key`` locally."""
        try:
            super().set(key, value, ttl)
        finally:
            self._near.invalidate((key,))

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        """``MSET``/script, then drop the keys locally."""
        try:
            super().set_many(items, ttl)
        finally:
            self._near.invalidate(items)

    def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        """``SET NX``, then drop ``key`` locally."""
        try:
            return super().add(key, value, ttl)
        finally:
            self._near.invalidate((key,))

    def cas(self, key: str, value: bytes, token: Any, ttl: float | None) -> bool:
        """The compare-and-set script, then drop ``key`` locally."""
        try:
            return super().cas(key, value, token, ttl)
        finally:
            self._near.invalidate((key,))

    def delete(self, key: str) -> bool:
        """``UNLINK``, then drop ``key`` locally."""
        try:
            return super().delete(key)
        finally:
            self._near.invalidate((key,))

    def delete_many(self, keys: Sequence[str]) -> None:
        """``UNLINK``, then drop the keys locally."""
        try:
            super().delete_many(keys)
        finally:
            self._near.invalidate(keys)

    def incr(self, key: str, delta: int) -> int:
        """``INCRBY`` on the server, then drop ``key`` locally."""
        try:
            return super().incr(key, delta)
        finally:
            self._near.invalidate((key,))

    def touch(self, key: str, ttl: float | None) -> bool:
        """``PEXPIRE``/``PERSIST``, then drop ``key`` locally (its local expiry is stale)."""
        try:
            return super().touch(key, ttl)
        finally:
            self._near.invalidate((key,))

    def clear(self, prefix: str = "") -> None:
        """Clear Redis, then drop all local memory."""
        try:
            super().clear(prefix)
        finally:
            self._near.flush()

    def close(self) -> None:
        """Stop the listener, drop local memory, close pooled connections."""
        self._near.close()
        super().close()
