"""The rules both cache fronts share, free of I/O: settings, keys, lifetimes, (de)serialization, sampling.

:class:`FrontCore` is the base of :class:`~cachekit.Cache` and
:class:`~cachekit.aio.AsyncCache` (both generated from one source, see
:mod:`cachekit.fronts`); they add only the calls to their (sync or async)
backend. Counting and the failure policy live in the front's
:class:`~cachekit.fronts.recorder.Recorder`.
"""

from __future__ import annotations

import collections
import datetime
import enum
import math
import sys
import time
from collections.abc import Callable
from collections.abc import Iterable
from itertools import chain
from itertools import compress
from itertools import repeat
from operator import is_
from typing import Any
from typing import Generic
from typing import Literal
from typing import TypeAlias
from typing import TypeVar

from cachekit.backends.breaker import breaker_stats
from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import SerializationError
from cachekit.fronts.recorder import Recorder
from cachekit.latency import LatencyHistogram
from cachekit.serializers import PickleSerializer
from cachekit.serializers import Serializer
from cachekit.signing import SignedSerializer

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
    """A private copy of a value kept in an object-storing backend; each read returns ``data.copy()``.

    ``data`` is a flat dict, list or set (its items are all immutable, so a
    shallow copy is as safe as unpickling and several times cheaper) or a
    :class:`_Nested` (one level deeper).
    """

    __slots__ = ("data", "nbytes")

    def __init__(self, data: dict[Any, Any] | list[Any] | set[Any] | _Nested, nbytes: int = 0) -> None:
        self.data = data
        #: Approximate bytes held, read by the local-memory store's byte bound.
        self.nbytes = nbytes or sys.getsizeof(data) + 64 * len(data)  # type: ignore[arg-type]

    def __sizeof__(self) -> int:
        return self.nbytes


class _Nested:
    """A private copy of a dict or list one level deep: immutable items, and lists, dicts or sets of them.

    :meth:`copy` is the deep copy unpickling would make, from C-level container
    copies only (under half the time): the outer container is copied, then
    each inner one, put back by position. Immutable items are shared. Built
    only by :func:`_nested`, which checks the shape.
    """

    __slots__ = ("base", "groups")

    def __init__(self, base: dict[Any, Any] | list[Any], groups: tuple[_Group, ...]) -> None:
        self.base = base
        self.groups = groups

    def copy(self) -> dict[Any, Any] | list[Any]:
        """A fresh deep copy (new outer and inner containers)."""
        fresh = self.base.copy()
        if type(fresh) is dict:
            for positions, copy, inner in self.groups:
                fresh.update(zip(positions, map(copy, inner), strict=True))  # twice a setitem's speed
        else:
            put = fresh.__setitem__
            for positions, copy, inner in self.groups:
                _consume(map(put, positions, map(copy, inner)))
        return fresh


_INFINITY = float("inf")
_ATOMS = frozenset({str, bytes, int, float, bool, complex, type(None)})
_FLAT_CONTAINERS = frozenset({dict, list, set})
# Immutable values an object-storing backend keeps as they are (None is pickled: it means a miss).
_STORED_AS_IS = _ATOMS - {type(None)}


def _all_atoms(items: Iterable[Any]) -> bool:
    return _ATOMS.issuperset(map(type, items))


# (positions in the outer container, the kind's copy method, the private inner containers)
_Group = tuple[tuple[Any, ...], Callable[[Any], Any], tuple[Any, ...]]
_consume: Callable[[Iterable[Any]], None] = collections.deque(maxlen=0).extend
_ATOMS_OR_FLAT = _ATOMS | _FLAT_CONTAINERS
_FROZEN = frozenset({tuple, frozenset})


def _all_shareable(containers: Iterable[Iterable[Any]]) -> bool:
    """Whether every item of ``containers`` (iterated twice) is immutable all the way down.

    All atoms is one C-level pass; tuples and frozensets are then looked into.
    """
    items = chain.from_iterable
    return _all_atoms(items(containers)) or all(map(_is_immutable, items(containers)))


