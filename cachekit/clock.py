"""A wall clock that follows the cache server's, so freshness does not depend on each machine's clock.

``get_or_set`` envelopes (stale-while-revalidate, stale-if-error, XFetch, tags)
record when a value stops being fresh as a wall-clock time, written by one
machine and compared by another. With the default ``time.time`` a reader whose
clock runs 40 s ahead of the writer's sees a value that is fresh for 15 s as
stale at once, and recomputes it. A :class:`ServerClock` reads the time of
the server every writer and reader shares (Redis ``TIME``, memcached's
``stats`` ``time``) every ``resync_every`` seconds and keeps the difference to
the local clock, so all of them tell the same time, within a round trip (a
second for memcached, which reports whole seconds)::

    cache = Cache(backend)
    cache = cache.replace(clock=ServerClock(backend))

Any other backend (local memory: one process, one clock) is read with the local
clock unchanged. While the server cannot be reached the last difference is
kept. An async backend is resynchronised by the async ``get_or_set`` flow
(:meth:`ServerClock.aresync`), since calling the clock must not block a loop.
Page-cache ages can use the same object.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

from cachekit.eviction import redis_client

logger = logging.getLogger(__name__)

__all__ = ["ServerClock", "aserver_time", "server_time"]

#: Seconds between two reads of the server's time.
DEFAULT_RESYNC = 60.0
# After a failed read, try again this soon.
_RETRY = 5.0


def _memcached_time(stats: dict[str, Any]) -> float | None:
    for server in stats.values():
        if "time" in server:
            return float(server["time"])
    return None


def server_time(backend: Any) -> float | None:
    """The server's Unix time (Redis ``TIME``, memcached ``stats``), or ``None`` if it has none to give.

    :raises BackendError: if the server cannot be reached.
    """
    client = redis_client(backend)
    if client is not None:
        seconds, micros = client.time()
        return float(seconds) + float(micros) / 1e6
    if hasattr(backend, "server_settings") and hasattr(backend, "server_stats"):
        return _memcached_time(backend.server_stats())
    return None


async def aserver_time(backend: Any) -> float | None:
    """:func:`server_time` for an async backend."""
    client = redis_client(backend)
    if client is not None:
        seconds, micros = await client.time()
        return float(seconds) + float(micros) / 1e6
    sync = getattr(backend, "sync", None)
    if sync is not None and hasattr(sync, "server_stats") and hasattr(sync, "server_settings"):
        return await asyncio.to_thread(server_time, sync)
    return None


def _is_async(backend: Any) -> bool:
    return inspect.iscoroutinefunction(getattr(backend, "get", None))


class ServerClock:
    """A callable wall clock (Unix seconds): the local clock plus the server's measured lead over it.

    :param backend: the (sync or async) backend whose server's time to follow.
    :param resync_every: seconds between two reads of the server's time.
    :param local: the local wall clock (tests inject skewed ones).
    :param monotonic: the clock that times ``resync_every``.
    """

    def __init__(
        self,
        backend: Any,
        *,
        resync_every: float = DEFAULT_RESYNC,
        local: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if resync_every <= 0:
            raise ValueError(f"resync_every must be positive, got {resync_every!r}")
        self.backend = backend
        self.resync_every = resync_every
        self._local = local
        self._monotonic = monotonic
        self._async = _is_async(backend)
        self._next = float("-inf")
        #: Seconds the server's clock is ahead of the local one (0 until first read).
        self.offset = 0.0

    @property
    def due(self) -> bool:
        """Whether the server's time should be read again."""
        return self._monotonic() >= self._next

    def __call__(self) -> float:
        if not self._async and self._monotonic() >= self._next:
            self.resync()
        return self._local() + self.offset

    def _adopt(self, before: float, server: float | None, after: float) -> None:
        self._next = self._monotonic() + self.resync_every
        if server is not None:
            # The server answered somewhere between the two local readings.
            self.offset = server - (before + after) / 2

    def _failed(self, exc: Exception) -> None:
        self._next = self._monotonic() + min(_RETRY, self.resync_every)
        logger.info(
            "could not read the time of %r; keeping an offset of %.3f s: %s", self.backend, self.offset, exc
        )

    def resync(self) -> None:
        """Read the server's time now (a sync backend); on failure keep the last offset."""
        before = self._local()
        try:
            server = server_time(self.backend)
        except Exception as exc:  # an outage must not break the caller's clock
            self._failed(exc)
            return
        self._adopt(before, server, self._local())

    async def aresync(self) -> None:
        """Read the server's time now (an async backend); on failure keep the last offset."""
        before = self._local()
        try:
            server = await aserver_time(self.backend)
        except Exception as exc:  # an outage must not break the caller's clock
            self._failed(exc)
            return
        self._adopt(before, server, self._local())

    def __repr__(self) -> str:
        return f"<ServerClock of {self.backend!r}, offset {self.offset:+.3f} s>"
