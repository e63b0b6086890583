"""The local-memory backend: a thread-safe store inside this process, evicting by sampled LRU.

Backends with the same ``location`` share one store, as Django's locmem does,
so two :class:`~cachekit.Cache` objects built from ``locmem://sessions`` see
the same data. Nothing is shared between processes: use Redis or memcached
for that.

Reads take no lock. Under the GIL one ``dict.get`` and attribute reads are
atomic, and writers never leave an entry half-written for a reader: a new
entry is complete before it is inserted, and an overwrite stores the value
before the expiry, which readers load in the other order (so a reader sees the
old value with the old expiry or the new value). A read only sets the entry's
reference bit. Writers, eviction and expiry drops hold the store's mutex.

Eviction is CLOCK (second chance), so a read moves nothing and allocates
nothing: keys wait in a queue in insertion order; eviction takes the oldest,
and one read or overwritten since the hand last passed it has its bit cleared
and goes to the back instead, up to ``_SECOND_CHANCES`` keys per eviction (so
one eviction stays bounded when every key is hot). The oldest key nobody used
since goes first, as in LRU; among keys all used since, the order of their last
use is not kept. Deleted keys stay in the queue as "ghosts", counted so that
they are skipped; the queue is rebuilt when ghosts outnumber the live keys.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import ClassVar
from typing import TypedDict
from urllib.parse import urlsplit

from cachekit.exceptions import BackendError
from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import MissingKeyError

Clock = Callable[[], float]


class LocMemOptions(TypedDict, total=False):
    """:class:`LocMemBackend`'s keyword options, for the backends that hand them on to it."""

    max_entries: int
    max_bytes: int | None
    clock: Clock


#: The byte bound of a local-memory store unless ``max_bytes`` says otherwise (64 MiB):
#: a flood of distinct keys (junk query strings on cached pages) cannot grow the
#: process without limit. ``max_bytes=None`` removes the bound.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


#: How many used keys one eviction may pass over (clearing their bits) before it takes the next
#: key whatever its bit: the bound on one eviction's work when every key is hot.
_SECOND_CHANCES = 64


class _Entry:
    """One stored value: its expiry (monotonic seconds or ``None``), counted size and reference bit.

    Slots, not a list: 64 bytes instead of 88, and a value can be replaced in place.
    """

    __slots__ = ("expires", "size", "used", "value")

    def __init__(self, value: Any, expires: float | None, size: int) -> None:
        self.value = value
        self.expires = expires
        self.size = size
        self.used = False


class _Store:
    """The data, lock table and condition shared by all backends of one location."""

    def __init__(self) -> None:
        self.data: dict[str, _Entry] = {}
        #: Keys in insertion order, oldest first, including ghosts (deleted keys).
        self.order: deque[str] = deque()
        #: How many times each deleted key is still in ``order``.
        self.ghosts: dict[str, int] = {}
        self.size = 0
        self.mutex = threading.Lock()
        self.locks: dict[str, tuple[str, float]] = {}
        self.lock_changed = threading.Condition(threading.Lock())
        self.last_sweep = float("-inf")


_stores: dict[str, _Store] = {}
_stores_guard = threading.Lock()


def _shared_store(location: str) -> _Store:
    with _stores_guard:
        store = _stores.get(location)
        if store is None:
            store = _stores[location] = _Store()
        return store


_SIZED_BY_GETSIZEOF = frozenset({int, float, bool, complex, type(None), dict, list, set, frozenset})


def _sizeof(value: Any) -> int:
    """Approximate bytes held by a value; tuples (pages, sessions) count their contents."""
    kind = type(value)
    if kind is str or kind is bytes:  # the common cases first: one identity test each
        return len(value)
    if isinstance(value, (bytes, str)):
        return len(value)
    if kind is tuple:
        return sys.getsizeof(value) + sum(_sizeof(item) for item in value)
    if kind not in _SIZED_BY_GETSIZEOF:
        # A front's wrapper (cachekit.cache._Copied), memoryview, numpy: no Python __sizeof__ call.
        try:
            nbytes = value.nbytes
        except Exception:  # no such attribute, or a property that fails: size it as below
            nbytes = None
        if type(nbytes) is int:
            return nbytes
    return sys.getsizeof(value)


