"""Refresh-ahead (``get_or_set``/``@memoize`` ``refresh_ahead=``) and the ``@memoize`` extras.

Sync on a fake clock, and async (``cachekit.aio``) on the same. Refresh-ahead:
a hit within ``refresh_ahead`` seconds of expiry returns the value at once and
recomputes it once in the background. The extras: tags computed from the
arguments, ``unless=``, ``cache_clear()`` and ``cache_info()``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

from cachekit import Cache
from cachekit import aio
from cachekit.aio import AsyncCache
from cachekit.backends.aio_locmem import AsyncLocMemBackend
from cachekit.backends.locmem import LocMemBackend
from cachekit.fronts._async_only import REFRESHES as TASKS
from cachekit.fronts._sync.lock import LOCK_PREFIX
from cachekit.fronts._sync_only import REFRESHES as THREADS
from cachekit.memoize import CacheInfo
from cachekit.memoize import memoize
from tests.conftest import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(clock: FakeClock, request: pytest.FixtureRequest) -> Cache:
    return Cache(LocMemBackend(f"refresh-{request.node.name}", clock=clock), clock=clock)


class Source:
    """Returns ``v<n>`` on its n-th computation; later ones may wait for :attr:`go` or fail."""

    def __init__(self, gate_from: int = 0, fail_on: frozenset[int] = frozenset()) -> None:
        self.calls = 0
        self.gate_from = gate_from
        self.fail_on = fail_on
        self.go = threading.Event()

    def __call__(self) -> str:
        self.calls += 1
        n = self.calls
        if self.gate_from and n >= self.gate_from:
            assert self.go.wait(5)
        if n in self.fail_on:
            raise RuntimeError("database down")
        return f"v{n}"


# -- refresh-ahead: get_or_set -------------------------------------------------------------------


def test_a_hit_near_expiry_returns_at_once_and_refreshes_once_in_the_background(
    cache: Cache, clock: FakeClock
) -> None:
    source = Source(gate_from=2)
    get = lambda: cache.get_or_set("k", source, 10, refresh_ahead=3)  # noqa: E731
    try:
        assert get() == "v1"
        clock.advance(6)
        assert get() == "v1"  # 4 s left: not yet
        assert source.calls == 1
        clock.advance(2)  # 2 s left
        answers = [get() for _ in range(10)]  # the refresh is parked on source.go meanwhile
        assert answers == ["v1"] * 10
        source.go.set()
        assert THREADS.wait(5)
        assert source.calls == 2
        assert get() == "v2"
        assert source.calls == 2
    finally:
        source.go.set()
        THREADS.wait(5)


def test_a_refresh_another_process_holds_the_lock_for_is_not_repeated(cache: Cache, clock: FakeClock) -> None:
    source = Source()
    assert cache.get_or_set("k", source, 10, refresh_ahead=3) == "v1"
    clock.advance(8)
    other = cache.backend.lock(LOCK_PREFIX + cache.make_key("k"), ttl=30)
    assert other.acquire(False)  # another process is refreshing "k"
    try:
        assert cache.get_or_set("k", source, 10, refresh_ahead=3) == "v1"
        assert THREADS.wait(5)
        assert source.calls == 1
    finally:
        other.release()


class Interleaving:
    """A backend that runs :attr:`before_lock` once, just before the next lock is made."""

    def __init__(self, inner: LocMemBackend) -> None:
        self._inner = inner
        self.before_lock: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def lock(self, name: str, *, ttl: float) -> Any:
        hook, self.before_lock = self.before_lock, None
        if hook is not None:
            hook()
        return self._inner.lock(name, ttl=ttl)


def test_a_refresh_stored_meanwhile_is_not_computed_again(clock: FakeClock) -> None:
    """The refresh reads the key again under the lock: a newer entry means another process refreshed."""
    backend = Interleaving(LocMemBackend("refresh-interleaved", clock=clock))
    cache = Cache(backend, clock=clock)  # type: ignore[arg-type]
    source = Source()
    assert cache.get_or_set("k", source, 10, refresh_ahead=3) == "v1"
    clock.advance(8)

    def another_process_refreshes() -> None:
        cache.delete("k")
        assert cache.get_or_set("k", lambda: "theirs", 10, refresh_ahead=3) == "theirs"

    backend.before_lock = another_process_refreshes  # between our read and our lock
    assert cache.get_or_set("k", source, 10, refresh_ahead=3) == "v1"
    assert THREADS.wait(5)
    assert source.calls == 1
    assert cache.get_or_set("k", source, 10, refresh_ahead=3) == "theirs"
    cache.clear()


def test_a_failing_refresh_is_logged_and_the_value_stays(
    cache: Cache, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    source = Source(fail_on=frozenset({2}))
    assert cache.get_or_set("k", source, 10, refresh_ahead=3) == "v1"
    clock.advance(8)
    with caplog.at_level(logging.ERROR):
        assert cache.get_or_set("k", source, 10, refresh_ahead=3) == "v1"
        assert THREADS.wait(5)
    assert "refreshing 'k' ahead of expiry failed; the stored value stays" in caplog.text
    assert cache.get_or_set("k", source, 10, refresh_ahead=3) == "v1"  # tries again
    assert THREADS.wait(5)
    assert cache.get_or_set("k", source, 10, refresh_ahead=3) == "v3"


def test_with_refresh_ahead_a_stale_value_is_refreshed_in_the_background(
    cache: Cache, clock: FakeClock
) -> None:
    source = Source()
    get = lambda: cache.get_or_set("k", source, 10, stale_while_revalidate=30, refresh_ahead=1)  # noqa: E731
    assert get() == "v1"
    clock.advance(15)  # stale, within the window
    assert get() == "v1"
    assert THREADS.wait(5)
    assert get() == "v2"
    assert cache.stats()["stale_serves"] == 1


def test_refresh_ahead_must_not_be_negative(cache: Cache) -> None:
    with pytest.raises(ValueError, match="refresh_ahead"):
        cache.get_or_set("k", lambda: 1, 10, refresh_ahead=-1)


def test_async_a_hit_near_expiry_returns_at_once_and_refreshes_in_a_task(clock: FakeClock) -> None:
    async def scenario() -> None:
        cache = AsyncCache(AsyncLocMemBackend("refresh-async", clock=clock), clock=clock)
        calls: list[int] = []
        go = asyncio.Event()

        async def compute() -> str:
            calls.append(1)
            if len(calls) > 1:
                await go.wait()
            return f"v{len(calls)}"

        get = lambda: cache.get_or_set("k", compute, 10, refresh_ahead=3)  # noqa: E731
        assert await get() == "v1"
        clock.advance(8)
        assert [await get() for _ in range(5)] == ["v1"] * 5  # answered while the refresh waits
        for _ in range(10):
            await asyncio.sleep(0)
        assert len(calls) == 2  # one refresh, parked on go
        go.set()
        assert await TASKS.wait(5)
        assert await get() == "v2"
        assert len(calls) == 2
        await cache.clear()

    asyncio.run(asyncio.wait_for(scenario(), 10))


# -- @memoize: refresh-ahead and the extras ------------------------------------------------------


def test_memoize_refresh_ahead(cache: Cache, clock: FakeClock) -> None:
    calls: list[int] = []

    @memoize(10, cache=cache, refresh_ahead=3)
    def square(x: int) -> int:
        calls.append(x)
        return x * x + len(calls) - 1

    assert square(3) == 9
    clock.advance(8)
    assert square(3) == 9  # near expiry: answered, refreshed behind
    assert THREADS.wait(5)
    assert square(3) == 10
    assert calls == [3, 3]
    assert square.cache_info() == CacheInfo(hits=2, misses=1)  # the refresh was no call's miss


def test_memoize_tags_from_the_arguments(cache: Cache) -> None:
    calls: list[int] = []

    @memoize(60, cache=cache, tags=lambda user_id, **_: [f"user:{user_id}"])
    def profile(user_id: int, lang: str = "en") -> str:
        calls.append(user_id)
        return f"{user_id}-{lang}-{len(calls)}"

    first, other = profile(1), profile(2)
    cache.invalidate_tags("user:1")
    assert profile(1) != first  # recomputed
    assert profile(2) == other  # another user's tag: kept
    assert calls == [1, 2, 1]

    @memoize(60, cache=cache, tags=lambda user_id: f"user:{user_id}")
    def broken(user_id: int) -> int:
        return user_id

    with pytest.raises(TypeError, match="list of names"):
        broken(1)


def test_memoize_unless_bypasses_the_cache(cache: Cache) -> None:
    calls: list[int] = []
    preview = {"on": False}

    @memoize(60, cache=cache, unless=lambda: preview["on"])
    def page(n: int) -> int:
        calls.append(n)
        return n

    @memoize(60, cache=cache, unless=lambda n: n < 0)
    def signed(n: int) -> int:
        calls.append(n)
        return n

    page(1)
    page(1)
    preview["on"] = True
    page(1)  # bypassed: computed, and nothing stored
    preview["on"] = False
    page(1)
    signed(-1)
    signed(-1)
    signed(2)
    signed(2)
    assert calls == [1, 1, -1, -1, 2]
    assert page.cache_info() == CacheInfo(hits=2, misses=1)  # bypasses count as neither


def test_memoize_cache_clear_forgets_every_entry_of_one_function_in_every_process(
    cache: Cache, clock: FakeClock
) -> None:
    calls: list[str] = []

    def make(name: str) -> Any:
        @memoize(60, cache=cache)
        def lookup(x: int) -> str:
            calls.append(f"{name}{x}")
            return f"{name}{x}"

        return lookup

    def other(x: int) -> int:
        calls.append(f"other{x}")
        return x

    here, there = make("a"), make("b")  # one function, two processes sharing the cache
    kept = memoize(60, cache=cache)(other)
    assert (here(1), here(2), there(1), kept(1)) == ("a1", "a2", "a1", 1)
    assert here.cache_info() == CacheInfo(hits=0, misses=2)
    here.cache_clear()
    assert here.cache_info() == CacheInfo(0, 0)  # reset, as functools does
    assert (there(1), there(2), kept(1)) == ("b1", "b2", 1)  # the other "process" sees the clear
    assert calls == ["a1", "a2", "other1", "b1", "b2"]
    assert there.cache_info() == CacheInfo(hits=1, misses=2)
    assert here.invalidate(1) is True  # invalidate reaches the current generation's entry
    assert here(1) == "a1"


def test_memoize_extras_on_a_method(cache: Cache) -> None:
    class Shop:
        def __init__(self, name: str) -> None:
            self.name = name

        def __cache_key__(self) -> str:
            return self.name

        @memoize(60, cache=cache)
        def price(self, item: int) -> int:
            return item

    shop = Shop("a")
    shop.price(1)
    shop.price(1)
    assert shop.price.cache_info() == CacheInfo(1, 1)  # type: ignore[attr-defined]
    shop.price.cache_clear()  # type: ignore[attr-defined]
    assert Shop.price.cache_info() == CacheInfo(0, 0)


def test_async_memoize_extras(clock: FakeClock) -> None:
    async def scenario() -> None:
        cache = AsyncCache(AsyncLocMemBackend("memo-extras-async", clock=clock), clock=clock)
        calls: list[int] = []

        @aio.memoize(10, cache=cache, tags=lambda n: [f"n:{n}"], unless=lambda n: n == 0, refresh_ahead=3)
        async def double(n: int) -> int:
            calls.append(n)
            return 2 * n + len(calls) - 1

        assert (await double(1), await double(1), await double(0), await double(0)) == (2, 2, 1, 2)
        assert double.cache_info() == CacheInfo(hits=1, misses=1)
        await cache.invalidate_tags("n:1")
        assert await double(1) == 5  # recomputed after its argument's tag moved
        clock.advance(8)
        assert await double(1) == 5  # near expiry: answered, refreshed in a task
        assert await TASKS.wait(5)
        assert await double(1) == 6
        await double.cache_clear()
        assert double.cache_info() == CacheInfo(0, 0)
        assert await double(1) == 7
        assert calls == [1, 0, 0, 1, 1, 1]
        await cache.clear()

    asyncio.run(asyncio.wait_for(scenario(), 10))
