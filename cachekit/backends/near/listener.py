"""A near cache's invalidation streams: listener threads on RESP2 connections.

Coherence comes from Redis ``CLIENT TRACKING`` in ``BCAST`` mode: one listener
connection per process (per primary on a Cluster) asks for invalidations of every key
and redirects them to itself (RESP2 ``SUBSCRIBE __redis__:invalidate``). Because
broadcast tracking does not depend on which connection read a key, the pooled data
connections need no tracking of their own, and losing one of them loses no
invalidation. On a Cluster a watcher reads the slot map every ping interval: a new
primary gets a listener, and any change of the map (a moved slot, a failover) flushes
local memory. Backends without server help (memcached) listen instead on a Redis
pub/sub channel where writers publish the keys they wrote (:func:`invalidation_message`).
What local memory then serves, and when, is :mod:`cachekit.backends.near.store`'s rule.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

import redis

from cachekit.backends.near.store import LocalNear
from cachekit.exceptions import BackendError

logger = logging.getLogger("cachekit.backends.redis._near")

#: Seconds between PINGs on an idle listener; a listener that does not answer within
#: ``socket_timeout`` after one is treated as lost and local memory is flushed.
PING_INTERVAL = 1.0
_CHANNEL = b"__redis__:invalidate"

#: A topology: a signature of the slot map (compared for changes) and the primaries'
#: listener connections, by ``host:port``.
Topology = tuple[object, dict[str, Callable[[], Any]]]


class NearCache(LocalNear):
    """A local store of server values, emptied by the server's invalidations.

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
        super().__init__(
            max_entries=max_entries, max_bytes=max_bytes, prefix=prefix, needs_map=topology is not None
        )
        self._connect = connect
        self._topology = topology
        self._channel = channel
        self.local_only = local_only
        self._socket_timeout = socket_timeout
        self._ping_interval = ping_interval
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        #: Listener threads by node (``""`` for the one server), each with its stop event.
        self._listeners: dict[str, tuple[threading.Thread, threading.Event]] = {}
        if local_only:
            self._started = self._healthy = True
            self._expected = self._subscribed = {""}

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

    def _watch(self) -> None:
        """Cluster: follow the slot map; a change flushes, and each primary gets a listener."""
        assert self._topology is not None
        while not self._stop.is_set():
            try:
                signature, primaries = self._topology()
            except (redis.RedisError, OSError, BackendError) as exc:
                if self._signature is not None:
                    logger.info("near cache: cluster slot map unreadable (%s); local memory dropped", exc)
                self._map_unknown()
            except Exception:  # a bug must not leave local memory serving an unwatched map
                logger.exception("near cache: reading the cluster slot map failed; local memory dropped")
                self._lost()
            else:
                self._apply(signature, primaries)
            self._stop.wait(self._ping_interval)

    def _apply(self, signature: object, primaries: dict[str, Callable[[], Any]]) -> None:
        new, changed = self._new_map(signature, primaries)
        if not new:
            return
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
        self._subscribed_to(node)

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

    def _forked(self) -> None:
        super()._forked()
        self._healthy = self._started = self.local_only
        self._stop = threading.Event()
        self._watcher = None
        self._listeners = {}


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
