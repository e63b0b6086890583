"""The front's inline local-memory paths: ``Cache.get`` reads entries and ``Cache.set`` overwrites
same-size ones without calling the backend (:meth:`LocMemBackend.inline_access`).

Each corner below goes through that path and checks what the backend path guarantees: expiry,
copy isolation, LRU stamps, byte accounting, counters and latency samples.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cachekit import Cache
from cachekit.aio import AsyncCache
from cachekit.backends.aio_locmem import AsyncLocMemBackend
from cachekit.backends.locmem import NO_INLINE_ACCESS
from cachekit.backends.locmem import LocMemBackend


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _location() -> str:
    return f"inline-{uuid.uuid4().hex}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend(clock: FakeClock) -> Iterator[LocMemBackend]:
    backend = LocMemBackend(_location(), max_entries=100, clock=clock)
    yield backend
    backend.clear()


@pytest.fixture
def backend_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys LocMemBackend.get and .set are called with (patched on the class, so the
    inline access stays on: it only refuses subclasses that override them)."""
    calls: list[str] = []
    original_get, original_set = LocMemBackend.get, LocMemBackend.set

    def get(self: LocMemBackend, key: str) -> Any:
        calls.append(f"get {key}")
        return original_get(self, key)

    def set_(self: LocMemBackend, key: str, value: Any, ttl: float | None) -> None:
        calls.append(f"set {key}")
        original_set(self, key, value, ttl)

    monkeypatch.setattr(LocMemBackend, "get", get)
    monkeypatch.setattr(LocMemBackend, "set", set_)
    return calls


def test_hits_misses_and_overwrites_do_not_call_the_backend(
    backend: LocMemBackend, backend_calls: list[str]
) -> None:
    cache = Cache(backend, key_prefix="p", latency_sample_every=0)
    cache.set("k", "v1")  # a new key: the backend stores it
    assert backend_calls == ["set p:1:k"]
    cache.set("k", "v2")  # same size: overwritten inline
    assert [cache.get("k") for _ in range(3)] == ["v2"] * 3
    assert cache.get("absent", "d") == "d"
    assert backend_calls == ["set p:1:k"]
    assert cache.stats()["hits"] == 3
    assert cache.stats()["misses"] == 1
    assert cache.stats()["sets"] == 2


def test_an_expired_entry_read_inline_is_a_miss_and_is_removed(
    backend: LocMemBackend, clock: FakeClock
) -> None:
    cache = Cache(backend, key_prefix="p", latency_sample_every=0)
    cache.set("k", "v", timeout=10)
    clock.now += 9.999
    assert cache.get("k") == "v"
    clock.now += 0.001  # expiry is exact: at the instant itself the value is gone
    assert cache.get("k", "gone") == "gone"
    assert len(backend) == 0
    assert (cache.stats()["hits"], cache.stats()["misses"]) == (1, 1)


def test_an_inline_overwrite_takes_the_new_timeout_on_the_backend_clock(
    backend: LocMemBackend, clock: FakeClock
) -> None:
    cache = Cache(backend, key_prefix="p", latency_sample_every=0)
    cache.set("k", "a", timeout=5)
    cache.set("k", "b", timeout=60)  # inline: same size
    clock.now += 30
    assert cache.get("k") == "b"
    cache.set("k", "c", timeout=None)
    clock.now += 10_000
    assert cache.get("k") == "c"
    cache.set("k", "d", timeout=1)
    clock.now += 1
    assert cache.get("k") is None


@pytest.mark.parametrize("value", [{"a": 1, "b": "x"}, [1, 2, 3], {1, 2}])
def test_a_value_mutated_after_set_or_get_does_not_change_the_store(
    backend: LocMemBackend, value: Any
) -> None:
    cache = Cache(backend, key_prefix="p", latency_sample_every=0)
    original = type(value)(value)
    cache.set("k", value)
    value.clear()
    got = cache.get("k")
    assert got == original
    got.clear()
    assert cache.get("k") == original
    assert cache.get("k") is not cache.get("k")


def test_an_inline_read_stamps_the_entry_for_lru() -> None:
    small = LocMemBackend(_location(), max_entries=3)
    cache = Cache(small, key_prefix="p", latency_sample_every=0)
    for key in "abc":
        cache.set(key, key)
    assert cache.get("a") == "a"  # a is now the most recently used
    cache.set("d", "d")
    assert [cache.get(key) for key in "abcd"] == ["a", None, "c", "d"]
    small.clear()