class LocMemLock:
    """A named lock in local memory with a ``ttl``, shaped like :class:`threading.Lock`."""

    def __init__(self, store: _Store, name: str, ttl: float, clock: Clock) -> None:
        self._store = store
        self._name = name
        self._ttl = ttl
        self._clock = clock
        self._token = uuid.uuid4().hex

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock, waiting up to ``timeout`` seconds when ``blocking``."""
        cond = self._store.lock_changed
        deadline = None if timeout < 0 else time.monotonic() + timeout
        with cond:
            while True:
                now = self._clock()
                held = self._store.locks.get(self._name)
                if held is None or held[1] <= now:
                    self._store.locks[self._name] = (self._token, now + self._ttl)
                    return True
                if not blocking:
                    return False
                # Wake up no later than the holder's expiry so an abandoned lock is taken over.
                wait = max(held[1] - now, 0.001)
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    wait = min(wait, remaining)
                cond.wait(min(wait, 0.05))

    def release(self) -> None:
        """Release the lock if this holder still owns it."""
        cond = self._store.lock_changed
        with cond:
            held = self._store.locks.get(self._name)
            if held is not None and held[0] == self._token:
                del self._store.locks[self._name]
                cond.notify_all()

    def __enter__(self) -> LocMemLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class LocMemBackend:
    """Thread-safe in-process store; reads take no lock, eviction is sampled LRU.

    :param location: stores are shared by name within the process.
    :param max_entries: entries are evicted above this count, the least recently used first
        (approximately: CLOCK, see the module docstring).
    :param max_bytes: bound on the summed size of stored values
        (:data:`DEFAULT_MAX_BYTES` unless given; ``None``: no bound).
    :param clock: a monotonic clock in seconds; tests pass a fake one.
    """

    OPTIONS: ClassVar[Mapping[str, type]] = {"max_entries": int, "max_bytes": int}
    stores_objects: ClassVar[bool] = True

    def __init__(
        self,
        location: str = "",
        *,
        max_entries: int = 1000,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        clock: Clock = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ConfigurationError(
                f"max_entries must be at least 1, got {max_entries!r}.", setting="max_entries"
            )
        if max_bytes is not None and max_bytes < 1:
            raise ConfigurationError(
                f"max_bytes must be positive or None, got {max_bytes!r}.", setting="max_bytes"
            )
        self.location = location
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._store = _shared_store(location)
        self._data = self._store.data
        self._mutex = self._store.mutex

    @classmethod
    def from_url(cls, url: str, **options: Any) -> LocMemBackend:
        """Build from ``locmem://name``; ``locmem://`` is the unnamed default store."""
        parts = urlsplit(url)
        return cls(parts.netloc + parts.path.rstrip("/"), **options)

    @classmethod
    def from_location(cls, location: str | Sequence[str] | None, **options: Any) -> LocMemBackend:
        """Build from a settings ``LOCATION`` (a store name)."""
        if location is not None and not isinstance(location, str):
            raise ConfigurationError(
                f"LOCATION for locmem must be a name, got {location!r}.", setting="LOCATION"
            )
        return cls(location or "", **options)

    def __repr__(self) -> str:
        return f"LocMemBackend(location={self.location!r}, max_entries={self.max_entries})"

    # -- reads (no lock: see the module docstring) ----------------------------

    def _live(self, key: str, now: float) -> _Entry | None:
        """Return the entry under ``key`` unless expired (then drop it). Hold the mutex."""
        entry = self._data.get(key)
        if entry is None:
            return None
        expires = entry.expires
        if expires is not None and expires <= now:
            self._drop(key)
            return None
        return entry

    def _expired(self, key: str) -> None:
        """Drop ``key`` if it is (still) expired; a reader found it so."""
        with self._mutex:
            self._live(key, self._clock())

    def get(self, key: str) -> Any:
        """Return the stored value or ``None``."""
        entry = self._data.get(key)
        if entry is None:
            return None
        expires = entry.expires  # before the value: see the module docstring
        if expires is not None and expires <= self._clock():
            self._expired(key)
            return None
        entry.used = True
        return entry.value

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """Return the found keys only."""
        found: dict[str, Any] = {}
        data = self._data
        now = self._clock()
        for key in keys:
            entry = data.get(key)
            if entry is None:
                continue
            expires = entry.expires
            if expires is not None and expires <= now:
                self._expired(key)
                continue
            entry.used = True
            found[key] = entry.value
        return found

    # -- writes (under the mutex) ----------------------------------------------

    def _expiry(self, ttl: float | None) -> float | None:
        return None if ttl is None else self._clock() + ttl

    def _refusal(self, key: str, size: int) -> BackendError:
        """The error for a value larger than the whole store.

        Keeping such a value would evict everything else, so it is refused;
        saying so (as memcached does past its item size) lets a caller such as a
        session store answer an error instead of acknowledging a write it lost.
        """
        return BackendError(
            f"Value for key {key!r} is about {size} bytes, over this local-memory store's "
            f"max_bytes of {self.max_bytes}; it was not stored."
        )

    def _put(self, key: str, value: Any, expires: float | None, size: int = -1) -> None:
        """Store an entry and evict as needed (``size``: of the value, if known). Hold the mutex.

        :raises BackendError: if the value is over ``max_bytes``; any old value
            is dropped first, so no reader sees it after a failed write.
        """
        max_bytes = self.max_bytes
        if max_bytes is None:
            size = 0
        else:
            if size < 0:
                kind = type(value)
                size = len(value) if kind is str or kind is bytes else _sizeof(value)
            if size > max_bytes:
                self._drop(key)
                raise self._refusal(key, size)
        store = self._store
        entry = self._data.get(key)
        if entry is None:
            self._data[key] = _Entry(value, expires, size)
            store.order.append(key)
            store.size += size
        else:
            # In place, value first: a lock-free reader loads the expiry first.
            entry.value = value
            entry.expires = expires
            entry.used = True
            store.size += size - entry.size
            entry.size = size
        if len(self._data) > self.max_entries or (max_bytes is not None and store.size > max_bytes):
            self._evict(key)

    def _drop(self, key: str) -> bool:
        entry = self._data.pop(key, None)
        if entry is None:
            return False
        store = self._store
        store.size -= entry.size
        ghosts = store.ghosts
        ghosts[key] = ghosts.get(key, 0) + 1
        if len(ghosts) > 64 and len(store.order) > 2 * len(self._data):
            self._compact()
        return True

    def _compact(self) -> None:
        """Rebuild the queue without ghosts (amortized: ghosts outnumber live keys)."""
        store = self._store
        ghosts = store.ghosts
        live: deque[str] = deque()
        for key in store.order:
            count = ghosts.get(key)
            if count:
                if count == 1:
                    del ghosts[key]
                else:
                    ghosts[key] = count - 1
            else:
                live.append(key)
        store.order = live
        store.ghosts = {}

    def _evict(self, keep: str) -> None:
        """Drop expired entries (at most once a second), then by CLOCK, never ``keep``."""
        store = self._store
        data = self._data
        now = self._clock()
        if now - store.last_sweep >= 1.0:
            store.last_sweep = now
            for key in [k for k, e in data.items() if e.expires is not None and e.expires <= now]:
                self._drop(key)
        max_bytes = self.max_bytes
        order = store.order
        ghosts = store.ghosts
        passed = 0
        while len(data) > self.max_entries or (
            max_bytes is not None and store.size > max_bytes and len(data) > 1
        ):
            key = order.popleft()
            count = ghosts.get(key)
            if count:  # a deleted key's old place
                if count == 1:
                    del ghosts[key]
                else:
                    ghosts[key] = count - 1
                continue
            entry = data[key]
            if key == keep or (entry.used and passed < _SECOND_CHANCES):
                if key != keep:
                    entry.used = False
                order.append(key)
                passed += 1
                continue
            del data[key]
            store.size -= entry.size

    def set(self, key: str, value: Any, ttl: float | None) -> None:
        """Store ``value`` under ``key``.

        :raises BackendError: if the value is over ``max_bytes`` (the old value is deleted).
        """
        expires = None if ttl is None else self._clock() + ttl
        max_bytes = self.max_bytes
        size = 0
        if max_bytes is not None:  # sized before taking the lock
            kind = type(value)
            size = len(value) if kind is str or kind is bytes else _sizeof(value)
        mutex = self._mutex
        mutex.acquire()  # not ``with``: 20-30 ns less, and this is the hot write path
        try:
            entry = self._data.get(key)
            if entry is None or (max_bytes is not None and size > max_bytes):
                self._put(key, value, expires, size)
                return
            # An overwrite, in place, value first: a lock-free reader loads the expiry first.
            entry.value = value
            entry.expires = expires
            entry.used = True
            grown = size - entry.size
            if grown:  # 0 without a byte bound, and for a value of the same size
                store = self._store
                store.size += grown
                entry.size = size
                if grown > 0 and max_bytes is not None and store.size > max_bytes:
                    self._evict(key)
        finally:
            mutex.release()

    def set_many(self, items: Mapping[str, Any], ttl: float | None) -> None:
        """Store every item with the same ``ttl``.

        :raises BackendError: if a value is over ``max_bytes``; the others are
            stored, the oversized ones' old values deleted, the first reported.
        """
        refused: BackendError | None = None
        with self._mutex:
            expires = self._expiry(ttl)
            for key, value in items.items():
                try:
                    self._put(key, value, expires)
                except BackendError as exc:
                    refused = refused or exc
        if refused is not None:
            raise refused

    def add(self, key: str, value: Any, ttl: float | None) -> bool:
        """Store only if absent or expired.

        :raises BackendError: if the value is over ``max_bytes`` (nothing is stored).
        """
        with self._mutex:
            if self._live(key, self._clock()) is not None:
                return False
            self._put(key, value, self._expiry(ttl))  # refuses before storing anything
            return True

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether a live value was there."""
        with self._mutex:
            live = self._live(key, self._clock()) is not None
            self._drop(key)
            return live

    def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in ``keys``."""
        with self._mutex:
            for key in keys:
                self._drop(key)

    def incr(self, key: str, delta: int) -> int:
        """Add ``delta`` to the integer under ``key``; the stored type is kept."""
        with self._mutex:
            entry = self._live(key, self._clock())
            if entry is None:
                raise MissingKeyError(key)
            value = entry.value
            if type(value) is int:
                result = value + delta
                stored: int | bytes = result
            else:
                try:
                    result = int(value) + delta
                except (TypeError, ValueError):
                    raise BackendError(f"Value under {key!r} is not an integer.") from None
                stored = str(result).encode()
            self._put(key, stored, entry.expires)  # counts the new size (b"9" -> b"10")
            return result

    def touch(self, key: str, ttl: float | None) -> bool:
        """Give ``key`` a new ``ttl``."""
        with self._mutex:
            entry = self._live(key, self._clock())
            if entry is None:
                return False
            entry.expires = self._expiry(ttl)
            return True

    def gets(self, key: str) -> tuple[Any, Any] | None:
        """Return ``(value, token)`` for :meth:`cas`, or ``None``; the token is the stored object."""
        with self._mutex:
            entry = self._live(key, self._clock())
            if entry is None:
                return None
            return entry.value, entry.value

    def cas(self, key: str, value: Any, token: Any, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` still holds the object :meth:`gets` returned.

        :raises BackendError: if the value is over ``max_bytes`` (nothing is changed).
        """
        with self._mutex:
            entry = self._live(key, self._clock())
            if entry is None or entry.value is not token:
                return False
            if self.max_bytes is not None and _sizeof(value) > self.max_bytes:
                raise self._refusal(key, _sizeof(value))  # before _put, which drops the old value
            self._put(key, value, self._expiry(ttl))
            return True

    def clear(self, prefix: str = "") -> None:
        """Remove every key starting with ``prefix``."""
        with self._mutex:
            if not prefix:
                store = self._store
                self._data.clear()
                store.order = deque()
                store.ghosts = {}
                store.size = 0
                return
            for key in [k for k in self._data if k.startswith(prefix)]:
                self._drop(key)

    def close(self) -> None:
        """Nothing to release: the store outlives the backend, as in Django."""

    def lock(self, name: str, *, ttl: float) -> LocMemLock:
        """Return a lock named ``name`` shared by every backend of this location."""
        return LocMemLock(self._store, name, ttl, self._clock)

    def count(self, prefix: str = "") -> int:
        """Return how many live keys start with ``prefix`` (O(n): for dashboards, not hot paths)."""
        with self._mutex:
            now = self._clock()
            return sum(
                1
                for key, entry in self._data.items()
                if key.startswith(prefix) and (entry.expires is None or entry.expires > now)
            )

    def __len__(self) -> int:
        return len(self._data)
