"""``@memoize``'s generation (what ``cache_clear()`` moves on) costs a hit no round trip of its own.

A hit reads the counter and the entry under the generation last seen in one
``get_many``; a clear made elsewhere is seen by the next call, a wrong guess
costs one more read and never a stale value, and a lost counter revives nothing.
Also: positional calls key without ``Signature.bind``, exactly as bound calls do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

import cachekit
from cachekit import Cache
from cachekit import aio
from cachekit.aio import AsyncCache
from cachekit.backends.aio_locmem import AsyncLocMemBackend
from cachekit.backends.locmem import LocMemBackend
from cachekit.exceptions import BackendUnavailableError
from cachekit.fronts.entries import tag_key
from cachekit.fronts.memokeys import MemoKeys
from cachekit.memoize import CacheInfo
from cachekit.memoize import memoize


class CountingBytes(LocMemBackend):
    """Local memory handed bytes, as Redis and memcached are, recording each read it serves."""

    stores_objects = False

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.reads: list[tuple[str, ...]] = []

    def get(self, key: str) -> Any:
        self.reads.append((key,))
        return super().get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        self.reads.append(tuple(keys))
        return super().get_many(keys)


class DownBytes(CountingBytes):
    """Bytes in local memory whose reads fail while :attr:`down` (a Redis outage)."""

    down = False

    def get(self, key: str) -> Any:
        if self.down:
            raise BackendUnavailableError("connection refused")
        return super().get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        if self.down:
            raise BackendUnavailableError("connection refused")
        return super().get_many(keys)

    def add(self, key: str, value: Any, ttl: float | None) -> bool:
        if self.down:
            raise BackendUnavailableError("connection refused")
        return super().add(key, value, ttl)

    def set(self, key: str, value: Any, ttl: float | None) -> None:
        if self.down:
            raise BackendUnavailableError("connection refused")
        super().set(key, value, ttl)


class AsyncBytes(AsyncLocMemBackend):
    """Async local memory handed bytes."""

    stores_objects = False


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> CountingBytes:
    backend = CountingBytes(f"memo-gen-{request.node.name}")
    backend.clear()
    return backend


def twins(cache: Cache, other: Cache | None = None) -> tuple[Any, Any, list[str]]:
    """One function memoized twice, as two processes would hold it, and the calls it computed."""
    calls: list[str] = []

    def make(name: str, on: Cache) -> Any:
        @memoize(60, cache=on)
        def lookup(x: int) -> str:
            calls.append(f"{name}{x}")
            return f"{name}{x}"

        return lookup

    return make("a", cache), make("b", other or cache), calls


def test_a_hit_is_one_backend_read(backend: CountingBytes) -> None:
    cache = Cache(backend)
    here, _, calls = twins(cache)
    assert here(1) == here(1) == "a1"
    counter = tag_key(here.function_tag)
    entry = f"{here.make_key(1)}@{cache.get(counter)}"
    backend.reads.clear()
    assert here(1) == "a1"
    assert backend.reads == [(cache.make_key(counter), cache.make_key(entry))]
    assert calls == ["a1"]
    assert here.cache_info() == CacheInfo(hits=2, misses=1)


def test_a_tagged_hit_reads_its_tags_once_more_and_nothing_else(backend: CountingBytes) -> None:
    cache = Cache(backend)
    calls: list[int] = []

    @memoize(60, cache=cache, tags=lambda n: [f"n:{n}"])
    def double(n: int) -> int:
        calls.append(n)
        return 2 * n

    assert double(1) == double(1) == 2
    counter = tag_key(double.function_tag)
    entry = f"{double.make_key(1)}@{cache.get(counter)}"
    backend.reads.clear()
    assert double(1) == 2
    tag_counter = cache.make_key(tag_key("n:1"))
    assert backend.reads == [(cache.make_key(counter), cache.make_key(entry)), (tag_counter,)]
    cache.invalidate_tags("n:1")
    assert double(1) == 2
    assert calls == [1, 1]  # the entry's tag moved: recomputed, not served
    assert double.cache_info() == CacheInfo(hits=2, misses=2)


def test_a_clear_elsewhere_is_seen_by_the_next_call_and_a_wrong_guess_costs_one_read(
    backend: CountingBytes,
) -> None:
    cache = Cache(backend)
    here, there, calls = twins(cache)
    assert (here(1), there(1), there(2)) == ("a1", "a1", "b2")
    here.cache_clear()
    assert (there(1), there(2)) == ("b1", "b2")  # the clear is seen: recomputed, nothing stale
    entry = f"{here.make_key(1)}@{cache.get(tag_key(here.function_tag))}"
    backend.reads.clear()
    assert here(1) == "b1"  # guessed the old generation; the new one's entry is read, not recomputed
    assert len(backend.reads) == 2
    assert backend.reads[-1] == (cache.make_key(entry),)
    assert calls == ["a1", "b2", "b1", "b2"]


def test_a_lost_counter_revives_no_old_entry(backend: CountingBytes) -> None:
    cache = Cache(backend)
    here, there, calls = twins(cache)
    assert (here(1), there(1)) == ("a1", "a1")
    assert cache.delete(tag_key(here.function_tag))  # evicted, or the counter's server restarted
    assert there(1) == "b1"  # a fresh random generation: the old entry is not read
    assert here(1) == "b1"
    assert calls == ["a1", "b1"]


def test_an_outage_during_a_hit_follows_the_failure_policy(request: pytest.FixtureRequest) -> None:
    backend = DownBytes(f"memo-gen-{request.node.name}")
    lenient, strict = Cache(backend), Cache(backend, on_error="raise")
    here, there, calls = twins(lenient, strict)
    assert (here(1), there(1)) == ("a1", "a1")  # both have seen the generation
    backend.down = True
    assert here(1) == "a1"  # a miss: computed, served, not stored
    assert calls == ["a1", "a1"]
    assert lenient.stats()["errors"] >= 1
    backend.down = False
    assert here(1) == "a1"  # back: the entry stored before the outage is read
    assert calls == ["a1", "a1"]
    backend.down = True
    with pytest.raises(BackendUnavailableError):
        there(1)


def test_an_undecodable_entry_is_a_miss(backend: CountingBytes) -> None:
    cache = Cache(backend)
    here, _, calls = twins(cache)
    assert here(1) == "a1"
    entry = cache.make_key(f"{here.make_key(1)}@{cache.get(tag_key(here.function_tag))}")
    backend.set(entry, b"\x80not a pickle", None)
    assert here(1) == "a1"
    assert calls == ["a1", "a1"]
    assert cache.stats()["errors"] >= 1


@pytest.fixture(params=["redis", "memcached-pool"])
def server_url(request: pytest.FixtureRequest) -> str:
    """A real Redis, or a pool of three memcached servers (the two keys of a read may part)."""
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        return url
    pool: list[Any] = request.getfixturevalue("memcached_servers")
    return "memcached://" + ",".join(server.address for server in pool)


def test_a_clear_through_a_server_reaches_another_client(server_url: str) -> None:
    first, second = cachekit.from_url(server_url), cachekit.from_url(server_url)  # two processes' clients
    try:
        first.clear()
        here, there, calls = twins(first, second)
        assert (here(1), there(1), there(1)) == ("a1", "a1", "a1")
        here.cache_clear()
        assert (there(1), here(1), there(1)) == ("b1", "b1", "b1")
        assert calls == ["a1", "b1"]
        assert there.cache_info() == CacheInfo(hits=3, misses=1)
    finally:
        first.clear()
        first.close()
        second.close()


def test_async_a_clear_elsewhere_is_seen_by_the_next_call() -> None:
    async def scenario() -> list[int]:
        backend = AsyncBytes("memo-gen-async")
        await backend.clear()
        calls: list[int] = []

        def make() -> Any:
            @aio.memoize(60, cache=AsyncCache(backend))
            async def double(n: int) -> int:
                calls.append(n)
                return 2 * n + 10 * len(calls)

            return double

        here, there = make(), make()
        assert (await here(1), await there(1), await there(1)) == (12, 12, 12)
        await here.cache_clear()
        assert (await there(1), await here(1)) == (22, 22)
        await backend.clear()
        return calls

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == [1, 1]


def keyed(a: int, b: int = 2, /, c: str = "c") -> str:
    return f"{a}{b}{c}"


def starred(a: int, *rest: int, flag: bool = False) -> int:
    return a + sum(rest) + flag


def test_positional_calls_key_as_bound_calls_do() -> None:
    memo = memoize(60, cache=Cache(LocMemBackend("memo-gen-keys")))
    plain, star = memo(keyed), memo(starred)
    assert plain.make_key(1) == plain.make_key(1, 2) == plain.make_key(1, 2, "c") == plain.make_key(1, c="c")
    assert plain.make_key(1, 3) != plain.make_key(1)
    assert star.make_key(1, 2) == star.make_key(1, 2, flag=False) != star.make_key(1)
    with pytest.raises(TypeError, match="'a'"):
        plain.make_key()
    with pytest.raises(TypeError, match="too many"):
        plain.make_key(1, 2, "c", 4)


def test_keys_of_int_and_str_arguments_are_looked_up_and_never_mixed_up() -> None:
    keys = MemoKeys(keyed, None)
    first = keys.make_key(1, 2, "c")
    assert keys.make_key(1, 2, "c") == first == MemoKeys(keyed, None).make_key(1, 2, c="c")  # bound path
    # Equal to 1 but another type, so another key: the looked-up key is not reused for them.
    assert len({first, keys.make_key(True, 2, "c"), keys.make_key(1.0, 2, "c")}) == 3
    long = "x" * 1000
    assert keys.make_key(1, 2, long) == MemoKeys(keyed, None).make_key(1, 2, c=long)
    for n in range(1000):
        keys.make_key(n)
    assert keys.make_key(5) == MemoKeys(keyed, None).make_key(5, c="c")
    assert 0 < len(keys._made) <= 256  # bounded whatever the calls
