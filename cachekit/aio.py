"""Native async caching: :class:`AsyncCache`, the awaitable twin of :class:`~cachekit.Cache`.

::

    from cachekit.aio import AsyncCache
    from cachekit.backends.aio_redis import AsyncRedisBackend

    cache = AsyncCache(AsyncRedisBackend.from_url("redis://127.0.0.1:6379/0"), key_prefix="app")
    await cache.set("greeting", "hello", timeout=60)
    await cache.get("greeting")
    await cache.get_or_set("report", build_report)   # build_report may be ``async def``

Why a separate class rather than ``a*`` methods on ``Cache`` (Django's
``aget``/``aset``): an ``AsyncCache`` drives an *async* backend
(:class:`~cachekit.backends.aio_base.AsyncBackend`: ``redis.asyncio``, the
in-process store, memcached in a bounded thread pool), while a ``Cache`` drives a
sync one. Putting both on one class would mean a ``Cache`` holding two backends,
or async methods that run the sync backend in a thread, which is exactly the
Django behaviour this module exists to avoid. Two classes also let each keep the
method names users know (``get``, ``set``, ``get_or_set``...), and a type checker
tells the two apart.

The rules are not copied: both classes derive from ``cachekit.cache._CacheCore``,
which owns the settings checks, key building (:meth:`make_key`), timeout
normalization, serialization, the failure policy (an unavailable backend turns
reads into misses and writes into no-ops, logged and counted, unless
``on_error="raise"``) and the counters (:meth:`stats`). ``get_or_set``'s
enveloped options reuse :class:`~cachekit.stampede.CacheEntry` and the tag
counters of :mod:`cachekit.tags`.

Stampede protection (:meth:`AsyncCache.get_or_set`, :func:`memoize`): one
computation per missing key. Tasks of one process that ask for the same key
while it is being computed await that computation instead of starting their
own; across processes the computing task holds the backend's lock (Redis
``SET NX PX`` with a token), and other processes wait for it up to
``lock_timeout`` without blocking their event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Coroutine
from collections.abc import Iterable
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeVar

from cachekit.aio_memoize import AsyncMemoized
from cachekit.aio_memoize import memoize
from cachekit.aio_stampede import _call
from cachekit.aio_stampede import _EntryFlow
from cachekit.aio_stampede import _EntryOptions
from cachekit.backends.aio_base import AsyncBackend
from cachekit.cache import _MISSING
from cachekit.cache import DEFAULT_TIMEOUT
from cachekit.cache import Timeout
from cachekit.cache import _CacheCore
from cachekit.cache import _Copied
from cachekit.cache import _Pickled
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import LockTimeoutError
from cachekit.exceptions import MissingKeyError
from cachekit.exceptions import SerializationError
from cachekit.tags import Generations
from cachekit.tags import _tag_key

if TYPE_CHECKING:
    from cachekit.backends.aio_base import AsyncLock

logger = logging.getLogger(__name__)

T = TypeVar("T")

# What a follower of an in-process computation gets when the leader failed.
_FAILED: Any = object()


class AsyncCache(_CacheCore[AsyncBackend]):
    """The async cache front: one async backend plus the rules of :class:`~cachekit.Cache`.

    Same parameters as :class:`~cachekit.Cache` (``default_timeout``, ``key_prefix``,
    ``version``, ``key_function``, ``serializer``, ``on_error``, ``lock_timeout``,
    ``lock_ttl``, ``name``, ``clock``); ``backend`` is an
    :class:`~cachekit.backends.aio_base.AsyncBackend`. Every method that talks to
    the backend is a coroutine; :meth:`make_key`, :meth:`stats` and
    :meth:`reset_stats` are not. One instance serves every task of its event loop.
    """

    # Stored key -> the in-process computation other tasks await (single flight);
    # created on first use so that AsyncCache keeps Cache's constructor as it is.
    _flights: dict[str, asyncio.Future[Any]]

    # -- reads -----------------------------------------------------------------

    async def _atimed(self, operation: str, call: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await a backend call, timing it when it is the one in ``latency_sample_every``."""
        if not self._due():
            return await call(*args)
        started = time.perf_counter()
        result = await call(*args)
        self._record(operation, started)
        return result

    async def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        """Return the value stored under ``key``, or ``default`` on a miss."""
        if type(key) is str and version is None and self._key_function is None:
            stored_key = self._key_head + key
        else:
            stored_key = self.make_key(key, version)
        try:
            stored: Any = await self._atimed("get", self.backend.get, stored_key)
        except BackendUnavailableError as exc:
            self._failed("get", exc)
            self._misses += 1
            return default
        if stored is None:
            self._misses += 1
            return default
        if self._objects:
            kind = type(stored)
            if kind is not _Pickled:
                self._hits += 1
                return stored.data.copy() if kind is _Copied else stored
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

    async def get_many(self, keys: Iterable[str], version: int | None = None) -> dict[str, Any]:
        """Return a dict of the keys that were found, with their values."""
        by_stored = {self.make_key(key, version): key for key in keys}
        try:
            found = await self._atimed("get_many", self.backend.get_many, list(by_stored))
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

    async def has_key(self, key: str, version: int | None = None) -> bool:
        """Return whether ``key`` holds a live value (without counting a hit or miss).

        There is no ``in`` operator: ``__contains__`` cannot be awaited.
        """
        stored_key = self.make_key(key, version)
        try:
            return await self.backend.get(stored_key) is not None
        except BackendUnavailableError as exc:
            self._failed("has_key", exc)
            return False

    # -- writes ----------------------------------------------------------------

    async def set(
        self, key: str, value: Any, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """Store ``value`` under ``key``; a timeout of 0 or less deletes it instead.

        :raises SerializationError: if the value cannot be serialized.
        """
        stored_key = self.make_key(key, version)
        ttl = self._ttl(timeout)
        if ttl == 0:
            await self._delete_stored(stored_key)
            return
        data = self._dumps(key, value)
        try:
            await self._atimed("set", self.backend.set, stored_key, data, ttl)
        except BackendUnavailableError as exc:
            self._failed("set", exc)
            return
        self._sets += 1

    async def add(
        self, key: str, value: Any, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Store ``value`` only if ``key`` holds nothing; return whether it was stored."""
        stored_key = self.make_key(key, version)
        ttl = self._ttl(timeout)
        if ttl == 0:
            return False
        data = self._dumps(key, value)
        try:
            added = await self._atimed("add", self.backend.add, stored_key, data, ttl)
        except BackendUnavailableError as exc:
            self._failed("add", exc)
            return False
        if added:
            self._sets += 1
        return added

    async def set_many(
        self, mapping: Mapping[str, Any], timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[str]:
        """Store every item; return the keys that could not be stored (all of them in an outage)."""
        ttl = self._ttl(timeout)
        if ttl == 0:
            await self.delete_many(mapping, version)
            return []
        items = {self.make_key(key, version): self._dumps(key, value) for key, value in mapping.items()}
        if not items:
            return []
        try:
            await self._atimed("set_many", self.backend.set_many, items, ttl)
        except BackendUnavailableError as exc:
            self._failed("set_many", exc)
            return list(mapping)
        self._sets += len(items)
        return []

    async def _delete_stored(self, stored_key: str) -> bool:
        try:
            deleted = await self._atimed("delete", self.backend.delete, stored_key)
        except BackendUnavailableError as exc:
            self._failed("delete", exc)
            return False
        self._deletes += 1
        return deleted

    async def delete(self, key: str, version: int | None = None) -> bool:
        """Remove ``key``; return whether it was there."""
        return await self._delete_stored(self.make_key(key, version))

    async def delete_many(self, keys: Iterable[str], version: int | None = None) -> None:
        """Remove every key in ``keys``."""
        stored_keys = [self.make_key(key, version) for key in keys]
        if not stored_keys:
            return
        try:
            await self.backend.delete_many(stored_keys)
        except BackendUnavailableError as exc:
            self._failed("delete_many", exc)
            return
        self._deletes += len(stored_keys)

    async def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """Add ``delta`` to the integer under ``key`` in the backend and return it.

        A backend outage is raised even under ``on_error="ignore"``: there is no
        value to return.

        :raises MissingKeyError: if ``key`` is not stored.
        :raises BackendError: if the stored value is not an integer.
        """
        if not isinstance(delta, int) or isinstance(delta, bool):
            raise TypeError(f"delta must be an int, got {delta!r}.")
        stored_key = self.make_key(key, version)
        try:
            return await self.backend.incr(stored_key, delta)
        except MissingKeyError:
            raise MissingKeyError(key) from None
        except BackendUnavailableError:
            self._errors += 1
            raise

    async def decr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """Subtract ``delta``; see :meth:`incr`."""
        if not isinstance(delta, int) or isinstance(delta, bool):
            raise TypeError(f"delta must be an int, got {delta!r}.")
        return await self.incr(key, -delta, version)

    async def touch(self, key: str, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """Give ``key`` a new timeout; return whether it was there. 0 or less deletes it."""
        stored_key = self.make_key(key, version)
        ttl = self._ttl(timeout)
        if ttl == 0:
            return await self._delete_stored(stored_key)
        try:
            return await self.backend.touch(stored_key, ttl)
        except BackendUnavailableError as exc:
            self._failed("touch", exc)
            return False

    async def gets(self, key: str, version: int | None = None) -> tuple[Any, Any] | None:
        """Return ``(value, token)`` for a later :meth:`cas`, or ``None`` on a miss.

        :raises NotImplementedError: if the backend has no compare-and-set.
        :raises BackendUnavailableError: always raised, as in :meth:`cachekit.Cache.gets`.
        """
        stored_key = self.make_key(key, version)
        gets = getattr(self.backend, "gets", None)
        if gets is None:
            raise NotImplementedError(f"{self.backend!r} does not support compare-and-set.")
        try:
            found = await gets(stored_key)
        except BackendUnavailableError:
            self._errors += 1
            raise
        if found is None:
            self._misses += 1
            return None
        self._hits += 1
        return self._loads(key, found[0]), found[1]

    async def cas(
        self, key: str, value: Any, token: Any, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Store ``value`` if ``key`` is unchanged since :meth:`gets` returned ``token``."""
        stored_key = self.make_key(key, version)
        ttl = self._ttl(timeout)
        data = self._dumps(key, value)
        if ttl == 0:
            ttl = 0.001  # expire at once, but only if the compare succeeds
        cas = getattr(self.backend, "cas", None)
        if cas is None:
            raise NotImplementedError(f"{self.backend!r} does not support compare-and-set.")
        try:
            stored: bool = await cas(stored_key, data, token, ttl)
        except BackendUnavailableError:
            self._errors += 1
            raise
        if stored:
            self._sets += 1
        return stored

    async def incr_version(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """Move the value under ``key`` to version ``version + delta``; return the new version.

        :raises MissingKeyError: if ``key`` is not stored at ``version``.
        """
        if version is None:
            version = self.version
        value = await self.get(key, _MISSING, version)
        if value is _MISSING:
            raise MissingKeyError(key)
        await self.set(key, value, version=version + delta)
        await self.delete(key, version=version)
        return version + delta

    async def decr_version(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """Move the value under ``key`` to version ``version - delta``; see :meth:`incr_version`."""
        return await self.incr_version(key, -delta, version)

    async def clear(self) -> None:
        """Remove this cache's keys: those under its prefix, or every key if it has none."""
        try:
            await self.backend.clear(f"{self.key_prefix}:" if self.key_prefix else "")
        except BackendUnavailableError as exc:
            self._failed("clear", exc)

    async def close(self) -> None:
        """Release the backend's connections; the cache reconnects if used again."""
        await self.backend.close()

    # -- stampede protection ---------------------------------------------------

    async def get_or_set(
        self,
        key: str,
        default: Callable[[], Awaitable[T] | T] | T,
        timeout: Timeout = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        stale_while_revalidate: float = 0,
        stale_if_error: float = 0,
        beta: float = 0,
        tags: Iterable[str] = (),
    ) -> T:
        """Return the value under ``key``; on a miss store ``default`` (calling it if callable).

        ``default`` may be a value, a function or an ``async def`` function (its
        coroutine is awaited). When it is callable, one caller computes a
        missing key: tasks of this process await the computation already under
        way, and other processes wait on the backend's lock up to
        ``lock_timeout`` seconds (then compute rather than fail), as
        :meth:`cachekit.Cache.get_or_set` does.

        The keyword-only options work as in :meth:`cachekit.Cache.get_or_set`
        (see :mod:`cachekit.stampede`).
        """
        if not callable(default):
            value = await self.get(key, _MISSING, version)
            if value is not _MISSING:
                return value  # type: ignore[no-any-return]
            await self.add(key, default, timeout, version)
            return await self.get(key, default, version)  # type: ignore[no-any-return]
        compute: Callable[[], Awaitable[T] | T] = default
        enveloped = bool(stale_while_revalidate or stale_if_error or beta or tags)
        if enveloped:
            ttl = self._ttl(timeout)
            if ttl == 0:
                return await _call(compute)
            options = _EntryOptions(ttl, stale_while_revalidate, stale_if_error, beta, tuple(tags))
            return await _EntryFlow(self, key, compute, version, options).run()
        value = await self.get(key, _MISSING, version)
        if value is not _MISSING:
            return value  # type: ignore[no-any-return]
        return await self._single_flight(
            key, version, lambda: self._compute_locked(key, compute, timeout, version)
        )

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
            self._lock_waits += 1
            try:
                result = await asyncio.wait_for(asyncio.shield(flight), self.lock_timeout)
            except TimeoutError:
                logger.info("%s", LockTimeoutError(stored_key, self.lock_timeout))
                result = _FAILED
            if result is not _FAILED:
                # Read the stored copy so no two callers share one mutable object.
                value = await self.get(key, _MISSING, version)
                return result if value is _MISSING else value  # type: ignore[no-any-return]
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

    async def _lock(self, key: str, version: int | None) -> AsyncLock | None:
        try:
            return self.backend.lock("cachekit.lock:" + self.make_key(key, version), ttl=self.lock_ttl)
        except BackendUnavailableError as exc:
            self._failed("lock", exc)
            return None

    async def _acquire(self, lock: AsyncLock, *, blocking: bool) -> bool | None:
        """Take ``lock``; ``None`` when the backend is down (the policy has logged it)."""
        try:
            return await lock.acquire(blocking, self.lock_timeout if blocking else -1)
        except BackendUnavailableError as exc:
            self._failed("lock", exc)
            return None

    async def _release(self, lock: AsyncLock) -> None:
        try:
            await lock.release()
        except BackendUnavailableError as exc:
            self._failed("unlock", exc)

    async def _compute_locked(
        self, key: str, compute: Callable[[], Awaitable[T] | T], timeout: Timeout, version: int | None
    ) -> T:
        """The sync ``get_or_set`` protocol under the backend lock, awaited."""
        lock = await self._lock(key, version)
        acquired = None if lock is None else await self._acquire(lock, blocking=True)
        if lock is None or acquired is None:
            return await _call(compute)
        if not acquired:
            self._lock_waits += 1
            logger.info("%s", LockTimeoutError(self.make_key(key, version), self.lock_timeout))
            value = await self.get(key, _MISSING, version)
            if value is not _MISSING:
                return value  # type: ignore[no-any-return]
            result = await _call(compute)
            await self.set(key, result, timeout, version)
            return result
        try:
            value = await self.get(key, _MISSING, version)
            if value is not _MISSING:
                self._lock_waits += 1
                return value  # type: ignore[no-any-return]
            result = await _call(compute)
            await self.set(key, result, timeout, version)
            return result
        finally:
            await self._release(lock)

    # -- tags --------------------------------------------------------------------

    async def invalidate_tags(self, *tags: str) -> None:
        """Invalidate every entry stored with any of ``tags``: one ``incr`` per tag.

        :raises BackendUnavailableError: if the backend is down, whatever ``on_error``
            says, as :meth:`cachekit.Cache.invalidate_tags`.
        """
        for tag in dict.fromkeys(tags):
            with contextlib.suppress(MissingKeyError):
                await self.incr(_tag_key(tag))

    async def _current_generations(self, tags: Iterable[str]) -> Generations:
        """:func:`cachekit.tags.current_generations`, awaited."""
        names = tuple(dict.fromkeys(tags))
        if not names:
            return ()
        keys = [_tag_key(tag) for tag in names]
        found = await self.get_many(keys)
        generations: list[tuple[str, int]] = []
        for tag, key in zip(names, keys, strict=True):
            generation = found.get(key)
            if not isinstance(generation, int):
                fresh = secrets.randbits(48)
                if not await self.add(key, fresh, timeout=None):
                    stored = await self.get(key)
                    fresh = stored if isinstance(stored, int) else fresh
                generation = fresh
            generations.append((tag, generation))
        return tuple(generations)

    async def _generations_valid(self, generations: Generations) -> bool:
        """:func:`cachekit.tags.generations_valid`, awaited."""
        if not generations:
            return True
        keys = [_tag_key(tag) for tag, _ in generations]
        found = await self.get_many(keys)
        return all(found.get(key) == gen for key, (_, gen) in zip(keys, generations, strict=True))


def from_url(url: str, *, name: str = "", **options: Any) -> AsyncCache:
    """Build an :class:`AsyncCache` from a URL, exactly as :func:`cachekit.from_url` builds a Cache.

    ``locmem://``, ``redis://`` (and ``rediss://``, ``unix://``,
    ``redis+sentinel://``, ``redis+cluster://``) and ``memcached://`` take the
    same options as their sync backends.

    :raises ConfigurationError: for a malformed URL, an unknown scheme or option.
    """
    from cachekit.backends.aio_base import load_async_backend
    from cachekit.config import cache_from_url

    cache: AsyncCache = cache_from_url(
        url, name=name, options=options, load=load_async_backend, cache_class=AsyncCache
    )
    return cache


__all__ = ["AsyncCache", "AsyncMemoized", "from_url", "memoize"]
