"""The local-memory store's eviction queue: ghosts of deleted keys, CLOCK, lock-free reads."""

from __future__ import annotations

import threading

import pytest

from cachekit.backends.locmem import _SECOND_CHANCES
from cachekit.backends.locmem import LocMemBackend


def _backend(request: pytest.FixtureRequest, **options: object) -> LocMemBackend:
    backend = LocMemBackend(f"queue-{request.node.nodeid}", **options)  # type: ignore[arg-type]
    backend.clear()
    return backend


def test_a_key_deleted_and_added_again_is_not_evicted_from_its_old_place(
    request: pytest.FixtureRequest,
) -> None:
    backend = _backend(request, max_entries=3, max_bytes=None)
    for name in ("a", "b", "c"):
        backend.set(name, b"1", ttl=None)
    backend.delete("a")
    backend.set("a", b"2", ttl=None)  # now the newest; its old place is a ghost
    backend.set("d", b"1", ttl=None)
    assert backend.get("b") is None  # the oldest live key went, not a
    assert backend.get_many(["a", "c", "d"]) == {"a": b"2", "c": b"1", "d": b"1"}


def test_delete_churn_keeps_the_queue_bounded(request: pytest.FixtureRequest) -> None:
    backend = _backend(request, max_entries=100, max_bytes=None)
    backend.set("kept", b"v", ttl=None)
    for i in range(5000):
        backend.set(f"k{i}", b"v", ttl=None)
        backend.delete(f"k{i}")
    store = backend._store
    assert len(store.order) <= 2 * len(store.data) + 64 + 1
    assert backend.get("kept") == b"v"


def test_eviction_drops_the_oldest_key_not_used_since_the_hand_passed(
    request: pytest.FixtureRequest,
) -> None:
    backend = _backend(request, max_entries=4, max_bytes=None)
    for name in ("k0", "k1", "k2", "k3"):
        backend.set(name, b"v", ttl=None)
    assert backend.get("k0") == b"v"  # used: a second chance
    assert backend.get_many(["k1"]) == {"k1": b"v"}
    backend.set("new", b"v", ttl=None)
    assert backend.get("k2") is None  # the oldest key nobody used
    assert backend.get_many(["k0", "k1", "k3", "new"]) == dict.fromkeys(["k0", "k1", "k3", "new"], b"v")
    backend.set("k3", b"w", ttl=None)  # an overwrite is a use too
    backend.set("newer", b"v", ttl=None)  # every key used since: the hand clears them and comes back
    assert len(backend) == 4
    backend.set("newest", b"v", ttl=None)
    assert backend.get("newer") == b"v"  # the key written last survives the next eviction


def test_one_eviction_passes_over_a_bounded_number_of_used_keys(request: pytest.FixtureRequest) -> None:
    count = 4 * _SECOND_CHANCES
    backend = _backend(request, max_entries=count, max_bytes=None)
    names = [f"k{i}" for i in range(count)]
    for name in names:
        backend.set(name, b"v", ttl=None)
    assert len(backend.get_many(names)) == count  # every key hot
    backend.set("new", b"v", ttl=None)
    order = list(backend._store.order)
    # The hand passed over _SECOND_CHANCES used keys (now at the back, bits cleared) and took the next.
    assert backend.get_many([names[_SECOND_CHANCES]]) == {}
    assert order[: count - _SECOND_CHANCES - 1] == names[_SECOND_CHANCES + 1 :]
    assert [backend._store.data[name].used for name in names[:_SECOND_CHANCES]] == [False] * _SECOND_CHANCES


def test_lock_free_reads_see_whole_values_while_writers_overwrite(
    request: pytest.FixtureRequest,
) -> None:
    backend = _backend(request, max_entries=8, max_bytes=10_000)
    values = [bytes([n]) * 100 for n in range(4)]
    stop = threading.Event()
    seen: set[bytes | None] = set()

    def write() -> None:
        n = 0
        while not stop.is_set():
            backend.set("hot", values[n % 4], ttl=60)
            backend.set(f"cold{n % 32}", b"c", ttl=60)  # evictions under the readers
            n += 1

    def read() -> None:
        for _ in range(20_000):
            seen.add(backend.get("hot"))

    writers = [threading.Thread(target=write) for _ in range(2)]
    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in writers + readers:
        thread.start()
    for thread in readers:
        thread.join(timeout=30)
    stop.set()
    for thread in writers:
        thread.join(timeout=30)
    assert seen - {None} <= set(values)
    assert backend._store.size == sum(entry.size for entry in backend._store.data.values())
    assert len(backend) <= 8


def test_the_byte_bound_reads_nbytes_and_survives_a_failing_one(request: pytest.FixtureRequest) -> None:
    class Reported:
        nbytes = 500

    class Broken:
        @property
        def nbytes(self) -> int:
            raise RuntimeError("no size")

    backend = _backend(request, max_entries=10, max_bytes=1000)
    backend.set("view", memoryview(b"x" * 400), ttl=None)
    backend.set("reported", Reported(), ttl=None)
    assert backend._store.size == 900
    backend.set("broken", Broken(), ttl=None)  # sized by sys.getsizeof instead
    assert backend.get("broken") is not None
    backend.set("more", b"x" * 200, ttl=None)  # over 1000 bytes: the oldest goes
    assert backend.get("view") is None
    assert backend._store.size <= 1000


def test_incr_counts_the_new_size_of_the_value(request: pytest.FixtureRequest) -> None:
    backend = _backend(request, max_entries=10, max_bytes=1000)
    backend.set("b", b"9", ttl=None)
    backend.set("n", 2**60, ttl=None)
    assert backend.incr("b", 1) == 10
    assert backend.incr("n", 2**70) == 2**60 + 2**70
    store = backend._store
    assert store.data["b"].size == 2
    assert store.size == sum(entry.size for entry in store.data.values())