def test_inline_overwrites_keep_the_byte_bound(clock: FakeClock) -> None:
    bounded = LocMemBackend(_location(), max_entries=100, max_bytes=250, clock=clock)
    cache = Cache(bounded, key_prefix="p", latency_sample_every=0)
    cache.set("a", "x" * 100)
    cache.set("b", "y" * 100)
    cache.set("a", b"z" * 100)  # same size, inline
    assert bounded.inline_access().sized
    assert (cache.get("a"), cache.get("b")) == (b"z" * 100, "y" * 100)
    cache.set("a", "w" * 200)  # larger: the backend evicts b to stay within 250 bytes
    assert (cache.get("a"), cache.get("b")) == ("w" * 200, None)
    entries = bounded.inline_access().entries
    assert entries is not None
    assert sum(entry.size for entry in entries.values()) == 200
    bounded.clear()


def test_sampled_calls_are_timed_and_every_call_counted(backend: LocMemBackend) -> None:
    cache = Cache(backend, key_prefix="p", latency_sample_every=4)
    cache.set("k", "v")
    for _ in range(7):
        cache.set("k", "w")
    for _ in range(8):
        assert cache.get("k") == "w"
    latency = cache.latency()
    assert (latency["set"].samples, latency["get"].samples) == (2, 2)
    assert (cache.stats()["sets"], cache.stats()["hits"]) == (8, 8)


class RecordingLocMem(LocMemBackend):
    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.stored: list[tuple[str, Any]] = []

    def set(self, key: str, value: Any, ttl: float | None) -> None:
        self.stored.append((key, value))
        super().set(key, value, ttl)


class BytesLocMem(LocMemBackend):
    stores_objects = False


def test_a_subclass_that_overrides_set_or_takes_bytes_is_always_called() -> None:
    recording = RecordingLocMem(_location())
    assert recording.inline_access() is NO_INLINE_ACCESS
    assert BytesLocMem(_location()).inline_access() is NO_INLINE_ACCESS
    cache = Cache(recording, key_prefix="p")
    cache.set("k", "a")
    cache.set("k", "b")
    assert recording.stored == [("p:1:k", "a"), ("p:1:k", "b")]
    assert cache.get("k") == "b"
    bytes_cache = Cache(BytesLocMem(_location()), key_prefix="p")
    bytes_cache.set("k", {"a": [1]})
    assert bytes_cache.get("k") == {"a": [1]}
    recording.clear()


def test_a_custom_key_function_reads_through_the_backend(
    backend: LocMemBackend, backend_calls: list[str]
) -> None:
    cache = Cache(backend, key_function=lambda key, prefix, version: f"custom/{key}")
    cache.set("k", "v")
    cache.set("k", "w")
    assert cache.get("k") == "w"
    assert backend_calls == ["set custom/k", "set custom/k", "get custom/k"]


def test_concurrent_inline_overwrites_keep_values_whole_and_the_byte_count_exact() -> None:
    bounded = LocMemBackend(_location(), max_entries=1000, max_bytes=10_000)
    cache = Cache(bounded, key_prefix="p", latency_sample_every=0)
    values = [letter * 50 for letter in "abcdefgh"]
    for key in range(20):
        cache.set(str(key), values[0])
    seen: set[str] = set()
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for n in range(2000):
                key = str(n % 20)
                cache.set(key, values[(worker + n) % len(values)])
                if n % 7 == 0:
                    cache.set(key, values[0] * 2)  # a size change: the backend's path
                got = cache.get(key)
                if got is not None:
                    seen.add(got)
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads between almost any two bytecodes
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert seen <= {*values, values[0] * 2}
    entries = bounded.inline_access().entries
    assert entries is not None
    assert [entry.size for entry in entries.values()] == [len(entry.value) for entry in entries.values()]
    assert bounded._store.size == sum(entry.size for entry in entries.values())
    bounded.clear()


def test_the_async_front_reads_and_overwrites_inline_too(clock: FakeClock) -> None:
    backend = AsyncLocMemBackend(_location(), clock=clock)
    assert backend.inline_access().entries is backend.sync.inline_access().entries
    cache = AsyncCache(backend, key_prefix="p", latency_sample_every=0)

    async def main() -> list[Any]:
        await cache.set("k", "v1", timeout=10)
        await cache.set("k", "v2", timeout=10)
        hit = await cache.get("k")
        clock.now += 10
        return [hit, await cache.get("k", "gone"), len(backend.sync)]

    assert asyncio.run(main()) == ["v2", "gone", 0]
    assert (cache.stats()["hits"], cache.stats()["misses"], cache.stats()["sets"]) == (1, 1, 2)
