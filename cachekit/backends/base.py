"""The Backend protocol: a byte store that knows nothing of keys' meaning.

:class:`cachekit.Cache` owns prefixes, versions, timeouts and serialization and
hands a backend finished ``str`` keys, ``bytes`` values and a normalized ``ttl``:
``None`` (never expires) or seconds ``> 0``. A miss is ``None``; failures raise
:class:`~cachekit.exceptions.BackendError` subclasses, never a client library's
own exceptions.

Integers are stored as ASCII digits (``b"42"``) so that :meth:`Backend.incr`
runs inside the backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import ClassVar
from typing import Protocol
from typing import runtime_checkable


class Lock(Protocol):
    """A named lock, shaped like :class:`threading.Lock`.

    A lock held longer than its ``ttl`` expires on its own, so a crashed holder
    never blocks others for ever; releasing an expired lock that someone else
    has since taken does not release theirs.
    """

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock; wait up to ``timeout`` seconds (``-1``: no limit) if ``blocking``."""
        ...

    def release(self) -> None:
        """Give the lock back if this holder still owns it."""
        ...


@runtime_checkable
class Backend(Protocol):
    """Stores bytes under ``str`` keys; knows nothing of prefixes, versions or pickling.

    ``ttl`` is ``None`` (never expires) or seconds ``> 0``: :class:`~cachekit.Cache`
    has already applied the default and turned 0/negative timeouts into deletes.
    A miss is ``None``; failures raise ``BackendError`` subclasses.
    """

    #: Option names accepted by ``from_url``/``from_location`` and their types;
    #: :mod:`cachekit.config` converts URL query strings with it.
    OPTIONS: ClassVar[Mapping[str, type]]

    #: True when values stay Python objects in this process (locmem): the cache
    #: may then hand it immutable values as they are instead of serialized bytes.
    stores_objects: ClassVar[bool]

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Backend:
        """Build the backend from a URL such as ``locmem://name``."""
        ...

    @classmethod
    def from_location(cls, location: str | Sequence[str] | None, **options: Any) -> Backend:
        """Build the backend from a settings ``LOCATION`` and typed ``OPTIONS``."""
        ...

    def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` on a miss."""
        ...

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Return the found keys only."""
        ...

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value`` under ``key``, replacing any old value."""
        ...

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        """Store every item with the same ``ttl``."""
        ...

    def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` holds nothing; return whether it was stored."""
        ...

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it was there."""
        ...

    def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in ``keys``."""
        ...

    def incr(self, key: str, delta: int) -> int:
        """Add ``delta`` to the integer under ``key`` atomically and return the result.

        :raises MissingKeyError: if ``key`` holds nothing.
        :raises BackendError: if the value is not an integer.
        """
        ...

    def touch(self, key: str, ttl: float | None) -> bool:
        """Give ``key`` a new ``ttl``; return whether it was there."""
        ...

    def clear(self, prefix: str = "") -> None:
        """Remove every key starting with ``prefix`` (every key when it is empty)."""
        ...

    def close(self) -> None:
        """Release connections; the backend may reconnect if used again."""
        ...

    def lock(self, name: str, *, ttl: float) -> Lock:
        """Return a lock named ``name`` shared by every user of this store."""
        ...


@runtime_checkable
class SupportsCas(Protocol):
    """Optional capability: compare-and-set, for read-modify-write without lost updates.

    ``gets`` returns the value with an opaque token; ``cas`` stores a new value
    only if the key still holds what ``gets`` saw (memcached ``gets``/``cas``; a
    compare-and-set script on Redis; a check under the mutex in local memory).
    A key deleted since ``gets`` makes ``cas`` fail, so a late write never
    resurrects it.
    """

    def gets(self, key: str) -> tuple[bytes, Any] | None:
        """Return ``(value, token)``, or ``None`` on a miss."""
        ...

    def cas(self, key: str, value: bytes, token: Any, ttl: float | None) -> bool:
        """Store ``value`` if ``key`` is unchanged since the ``gets`` that gave ``token``."""
        ...
