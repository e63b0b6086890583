"""The cache front users hold: keys, timeouts, serialization, failure policy, stats.

A :class:`Cache` wraps one backend. It builds each stored key from a prefix, a
version and the user's key, turns user timeouts into backend TTLs, serializes
values, counts hits and misses, and decides what a backend outage means: by
default a read becomes a miss and a write a no-op, logged once per burst of
errors and counted; ``on_error="raise"`` lets the error through.
"""

from __future__ import annotations

import datetime
import enum
import logging
import math
import sys
import threading
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any
from typing import Generic
from typing import Literal
from typing import TypeAlias
from typing import TypeVar

from cachekit.backends.base import Backend
from cachekit.backends.breaker import breaker_stats
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import LockTimeoutError
from cachekit.exceptions import MissingKeyError
from cachekit.exceptions import SerializationError
from cachekit.latency import LatencyHistogram
from cachekit.serializers import PickleSerializer
from cachekit.serializers import Serializer
from cachekit.signing import BadSignatureError
from cachekit.signing import SignedSerializer

logger = logging.getLogger(__name__)

T = TypeVar("T")
# The backend type of a cache front: Backend for Cache, AsyncBackend for AsyncCache.
_B = TypeVar("_B")


class _Default(enum.Enum):
    TIMEOUT = "DEFAULT_TIMEOUT"


class _Missing(enum.Enum):
    MISSING = "MISSING"


#: Pass as ``timeout`` to use the cache's default timeout (the default).
DEFAULT_TIMEOUT = _Default.TIMEOUT
_MISSING = _Missing.MISSING

#: What a ``timeout`` argument may be: seconds, a timedelta, ``None`` (never
#: expires) or :data:`DEFAULT_TIMEOUT`. ``0`` or less means "do not store".
Timeout: TypeAlias = float | datetime.timedelta | None | Literal[_Default.TIMEOUT]
KeyFunction = Callable[[str, str, int], str]


class _Pickled(bytes):
    """Serialized bytes kept in an object-storing backend, told apart from user bytes."""

    __slots__ = ()


class _Copied:
    """A private copy of a flat dict, list or set kept in an object-storing backend.

    Its items are all immutable, so a shallow copy on each read is as safe as
    unpickling and several times cheaper.
    """

    __slots__ = ("data", "nbytes")

    def __init__(self, data: dict[Any, Any] | list[Any] | set[Any]) -> None:
        self.data = data
        #: Approximate bytes held, read by the local-memory store's byte bound.
        self.nbytes = sys.getsizeof(data) + 64 * len(data)

    def __sizeof__(self) -> int:
        return self.nbytes


_INFINITY = float("inf")
_ATOMS = frozenset({str, bytes, int, float, bool, complex, type(None)})
_FLAT_CONTAINERS = frozenset({dict, list, set})
# Immutable values an object-storing backend keeps as they are (None is pickled: it means a miss).
_STORED_AS_IS = _ATOMS - {type(None)}


def _all_atoms(items: Iterable[Any]) -> bool:
    return _ATOMS.issuperset(map(type, items))


def _is_immutable(value: Any) -> bool:
    kind = type(value)
    if kind in _ATOMS:
        return True
    if kind is tuple or kind is frozenset:
        # A flat tuple is the common case: one C-level check, no recursion.
        return _ATOMS.issuperset(map(type, value)) or all(_is_immutable(v) for v in value)
    return False


def default_key_function(key: str, key_prefix: str, version: int) -> str:
    """Build a stored key as Django does: ``"<prefix>:<version>:<key>"``."""
    return f"{key_prefix}:{version}:{key}"


def _seconds(timeout: Any, setting: str) -> float | None:
    """Check a user timeout; return seconds (``<= 0`` means do not store) or ``None``."""
    if timeout is None:
        return None
    if isinstance(timeout, datetime.timedelta):
        return timeout.total_seconds()
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        if not math.isfinite(timeout):  # NaN or infinity: use None for "never expires"
            raise ConfigurationError(
                f"{setting} must be a finite number of seconds (None never expires), got {timeout!r}.",
                setting=setting,
            )
        return timeout
    raise TypeError(
        f"{setting} must be seconds (int or float), a datetime.timedelta or None, got {timeout!r}."
    )


