"""What only the async front has, written by hand; its sync half is :mod:`cachekit.fronts._sync_only`.

The async sources (``cachekit/fronts/_async``) import these names; ``.ci/unasync.py``
renames them to the sync halves in the generated twins (``AsyncExtras`` ->
``SyncExtras``, ``acall`` -> ``call``, ``AsyncCompute`` -> ``Compute``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Coroutine
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeAlias
from typing import TypeVar

from cachekit.backends.aio_base import AsyncBackend
from cachekit.background import TaskWorkers
from cachekit.exceptions import LockTimeoutError
from cachekit.fronts._core import _MISSING
from cachekit.fronts._core import FrontCore

# Single flight logs as part of AsyncCache, where it lived first; log filters name that logger.
logger = logging.getLogger("cachekit.aio")

T = TypeVar("T")

#: What ``get_or_set`` may compute with: a function, or in async code an ``async def`` one.
AsyncCompute: TypeAlias = Callable[[], Awaitable[T] | T]

# What a follower of an in-process computation gets when the leader failed.
_FAILED: Any = object()


async def acall(compute: AsyncCompute[T]) -> T:
    """Call ``compute``; await its result when it is awaitable (``async def``, a coroutine...)."""
    result = compute()
    if inspect.isawaitable(result):
        return await result
    return result


class AsyncExtras(FrontCore[AsyncBackend]):
    """The async front's own part: tasks of one process share one computation per key."""

    # Stored key -> the in-process computation other tasks await (single flight);
    # created on first use so that the front's constructor stays the shared one.
    _flights: dict[str, asyncio.Future[Any]]

    if TYPE_CHECKING:

        async def get(self, key: str, default: Any = None, version: int | None = None) -> Any: ...

    async def _single_flight(
        self, key: str, version: int | None, work: Callable[[], Coroutine[Any, Any, T]]
    ) -> T:
        """Run ``work`` once for concurrent callers of this process asking for the same key."""
        stored_key = self.make_key(key, version)
        loop = asyncio.get_running_loop()
        try:
            flights = self._flights
        except AttributeError:
            flights = self._flights = {}
        flight = flights.get(stored_key)
        if flight is not None and flight.get_loop() is loop:
            self.recorder.lock_waits += 1
            try:
                result = await asyncio.wait_for(asyncio.shield(flight), self.lock_timeout)
            except TimeoutError:
                logger.info("%s", LockTimeoutError(stored_key, self.lock_timeout))
                result = _FAILED
            if result is not _FAILED:
                # Read the stored copy so no two callers share one mutable object.
                value = await self.get(key, _MISSING, version)
                answer: T = result if value is _MISSING else value
                return answer
            # The computing task failed or is slow: take our own turn at the backend lock.
            return await work()
        future: asyncio.Future[Any] = loop.create_future()
        flights[stored_key] = future
        try:
            result = await work()
        except BaseException:
            future.set_result(_FAILED)
            raise
        else:
            future.set_result(result)
            return result
        finally:
            if flights.get(stored_key) is future:
                del flights[stored_key]


#: The refresh-ahead recomputations of ``get_or_set``/``@memoize`` (``refresh_ahead``) in this
#: process: at most 4 tasks at once, one per key; ``await REFRESHES.wait(timeout)`` waits for them.
REFRESHES = TaskWorkers(4)


def refresh_later(job: Callable[[], Awaitable[object]], key: str) -> bool:
    """Start ``job`` as a background task unless one for ``key`` runs or all are busy."""
    return REFRESHES.submit(job, key)


def default_async_cache() -> Any:
    """There is no default async cache: ``cachekit.aio.memoize`` is always given one."""
    raise TypeError("cachekit.aio.memoize needs cache=: async clients belong to one event loop.")
