"""Run the sync conformance suites on the async API: thin sync bridges over async objects.

Each async backend (and :class:`~cachekit.aio.AsyncCache` over it) lives on one
event loop running in a private thread. :class:`SyncBackend` and
:class:`SyncCache` turn every call into ``run_coroutine_threadsafe(...).result()``
on that loop, so the unchanged sync tests drive the async code paths: every
backend call a test makes is one awaited coroutine. A test that calls from
several threads at once (``test_get_or_set_threads_compute_once``, the lock
waiter tests) thereby runs several tasks concurrently on the one loop, which is
what the async stampede and lock code must handle.

Why a loop thread rather than ``loop.run_until_complete`` in the caller: a loop
cannot be re-entered from a second thread while the first is inside
``run_until_complete``, and redis.asyncio connections must stay on the loop
that opened them.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Coroutine
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import ClassVar
from typing import TypeVar

T = TypeVar("T")

#: Seconds any one bridged call may take before the test fails instead of hanging.
CALL_DEADLINE = 30.0


class LoopThread:
    """An asyncio event loop running in a daemon thread until :meth:`close`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="async-bridge", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and return (or raise) its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(CALL_DEADLINE)

    def close(self) -> None:
        """Stop the loop, join its thread and close it."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(CALL_DEADLINE)
        self.loop.close()


class SyncLock:
    """A sync :class:`~cachekit.backends.base.Lock` over an async lock."""

    def __init__(self, lock: Any, loop: LoopThread) -> None:
        self._lock = lock
        self._loop = loop

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        result: bool = self._loop.run(self._lock.acquire(blocking, timeout))
        return result

    def release(self) -> None:
        self._loop.run(self._lock.release())

    def __enter__(self) -> SyncLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class SyncBackend:
    """The sync :class:`~cachekit.backends.base.Backend` protocol over an async backend."""

    OPTIONS: ClassVar[Mapping[str, type]] = {}
    stores_objects: ClassVar[bool] = False

    def __init__(self, backend: Any, loop: LoopThread) -> None:
        #: The async backend under test.
        self.async_backend = backend
        self._loop = loop
        # Cache reads stores_objects per instance; mirror the async backend's.
        self.stores_objects = backend.stores_objects  # type: ignore[misc]

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SyncBackend:
        raise NotImplementedError("build the async backend, then bridge it")

    @classmethod
    def from_location(cls, location: str | Sequence[str] | None, **options: Any) -> SyncBackend:
        raise NotImplementedError("build the async backend, then bridge it")

    def __repr__(self) -> str:
        return f"SyncBackend({self.async_backend!r})"

    def get(self, key: str) -> Any:
        return self._loop.run(self.async_backend.get(key))

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        return self._loop.run(self.async_backend.get_many(keys))  # type: ignore[no-any-return]

    def set(self, key: str, value: Any, ttl: float | None) -> None:
        self._loop.run(self.async_backend.set(key, value, ttl))

    def set_many(self, items: Mapping[str, Any], ttl: float | None) -> None:
        self._loop.run(self.async_backend.set_many(items, ttl))

    def add(self, key: str, value: Any, ttl: float | None) -> bool:
        return self._loop.run(self.async_backend.add(key, value, ttl))  # type: ignore[no-any-return]

    def delete(self, key: str) -> bool:
        return self._loop.run(self.async_backend.delete(key))  # type: ignore[no-any-return]

    def delete_many(self, keys: Sequence[str]) -> None:
        self._loop.run(self.async_backend.delete_many(keys))

    def incr(self, key: str, delta: int) -> int:
        return self._loop.run(self.async_backend.incr(key, delta))  # type: ignore[no-any-return]

    def touch(self, key: str, ttl: float | None) -> bool:
        return self._loop.run(self.async_backend.touch(key, ttl))  # type: ignore[no-any-return]

    def gets(self, key: str) -> tuple[Any, Any] | None:
        return self._loop.run(self.async_backend.gets(key))  # type: ignore[no-any-return]

    def cas(self, key: str, value: Any, token: Any, ttl: float | None) -> bool:
        return self._loop.run(self.async_backend.cas(key, value, token, ttl))  # type: ignore[no-any-return]

    def clear(self, prefix: str = "") -> None:
        self._loop.run(self.async_backend.clear(prefix))

    def close(self) -> None:
        self._loop.run(self.async_backend.close())

    def lock(self, name: str, *, ttl: float) -> SyncLock:
        return SyncLock(self.async_backend.lock(name, ttl=ttl), self._loop)


class SyncCache:
    """A sync facade over :class:`~cachekit.aio.AsyncCache` with :class:`~cachekit.Cache`'s API.

    Coroutine methods run on the bridge loop; plain attributes (``version``,
    ``stats()``, ``make_key()``...) pass through. ``key in cache`` is
    ``has_key``, which ``AsyncCache`` cannot offer as an operator.
    """

    def __init__(self, cache: Any, loop: LoopThread) -> None:
        #: The async cache under test.
        self.async_cache = cache
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.async_cache, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run(attribute(*args, **kwargs))

        return call

    def __contains__(self, key: str) -> bool:
        return bool(self._loop.run(self.async_cache.has_key(key)))

    def __repr__(self) -> str:
        return f"SyncCache({self.async_cache!r})"


class SyncStore:
    """The sync session :class:`~sessions.stores.base.Store` protocol over an async store.

    The store conformance suite builds ``Session(store, value)`` and calls
    ``session.save()``; with this bridge each load, save, cycle and delete is one
    awaited call of :class:`~sessions.stores.aio_cache.AsyncCacheStore`.
    ``cache`` is the async cache behind a :class:`SyncCache` whose ``backend`` is
    bridged too, for the tests that look at stored keys.
    """

    server_side: ClassVar[bool] = True

    def __init__(self, store: Any, loop: LoopThread) -> None:
        #: The async store under test.
        self.async_store = store
        self._loop = loop
        self.cache = SyncCache(store.cache, loop)
        self.cache.backend = SyncBackend(store.cache.backend, loop)

    def __repr__(self) -> str:
        return f"SyncStore({self.async_store!r})"

    @property
    def policy(self) -> Any:
        return self.async_store.policy

    @policy.setter
    def policy(self, value: Any) -> None:
        self.async_store.policy = value

    @property
    def clock(self) -> Any:
        return self.async_store.clock

    @property
    def serializer(self) -> Any:
        return self.async_store.serializer

    def store_key(self, session_key: str) -> str:
        return str(self.async_store.store_key(session_key))

    def load(self, cookie_value: str) -> Any:
        return self._loop.run(self.async_store.load(cookie_value))

    def create(self, state: Any) -> str:
        return self._loop.run(self.async_store.create(state))  # type: ignore[no-any-return]

    def save(self, session: Any) -> str:
        return self._loop.run(self.async_store.save(session))  # type: ignore[no-any-return]

    def cycle(self, session: Any) -> str:
        return self._loop.run(self.async_store.cycle(session))  # type: ignore[no-any-return]

    def delete(self, cookie_value: str) -> None:
        self._loop.run(self.async_store.delete(cookie_value))

    def exists(self, cookie_value: str) -> bool:
        return self._loop.run(self.async_store.exists(cookie_value))  # type: ignore[no-any-return]