class _CacheCore(Generic[_B]):
    """The rules :class:`Cache` and :class:`cachekit.aio.AsyncCache` share.

    Checking the settings, building keys, normalizing timeouts, serializing,
    the failure policy and the counters live here once; the subclasses add
    only the calls to their (sync or async) backend. The parameters are
    documented on :class:`Cache`.
    """

    def __init__(
        self,
        backend: _B,
        *,
        default_timeout: float | datetime.timedelta | None = 300,
        key_prefix: str = "",
        version: int = 1,
        key_function: KeyFunction | None = None,
        serializer: Serializer | None = None,
        on_error: Literal["ignore", "raise"] = "ignore",
        lock_timeout: float = 10.0,
        lock_ttl: float = 30.0,
        name: str = "",
        clock: Callable[[], float] = time.time,
        latency_sample_every: int = 16,
    ) -> None:
        seconds = _seconds(default_timeout, "TIMEOUT")
        if seconds is not None and seconds <= 0:
            raise ConfigurationError(
                f"TIMEOUT must be positive or None, got {default_timeout!r}.", setting="TIMEOUT"
            )
        if not isinstance(key_prefix, str):
            raise ConfigurationError(f"KEY_PREFIX must be a str, got {key_prefix!r}.", setting="KEY_PREFIX")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ConfigurationError(f"VERSION must be an int, got {version!r}.", setting="VERSION")
        if on_error not in ("ignore", "raise"):
            raise ConfigurationError(
                f"on_error must be 'ignore' or 'raise', got {on_error!r}.", setting="on_error"
            )
        if key_function is not None and not callable(key_function):
            raise ConfigurationError(
                f"KEY_FUNCTION must be callable, got {key_function!r}.", setting="KEY_FUNCTION"
            )
        for option, value in (("lock_timeout", lock_timeout), ("lock_ttl", lock_ttl)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigurationError(
                    f"{option} must be a positive number, got {value!r}.", setting=option
                )
        #: The backend this cache stores into.
        self.backend = backend
        #: Seconds used when no timeout is given; ``None`` never expires.
        self.default_timeout = seconds
        #: Prefix of every stored key.
        self.key_prefix = key_prefix
        #: Default key version.
        self.version = version
        #: ``"ignore"`` or ``"raise"``; see the module docstring.
        self.on_error = on_error
        #: Seconds :meth:`get_or_set` waits for another computing caller.
        self.lock_timeout = float(lock_timeout)
        #: Seconds a computing caller may hold the stampede lock.
        self.lock_ttl = float(lock_ttl)
        #: A label for logs.
        self.name = name
        #: Wall clock for stale windows, XFetch and page ages (``time.time`` by default).
        self.clock = clock
        self.serializer: Serializer = serializer or PickleSerializer()
        # Signed values are bound to this cache's prefix and the key (see _context).
        self._signed = self.serializer if isinstance(self.serializer, SignedSerializer) else None
        #: The custom key function, or ``None`` for :func:`default_key_function`.
        self.key_function = key_function
        self._key_function = key_function
        self._key_head = f"{key_prefix}:{version}:"
        self._objects = bool(getattr(backend, "stores_objects", False))
        self._raise = on_error == "raise"
        if not isinstance(latency_sample_every, int) or latency_sample_every < 0:
            raise ConfigurationError(
                "latency_sample_every must be an int >= 0 (0 turns sampling off), "
                f"got {latency_sample_every!r}.",
                setting="latency_sample_every",
            )
        #: Time one backend call in this many (per cache); 0: never.
        self.latency_sample_every = latency_sample_every
        # Counts down to the next sampled call; -1 never reaches 0, so sampling is off.
        self._countdown = latency_sample_every or -1
        self._latency: dict[str, LatencyHistogram] = {}
        self._hits = self._misses = self._sets = self._deletes = self._errors = 0
        self._lock_waits = self._stale_serves = self._bad_signatures = 0
        self._last_error_at = float("-inf")
        self._last_warning_at = float("-inf")
        self._warning_lock = threading.Lock()

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return f"{type(self).__name__}({label}{self.backend!r}, key_prefix={self.key_prefix!r})"

    # -- keys, timeouts, values ---------------------------------------------

    def replace(self, **changes: Any) -> Any:
        """Return a new cache on the same backend with some settings changed.

        Takes the constructor's keyword arguments (``serializer=``,
        ``key_prefix=``, ``default_timeout=`` ...) and ``backend=`` for the same
        settings on another store; the rest are copied. Counters start at zero
        in the new cache.
        """
        backend = changes.pop("backend", self.backend)
        settings: dict[str, Any] = {
            "default_timeout": self.default_timeout,
            "key_prefix": self.key_prefix,
            "version": self.version,
            "key_function": self.key_function,
            "serializer": self.serializer,
            "on_error": self.on_error,
            "lock_timeout": self.lock_timeout,
            "lock_ttl": self.lock_ttl,
            "name": self.name,
            "clock": self.clock,
            "latency_sample_every": self.latency_sample_every,
        }
        unknown = set(changes) - set(settings)
        if unknown:
            raise TypeError(f"replace() got unknown settings: {', '.join(sorted(unknown))}.")
        settings.update(changes)
        return type(self)(backend, **settings)

    def make_key(self, key: str, version: int | None = None) -> str:
        """Return the key stored in the backend for ``key``.

        :raises TypeError: if ``key`` is not a ``str``.
        """
        if version is None and type(key) is str and self._key_function is None:
            return self._key_head + key  # the common case, first
        if not isinstance(key, str):
            raise TypeError(f"Cache keys must be str, got {type(key).__name__} {key!r}.")
        if self._key_function is not None:
            return self._key_function(key, self.key_prefix, self.version if version is None else version)
        if version is None:
            return self._key_head + key
        return f"{self.key_prefix}:{version}:{key}"

    def _ttl(self, timeout: Timeout) -> float | None:
        """Normalize a user timeout; ``0.0`` means "do not store"."""
        if timeout is DEFAULT_TIMEOUT:
            return self.default_timeout
        kind = type(timeout)
        if kind is int or kind is float:  # not bool: type() is exact
            if 0 < timeout < _INFINITY:  # type: ignore[operator]
                return timeout  # type: ignore[return-value]
            if timeout <= 0:  # type: ignore[operator]
                return 0.0
            # NaN and infinity: _seconds below rejects them.
        seconds = _seconds(timeout, "timeout")
        if seconds is not None and seconds <= 0:
            return 0.0
        return seconds

    def _dumps(self, key: str, value: Any) -> Any:
        if self._objects and value is not None:
            kind = type(value)
            if _is_immutable(value):
                return value  # nothing can mutate it, so no copy is needed
            # A dict's values first: the scan stops at the first non-atom, and a nested
            # value is told from a flat one there, not after every key (0.8 -> 0.1 µs).
            if (
                kind in _FLAT_CONTAINERS
                and (kind is not dict or _all_atoms(value.values()))
                and _all_atoms(value)
            ):
                return _Copied(value.copy())
        try:
            signed = self._signed
            if signed is None:
                data = self.serializer.dumps(value)
            else:
                data = signed.dumps_for(self._context(key), value)
        except SerializationError as exc:
            raise SerializationError(
                f"Cannot store the value for key {key!r} (type {type(value).__name__}): {exc}",
                key=key,
            ) from exc
        return _Pickled(data) if self._objects else data

    def _loads(self, key: str, stored: Any) -> Any:
        if self._objects:
            kind = type(stored)
            if kind is _Copied:
                return stored.data.copy()
            if kind is not _Pickled:
                return stored
        signed = self._signed
        if signed is None:
            return self.serializer.loads(stored)
        return signed.loads_for(self._context(key), stored)

    def _context(self, key: str) -> str:
        """What a signed value is bound to: this cache's prefix and the key (so values cannot be moved)."""
        return f"{len(self.key_prefix)}:{self.key_prefix}{key}"

    # -- failure policy ------------------------------------------------------

    def _failed(self, operation: str, exc: Exception) -> None:
        """Count and log a backend failure; re-raise it under ``on_error="raise"``."""
        self._errors += 1
        if self._raise:
            raise exc
        now = time.monotonic()
        # One warning per burst of errors, and a reminder each minute of a long outage. The
        # check and the update are one step under a lock, or every thread of a burst warns.
        with self._warning_lock:
            warn = now - self._last_error_at > 10.0 or now - self._last_warning_at > 60.0
            if warn:
                self._last_warning_at = now
            self._last_error_at = now
        if warn:
            logger.warning("cache %s: %s failed, serving misses: %s", self.name or "-", operation, exc)
        else:
            logger.debug("cache %s: %s failed: %s", self.name or "-", operation, exc)

    def _undecodable(self, key: str, exc: SerializationError) -> None:
        self._errors += 1
        if isinstance(exc, BadSignatureError):
            # A forged or foreign value: a miss whatever on_error says, and one
            # warning per cache (a flood of forgeries must not flood the log).
            self._bad_signatures += 1
            log = logger.warning if self._bad_signatures == 1 else logger.debug
            log("cache %s: %r has a bad signature, not loaded (a miss): %s", self.name or "-", key, exc)
            return
        if self._raise:
            raise exc
        logger.warning(
            "cache %s: stored value for %r is unreadable, treating as a miss: %s", self.name or "-", key, exc
        )

    # -- observability ---------------------------------------------------------

    def stats(self) -> dict[str, int | float]:
        """Return this cache's counters since it was built.

        Counts are kept without a lock; under heavy threading a few increments
        may be lost, which is the price of leaving them always on.
        """
        lookups = self._hits + self._misses
        return {
            "hits": self._hits,
            "misses": self._misses,
            "sets": self._sets,
            "deletes": self._deletes,
            "errors": self._errors,
            "lock_waits": self._lock_waits,
            "stale_serves": self._stale_serves,
            "bad_signatures": self._bad_signatures,
            "hit_ratio": self._hits / lookups if lookups else 0.0,
            # Breaker state lives in the backend (one per server or node), not here.
            **breaker_stats(self.backend),
            **self._near_stats(),
        }

    def _near_stats(self) -> dict[str, int]:
        """``near_hits``, ``near_misses``, ... of a Redis backend with a near cache; nothing otherwise."""
        # Looked up on the class: a proxy or test double answering every attribute is not one.
        near_stats = getattr(type(self.backend), "near_stats", None)
        return near_stats(self.backend) if near_stats is not None else {}

    def latency(self) -> dict[str, LatencyHistogram]:
        """Return the sampled backend-call latency histogram of each operation (``"get"``, ``"set"``...)."""
        return dict(self._latency)

    def reset_stats(self) -> None:
        """Set every counter back to zero and forget the latency samples."""
        self._hits = self._misses = self._sets = self._deletes = self._errors = 0
        self._lock_waits = self._stale_serves = self._bad_signatures = 0
        self._latency = {}

    def _due(self) -> bool:
        """Whether this call is the one in ``latency_sample_every`` to time.

        The sync :class:`Cache` writes ``if self._due(): <timed call> else: <call>``
        beside each backend call rather than passing the call to a helper: a helper
        taking ``*args`` measured 60-100 ns slower per local-memory ``set``.
        """
        countdown = self._countdown - 1
        if countdown:
            self._countdown = countdown
            return False
        self._countdown = self.latency_sample_every
        return True

    def _record(self, operation: str, started: float) -> None:
        histogram = self._latency.get(operation)
        if histogram is None:
            histogram = self._latency[operation] = LatencyHistogram()
        histogram.record(time.perf_counter() - started)


class Cache(_CacheCore[Backend]):
    """The cache front: one backend plus key, timeout and serialization rules.

    :param backend: the byte store (see :mod:`cachekit.backends`).
    :param default_timeout: seconds (or timedelta) used when a call passes no
        timeout; ``None`` means values never expire.
    :param key_prefix: prepended to every key; also scopes :meth:`clear`.
    :param version: default key version, as in Django.
    :param key_function: ``f(key, key_prefix, version) -> str`` replacing
        :func:`default_key_function`; its keys should start with ``"<key_prefix>:"``
        for :meth:`clear` to stay scoped.
    :param serializer: defaults to :class:`~cachekit.serializers.PickleSerializer`.
    :param on_error: ``"ignore"`` (outages become misses and no-ops) or ``"raise"``.
    :param lock_timeout: how long :meth:`get_or_set` waits for another caller that
        is computing the same key before computing it itself.
    :param lock_ttl: how long a computing caller may hold the lock before it expires.
    :param name: a label for logs and ``repr``.
    :param clock: wall-clock seconds, shared across processes, used for stale
        windows and early refresh (:mod:`cachekit.stampede`) and page ages; tests
        pass a fake one.
    """

    # -- reads -----------------------------------------------------------------

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        """Return the value stored under ``key``, or ``default`` on a miss."""
        if version is None and type(key) is str and self._key_function is None:
            stored_key = self._key_head + key  # the hot path: skip make_key's checks
        else:
            stored_key = self.make_key(key, version)
        try:
            countdown = self._countdown - 1
            if countdown:  # the common case: not the call to time
                self._countdown = countdown
                stored: Any = self.backend.get(stored_key)
            else:
                self._countdown = self.latency_sample_every
                started = time.perf_counter()
                stored = self.backend.get(stored_key)
                self._record("get", started)
        except BackendUnavailableError as exc:
            self._failed("get", exc)
            self._misses += 1
            return default
        if stored is None:
            self._misses += 1
            return default
        kind = type(stored)
        if self._objects and kind is not _Pickled:
            self._hits += 1
            return stored if kind is not _Copied else stored.data.copy()
        try:
            signed = self._signed
            if signed is None:
                value = self.serializer.loads(stored)
            else:
                value = signed.loads_for(self._context(key), stored)
        except SerializationError as exc:
            self._undecodable(key, exc)
            self._misses += 1
            return default
        self._hits += 1
        return value

    def get_many(self, keys: Iterable[str], version: int | None = None) -> dict[str, Any]:
        """Return a dict of the keys that were found, with their values."""
        by_stored = {self.make_key(key, version): key for key in keys}
        try:
            if self._due():
                started = time.perf_counter()
                found = self.backend.get_many(list(by_stored))
                self._record("get_many", started)
            else:
                found = self.backend.get_many(list(by_stored))
        except BackendUnavailableError as exc:
            self._failed("get_many", exc)
            self._misses += len(by_stored)
            return {}
        result: dict[str, Any] = {}
        for stored_key, stored in found.items():
            key = by_stored[stored_key]
            try:
                result[key] = self._loads(key, stored)
            except SerializationError as exc:
                self._undecodable(key, exc)
        self._hits += len(result)
        self._misses += len(by_stored) - len(result)
        return result

    def has_key(self, key: str, version: int | None = None) -> bool:
        """Return whether ``key`` holds a live value (without counting a hit or miss)."""
        stored_key = self.make_key(key, version)
        try:
            return self.backend.get(stored_key) is not None
        except BackendUnavailableError as exc:
            self._failed("has_key", exc)
            return False

    def __contains__(self, key: str) -> bool:
        return self.has_key(key)

    # -- writes ----------------------------------------------------------------

    def set(
        self, key: str, value: Any, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """Store ``value`` under ``key``; a timeout of 0 or less deletes it instead.

        :raises SerializationError: if the value cannot be serialized.
        """
        # The common case inlined (key, default timeout, an atom in local memory, no
        # sample): each helper call measured 40-70 ns of a 0.7 µs local-memory set.
        if type(key) is str and version is None and self._key_function is None:
            stored_key = self._key_head + key
        else:
            stored_key = self.make_key(key, version)
        ttl = self.default_timeout if timeout is DEFAULT_TIMEOUT else self._ttl(timeout)
        if ttl == 0:
            self._delete_stored(stored_key)
            return
        data = value if self._objects and type(value) in _STORED_AS_IS else self._dumps(key, value)
        try:
            countdown = self._countdown - 1
            if countdown:
                self._countdown = countdown
                self.backend.set(stored_key, data, ttl)
            else:
                self._countdown = self.latency_sample_every
                started = time.perf_counter()
                self.backend.set(stored_key, data, ttl)
                self._record("set", started)
        except BackendUnavailableError as exc:
            self._failed("set", exc)
            return
        self._sets += 1

    def add(
        self, key: str, value: Any, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Store ``value`` only if ``key`` holds nothing; return whether it was stored.

        A timeout of 0 or less stores nothing and returns ``False``.
        """
        stored_key = self.make_key(key, version)
        ttl = self._ttl(timeout)
        if ttl == 0:
            return False
        data = self._dumps(key, value)
        try:
            if self._due():
                started = time.perf_counter()
                added = self.backend.add(stored_key, data, ttl)
                self._record("add", started)
            else:
                added = self.backend.add(stored_key, data, ttl)
        except BackendUnavailableError as exc:
            self._failed("add", exc)
            return False
        if added:
            self._sets += 1
        return added

    def set_many(
        self, mapping: Mapping[str, Any], timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[str]:
        """Store every item; return the keys that could not be stored (all of them in an outage)."""
        ttl = self._ttl(timeout)
        if ttl == 0:
            self.delete_many(mapping, version)
            return []
        items = {self.make_key(key, version): self._dumps(key, value) for key, value in mapping.items()}
        if not items:
            return []
        try:
            if self._due():
                started = time.perf_counter()
                self.backend.set_many(items, ttl)
                self._record("set_many", started)
            else:
                self.backend.set_many(items, ttl)
        except BackendUnavailableError as exc:
            self._failed("set_many", exc)
            return list(mapping)
        self._sets += len(items)
        return []

    def _delete_stored(self, stored_key: str) -> bool:
        try:
            if self._due():
                started = time.perf_counter()
                deleted = self.backend.delete(stored_key)
                self._record("delete", started)
            else:
                deleted = self.backend.delete(stored_key)
        except BackendUnavailableError as exc:
            self._failed("delete", exc)
            return False
        self._deletes += 1
        return deleted

    def delete(self, key: str, version: int | None = None) -> bool:
        """Remove ``key``; return whether it was there."""
        return self._delete_stored(self.make_key(key, version))

    def delete_many(self, keys: Iterable[str], version: int | None = None) -> None:
        """Remove every key in ``keys``."""
        stored_keys = [self.make_key(key, version) for key in keys]
        if not stored_keys:
            return
        try:
            self.backend.delete_many(stored_keys)
        except BackendUnavailableError as exc:
            self._failed("delete_many", exc)
            return
        self._deletes += len(stored_keys)

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """Add ``delta`` to the integer under ``key`` in the backend and return it.

        Unlike reads and writes, a backend outage is raised even under
        ``on_error="ignore"``: there is no value to return.

        :raises MissingKeyError: if ``key`` is not stored.
        :raises BackendError: if the stored value is not an integer.
        """
        if not isinstance(delta, int) or isinstance(delta, bool):
            raise TypeError(f"delta must be an int, got {delta!r}.")
        stored_key = self.make_key(key, version)
        try:
            return self.backend.incr(stored_key, delta)
        except MissingKeyError:
            raise MissingKeyError(key) from None
        except BackendUnavailableError as exc:
            self._errors += 1
            raise exc

    def decr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """Subtract ``delta``; see :meth:`incr`."""
        if not isinstance(delta, int) or isinstance(delta, bool):
            raise TypeError(f"delta must be an int, got {delta!r}.")
        return self.incr(key, -delta, version)

    def touch(self, key: str, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """Give ``key`` a new timeout; return whether it was there. 0 or less deletes it."""
        stored_key = self.make_key(key, version)
        ttl = self._ttl(timeout)
        if ttl == 0:
            return self._delete_stored(stored_key)
        try:
            return self.backend.touch(stored_key, ttl)
        except BackendUnavailableError as exc:
            self._failed("touch", exc)
            return False

    def get_or_set(
        self,
        key: str,
        default: Callable[[], T] | T,
        timeout: Timeout = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        stale_while_revalidate: float = 0,
        stale_if_error: float = 0,
        beta: float = 0,
        tags: Iterable[str] = (),
    ) -> T:
        """Return the value under ``key``; on a miss store ``default`` (calling it if callable).

        When ``default`` is callable, only one caller at a time computes a
        missing key, across threads and processes (the lock lives in the
        backend); the others wait up to ``lock_timeout`` seconds and then read
        the fresh value. A caller that waited that long computes the value
        itself rather than fail.

        The keyword-only options store the value in a
        :class:`~cachekit.stampede.CacheEntry` envelope (read such keys back with
        ``get_or_set``, not :meth:`get`); see :mod:`cachekit.stampede`.

        :param stale_while_revalidate: seconds after expiry during which callers
            get the stale value at once while one of them recomputes.
        :param stale_if_error: seconds after expiry during which a computation
            that raises is answered with the stale value (the error is logged).
        :param beta: XFetch early-refresh factor; ``1.0`` is the paper's optimum,
            ``0`` disables it.
        :param tags: names that :meth:`invalidate_tags` can later invalidate.
        """
        if (stale_while_revalidate or stale_if_error or beta or tags) and callable(default):
            from cachekit.stampede import get_or_set_entry

            ttl = self._ttl(timeout)
            if ttl == 0:
                return default()
            return get_or_set_entry(
                self,
                key,
                default,
                ttl,
                version,
                stale_while_revalidate=stale_while_revalidate,
                stale_if_error=stale_if_error,
                beta=beta,
                tags=tags,
            )
        value = self.get(key, _MISSING, version)
        if value is not _MISSING:
            return value  # type: ignore[no-any-return]
        if not callable(default):
            self.add(key, default, timeout, version)
            return self.get(key, default, version)  # type: ignore[no-any-return]
        compute: Callable[[], T] = default
        stored_key = self.make_key(key, version)
        try:
            lock = self.backend.lock("cachekit.lock:" + stored_key, ttl=self.lock_ttl)
            acquired = lock.acquire(timeout=self.lock_timeout)
        except BackendUnavailableError as exc:
            self._failed("lock", exc)
            return compute()
        if not acquired:
            self._lock_waits += 1
            logger.info("%s", LockTimeoutError(stored_key, self.lock_timeout))
            value = self.get(key, _MISSING, version)
            if value is not _MISSING:
                return value  # type: ignore[no-any-return]
            result = compute()
            self.set(key, result, timeout, version)
            return result
        try:
            value = self.get(key, _MISSING, version)
            if value is not _MISSING:
                self._lock_waits += 1
                return value  # type: ignore[no-any-return]
            result = compute()
            self.set(key, result, timeout, version)
            return result
        finally:
            try:
                lock.release()
            except BackendUnavailableError as exc:
                self._failed("unlock", exc)

    def invalidate_tags(self, *tags: str) -> None:
        """Invalidate every entry stored with any of ``tags``: one ``incr`` per tag, no key scan.

        Tagged entries come from ``get_or_set(..., tags=...)``, ``@memoize(tags=...)``
        and ``@cache_page(tags=...)``; see :mod:`cachekit.tags`.

        :raises BackendUnavailableError: if the backend is down, whatever
            ``on_error`` says: a purge that silently did nothing leaves stale content.
        """
        from cachekit.tags import invalidate_tags

        invalidate_tags(self, tags)

    def gets(self, key: str, version: int | None = None) -> tuple[Any, Any] | None:
        """Return ``(value, token)`` for a later :meth:`cas`, or ``None`` on a miss.

        :raises NotImplementedError: if the backend has no compare-and-set.
        :raises BackendUnavailableError: always raised: a caller doing
            read-modify-write must know the read failed.
        """
        stored_key = self.make_key(key, version)
        gets = getattr(self.backend, "gets", None)
        if gets is None:
            raise NotImplementedError(f"{self.backend!r} does not support compare-and-set.")
        try:
            found = gets(stored_key)
        except BackendUnavailableError:
            self._errors += 1
            raise
        if found is None:
            self._misses += 1
            return None
        self._hits += 1
        return self._loads(key, found[0]), found[1]

    def cas(
        self, key: str, value: Any, token: Any, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Store ``value`` if ``key`` is unchanged since :meth:`gets` returned ``token``.

        Returns ``False`` if the key changed or vanished meanwhile; outages raise.
        """
        stored_key = self.make_key(key, version)
        ttl = self._ttl(timeout)
        data = self._dumps(key, value)
        if ttl == 0:
            ttl = 0.001  # expire at once, but only if the compare succeeds
        try:
            stored: bool = self.backend.cas(stored_key, data, token, ttl)  # type: ignore[attr-defined]
        except BackendUnavailableError:
            self._errors += 1
            raise
        if stored:
            self._sets += 1
        return stored

    def incr_version(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """Move the value under ``key`` to version ``version + delta``; return the new version.

        :raises MissingKeyError: if ``key`` is not stored at ``version``.
        """
        if version is None:
            version = self.version
        value = self.get(key, _MISSING, version)
        if value is _MISSING:
            raise MissingKeyError(key)
        self.set(key, value, version=version + delta)
        self.delete(key, version=version)
        return version + delta

    def decr_version(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """Move the value under ``key`` to version ``version - delta``; see :meth:`incr_version`."""
        return self.incr_version(key, -delta, version)

    def clear(self) -> None:
        """Remove this cache's keys: those under its prefix, or every key if it has none."""
        try:
            self.backend.clear(f"{self.key_prefix}:" if self.key_prefix else "")
        except BackendUnavailableError as exc:
            self._failed("clear", exc)

    def close(self) -> None:
        """Release the backend's connections; the cache reconnects if used again."""
        self.backend.close()
