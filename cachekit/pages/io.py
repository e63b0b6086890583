"""Run the engine's steps on a cache: plain calls on a Cache, awaited ones on an AsyncCache.

The only page-cache code written twice, as redis-py keeps only its connection
layer twice: each operation an engine step yields (:data:`cachekit.pages.engine.Op`)
is one backend call here. Records go to the backend directly, under the
cache's prefix and version (:meth:`~cachekit.Cache.make_key`), as plain data
(:mod:`cachekit.pages.record`), never through the cache's serializer: a
local-memory backend keeps the tuple itself, any other gets the bytes of
:func:`~cachekit.pages.record.encode`. An outage turns a read into a miss and
a write into a no-op, counted by the cache as for any other call.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any

from cachekit.exceptions import BackendUnavailableError
from cachekit.pages.engine import LOOKUP_KEY
from cachekit.pages.engine import HeaderReader
from cachekit.pages.engine import PageEngine
from cachekit.pages.engine import Steps
from cachekit.pages.record import decode
from cachekit.pages.record import encode
from cachekit.pages.soft import async_soft_since
from cachekit.pages.soft import soft_since
from cachekit.tags import async_current_generations
from cachekit.tags import async_generations_valid
from cachekit.tags import current_generations
from cachekit.tags import generations_valid

if TYPE_CHECKING:
    from cachekit.aio import AsyncCache
    from cachekit.cache import Cache

# What each operation returns when the backend is down.
_ON_OUTAGE: dict[str, Any] = {
    "count": None,
    "add": False,
    "touch": False,
    "cas": False,
    "has": False,
    "delete": False,
}


#: What one operation gave: ``(result, None)`` or ``(None, the exception it raised)``.
_Outcome = tuple[Any, "Exception | None"]


def _advance(steps: Steps, outcome: _Outcome) -> tuple[Any, ...]:
    """Hand a step the last operation's outcome; return its next operation (StopIteration: done)."""
    result, failure = outcome
    return steps.send(result) if failure is None else steps.throw(failure)


class _Records:
    """What the sync and async runners share: keys, (en|de)coding, counting, the outage policy."""

    def __init__(self, cache: Cache | AsyncCache) -> None:
        self.cache = cache
        self.backend: Any = cache.backend
        self.objects = cache.stores_objects
        self.key = cache.make_key
        # The hit path's key building, as Cache.get's: the prefix and version in front.
        self.head = cache.key_head
        #: A counter's first value: an int in local memory, ASCII digits elsewhere (``incr`` runs there).
        self.one: Any = 1 if self.objects else b"1"

    def dump(self, record: Any) -> Any:
        if self.objects:
            return record
        return b"1" if record is True else encode(record)

    def load(self, stored: Any) -> Any:
        cache = self.cache
        if stored is None:
            cache.recorder.misses += 1
            return None
        record = stored if self.objects and type(stored) is tuple else decode(stored)
        if record is None:
            cache.recorder.misses += 1  # another layout, or not ours: a miss
        else:
            cache.recorder.hits += 1
        return record

    def outage(self, name: str, exc: BackendUnavailableError) -> Any:
        self.cache.recorder.failed(name, exc)
        return _ON_OUTAGE.get(name)

    def hinted(
        self,
        engine: PageEngine,
        url_hash: str,
        read: HeaderReader,
        source: Any,
        split: str,
        hint: str,
        keys: list[str],
        found: Mapping[str, Any] | None,
    ) -> tuple[Any, str | None, Any, str | None]:
        """The hit path's one ``get_many`` of ``keys`` (lookup record, ``hint``'s page) read.

        ``found`` is ``None`` when the read failed. Returns ``(lookup record, page key,
        page, key still to read)``: the last is the page key when the record disowns the
        hint (the caller reads that page), else ``None``.
        """
        found = found or {}
        lookup = self.load(found.get(keys[0]))
        page_key = engine.page_key_of(url_hash, lookup, read, source, split)
        if page_key == hint:
            return lookup, page_key, self.load(found.get(keys[1])), None
        return lookup, page_key, None, page_key

    def lock_timeout(self, timeout: float | None) -> float:
        return self.cache.lock_timeout if timeout is None else timeout