def _nested(value: dict[Any, Any] | list[Any]) -> _Copied | None:
    """``value`` kept as a :class:`_Nested` copy, or ``None`` if it is not of that shape.

    The shape: an exact dict or list whose items are immutable (atoms, or
    tuples and frozensets of them) or exact lists, dicts or sets of immutable
    items; dict keys immutable; no inner container twice (pickle would keep the
    two shared, separate copies would not). Exact types only, so nothing that
    pickle restores as something else (a subclass, a bytearray, an array) gets
    here; immutable items are shared, not copied, as pickle's copy could not be
    told from them. Each check is a C-level pass where it can be: a Python loop
    over the items costs more than the pickling it saves.
    """
    items: Iterable[Any]
    positions: Iterable[Any]
    if type(value) is dict:
        items, positions = value.values(), value
    else:
        items, positions = value, range(len(value))
    kind_list = list(map(type, items))
    kinds = set(kind_list)
    # Tuples and frozensets are shared as they are if nothing inside can change.
    if not _ATOMS_OR_FLAT.issuperset(kinds) and (
        not _ATOMS_OR_FLAT.issuperset(kinds - _FROZEN)
        or not all(_is_immutable(item) for item in items if type(item) in _FROZEN)
    ):
        return None
    if type(value) is dict and not (_all_atoms(value) or all(map(_is_immutable, value))):
        return None
    base = value.copy()
    groups: list[_Group] = []
    originals: list[Any] = []
    size = 0
    for inner_kind in (list, dict, set):
        if inner_kind not in kinds:
            continue
        mask = list(map(is_, kind_list, repeat(inner_kind)))
        inner = list(compress(items, mask))
        members = inner if inner_kind is not dict else [*inner, *map(dict.values, inner)]
        if not _all_shareable(members):
            return None
        where = tuple(compress(positions, mask))
        private = tuple(map(inner_kind.copy, inner))
        if type(base) is dict:
            base.update(zip(where, private, strict=True))
        else:
            _consume(map(base.__setitem__, where, private))
        groups.append((where, inner_kind.copy, private))
        originals += inner
        size += sum(map(len, inner))
    if len(set(map(id, originals))) != len(originals):
        return None
    nbytes = sys.getsizeof(base) + 64 * (len(base) + size + len(originals))
    return _Copied(_Nested(base, tuple(groups)), nbytes)


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


