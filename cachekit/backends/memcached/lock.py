"""The memcached lock behind cachekit's Lock protocol, sync and asyncio.

Private to :mod:`cachekit.backends.memcached` (re-exported there and by each backend
module). The asyncio lock runs the sync lock's single tries in the backend's thread
pool and waits between them with ``asyncio.sleep``, so waiting never holds a thread.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from cachekit.backends.memcached._config import expire_time

if TYPE_CHECKING:
    from cachekit.backends.memcached.asyncio import AsyncMemcachedBackend
    from cachekit.backends.memcached.sync import MemcachedBackend

# Bounds of the pause between two tries of a contended lock.
_LOCK_POLL_MIN = 0.002
_LOCK_POLL_MAX = 0.05


def lock_pauses(timeout: float) -> Iterator[float]:
    """The pauses between tries of a contended lock: 2 ms doubling to 50 ms, until ``timeout`` runs out.

    ``-1`` never runs out. The deadline starts now, not at the first pause.
    """
    deadline = None if timeout < 0 else time.monotonic() + timeout

    def pauses() -> Iterator[float]:
        pause = _LOCK_POLL_MIN
        while True:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                pause = min(pause, remaining)
            yield pause
            pause = min(pause * 2, _LOCK_POLL_MAX)

    return pauses()


class MemcachedLock:
    """A lock held as a memcached key: ``add`` with a random token, released by ``gets`` + ``cas``.

    Release checks the token with ``gets``, overwrites it with an empty
    tombstone by ``cas`` (so nobody can take the lock between the check and
    the delete) and deletes the key; a holder whose lock expired and was taken
    by another releases nothing. A holder that dies between the ``cas`` and the
    ``delete`` leaves the tombstone for at most the lock's ``ttl``.
    """

    def __init__(self, backend: MemcachedBackend, name: str, ttl: float) -> None:
        self._backend = backend
        self._ttl = ttl
        self._token = secrets.token_hex(16).encode()
        #: The lock's name as given.
        self.name = name

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock, polling up to ``timeout`` seconds (``-1``: no limit) when ``blocking``.

        :raises BackendUnavailableError: if the server holding the lock is unreachable.
        """
        pauses = lock_pauses(timeout)
        while True:
            if self.try_acquire():
                return True
            pause = next(pauses, None) if blocking else None
            if pause is None:
                return False
            time.sleep(pause)

    def try_acquire(self) -> bool:
        """One try: ``add`` the token.

        :raises BackendUnavailableError: if the server holding the lock is unreachable.
        """
        node, key = self._backend._locate_lock(self.name)
        return bool(self._backend._call(node, "add", key, self._token, expire_time(self._ttl)))

    def release(self) -> None:
        """Release the lock if this holder still owns it."""
        backend = self._backend
        node, key = backend._locate_lock(self.name)
        value, token = backend._call(node, "gets", key)
        if value != self._token:
            return
        # The tombstone keeps the key taken between the check and the delete.
        if backend._call(node, "cas", key, b"", token, expire_time(self._ttl)):
            backend._call(node, "delete", key)

    def __enter__(self) -> MemcachedLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"MemcachedLock({self.name!r}, ttl={self._ttl:g})"


class AsyncMemcachedLock:
    """:class:`~cachekit.backends.memcached.sync.MemcachedLock` with waits that do not block the loop."""

    def __init__(self, backend: AsyncMemcachedBackend, lock: MemcachedLock) -> None:
        self._backend = backend
        self._lock = lock

    async def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock, trying every few ms up to ``timeout`` seconds (``-1``: no limit) if ``blocking``.

        :raises BackendUnavailableError: if the server holding the lock is unreachable.
        """
        pauses = lock_pauses(timeout)
        while True:
            if await self._backend._run(self._lock.try_acquire):
                return True
            pause = next(pauses, None) if blocking else None
            if pause is None:
                return False
            await asyncio.sleep(pause)

    async def release(self) -> None:
        """Release the lock if this holder still owns it."""
        await self._backend._run(self._lock.release)

    async def __aenter__(self) -> AsyncMemcachedLock:
        await self.acquire()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.release()

    def __repr__(self) -> str:
        return f"Async{self._lock!r}"