class SyncRecords(_Records):
    """Runs steps on a :class:`~cachekit.Cache`."""

    cache: Cache

    def run(self, steps: Steps) -> Any:
        """Run ``steps`` to the end and return its result."""
        outcome: _Outcome = (None, None)
        try:
            while True:
                outcome = self._call(_advance(steps, outcome))
        except StopIteration as done:
            return done.value

    def _call(self, op: tuple[Any, ...]) -> _Outcome:
        name = op[0]
        try:
            return _SYNC[name](self, *op[1:]), None
        except BackendUnavailableError as exc:
            return self.outage(name, exc), None
        except Exception as exc:
            return None, exc

    def get(self, key: str) -> Any:
        """Read one record; an outage reads as a miss (the shells' hit path calls this directly)."""
        head = self.head
        try:
            stored = self.backend.get(head + key if head is not None else self.key(key))
        except BackendUnavailableError as exc:
            self.cache.recorder.failed("get", exc)
            stored = None
        if self.objects and type(stored) is tuple:
            self.cache.recorder.hits += 1
            return stored
        return self.load(stored)

    def variant(
        self, engine: PageEngine, url_hash: str, read: HeaderReader, source: Any, split: str, no_cache: bool
    ) -> tuple[Any, str | None, Any]:
        """The hit path's reads: ``(lookup record, page key, page)``; the page ``None`` if not read.

        On a server, one round trip while the process's hint holds (the record and the
        page it names, in one ``get_many``); a hint the record disowns costs one more read.
        """
        lookup_key = LOOKUP_KEY + url_hash
        hint = None if no_cache or self.objects else engine.hinted_key(url_hash, read, source, split)
        if hint is None:
            lookup = self.get(lookup_key)
            page_key = engine.page_key_of(url_hash, lookup, read, source, split)
            return lookup, page_key, None if page_key is None or no_cache else self.get(page_key)
        head = self.head
        if head is not None:
            keys = [head + lookup_key, head + hint]
        else:
            keys = [self.key(lookup_key), self.key(hint)]
        try:
            found = self.backend.get_many(keys)
        except BackendUnavailableError as exc:
            found = self.outage("get_many", exc)
        lookup, page_key, page, unread = self.hinted(engine, url_hash, read, source, split, hint, keys, found)
        return lookup, page_key, page if unread is None else self.get(unread)

    def has(self, key: str) -> bool:
        return self.backend.get(self.key(key)) is not None

    def set(self, key: str, record: Any, ttl: float | None) -> None:
        self.backend.set(self.key(key), self.dump(record), ttl)

    def add(self, key: str, record: Any, ttl: float | None) -> bool:
        return bool(self.backend.add(self.key(key), self.dump(record), ttl))

    def touch(self, key: str, ttl: float | None) -> bool:
        return bool(self.backend.touch(self.key(key), ttl))

    def count(self, key: str, ttl: float | None) -> int:
        stored_key = self.key(key)
        if self.backend.add(stored_key, self.one, ttl):
            return 1
        return int(self.backend.incr(stored_key, 1))

    def delete(self, key: str) -> bool:
        return bool(self.backend.delete(self.key(key)))

    def gets(self, key: str) -> tuple[Any, Any] | None:
        try:
            found = self.backend.gets(self.key(key))
        except (NotImplementedError, AttributeError):  # an optional capability
            found = self.backend.get(self.key(key)), None
        return None if found is None or found[0] is None else (self.load(found[0]), found[1])

    def cas(self, key: str, record: Any, token: Any, ttl: float | None) -> bool:
        if token is None:  # no compare-and-set in this backend: a purge between the calls is lost
            self.set(key, record, ttl)
            return True
        return bool(self.backend.cas(self.key(key), self.dump(record), token, ttl))

    def lock(self, name: str, blocking: bool, timeout: float | None) -> Any:
        lock = self.backend.lock(self.key(name), ttl=self.cache.lock_ttl)
        wait = self.lock_timeout(timeout) if blocking else -1
        return lock if lock.acquire(blocking, wait) else None

    def release(self, lock: Any) -> None:
        lock.release()

    def generations(self, names: Any) -> Any:
        return current_generations(self.cache, names)

    def valid(self, generations: Any) -> bool:
        return generations_valid(self.cache, generations)

    def soft_since(self, generations: Any) -> float | None:
        return soft_since(self.cache, generations)


