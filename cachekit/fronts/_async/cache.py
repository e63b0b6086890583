"""The cache front: one backend plus key, timeout and serialization rules, its backend calls awaited.

This is the source of :class:`~cachekit.aio.AsyncCache`; the sync
:class:`~cachekit.Cache` is generated from it by ``.ci/unasync.py``. The rules
both share (settings, keys, lifetimes, serialization, sampling) live in
:class:`~cachekit.fronts._core.FrontCore`, the counters and the failure policy
in its :class:`~cachekit.fronts.recorder.Recorder`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any
from typing import TypeVar

from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import LockTimeoutError
from cachekit.exceptions import MissingKeyError
from cachekit.exceptions import SerializationError
from cachekit.fronts._async.lock import GoAheadLock
from cachekit.fronts._async.lock import Turn
from cachekit.fronts._async.stampede import get_or_set_entry
from cachekit.fronts._async.tags import invalidate_tags
from cachekit.fronts._async_only import AsyncCompute
from cachekit.fronts._async_only import AsyncExtras
from cachekit.fronts._async_only import acall
from cachekit.fronts._core import _MISSING
from cachekit.fronts._core import _STORED_AS_IS
from cachekit.fronts._core import DEFAULT_TIMEOUT
from cachekit.fronts._core import Timeout
from cachekit.fronts._core import _Copied
from cachekit.fronts._core import _is_immutable
from cachekit.fronts._core import _Pickled

logger = logging.getLogger("cachekit.aio")

T = TypeVar("T")


class AsyncCache(AsyncExtras):
    """The cache front: one backend plus key, timeout and serialization rules.

    :param backend: the byte store, a :class:`~cachekit.backends.aio_base.AsyncBackend`
        (see :mod:`cachekit.backends`).
    :param default_timeout: seconds (or timedelta) used when a call passes no
        timeout; ``None`` means values never expire.
    :param key_prefix: prepended to every key; also scopes :meth:`clear`.
    :param version: default key version, as in Django.
    :param key_function: ``f(key, key_prefix, version) -> str`` replacing
        :func:`~cachekit.cache.default_key_function`; its keys should start with
        ``"<key_prefix>:"`` for :meth:`clear` to stay scoped.
    :param serializer: defaults to :class:`~cachekit.serializers.PickleSerializer`.
    :param on_error: ``"ignore"`` (outages become misses and no-ops) or ``"raise"``.
    :param lock_timeout: how long :meth:`get_or_set` waits for another caller that
        is computing the same key before computing it itself.
    :param lock_ttl: how long a computing caller may hold the lock before it expires.
    :param name: a label for logs and ``repr``.
    :param clock: wall-clock seconds, shared across processes, used for stale
        windows and early refresh (:mod:`cachekit.stampede`) and page ages; tests
        pass a fake one.
    :param latency_sample_every: time one backend call in this many (``0``: never).
    """

    # -- reads -----------------------------------------------------------------

    async def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        """Return the value stored under ``key``, or ``default`` on a miss."""
        head = self.key_head
        if version is None and type(key) is str and head is not None:
            stored_key = head + key  # the hot path: skip make_key's checks
        else:
            stored_key = self.make_key(key, version)
        # _sample() inlined, here and in set(): the call measured 30-70 ns of a local-memory get.
        countdown = self._countdown = self._countdown - 1
        started = None if countdown else self._restart_sampling()
        try:
            stored: Any = await self.backend.get(stored_key)
        except BackendUnavailableError as exc:
            self.recorder.failed("get", exc)
            self.recorder.misses += 1
            return default
        if started is not None:
            self._record("get", started)
        if stored is None:
            self.recorder.misses += 1
            return default
        kind = type(stored)
        if self.stores_objects and kind is not _Pickled:
            self.recorder.hits += 1
            return stored if kind is not _Copied else stored.data.copy()
        memo = self.near_memo
        if memo is not None:  # a near hit hands back the very bytes a value was decoded from
            held = memo.get(stored_key)
            if held is not None and held[0] is stored and held[1] is self.serializer:
                self.recorder.hits += 1
                return held[2]
        try:
            value = self._decode(key, stored)
        except SerializationError as exc:
            self.recorder.undecodable(key, exc)
            self.recorder.misses += 1
            return default
        if memo is not None and _is_immutable(value):
            memo.keep(stored_key, stored, self.serializer, value)  # type: ignore[attr-defined]
        self.recorder.hits += 1
        return value

    async def get_many(self, keys: Iterable[str], version: int | None = None) -> dict[str, Any]:
        """Return a dict of the keys that were found, with their values."""
        keys = list(keys)
        head = self.key_head
        stored_keys: list[str] | None = None
        # Where duplicates are looked for: head + key repeats exactly where key does, and the
        # caller's keys may have their hashes already; a key function may map two keys to one.
        named: list[str] = keys
        if version is None and head is not None:
            with contextlib.suppress(TypeError):  # a key that is not a str: make_key below names it
                stored_keys = [head + key for key in keys]  # make_key's common case, per batch
        if stored_keys is None:
            stored_keys = named = [self.make_key(key, version) for key in keys]
        if len(set(named)) != len(named):  # each key asked once
            unique = dict(zip(stored_keys, keys, strict=True))
            stored_keys, keys = list(unique), list(unique.values())
        backend = self.backend
        # A backend that answers by position (Redis: MGET's reply as it came) spares the
        # dict of stored keys; looked up on the class, as a proxy may answer any attribute.
        get_values = getattr(type(backend), "get_values", None)
        started = self._sample()
        try:
            if get_values is not None:
                values: list[Any] = await get_values(backend, stored_keys)
            else:
                found = await backend.get_many(stored_keys)
        except BackendUnavailableError as exc:
            self.recorder.failed("get_many", exc)
            self.recorder.misses += len(stored_keys)
            return {}
        if started is not None:
            self._record("get_many", started)
        # The key of each found value: by position in the common case (all found, in order).
        datas: Collection[Any]
        if get_values is None:
            datas = found.values()
            if len(found) == len(stored_keys) and list(found) == stored_keys:
                found_keys = keys
            else:
                found_keys = list(map(dict(zip(stored_keys, keys, strict=True)).__getitem__, found))
        elif all(values):  # no None (a miss) and no b"" (not this cache's) among them
            found_keys, datas = keys, values
        else:
            found_keys = [key for key, value in zip(keys, values, strict=True) if value is not None]
            datas = [value for value in values if value is not None]
        result: dict[str, Any] = {}
        # Plain bytes (no signing, no local objects): the serializer decodes them all in one pass.
        loads_many = None
        if self._signed is None and not self.stores_objects:
            loads_many = getattr(self.serializer, "loads_many", None)
        if loads_many is not None:
            try:
                result = dict(zip(found_keys, loads_many(datas), strict=True))
            except SerializationError:
                loads_many = None  # decode one by one below, counting each undecodable value
        if loads_many is None:
            for key, stored in zip(found_keys, datas, strict=True):
                try:
                    result[key] = self._loads(key, stored)
                except SerializationError as exc:
                    self.recorder.undecodable(key, exc)
        self.recorder.hits += len(result)
        self.recorder.misses += len(stored_keys) - len(result)
        return result

    async def has_key(self, key: str, version: int | None = None) -> bool:
        """Return whether ``key`` holds a live value (without counting a hit or miss).

        The sync front also answers ``key in cache``; the async one cannot (``in`` is not awaited).
        """
        stored_key = self.make_key(key, version)
        try:
            return await self.backend.get(stored_key) is not None
        except BackendUnavailableError as exc:
            self.recorder.failed("has_key", exc)
            return False

    # -- writes ----------------------------------------------------------------

    async def set(
        self, key: str, value: Any, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """Store ``value`` under ``key``; a timeout of 0 or less deletes it instead.

        :raises SerializationError: if the value cannot be serialized.
        """
        # The common case inlined (key, default timeout, an atom in local memory, no
        # sample): each helper call measured 40-70 ns of a 0.7 µs local-memory set.
        head = self.key_head
        if version is None and type(key) is str and head is not None:
            stored_key = head + key
        else:
            stored_key = self.make_key(key, version)
        if timeout is DEFAULT_TIMEOUT:
            ttl = self._default_timeout  # never 0: checked when it was set
        else:
            ttl = self.lifetime(timeout)
            if ttl == 0:
                await self._delete_stored(stored_key)
                return
        data = value if self.stores_objects and type(value) in _STORED_AS_IS else self._dumps(key, value)
        countdown = self._countdown = self._countdown - 1  # _sample() inlined, as in get()
        started = None if countdown else self._restart_sampling()
        try:
            await self.backend.set(stored_key, data, ttl)
        except BackendUnavailableError as exc:
            self.recorder.failed("set", exc)
            return
        if started is not None:
            self._record("set", started)
        self.recorder.sets += 1

    async def add(
        self, key: str, value: Any, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Store ``value`` only if ``key`` holds nothing; return whether it was stored.

        A timeout of 0 or less stores nothing and returns ``False``.
        """
        stored_key = self.make_key(key, version)
        ttl = self.lifetime(timeout)
        if ttl == 0:
            return False
        data = self._dumps(key, value)
        started = self._sample()
        try:
            added = await self.backend.add(stored_key, data, ttl)
        except BackendUnavailableError as exc:
            self.recorder.failed("add", exc)
            return False
        if started is not None:
            self._record("add", started)
        if added:
            self.recorder.sets += 1
        return added

    async def set_many(
        self, mapping: Mapping[str, Any], timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[str]:
        """Store every item; return the keys that could not be stored (all of them in an outage)."""
        ttl = self.lifetime(timeout)
        if ttl == 0:
            await self.delete_many(mapping, version)
            return []
        items = {self.make_key(key, version): self._dumps(key, value) for key, value in mapping.items()}
        if not items:
            return []
        started = self._sample()
        try:
            await self.backend.set_many(items, ttl)
        except BackendUnavailableError as exc:
            self.recorder.failed("set_many", exc)
            return list(mapping)
        if started is not None:
            self._record("set_many", started)
        self.recorder.sets += len(items)
        return []

    async def _delete_stored(self, stored_key: str) -> bool:
        started = self._sample()
        try:
            deleted = await self.backend.delete(stored_key)
        except BackendUnavailableError as exc:
            self.recorder.failed("delete", exc)
            return False
        if started is not None:
            self._record("delete", started)
        self.recorder.deletes += 1
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
            self.recorder.failed("delete_many", exc)
            return
        self.recorder.deletes += len(stored_keys)

    async def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """Add ``delta`` to the integer under ``key`` in the backend and return it.

        Unlike reads and writes, a backend outage is raised even under
        ``on_error="ignore"``: there is no value to return.

        :raises MissingKeyError: if ``key`` is not stored.
        :raises BackendError: if the stored value is not an integer, or the result
            does not fit the backend's counters (the backend's message says which).
        """
        if not isinstance(delta, int) or isinstance(delta, bool):
            raise TypeError(f"delta must be an int, got {delta!r}.")
        stored_key = self.make_key(key, version)
        try:
            return await self.backend.incr(stored_key, delta)
        except MissingKeyError:
            raise MissingKeyError(key) from None
        except BackendUnavailableError:
            self.recorder.errors += 1
            raise

    async def decr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """Subtract ``delta``; see :meth:`incr`."""
        if not isinstance(delta, int) or isinstance(delta, bool):
            raise TypeError(f"delta must be an int, got {delta!r}.")
        return await self.incr(key, -delta, version)

    async def touch(self, key: str, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """Give ``key`` a new timeout; return whether it was there. 0 or less deletes it."""
        stored_key = self.make_key(key, version)
        ttl = self.lifetime(timeout)
        if ttl == 0:
            return await self._delete_stored(stored_key)
        try:
            return await self.backend.touch(stored_key, ttl)
        except BackendUnavailableError as exc:
            self.recorder.failed("touch", exc)
            return False

    async def gets(self, key: str, version: int | None = None) -> tuple[Any, Any] | None:
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
            found = await gets(stored_key)
        except BackendUnavailableError:
            self.recorder.errors += 1
            raise
        if found is None:
            self.recorder.misses += 1
            return None
        self.recorder.hits += 1
        return self._loads(key, found[0]), found[1]

    async def cas(
        self, key: str, value: Any, token: Any, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Store ``value`` if ``key`` is unchanged since :meth:`gets` returned ``token``.

        Returns ``False`` if the key changed or vanished meanwhile; outages raise.

        :raises NotImplementedError: if the backend has no compare-and-set.
        """
        stored_key = self.make_key(key, version)
        ttl = self.lifetime(timeout)
        data = self._dumps(key, value)
        if ttl == 0:
            ttl = 0.001  # expire at once, but only if the compare succeeds
        cas = getattr(self.backend, "cas", None)
        if cas is None:
            raise NotImplementedError(f"{self.backend!r} does not support compare-and-set.")
        try:
            stored: bool = await cas(stored_key, data, token, ttl)
        except BackendUnavailableError:
            self.recorder.errors += 1
            raise
        if stored:
            self.recorder.sets += 1
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
            self.recorder.failed("clear", exc)

    async def close(self) -> None:
        """Release the backend's connections; the cache reconnects if used again."""
        await self.backend.close()

    # -- stampede protection ---------------------------------------------------

    async def get_or_set(
        self,
        key: str,
        default: AsyncCompute[T] | T,
        timeout: Timeout = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        stale_while_revalidate: float = 0,
        stale_if_error: float = 0,
        beta: float = 0,
        tags: Iterable[str] = (),
        refresh_ahead: float = 0,
    ) -> T:
        """Return the value under ``key``; on a miss store ``default`` (calling it if callable).

        When ``default`` is callable (for the async front also an ``async def``
        function, its coroutine awaited), only one caller at a time computes a
        missing key, across threads, tasks and processes (the lock lives in the
        backend; tasks of one process await the computation already under way);
        the others wait up to ``lock_timeout`` seconds and then read the fresh
        value. A caller that waited that long computes the value itself rather
        than fail.

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
        :param refresh_ahead: seconds before expiry from which a hit returns the
            value at once and recomputes it in the background (a thread, or a
            task on the running loop), once per key across processes (the key's
            lock); a recomputation that fails is logged and the value kept. With
            it, the recomputations ``beta`` and ``stale_while_revalidate`` start
            run in the background too.
        """
        enveloped = stale_while_revalidate or stale_if_error or beta or tags or refresh_ahead
        if enveloped and callable(default):
            ttl = self.lifetime(timeout)
            if ttl == 0:
                return await acall(default)
            return await get_or_set_entry(
                self,
                key,
                default,
                ttl,
                version,
                stale_while_revalidate=stale_while_revalidate,
                stale_if_error=stale_if_error,
                beta=beta,
                tags=tags,
                refresh_ahead=refresh_ahead,
            )
        # The stored value is taken for a T: the cache holds what get_or_set stored under the key.
        value: T = await self.get(key, _MISSING, version)
        if value is not _MISSING:
            return value
        return await self._on_miss(key, default, timeout, version)

    async def _on_miss(
        self, key: str, default: AsyncCompute[T] | T, timeout: Timeout, version: int | None
    ) -> T:
        """``get_or_set`` on a miss; apart so the hit path has no closure (cells cost 25 ns a hit)."""
        if not callable(default):
            await self.add(key, default, timeout, version)
            stored: T = await self.get(key, default, version)
            return stored
        compute: AsyncCompute[T] = default
        return await self._single_flight(
            key, version, lambda: self._compute_locked(key, compute, timeout, version)
        )

    async def _compute_locked(
        self, key: str, compute: AsyncCompute[T], timeout: Timeout, version: int | None
    ) -> T:
        """Compute a missing key under the backend lock; an outage computes unlocked."""
        stored_key = self.make_key(key, version)
        async with GoAheadLock(self, stored_key, blocking=True) as turn:
            if turn is Turn.OUTAGE:
                return await acall(compute)
            if turn is Turn.BUSY:
                self.recorder.lock_waits += 1
                logger.info("%s", LockTimeoutError(stored_key, self.lock_timeout))
            value: T = await self.get(key, _MISSING, version)
            if value is not _MISSING:
                if turn is Turn.HELD:
                    self.recorder.lock_waits += 1  # another caller stored it while we waited
                return value
            result = await acall(compute)
            await self.set(key, result, timeout, version)
            return result

    # -- tags --------------------------------------------------------------------

    async def invalidate_tags(self, *tags: str) -> None:
        """Invalidate every entry stored with any of ``tags``: one ``incr`` per tag, no key scan.

        Tagged entries come from ``get_or_set(..., tags=...)``, ``@memoize(tags=...)``
        and ``@cache_page(tags=...)``; see :mod:`cachekit.tags`.

        :raises BackendUnavailableError: if the backend is down, whatever
            ``on_error`` says: a purge that silently did nothing leaves stale content.
        """
        await invalidate_tags(self, tags)


__all__ = ["AsyncCache"]
