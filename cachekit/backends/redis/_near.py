"""The near cache: bounded local memory in front of one Redis, kept exact by the server.

Private to :mod:`cachekit.backends.redis.sync`; turned on with ``near_cache=N`` (entries) and
optionally ``near_cache_bytes=B`` on a standalone ``redis://`` backend.

Coherence comes from Redis ``CLIENT TRACKING`` in ``BCAST`` mode: one listener
connection per process asks for invalidations of every key and redirects them to itself
(RESP2 ``SUBSCRIBE __redis__:invalidate``). Because broadcast tracking does not depend on
which connection read a key, the pooled data connections need no tracking of their own,
and losing one of them loses no invalidation. The rules:

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
from typing import Any

import redis

from cachekit.backends.locmem import LocMemBackend
from cachekit.backends.redis.sync import RedisBackend
from cachekit.backends.redis.sync import _wire_all
from cachekit.backends.redis.sync import redact_url
from cachekit.exceptions import BackendError

logger = logging.getLogger(__name__)

#: Seconds between PINGs on an idle listener; a listener that does not answer within
#: ``socket_timeout`` after one is treated as lost and local memory is flushed.
PING_INTERVAL = 1.0
_CHANNEL = b"__redis__:invalidate"


class NearCache:
    """A local store of Redis values, emptied by the server's invalidations.

    :param connect: returns a new, unconnected RESP2 ``redis.Connection`` to the server.
    :param max_entries: least recently used entries are evicted above this count.
    :param max_bytes: bound on the summed size of the stored values (``None``: locmem's default).
    :param socket_timeout: seconds the listener waits for a PING's answer.
    :param prefix: only keys starting with this are kept locally; Redis then sends
        invalidations for those only (``BCAST PREFIX``).
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        max_entries: int,
        max_bytes: int | None = None,
        socket_timeout: float = 0.5,
        ping_interval: float = PING_INTERVAL,
        prefix: str = "",
    ) -> None:
        self._connect = connect
        #: Only keys starting with this are kept (and invalidated by the server).
        self.prefix = prefix
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._socket_timeout = socket_timeout
        self._ping_interval = ping_interval
        self._new_store()
        self._lock = threading.Lock()
        #: Bumped on every reconnect and flush; a read that began in another generation never fills.
        self._generation = 0
        self._healthy = False
        self._reading: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.hits = self.misses = self.invalidations = self.flushes = 0
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    def _new_store(self) -> None:
        options: dict[str, Any] = {"max_entries": self.max_entries}
        if self.max_bytes is not None:
            options["max_bytes"] = self.max_bytes
        self._store = LocMemBackend(f"cachekit-near-{uuid.uuid4().hex}", **options)

    # -- the read path ---------------------------------------------------------------

    def lookup(self, key: str) -> bytes | None:
        """The local value of ``key``, or ``None`` (also while not subscribed)."""
        if self._healthy:
            value: bytes | None = self._store.get(key)
            if value is not None:
                self.hits += 1
                return value
        elif self._thread is None:
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
                if key in self._reading:
                    self._dirty.add(key)

    def flush(self) -> None:
        """Drop everything; reads in flight will not fill."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        self._generation += 1
        self._store.clear()
        self._dirty.update(self._reading)
        self.flushes += 1

    def _lost(self) -> None:
        with self._lock:
            self._healthy = False
            self._flush_locked()

    # -- the listener --------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            thread = threading.Thread(target=self._listen, name="cachekit-near-cache", daemon=True)
            self._thread = thread
        thread.start()

    def wait_ready(self, timeout: float) -> bool:
        """Start the listener if needed; wait until it is subscribed. For tests and warm-up."""
        if self._thread is None:
            self._start()
        deadline = time.monotonic() + timeout
        while not self._healthy and time.monotonic() < deadline:
            time.sleep(0.005)
        return self._healthy

    @property
    def ready(self) -> bool:
        """Whether the listener is subscribed (local memory may serve)."""
        return self._healthy

    def _listen(self) -> None:
        pause = 0.05
        while not self._stop.is_set():
            conn: Any = None
            try:
                conn = self._connect()
                self._subscribe(conn)
                pause = 0.05
                self._pump(conn)
            except (redis.RedisError, OSError, BackendError) as exc:
                logger.info("near cache listener lost (%s); local memory dropped, reconnecting", exc)
            except Exception:  # a bug must not leave the listener dead and local memory off for good
                logger.exception("near cache listener failed; local memory dropped, reconnecting")
            finally:
                self._lost()
                if conn is not None:
                    conn.disconnect()
            self._stop.wait(pause)
            pause = min(1.0, pause * 2)

    def _subscribe(self, conn: Any) -> None:
        conn.connect()
        conn.send_command("CLIENT", "ID")
        own_id = conn.read_response()
        prefix = ("PREFIX", self.prefix.encode("utf-8", "surrogatepass")) if self.prefix else ()
        conn.send_command("CLIENT", "TRACKING", "on", "BCAST", "REDIRECT", own_id, *prefix)
        conn.read_response()
        conn.send_command("SUBSCRIBE", _CHANNEL)
        conn.read_response()
        with self._lock:
            self._flush_locked()  # nothing read before this point was tracked
            self._healthy = True

    def _pump(self, conn: Any) -> None:
        """Apply invalidations; PING after ``ping_interval`` of silence, give up without an answer."""
        heard = time.monotonic()
        ping_deadline: float | None = None
        while not self._stop.is_set():
            if conn.can_read(timeout=0.1):
                message = conn.read_response()
                heard, ping_deadline = time.monotonic(), None  # any traffic proves the link alive
                if isinstance(message, list) and len(message) == 3 and message[0] == b"message":
                    self._on_invalidate(message[2])
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

    def close(self) -> None:
        """Stop the listener and drop local memory."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)
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
    """In a forked child: no listener thread survived, so serve nothing until a new one runs."""
    near = ref()
    if near is None:
        return
    near._lock = threading.Lock()
    near._healthy = False
    near._thread = None
    near._reading = {}
    near._dirty = set()
    near._generation += 1
    near._new_store()


def listener_factory(pool: Any) -> Callable[[], Any]:
    """New RESP2 connections like ``pool``'s (TCP, TLS or Unix socket), for the listener.

    Without health checks: redis-py's would expect ``PONG``, which a subscribed
    connection answers as ``["pong", ""]``; the listener pings by itself.
    """
    kwargs = {**pool.connection_kwargs, "protocol": 2, "health_check_interval": 0}
    kwargs.pop("retry", None)
    connection_class = pool.connection_class
    return lambda: connection_class(**kwargs)


class NearRedisBackend(RedisBackend):
    """A standalone :class:`RedisBackend` with a :class:`NearCache` in front of its reads.

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
        self._near = NearCache(
            self._listener_connection,
            prefix=near_cache_prefix,
            max_entries=near_cache,
            max_bytes=near_cache_bytes,
            socket_timeout=self._socket_timeout,
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

    def get(self, key: str) -> bytes | None:
        """Return the local value of ``key`` if exact, else read Redis (and keep it locally)."""
        near = self._near
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

        def run() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            pipe.mget(wire)
            for name in wire:
                pipe.pttl(name)
            results: list[Any] = pipe.execute()
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