class AsyncRecords(_Records):
    """Runs steps on an :class:`~cachekit.aio.AsyncCache`, awaiting each operation."""

    cache: AsyncCache

    async def run(self, steps: Steps) -> Any:
        """Run ``steps`` to the end and return its result."""
        outcome: _Outcome = (None, None)
        try:
            while True:
                outcome = await self._call(_advance(steps, outcome))
        except StopIteration as done:
            return done.value

    async def _call(self, op: tuple[Any, ...]) -> _Outcome:
        name = op[0]
        try:
            return await _ASYNC[name](self, *op[1:]), None
        except BackendUnavailableError as exc:
            return self.outage(name, exc), None
        except Exception as exc:
            return None, exc

    async def get(self, key: str) -> Any:
        """Read one record; an outage reads as a miss (the shells' hit path calls this directly)."""
        try:
            stored = await self.backend.get(self.key(key))
        except BackendUnavailableError as exc:
            self.cache.recorder.failed("get", exc)
            stored = None
        return self.load(stored)

    async def variant(
        self, engine: PageEngine, url_hash: str, read: HeaderReader, source: Any, split: str, no_cache: bool
    ) -> tuple[Any, str | None, Any]:
        """The hit path's reads, as :meth:`SyncRecords.variant`: one round trip while the hint holds."""
        lookup_key = LOOKUP_KEY + url_hash
        hint = None if no_cache or self.objects else engine.hinted_key(url_hash, read, source, split)
        if hint is None:
            lookup = await self.get(lookup_key)
            page_key = engine.page_key_of(url_hash, lookup, read, source, split)
            return lookup, page_key, None if page_key is None or no_cache else await self.get(page_key)
        keys = [self.key(lookup_key), self.key(hint)]
        try:
            found = await self.backend.get_many(keys)
        except BackendUnavailableError as exc:
            found = self.outage("get_many", exc)
        lookup, page_key, page, unread = self.hinted(engine, url_hash, read, source, split, hint, keys, found)
        return lookup, page_key, page if unread is None else await self.get(unread)

    async def has(self, key: str) -> bool:
        return await self.backend.get(self.key(key)) is not None

    async def set(self, key: str, record: Any, ttl: float | None) -> None:
        await self.backend.set(self.key(key), self.dump(record), ttl)

    async def add(self, key: str, record: Any, ttl: float | None) -> bool:
        return bool(await self.backend.add(self.key(key), self.dump(record), ttl))

    async def touch(self, key: str, ttl: float | None) -> bool:
        return bool(await self.backend.touch(self.key(key), ttl))

    async def count(self, key: str, ttl: float | None) -> int:
        stored_key = self.key(key)
        if await self.backend.add(stored_key, self.one, ttl):
            return 1
        return int(await self.backend.incr(stored_key, 1))

    async def delete(self, key: str) -> bool:
        return bool(await self.backend.delete(self.key(key)))

    async def gets(self, key: str) -> tuple[Any, Any] | None:
        try:
            found = await self.backend.gets(self.key(key))
        except (NotImplementedError, AttributeError):  # an optional capability
            found = await self.backend.get(self.key(key)), None
        return None if found is None or found[0] is None else (self.load(found[0]), found[1])

    async def cas(self, key: str, record: Any, token: Any, ttl: float | None) -> bool:
        if token is None:  # no compare-and-set in this backend: a purge between the calls is lost
            await self.set(key, record, ttl)
            return True
        return bool(await self.backend.cas(self.key(key), self.dump(record), token, ttl))

    async def lock(self, name: str, blocking: bool, timeout: float | None) -> Any:
        lock = self.backend.lock(self.key(name), ttl=self.cache.lock_ttl)
        wait = self.lock_timeout(timeout) if blocking else -1
        return lock if await lock.acquire(blocking, wait) else None

    async def release(self, lock: Any) -> None:
        await lock.release()

    async def generations(self, names: Any) -> Any:
        return await async_current_generations(self.cache, names)

    async def valid(self, generations: Any) -> bool:
        return await async_generations_valid(self.cache, generations)

    async def soft_since(self, generations: Any) -> float | None:
        return await async_soft_since(self.cache, generations)


def _table(cls: type) -> dict[str, Callable[..., Any]]:
    names = (
        "get",
        "has",
        "set",
        "add",
        "touch",
        "count",
        "delete",
        "gets",
        "cas",
        "lock",
        "release",
        "generations",
        "valid",
        "soft_since",
    )
    return {name: getattr(cls, name) for name in names}


_SYNC = _table(SyncRecords)
_ASYNC = _table(AsyncRecords)
