"""A near cache's local memory and the rules that keep it exact.

:class:`LocalNear` holds the local store and applies what the invalidation streams
(:mod:`cachekit.backends.near.listener`) report:

- A key is dropped from local memory as soon as its invalidation is read (another
  process's write, an expiry, an eviction), and everything is dropped on a flush
  (Redis ``FLUSHDB``/``FLUSHALL``, a lost stream, a changed Cluster slot map).
- While a stream is not subscribed (starting, reconnecting after a lost connection or a
  server restart, or silent for longer than the ping interval plus the socket timeout)
  local memory is empty and serves nothing; every read goes to the server.
- A read in flight when an invalidation of its key arrives (or a local write of it
  happens, or a stream reconnects) does not fill local memory: the reply may predate
  the write (the known hazard of client-side caching).
- Writes made through the backend drop their keys locally when they return (and when
  they fail, as their outcome is then unknown).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
import weakref
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any

from cachekit.backends.locmem import LocMemBackend

#: The clock of the inlined hit paths (the near store's entries expire on it).
monotonic = time.monotonic


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


class LocalNear:
    """Local memory in front of a server, serving only while every stream is subscribed.

    :param max_entries: least recently used entries are evicted above this count.
    :param max_bytes: bound on the summed size of the stored values (``None``: locmem's default).
    :param prefix: only keys starting with this are kept locally.
    :param needs_map: streams follow a map (a Cluster's slots): nothing is served while
        it is unknown, as an unreadable one may hide a new stream.
    """

    def __init__(
        self, *, max_entries: int, max_bytes: int | None = None, prefix: str = "", needs_map: bool = False
    ) -> None:
        #: Only keys starting with this are kept (and invalidated by the server).
        self.prefix = prefix
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._needs_map = needs_map
        self._new_store()
        #: Decoded values for the ``Cache`` front (see :class:`DecodedMemo`).
        self.decoded = DecodedMemo(max_entries)
        self._lock = threading.Lock()
        #: Bumped on every reconnect and flush; a read that began in another generation never fills.
        self._generation = 0
        self._healthy = False
        self._reading: dict[str, int] = {}
        self._dirty: set[str] = set()
        #: Whether the streams were started (a local-only near cache has none and is always ready).
        self._started = False
        #: The streams that must be subscribed (``""`` for the one server), and those that are.
        self._expected: set[str] = set()
        self._subscribed: set[str] = set()
        #: The map's signature (``needs_map``); ``None`` while unknown.
        self._signature: object = None
        self.hits = self.misses = self.invalidations = self.flushes = 0
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    def _new_store(self) -> None:
        options: dict[str, Any] = {"max_entries": self.max_entries}
        if self.max_bytes is not None:
            options["max_bytes"] = self.max_bytes
        self._store = LocMemBackend(f"cachekit-near-{uuid.uuid4().hex}", **options)
        self._data = self._store._data  # the read path's dict (see NearRedisBackend.get)

    def _start(self) -> None:
        """Start the streams (the listener's); a local-only near cache has none."""

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

    def keeps_all(self, keys: Iterable[str]) -> bool:
        """Whether every key is one local memory may hold (starts with :attr:`prefix`)."""
        prefix = self.prefix
        return not prefix or all(key.startswith(prefix) for key in keys)

    def split(self, keys: Sequence[str]) -> tuple[dict[str, bytes], list[str]]:
        """The local values of ``keys``, and the others (once each) to read from the server."""
        found: dict[str, bytes] = {}
        missing: list[str] = []
        lookup = self.lookup
        for key in keys:
            value = lookup(key)
            if value is None:
                missing.append(key)
            else:
                found[key] = value
        return found, list(dict.fromkeys(missing)) if missing else missing

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
        happened since :meth:`begin`. A ``pttl_ms`` of -2 (the key is gone) stores nothing,
        a negative one stores without expiry.
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

    # -- readiness -------------------------------------------------------------------

    def _subscribed_to(self, node: str) -> None:
        """``node``'s stream now reports every change: what was read before it was not tracked."""
        with self._lock:
            self._flush_locked()
            self._subscribed.add(node)
            self._settle_locked()

    def _lost(self, node: str | None = None) -> None:
        """``node``'s stream (or, with ``None``, every stream) is gone: serve nothing until back."""
        with self._lock:
            if node is None:
                self._subscribed.clear()
                self._healthy = False
            else:
                self._subscribed.discard(node)
                self._settle_locked()  # False unless ``node`` is no longer expected
            self._flush_locked()

    def _map_unknown(self) -> None:
        """The map cannot be read: serve nothing; the next map read counts as a change."""
        with self._lock:
            self._signature = None
            self._healthy = False
            self._flush_locked()

    def _new_map(self, signature: object, nodes: Iterable[str]) -> tuple[bool, bool]:
        """Expect ``nodes``' streams under the map ``signature``: (whether it is new, whether it
        replaced a known one).

        A new map flushes: a slot moved or a primary changed, so what it sent before may be gone.
        """
        with self._lock:
            if signature == self._signature:
                return False, False
            changed = self._signature is not None
            self._signature = signature
            self._expected = set(nodes)
            self._flush_locked()
            self._settle_locked()
            return True, changed

    def _settle_locked(self) -> None:
        known = not self._needs_map or self._signature is not None
        self._healthy = known and bool(self._expected) and self._expected <= self._subscribed

    @property
    def ready(self) -> bool:
        """Whether every stream is subscribed (local memory may serve)."""
        return self._healthy

    def stats(self) -> dict[str, int]:
        """Near-cache counters for ``Cache.stats()``."""
        return {
            "near_hits": self.hits,
            "near_misses": self.misses,
            "near_invalidations": self.invalidations,
            "near_flushes": self.flushes,
            "near_ready": int(self._healthy),
        }

    def _forked(self) -> None:
        """In a forked child: no stream survived, so serve nothing until new ones run."""
        self._lock = threading.Lock()
        self._healthy = self._started = False
        self._subscribed = set()
        self._signature = None
        self._reading = {}
        self._dirty = set()
        self._generation += 1
        self._new_store()
        self.decoded.clear()


def _after_fork(ref: weakref.ref[LocalNear]) -> None:
    near = ref()
    if near is not None:
        near._forked()
