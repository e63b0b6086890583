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
from unittest import mock

import pytest

from cachekit import Cache
from cachekit.aio import AsyncCache
from cachekit.backends.aio_locmem import AsyncLocMemBackend
from cachekit.backends.locmem import LocMemBackend
from cachekit.exceptions import BackendUnavailableError


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
def backend_calls() -> Iterator[list[str]]:
    """The names of the LocMemBackend methods called (a profiler: patching them would turn the
    inline paths off)."""
    calls: list[str] = []
    watched = {LocMemBackend.get.__code__, LocMemBackend.set.__code__}

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code in watched:
            calls.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        yield calls
    finally:
        sys.setprofile(None)


def test_hits_misses_and_overwrites_do_not_call_the_backend(
    backend: LocMemBackend, backend_calls: list[str]
) -> None:
    cache = Cache(backend, key_prefix="p", latency_sample_every=0)
    cache.set("k", "v1")  # a new key: the backend stores it
    assert backend_calls == ["set"]
    cache.set("k", "v2")  # same size: overwritten inline
    assert [cache.get("k") for _ in range(3)] == ["v2"] * 3
    assert cache.get("absent", "d") == "d"
    assert backend_calls == ["set"]
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
    assert recording.inline_access().entries is None
    assert BytesLocMem(_location()).inline_access().entries is None
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
    assert backend_calls == ["set", "set", "get"]


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


@pytest.mark.parametrize("where", ["instance", "class"])
def test_a_patched_get_or_set_is_called_and_unpatching_restores_the_inline_paths(
    backend: LocMemBackend, where: str, backend_calls: list[str]
) -> None:
    cache = Cache(backend, key_prefix="p", latency_sample_every=0)
    cache.set("k", "v1")
    target: Any = backend if where == "instance" else LocMemBackend
    with (
        mock.patch.object(target, "get", side_effect=BackendUnavailableError("down")) as get,
        mock.patch.object(target, "set", side_effect=BackendUnavailableError("down")) as set_,
    ):
        assert cache.get("k", "default") == "default"
        cache.set("k", "v2")  # same size, but the patched set is called: the outage is absorbed
        assert (get.call_count, set_.call_count) == (1, 1)
    assert backend.inline_access().entries is not None
    backend_calls.clear()
    assert cache.get("k") == "v1"
    cache.set("k", "v3")
    assert backend_calls == []


def test_patching_the_sync_store_under_an_async_backend_turns_its_inline_paths_off() -> None:
    backend = AsyncLocMemBackend(_location())
    cache = AsyncCache(backend, key_prefix="p", latency_sample_every=0)
    asyncio.run(cache.set("k", "v"))
    with mock.patch.object(backend.sync, "get", return_value=None) as get:
        assert asyncio.run(cache.get("k", "default")) == "default"
        assert get.called
    assert asyncio.run(cache.get("k")) == "v"
    backend.sync.clear()


def test_a_reassigned_backend_is_read_and_written_and_the_old_store_left_alone() -> None:
    old, new = LocMemBackend(_location()), LocMemBackend(_location())
    cache = Cache(old, key_prefix="p", latency_sample_every=0)
    cache.set("k", "v")
    cache.backend = new
    assert cache.get("k", "default") == "default"
    cache.set("k", "w")
    cache.set("k", "x")  # same size: inline, into the new store
    assert (old.get("p:1:k"), new.get("p:1:k"), cache.get("k")) == ("v", "x", "x")
    old.clear()
    new.clear()