class FrontCore(Generic[_B]):
    """The rules :class:`~cachekit.Cache` and :class:`~cachekit.aio.AsyncCache` share.

    Checking the settings, building keys, the lifetime rules (:meth:`lifetime`),
    serializing and latency sampling live here once; the counters and the failure
    policy in :attr:`recorder`. The parameters are documented on :class:`~cachekit.Cache`.
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
        latency_sample_every: int = 64,
    ) -> None:
        self.default_timeout = default_timeout  # checked by the setter
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
        #: What every stored key starts with (prefix and version), ``None`` with a key function.
        self.key_head: str | None = None if key_function is not None else f"{key_prefix}:{version}:"
        #: Whether the backend keeps Python objects (local memory) rather than bytes.
        self.stores_objects = bool(getattr(backend, "stores_objects", False))
        # A Redis near cache's memo of decoded values (looked up on the class, as near_stats):
        # a near hit then costs no unpickling. Not for signed values (bound to the user's key).
        near_memo = getattr(type(backend), "near_memo", None)
        #: ``stored key -> (bytes, serializer, value)``, or ``None`` without a near cache.
        self.near_memo: dict[str, tuple[bytes, object, Any]] | None = (
            near_memo(backend) if near_memo is not None and self._signed is None else None
        )
        #: The counters and the failure policy; see :class:`~cachekit.fronts.recorder.Recorder`.
        self.recorder = Recorder(name, raises=on_error == "raise")
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

    @property
    def default_timeout(self) -> float | None:
        """Seconds used when no timeout is given; ``None`` never expires.

        Assigning it checks it as the constructor does.

        :raises ConfigurationError: if assigned 0 or less (or NaN, infinity).
        """
        return self._default_timeout

    @default_timeout.setter
    def default_timeout(self, timeout: float | datetime.timedelta | None) -> None:
        seconds = _seconds(timeout, "TIMEOUT")
        if seconds is not None and seconds <= 0:
            raise ConfigurationError(f"TIMEOUT must be positive or None, got {timeout!r}.", setting="TIMEOUT")
        self._default_timeout = seconds

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
        head = self.key_head
        if version is None and type(key) is str and head is not None:
            return head + key  # the common case, first
        if not isinstance(key, str):
            raise TypeError(f"Cache keys must be str, got {type(key).__name__} {key!r}.")
        if self._key_function is not None:
            return self._key_function(key, self.key_prefix, self.version if version is None else version)
        return f"{self.key_prefix}:{self.version if version is None else version}:{key}"

    def lifetime(self, timeout: Timeout) -> float | None:
        """Return the backend lifetime of a user timeout: the front's lifetime rules.

        :data:`DEFAULT_TIMEOUT` is the cache's default, ``None`` never expires,
        ``0`` or less is ``0.0`` ("do not store": writes delete instead).

        :raises TypeError: if ``timeout`` is not seconds, a timedelta or ``None``.
        :raises ConfigurationError: if it is NaN or infinite.
        """
        if timeout is DEFAULT_TIMEOUT:
            return self._default_timeout
        if type(timeout) is int or type(timeout) is float:  # not bool: type() is exact
            if 0 < timeout < _INFINITY:
                return timeout
            if timeout <= 0:
                return 0.0
            # NaN and infinity: _seconds below rejects them.
        seconds = _seconds(timeout, "timeout")
        if seconds is not None and seconds <= 0:
            return 0.0
        return seconds

    def _dumps(self, key: str, value: Any) -> Any:
        if self.stores_objects and value is not None:
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
            if kind is dict or kind is list:
                nested = _nested(value)  # one level deeper: C-level copies instead of pickle
                if nested is not None:
                    return nested
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
        return _Pickled(data) if self.stores_objects else data

    def _loads(self, key: str, stored: Any) -> Any:
        if self.stores_objects:
            kind = type(stored)
            if kind is _Copied:
                return stored.data.copy()
            if kind is not _Pickled:
                return stored
        return self._decode(key, stored)

    def _decode(self, key: str, data: bytes) -> Any:
        """Deserialize bytes read for ``key`` (checking a signed value's signature and binding)."""
        signed = self._signed
        if signed is None:
            return self.serializer.loads(data)
        return signed.loads_for(self._context(key), data)

    def _context(self, key: str) -> str:
        """What a signed value is bound to: this cache's prefix and the key (so values cannot be moved)."""
        return f"{len(self.key_prefix)}:{self.key_prefix}{key}"

    # -- observability ---------------------------------------------------------

    def stats(self) -> dict[str, int | float]:
        """Return this cache's counters since it was built.

        Counts are kept without a lock; under heavy threading a few increments
        may be lost, which is the price of leaving them always on.
        """
        recorder = self.recorder
        lookups = recorder.hits + recorder.misses
        return {
            **recorder.counts(),
            "hit_ratio": recorder.hits / lookups if lookups else 0.0,
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
        self.recorder.reset()
        self._latency = {}

    def _sample(self) -> float | None:
        """Start the timer if this call is the one in ``latency_sample_every``; else ``None``.

        ``get`` and ``set`` inline it: a method call measured 30-70 ns of a 0.45 µs
        local-memory ``set``.
        """
        self._countdown -= 1
        return None if self._countdown else self._restart_sampling()

    def _restart_sampling(self) -> float:
        """Count down to the next sampled call again, and start timing this one."""
        self._countdown = self.latency_sample_every
        return time.perf_counter()

    def _record(self, operation: str, started: float) -> None:
        histogram = self._latency.get(operation)
        if histogram is None:
            histogram = self._latency[operation] = LatencyHistogram()
        histogram.record(time.perf_counter() - started)
