"""The Redis lock behind cachekit's Lock protocol, sync and asyncio.

Private to :mod:`cachekit.backends.redis` (re-exported there and by each backend
module). Both take and release the lock with the same scripts
(:mod:`~cachekit.backends.redis._rules`); each writes only its own waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING
from typing import Any

from cachekit.backends.redis._rules import lock_pause
from cachekit.backends.redis._rules import ms
from cachekit.backends.redis._rules import wire_key
from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError

if TYPE_CHECKING:
    from cachekit.backends.redis.asyncio import AsyncRedisBackend
    from cachekit.backends.redis.sync import RedisBackend


class _LockState:
    """What both locks hold and decide: the name, the token, the scripts' calls, the next step."""

    def __init__(self, backend: Any, name: str, ttl: float) -> None:
        self._backend = backend
        self._name = name
        self._wire = wire_key(name)
        self._ttl_ms = ms(max(ttl, 0.001))
        self._token: bytes | None = None

    def _start(self, timeout: float) -> tuple[bytes, float | None, Callable[[], Any]]:
        """A fresh token, the deadline, and the acquiring call.

        The script recognises its own token, so repeating it after a lost reply is safe.
        """
        token = uuid.uuid4().hex.encode()
        deadline = None if timeout < 0 else time.monotonic() + timeout
        script = self._backend._script("lock_acquire")
        return token, deadline, partial(script, keys=[self._wire], args=[token, self._ttl_ms])

    def _step(self, taken: Any, token: bytes, blocking: bool, deadline: float | None) -> bool | float:
        """After one try: ``True`` (held), ``False`` (give up) or the seconds to wait before the next."""
        if taken:
            self._token = token
            return True
        if not blocking:
            return False
        pause = lock_pause(deadline)
        return False if pause is None else pause

    def _release_call(self, token: bytes) -> Callable[[], Any]:
        return partial(self._backend._script("lock_release"), keys=[self._wire], args=[token])

    def _held(self) -> bytes | None:
        """The token to release with, forgotten here (``None``: not held)."""
        token, self._token = self._token, None
        return token

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r})"


class RedisLock(_LockState):
    """A lock held in Redis behind cachekit's Lock protocol.

    Taken with ``SET NX PX`` and a random token in one script that also recognises
    the token: when a reply is lost and the acquisition is retried, the retry finds
    the lock its own first attempt took and holds it, instead of waiting for
    "another holder" until the lock expires. Released by compare-and-delete, so a
    holder whose lock expired and was taken by someone else never deletes the new
    holder's lock. The token is not thread-local: a lock taken in one thread may be
    released in another, as with :class:`threading.Lock`.

    If an acquisition times out (the reply never came), the lock may be held on the
    server without the caller knowing; a background thread then releases it by its
    token, so the next caller does not wait for an orphan until its TTL.
    """

    _backend: RedisBackend

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock; wait up to ``timeout`` seconds (``-1``: no limit) if ``blocking``.

        :raises BackendUnavailableError: if Redis cannot be reached.
        """
        token, deadline, attempt = self._start(timeout)
        while True:
            try:
                taken = self._backend._call(self._wire, "lock acquire", self._name, attempt, attempt)
            except BackendUnavailableError:
                # The script may have run and only its reply been lost: let go of what we
                # may hold, off the request's path, so nobody waits for an orphan.
                threading.Thread(target=self._abandon, args=(token,), daemon=True).start()
                raise
            step = self._step(taken, token, blocking, deadline)
            if isinstance(step, bool):
                return step
            time.sleep(step)

    def _release(self, token: bytes, operation: str) -> None:
        run = self._release_call(token)
        self._backend._call(self._wire, operation, self._name, run, run)

    def _abandon(self, token: bytes) -> None:
        with contextlib.suppress(BackendError):  # else the lock expires by its TTL
            self._release(token, "lock abandon")

    def release(self) -> None:
        """Release the lock if this holder still owns it; otherwise do nothing."""
        token = self._held()
        if token is not None:
            self._release(token, "lock release")

    def __enter__(self) -> RedisLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


# Background lock clean-ups, kept referenced until they finish.
_BACKGROUND: set[asyncio.Task[None]] = set()


class AsyncRedisLock(_LockState):
    """A lock held in Redis (``SET NX PX`` + token, compare-and-delete release), awaited.

    The same scripts as :class:`~cachekit.backends.redis.sync.RedisLock`: a retried
    acquisition recognises its own token, and an acquisition whose reply timed out
    is released by its token in a background task. A blocked ``acquire`` polls
    Redis every 25 ms with ``asyncio.sleep``, so other tasks run meanwhile.
    """

    _backend: AsyncRedisBackend

    async def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock; wait up to ``timeout`` seconds (``-1``: no limit) if ``blocking``.

        :raises BackendUnavailableError: if Redis cannot be reached.
        """
        token, deadline, attempt = self._start(timeout)
        while True:
            try:
                taken = await self._backend._call(self._wire, "lock acquire", self._name, attempt, attempt)
            except BackendUnavailableError:
                task = asyncio.get_running_loop().create_task(self._abandon(token))
                _BACKGROUND.add(task)
                task.add_done_callback(_BACKGROUND.discard)
                raise
            step = self._step(taken, token, blocking, deadline)
            if isinstance(step, bool):
                return step
            await asyncio.sleep(step)

    async def _release(self, token: bytes, operation: str) -> None:
        run = self._release_call(token)
        await self._backend._call(self._wire, operation, self._name, run, run)

    async def _abandon(self, token: bytes) -> None:
        with contextlib.suppress(BackendError):  # else the lock expires by its TTL
            await self._release(token, "lock abandon")

    async def release(self) -> None:
        """Release the lock if this holder still owns it; otherwise do nothing."""
        token = self._held()
        if token is not None:
            await self._release(token, "lock release")

    async def __aenter__(self) -> AsyncRedisLock:
        await self.acquire()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.release()
