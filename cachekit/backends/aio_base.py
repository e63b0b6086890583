"""The AsyncBackend protocol: the :class:`~cachekit.backends.base.Backend` protocol, awaited.

Same methods, arguments, results and errors as the sync protocol; only the
calls are coroutines. :class:`cachekit.aio.AsyncCache` drives one, and the
conformance suite runs on each through a sync bridge (``tests/async_bridge.py``).

The async backends and what they run on:

========================  ==========================================================
``AsyncLocMemBackend``    the sync local-memory store, called inline (no threads)
``AsyncRedisBackend``     ``redis.asyncio`` (standalone, Sentinel, Cluster)
``AsyncMemcachedBackend`` pymemcache in a bounded thread pool (see its module)
========================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import ClassVar
from typing import Protocol
from typing import runtime_checkable

# The async registry lives in cachekit.backends beside the sync one; this is its old import path.
from cachekit.backends import load_async_backend as load_async_backend


class AsyncLock(Protocol):
    """A named lock whose waits do not block the event loop.

    A lock held longer than its ``ttl`` expires on its own; releasing an
    expired lock that someone else has since taken does not release theirs.
    """

    async def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock; wait up to ``timeout`` seconds (``-1``: no limit) if ``blocking``."""
        ...

    async def release(self) -> None:
        """Give the lock back if this holder still owns it."""
        ...


@runtime_checkable
class AsyncBackend(Protocol):
    """Stores bytes under ``str`` keys with coroutine methods, as :class:`~cachekit.backends.base.Backend`."""

    #: Option names accepted by ``from_url``/``from_location`` and their types.
    OPTIONS: ClassVar[Mapping[str, type]]

    #: True when values stay Python objects in this process (local memory).
    stores_objects: ClassVar[bool]

    @classmethod
    def from_url(cls, url: str, **options: Any) -> AsyncBackend:
        """Build the backend from a URL; the same URLs as the sync backend."""
        ...

    @classmethod
    def from_location(cls, location: str | Sequence[str] | None, **options: Any) -> AsyncBackend:
        """Build the backend from a settings ``LOCATION`` and typed ``OPTIONS``."""
        ...

    async def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` on a miss."""
        ...

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Return the found keys only."""
        ...

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value`` under ``key``, replacing any old value."""
        ...

    async def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        """Store every item with the same ``ttl``."""
        ...

    async def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` holds nothing; return whether it was stored."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it was there."""
        ...

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in ``keys``."""
        ...

    async def incr(self, key: str, delta: int) -> int:
        """Add ``delta`` to the integer under ``key`` atomically and return the result.

        :raises MissingKeyError: if ``key`` holds nothing.
        :raises BackendError: if the value is not an integer.
        """
        ...

    async def touch(self, key: str, ttl: float | None) -> bool:
        """Give ``key`` a new ``ttl``; return whether it was there."""
        ...

    async def clear(self, prefix: str = "") -> None:
        """Remove every key starting with ``prefix`` (every key when it is empty)."""
        ...

    async def close(self) -> None:
        """Release connections; the backend may reconnect if used again."""
        ...

    def lock(self, name: str, *, ttl: float) -> AsyncLock:
        """Return a lock named ``name`` shared by every user of this store."""
        ...


@runtime_checkable
class AsyncSupportsCas(Protocol):
    """Optional capability: compare-and-set; see :class:`~cachekit.backends.base.SupportsCas`."""

    async def gets(self, key: str) -> tuple[bytes, Any] | None:
        """Return ``(value, token)``, or ``None`` on a miss."""
        ...

    async def cas(self, key: str, value: bytes, token: Any, ttl: float | None) -> bool:
        """Store ``value`` if ``key`` is unchanged since the ``gets`` that gave ``token``."""
        ...
