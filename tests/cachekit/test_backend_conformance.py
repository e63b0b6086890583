"""The backend conformance suite: every backend must pass every test here.

Written once against the parametrized ``backend_harness`` fixture (see
``tests/conftest.py``); a new backend joins by adding a fixture and a name
to ``BACKENDS``.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest

from cachekit.backends.base import Backend
from cachekit.backends.base import SupportsCas
from cachekit.backends.locmem import LocMemBackend
from cachekit.exceptions import BackendError
from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import MissingKeyError
from tests.conftest import BackendHarness
from tests.conftest import FakeClock

MIB = 1024 * 1024


def test_implements_protocol(backend: Backend) -> None:
    assert isinstance(backend, Backend)


def test_get_missing_is_none(backend: Backend) -> None:
    assert backend.get("absent") is None


def test_set_then_get(backend: Backend) -> None:
    backend.set("k", b"value", ttl=None)
    assert backend.get("k") == b"value"


def test_set_replaces(backend: Backend) -> None:
    backend.set("k", b"one", ttl=None)
    backend.set("k", b"two", ttl=None)
    assert backend.get("k") == b"two"


def test_empty_bytes_value_is_not_a_miss(backend: Backend) -> None:
    backend.set("k", b"", ttl=None)
    assert backend.get("k") == b""


def test_binary_value_round_trips(backend: Backend) -> None:
    value = bytes(range(256)) * 4
    backend.set("k", value, ttl=None)
    assert backend.get("k") == value


def test_large_value_one_mib(backend: Backend, backend_harness: BackendHarness) -> None:
    # memcached's default item limit is 1 MiB including overhead: stay just under it there
    size = MIB - 1024 if backend_harness.name.startswith("memcached") else MIB
    value = b"x" * size
    backend.set("big", value, ttl=None)
    assert backend.get("big") == value


def test_unicode_key(backend: Backend) -> None:
    backend.set("ключ-🔑-键", b"v", ttl=None)
    assert backend.get("ключ-🔑-键") == b"v"
    assert backend.get("ключ-🔑-") is None


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("with space", id="space"),
        pytest.param("tab\there", id="tab"),
        pytest.param("line\nbreak", id="newline"),
        pytest.param("nul\x00byte", id="nul"),
        pytest.param("k" * 300, id="300-chars"),
        pytest.param("é" * 200, id="400-utf8-bytes"),
    ],
)
def test_awkward_keys_are_stored(backend: Backend, key: str) -> None:
    backend.set(key, b"v", ttl=None)
    assert backend.get(key) == b"v"
    assert backend.delete(key) is True
    assert backend.get(key) is None


def test_distinct_long_keys_do_not_collide(backend: Backend) -> None:
    a, b = "a" * 300 + "1", "a" * 300 + "2"
    backend.set(a, b"1", ttl=None)
    backend.set(b, b"2", ttl=None)
    assert (backend.get(a), backend.get(b)) == (b"1", b"2")


def test_ttl_none_does_not_expire(backend_harness: BackendHarness) -> None:
    backend = backend_harness.backend
    backend.set("k", b"v", ttl=None)
    backend_harness.expire()
    assert backend.get("k") == b"v"


def test_ttl_expires(backend_harness: BackendHarness) -> None:
    backend = backend_harness.backend
    backend.set("k", b"v", ttl=backend_harness.short_ttl)
    assert backend.get("k") == b"v"
    assert backend_harness.eventually(lambda: backend.get("k") is None)


def test_long_ttl_keeps_value(backend: Backend) -> None:
    backend.set("k", b"v", ttl=3600)
    assert backend.get("k") == b"v"


def test_ttl_over_thirty_days(backend: Backend) -> None:
    backend.set("k", b"v", ttl=31 * 24 * 3600)
    assert backend.get("k") == b"v"


def test_fractional_ttl_is_accepted(backend: Backend) -> None:
    backend.set("k", b"v", ttl=2.5)
    assert backend.get("k") == b"v"


def test_add_absent_key(backend: Backend) -> None:
    assert backend.add("k", b"one", ttl=None) is True
    assert backend.get("k") == b"one"


def test_add_keeps_existing_value(backend: Backend) -> None:
    backend.set("k", b"one", ttl=None)
    assert backend.add("k", b"two", ttl=None) is False
    assert backend.get("k") == b"one"


def test_add_after_expiry(backend_harness: BackendHarness) -> None:
    backend = backend_harness.backend
    backend.set("k", b"old", ttl=backend_harness.short_ttl)
    assert backend_harness.eventually(lambda: backend.get("k") is None)
    assert backend.add("k", b"new", ttl=None) is True
    assert backend.get("k") == b"new"


def test_add_with_ttl_expires(backend_harness: BackendHarness) -> None:
    backend = backend_harness.backend
    assert backend.add("k", b"v", ttl=backend_harness.short_ttl) is True
    assert backend_harness.eventually(lambda: backend.get("k") is None)


def test_delete_present(backend: Backend) -> None:
    backend.set("k", b"v", ttl=None)
    assert backend.delete("k") is True
    assert backend.get("k") is None


def test_delete_absent(backend: Backend) -> None:
    assert backend.delete("absent") is False


def test_get_many_returns_found_only(backend: Backend) -> None:
    backend.set("a", b"1", ttl=None)
    backend.set("c", b"3", ttl=None)
    assert backend.get_many(["a", "b", "c"]) == {"a": b"1", "c": b"3"}


def test_get_many_empty(backend: Backend) -> None:
    assert backend.get_many([]) == {}


def test_get_many_all_missing(backend: Backend) -> None:
    assert backend.get_many(["x", "y"]) == {}


def test_get_many_awkward_keys(backend: Backend) -> None:
    keys = ["sp ace", "k" * 300, "ü"]
    for i, key in enumerate(keys):
        backend.set(key, str(i).encode() + b"!", ttl=None)
    assert backend.get_many(keys) == {key: str(i).encode() + b"!" for i, key in enumerate(keys)}


def test_get_many_hundred(backend: Backend) -> None:
    items = {f"k{i}": f"v{i}".encode() for i in range(100)}
    backend.set_many(items, ttl=None)
    assert backend.get_many(list(items)) == items


def test_set_many_then_get(backend: Backend) -> None:
    backend.set_many({"a": b"1", "b": b"2"}, ttl=None)
    assert backend.get("a") == b"1"
    assert backend.get("b") == b"2"


def test_set_many_empty(backend: Backend) -> None:
    backend.set_many({}, ttl=None)
    assert backend.get_many(["a"]) == {}


def test_set_many_with_ttl_expires(backend_harness: BackendHarness) -> None:
    backend = backend_harness.backend
    backend.set_many({"a": b"1", "b": b"2"}, ttl=backend_harness.short_ttl)
    assert backend.get_many(["a", "b"]) == {"a": b"1", "b": b"2"}
    assert backend_harness.eventually(lambda: backend.get_many(["a", "b"]) == {})


def test_delete_many(backend: Backend) -> None:
    backend.set_many({"a": b"1", "b": b"2", "c": b"3"}, ttl=None)
    backend.delete_many(["a", "b", "missing"])
    assert backend.get_many(["a", "b", "c"]) == {"c": b"3"}


def test_delete_many_empty(backend: Backend) -> None:
    backend.set("a", b"1", ttl=None)
    backend.delete_many([])
    assert backend.get("a") == b"1"


def test_incr(backend: Backend) -> None:
    backend.set("n", b"10", ttl=None)
    assert backend.incr("n", 5) == 15
    assert int(backend.get("n") or b"") == 15


def test_incr_negative_delta(backend: Backend) -> None:
    backend.set("n", b"10", ttl=None)
    assert backend.incr("n", -3) == 7


def test_incr_missing_key_raises(backend: Backend) -> None:
    with pytest.raises(MissingKeyError):
        backend.incr("absent", 1)


def test_incr_missing_is_value_error(backend: Backend) -> None:
    with pytest.raises(ValueError, match="absent"):
        backend.incr("absent", 1)


def test_incr_expired_key_raises(backend_harness: BackendHarness) -> None:
    backend = backend_harness.backend
    backend.set("n", b"1", ttl=backend_harness.short_ttl)
    assert backend_harness.eventually(lambda: backend.get("n") is None)
    with pytest.raises(MissingKeyError):
        backend.incr("n", 1)


def test_incr_non_integer_raises_backend_error(backend: Backend) -> None:
    backend.set("s", b"\x80not-a-number", ttl=None)
    with pytest.raises(BackendError):
        backend.incr("s", 1)
    assert backend.get("s") == b"\x80not-a-number"


def test_incr_keeps_ttl(backend_harness: BackendHarness) -> None:
    backend = backend_harness.backend
    backend.set("n", b"1", ttl=backend_harness.short_ttl)
    backend.incr("n", 1)
    assert backend_harness.eventually(lambda: backend.get("n") is None)


def test_incr_is_atomic_across_threads(backend: Backend) -> None:
    backend.set("n", b"0", ttl=None)

    def work() -> None:
        for _ in range(100):
            backend.incr("n", 1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert int(backend.get("n") or b"") == 400


def test_touch_present(backend_harness: BackendHarness) -> None:
    backend = backend_harness.backend
    backend.set("k", b"v", ttl=None)
    assert backend.touch("k", backend_harness.short_ttl) is True
    assert backend_harness.eventually(lambda: backend.get("k") is None)


def test_touch_extends(backend_harness: BackendHarness) -> None:
    backend = backend_harness.backend
    backend.set("k", b"v", ttl=backend_harness.short_ttl)
    assert backend.touch("k", 3600) is True
    backend_harness.expire()
    assert backend.get("k") == b"v"


def test_touch_to_none_persists(backend_harness: BackendHarness) -> None:
    backend = backend_harness.backend
    backend.set("k", b"v", ttl=backend_harness.short_ttl)
    assert backend.touch("k", None) is True
    backend_harness.expire()
    assert backend.get("k") == b"v"


def test_touch_absent(backend: Backend) -> None:
    assert backend.touch("absent", 10) is False


def test_clear_everything(backend: Backend) -> None:
    backend.set_many({"a": b"1", "b": b"2"}, ttl=None)
    backend.clear()
    assert backend.get_many(["a", "b"]) == {}


def test_clear_prefix_only(backend: Backend) -> None:
    backend.set_many({"app:1:a": b"1", "other:1:b": b"2"}, ttl=None)
    backend.clear("app:")
    assert backend.get("app:1:a") is None
    assert backend.get("other:1:b") == b"2"


def test_usable_after_close(backend: Backend) -> None:
    backend.set("k", b"v", ttl=None)
    backend.close()
    assert backend.get("k") == b"v"


def test_lock_excludes_second_holder(backend: Backend) -> None:
    first = backend.lock("L", ttl=10)
    second = backend.lock("L", ttl=10)
    assert first.acquire(blocking=False) is True
    assert second.acquire(blocking=False) is False
    first.release()
    assert second.acquire(blocking=False) is True
    second.release()


def test_lock_blocking_timeout(backend: Backend) -> None:
    first = backend.lock("L", ttl=10)
    assert first.acquire(blocking=False)
    try:
        assert backend.lock("L", ttl=10).acquire(timeout=0.2) is False
    finally:
        first.release()


def test_lock_waiter_gets_lock_after_release(backend: Backend) -> None:
    first = backend.lock("L", ttl=10)
    assert first.acquire()
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(backend.lock("L", ttl=10).acquire(timeout=5)))
    waiter.start()
    first.release()
    waiter.join(6)
    assert got == [True]


def test_lock_expires(backend_harness: BackendHarness) -> None:
    backend = backend_harness.backend
    ttl = backend_harness.short_ttl
    first = backend.lock("L", ttl=ttl)
    assert first.acquire(blocking=False)
    second = backend.lock("L", ttl=10)
    assert backend_harness.eventually(lambda: second.acquire(blocking=False))
    second.release()


def test_expired_lock_release_keeps_new_holder(backend_harness: BackendHarness) -> None:
    backend = backend_harness.backend
    first = backend.lock("L", ttl=backend_harness.short_ttl)
    assert first.acquire(blocking=False)
    second = backend.lock("L", ttl=10)
    assert backend_harness.eventually(lambda: second.acquire(blocking=False))
    first.release()  # too late: must not free the second holder's lock
    assert backend.lock("L", ttl=10).acquire(blocking=False) is False
    second.release()


def test_locks_with_different_names_are_independent(backend: Backend) -> None:
    a = backend.lock("A", ttl=10)
    b = backend.lock("B", ttl=10)
    assert a.acquire(blocking=False)
    assert b.acquire(blocking=False)
    a.release()
    b.release()


def test_lock_as_context_manager(backend: Backend) -> None:
    with backend.lock("L", ttl=10) as held:  # type: ignore[attr-defined]
        assert held is not None
        assert backend.lock("L", ttl=10).acquire(blocking=False) is False
    other = backend.lock("L", ttl=10)
    assert other.acquire(blocking=False) is True  # released on leaving the block
    other.release()


def test_lock_as_context_manager_releases_on_error(backend: Backend) -> None:
    with pytest.raises(RuntimeError, match="inside"), backend.lock("L", ttl=10):  # type: ignore[attr-defined]
        raise RuntimeError("inside")
    other = backend.lock("L", ttl=10)
    assert other.acquire(blocking=False) is True
    other.release()


def test_lock_release_twice_is_harmless(backend: Backend) -> None:
    first = backend.lock("L", ttl=10)
    assert first.acquire(blocking=False)
    first.release()
    second = backend.lock("L", ttl=10)
    assert second.acquire(blocking=False)
    first.release()  # no longer the holder: the second keeps the lock
    assert backend.lock("L", ttl=10).acquire(blocking=False) is False
    second.release()


# -- compare-and-set (every bundled backend supports it) ------------------------------


def _cas_backend(backend: Backend) -> SupportsCas:
    assert isinstance(backend, SupportsCas), f"{backend!r} has no gets/cas"
    return backend


def test_gets_missing_is_none(backend: Backend) -> None:
    assert _cas_backend(backend).gets("absent") is None


def test_gets_returns_value_and_token(backend: Backend) -> None:
    cas = _cas_backend(backend)
    backend.set("k", b"one", ttl=None)
    found = cas.gets("k")
    assert found is not None
    assert found[0] == b"one"


def test_cas_with_fresh_token_stores(backend: Backend) -> None:
    cas = _cas_backend(backend)
    backend.set("k", b"one", ttl=None)
    found = cas.gets("k")
    assert found is not None
    assert cas.cas("k", b"two", found[1], ttl=None) is True
    assert backend.get("k") == b"two"


def test_cas_with_stale_token_is_refused(backend: Backend) -> None:
    cas = _cas_backend(backend)
    backend.set("k", b"one", ttl=None)
    found = cas.gets("k")
    assert found is not None
    backend.set("k", b"other writer", ttl=None)
    assert cas.cas("k", b"lost update", found[1], ttl=None) is False
    assert backend.get("k") == b"other writer"


def test_cas_token_is_used_up_by_its_own_write(backend: Backend) -> None:
    cas = _cas_backend(backend)
    backend.set("k", b"one", ttl=None)
    found = cas.gets("k")
    assert found is not None
    assert cas.cas("k", b"two", found[1], ttl=None) is True
    assert cas.cas("k", b"three", found[1], ttl=None) is False
    assert backend.get("k") == b"two"


def test_cas_of_the_same_value_from_a_spent_token_is_refused(backend: Backend) -> None:
    # Two writers that read 5 and both write 6 (an increment): the second must lose, or one
    # increment is gone. Equal bytes are no proof that the write was this caller's.
    cas = _cas_backend(backend)
    backend.set("k", b"5", ttl=None)
    first = cas.gets("k")
    second = cas.gets("k")
    assert first is not None
    assert second is not None
    assert cas.cas("k", b"6", first[1], ttl=None) is True
    assert cas.cas("k", b"6", second[1], ttl=None) is False


def test_cas_on_a_deleted_key_is_refused(backend: Backend) -> None:
    cas = _cas_backend(backend)
    backend.set("k", b"one", ttl=None)
    found = cas.gets("k")
    assert found is not None
    backend.delete("k")
    assert cas.cas("k", b"revived", found[1], ttl=None) is False
    assert backend.get("k") is None


def test_cas_with_ttl_expires(backend_harness: BackendHarness) -> None:
    backend = backend_harness.backend
    cas = _cas_backend(backend)
    backend.set("k", b"one", ttl=None)
    found = cas.gets("k")
    assert found is not None
    assert cas.cas("k", b"two", found[1], ttl=backend_harness.short_ttl) is True
    assert backend.get("k") == b"two"
    assert backend_harness.eventually(lambda: backend.get("k") is None)


def test_cas_after_expiry_is_refused(backend_harness: BackendHarness) -> None:
    backend = backend_harness.backend
    cas = _cas_backend(backend)
    backend.set("k", b"one", ttl=backend_harness.short_ttl)
    found = cas.gets("k")
    assert found is not None
    assert backend_harness.eventually(lambda: backend.get("k") is None)
    assert cas.cas("k", b"revived", found[1], ttl=None) is False
    assert backend.get("k") is None


def test_gets_of_an_expired_key_is_none(backend_harness: BackendHarness) -> None:
    backend = backend_harness.backend
    cas = _cas_backend(backend)
    backend.set("k", b"one", ttl=backend_harness.short_ttl)
    assert backend_harness.eventually(lambda: cas.gets("k") is None)


def test_cas_one_winner_among_threads(backend: Backend) -> None:
    cas = _cas_backend(backend)
    backend.set("k", b"0", ttl=None)
    found = cas.gets("k")
    assert found is not None
    token = found[1]
    results: list[bool] = []
    start = threading.Barrier(4)

    def write(n: int) -> None:
        start.wait()
        results.append(cas.cas("k", str(n).encode(), token, ttl=None))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == [False, False, False, True]


# -- local memory only: count and the size bounds (injected clock, exact boundaries) ----


def _locmem(fake_clock: FakeClock, request: pytest.FixtureRequest, **options: Any) -> LocMemBackend:
    backend = LocMemBackend(f"bounds-{request.node.nodeid}", clock=fake_clock, **options)
    request.addfinalizer(backend.clear)
    return backend


def test_locmem_count_counts_live_keys_with_and_without_ttl(
    fake_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    backend = _locmem(fake_clock, request)
    backend.set("a:forever", b"1", ttl=None)  # no TTL: must not crash the count
    backend.set("a:short", b"2", ttl=5)
    backend.set("b:other", b"3", ttl=None)
    assert backend.count() == 3
    assert backend.count("a:") == 2
    assert backend.count("c:") == 0
    fake_clock.advance(5)  # expires exactly now: no longer live
    assert backend.count("a:") == 1
    assert backend.count() == 2


def test_locmem_max_entries_boundary(fake_clock: FakeClock, request: pytest.FixtureRequest) -> None:
    backend = _locmem(fake_clock, request, max_entries=3, max_bytes=None)
    for name in "abc":
        backend.set(name, b"v", ttl=None)
    assert backend.count() == 3  # exactly max_entries: all kept
    assert backend.get("a") == b"v"  # a is used: a second chance
    backend.set("d", b"v", ttl=None)  # one over: the oldest key not used since (b) goes
    assert backend.get("b") is None
    assert [backend.get(name) for name in "acd"] == [b"v"] * 3
    assert len(backend) == 3


def test_locmem_max_entries_evicts_expired_entries_first(
    fake_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    backend = _locmem(fake_clock, request, max_entries=2, max_bytes=None)
    backend.set("old", b"v", ttl=None)
    backend.set("short", b"v", ttl=1)
    fake_clock.advance(2)
    backend.set("new", b"v", ttl=None)  # the expired entry goes, not the LRU live one
    assert backend.get("old") == b"v"
    assert backend.get("new") == b"v"


def test_locmem_max_bytes_boundary(fake_clock: FakeClock, request: pytest.FixtureRequest) -> None:
    backend = _locmem(fake_clock, request, max_bytes=10)
    backend.set("a", b"12345", ttl=None)
    backend.set("b", b"12345", ttl=None)  # exactly max_bytes in total: both kept
    assert backend.get("a") == b"12345"
    assert backend.get("b") == b"12345"
    backend.set("c", b"1", ttl=None)  # one byte over: the least recently used goes
    assert backend.get("a") is None
    assert backend.get("b") == b"12345"
    assert backend.get("c") == b"1"


def test_locmem_value_of_exactly_max_bytes_is_kept(
    fake_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    backend = _locmem(fake_clock, request, max_bytes=10)
    backend.set("k", b"0123456789", ttl=None)
    assert backend.get("k") == b"0123456789"
    with pytest.raises(BackendError, match="max_bytes"):
        backend.set("k", b"0123456789X", ttl=None)  # larger than the whole store: refused
    assert backend.get("k") is None  # and the old value is gone, so no reader sees it
    assert len(backend) == 0


def test_locmem_replacing_a_value_frees_its_bytes(
    fake_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    backend = _locmem(fake_clock, request, max_bytes=10)
    backend.set("a", b"123456", ttl=None)
    backend.set("a", b"1", ttl=None)
    backend.set("b", b"123456789", ttl=None)  # 1 + 9 = 10: fits only if the old 6 bytes were freed
    assert backend.get("a") == b"1"
    assert backend.get("b") == b"123456789"
    backend.delete("a")
    backend.set("c", b"1", ttl=None)  # 9 + 1: fits only if delete freed a's byte
    assert backend.get("b") == b"123456789"
    assert backend.get("c") == b"1"


@pytest.mark.parametrize(
    "options",
    [{"max_entries": 0}, {"max_bytes": 0}, {"max_bytes": -1}],
    ids=["entries-0", "bytes-0", "bytes-neg"],
)
def test_locmem_bounds_must_be_positive(options: dict[str, int]) -> None:
    with pytest.raises(ConfigurationError, match=next(iter(options))):
        LocMemBackend("bounds-invalid", **options)


def test_locmem_bounds_of_one_are_allowed(fake_clock: FakeClock, request: pytest.FixtureRequest) -> None:
    backend = _locmem(fake_clock, request, max_entries=1, max_bytes=1)
    backend.set("a", b"1", ttl=None)
    assert backend.get("a") == b"1"
    backend.set("b", b"2", ttl=None)
    assert backend.get("a") is None
    assert backend.get("b") == b"2"


def test_locmem_stores_share_by_location(fake_clock: FakeClock, request: pytest.FixtureRequest) -> None:
    first = _locmem(fake_clock, request)
    second = LocMemBackend(first.location, clock=fake_clock)
    first.set("k", b"v", ttl=None)
    assert second.get("k") == b"v"
    assert LocMemBackend(first.location + "-other", clock=fake_clock).get("k") is None
    assert LocMemBackend.from_url(f"locmem://{first.location}/").get("k") == b"v"


def test_locmem_lock_expiry_on_the_injected_clock(
    fake_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    backend = _locmem(fake_clock, request)
    first = backend.lock("L", ttl=5)
    assert first.acquire(blocking=False)
    fake_clock.advance(4.9)
    assert backend.lock("L", ttl=5).acquire(blocking=False) is False
    fake_clock.advance(0.1)  # exactly the ttl: abandoned, taken over
    assert backend.lock("L", ttl=5).acquire(blocking=False) is True


def test_locmem_sizes_count_tuple_contents(fake_clock: FakeClock, request: pytest.FixtureRequest) -> None:
    value = ("abc", b"de", 7)
    size = sys.getsizeof(value) + 3 + 2 + sys.getsizeof(7)
    exact = _locmem(fake_clock, request, max_bytes=size)
    exact.set("t", value, ttl=None)
    assert exact.get("t") == value
    under = LocMemBackend(f"under-{request.node.nodeid}", clock=fake_clock, max_bytes=size - 1)
    request.addfinalizer(under.clear)
    with pytest.raises(BackendError):
        under.set("t", value, ttl=None)
    assert under.get("t") is None
    text = _locmem(fake_clock, request, max_bytes=3)
    text.set("s", "abc", ttl=None)  # str counts its length
    assert text.get("s") == "abc"


def test_locmem_set_many_refuses_only_the_oversized(
    fake_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    backend = _locmem(fake_clock, request, max_bytes=10)
    backend.set("big", b"old", ttl=None)
    with pytest.raises(BackendError, match="big"):
        backend.set_many({"a": b"1", "big": b"0123456789X", "b": b"2"}, ttl=None)
    assert backend.get("a") == b"1"
    assert backend.get("b") == b"2"
    assert backend.get("big") is None


def test_locmem_reads_and_incr_refresh_lru_order(
    fake_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    backend = _locmem(fake_clock, request, max_entries=3, max_bytes=None)
    for name in ("a", "b", "c"):
        backend.set(name, b"1", ttl=None)
    assert backend.get_many(["a"]) == {"a": b"1"}  # a is used: a second chance
    backend.set("d", b"1", ttl=None)
    assert backend.get("b") is None
    assert backend.incr("c", 1) == 2  # c is used: a second chance
    backend.set("e", b"1", ttl=None)  # d has not been used since it came: it goes
    assert backend.get("d") is None
    assert backend.get_many(["a", "c", "e"]) == {"a": b"1", "c": b"2", "e": b"1"}


def test_locmem_incr_keeps_the_stored_type(fake_clock: FakeClock, request: pytest.FixtureRequest) -> None:
    backend = _locmem(fake_clock, request)
    backend.set("n", 5, ttl=None)
    assert backend.incr("n", 2) == 7
    assert backend.get("n") == 7
    backend.set("b", b"5", ttl=None)
    assert backend.incr("b", -7) == -2
    assert backend.get("b") == b"-2"
    backend.set("x", object(), ttl=None)
    with pytest.raises(BackendError, match="not an integer"):
        backend.incr("x", 1)


def test_locmem_sweeps_expired_entries_at_most_once_a_second(
    fake_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    backend = _locmem(fake_clock, request, max_entries=2, max_bytes=None)
    backend.set("a", b"1", ttl=None)
    backend.set("b", b"1", ttl=None)
    backend.set("x", b"1", ttl=1)  # over the bound at t=1000: the first sweep finds nothing, a goes
    assert backend.get("a") is None
    fake_clock.advance(1)  # x expires exactly now, a second after the last sweep
    backend.set("y", b"1", ttl=None)  # over again: the sweep drops x, so b (the LRU entry) stays
    assert backend.get("b") == b"1"
    assert backend.get("y") == b"1"
    fake_clock.advance(0.5)
    backend.set("s", b"1", ttl=0.1)  # over: half a second since the sweep, so the LRU entry (b) goes
    assert backend.get("b") is None
    fake_clock.advance(0.2)  # s has expired, but no sweep is due
    backend.set("w", b"1", ttl=None)  # the live LRU entry goes, not the expired s
    assert backend.get("y") is None
    assert backend.get("w") == b"1"


def test_locmem_max_bytes_keeps_at_least_the_newest_entry(
    fake_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    backend = _locmem(fake_clock, request, max_bytes=10)
    backend.set("a", b"123456", ttl=None)
    backend.set("b", b"1234567", ttl=None)  # 13 > 10: a goes, b stays alone
    assert backend.get("a") is None
    assert backend.get("b") == b"1234567"
    assert len(backend) == 1


def test_locmem_clear_frees_the_bytes(fake_clock: FakeClock, request: pytest.FixtureRequest) -> None:
    backend = _locmem(fake_clock, request, max_bytes=10)
    backend.set("p:a", b"12345", ttl=None)
    backend.set("q:b", b"12345", ttl=None)
    backend.clear("p:")
    assert backend.get("q:b") == b"12345"
    backend.set("q:c", b"12345", ttl=None)  # fits only if clearing p:a freed its 5 bytes
    assert backend.get("q:b") == b"12345"
    backend.clear()
    assert len(backend) == 0
    backend.set("r", b"0123456789", ttl=None)
    backend.set("s", b"", ttl=None)  # fits only if clear() reset the size to 0
    assert backend.get("r") == b"0123456789"


def test_locmem_expired_entries_count_as_absent(
    fake_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    backend = _locmem(fake_clock, request)
    backend.set("k", b"v", ttl=1)
    fake_clock.advance(1)  # expires exactly now
    assert backend.get_many(["k"]) == {}
    backend.set("k", b"v", ttl=1)
    fake_clock.advance(1)
    assert backend.delete("k") is False
    backend.set("k", b"v", ttl=1)
    fake_clock.advance(1)
    assert backend.touch("k", 10) is False
    assert backend.add("k", b"new", ttl=None) is True
    assert backend.delete("k") is True
    with pytest.raises(MissingKeyError):
        backend.incr("k", 1)


def test_locmem_from_location_and_repr() -> None:
    assert LocMemBackend.from_location(None).location == ""
    assert LocMemBackend.from_location("named").location == "named"
    assert LocMemBackend.from_location("named", max_entries=5).max_entries == 5
    with pytest.raises(ConfigurationError, match="LOCATION") as info:
        LocMemBackend.from_location(["a", "b"])
    assert info.value.setting == "LOCATION"
    assert LocMemBackend.from_url("locmem://").location == ""
    assert LocMemBackend.from_url("locmem://a/b/").location == "a/b"
    assert repr(LocMemBackend("r", max_entries=7)) == "LocMemBackend(location='r', max_entries=7)"
    defaults = LocMemBackend("defaults")
    assert defaults.max_entries == 1000
    assert {"max_entries": int, "max_bytes": int} == LocMemBackend.OPTIONS
    assert LocMemBackend.stores_objects is True


def test_locmem_lock_non_blocking_and_foreign_release(
    fake_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    backend = _locmem(fake_clock, request)
    first = backend.lock("L", ttl=5)
    assert first.acquire(blocking=False)
    intruder = backend.lock("L", ttl=5)
    assert intruder.acquire(timeout=0) is False
    intruder.release()  # not the holder: nothing happens
    assert backend.lock("L", ttl=5).acquire(blocking=False) is False
    first.release()
    assert backend.lock("L", ttl=5).acquire(blocking=False) is True


def test_locmem_eviction_stops_at_exactly_max_bytes(
    fake_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    backend = _locmem(fake_clock, request, max_bytes=10)
    backend.set("a", b"12345", ttl=None)
    backend.set("b", b"12345", ttl=None)
    backend.set("c", b"12345", ttl=None)  # 15: a goes, and 10 is within the bound
    assert backend.get("a") is None
    assert backend.get("b") == b"12345"
    assert backend.get("c") == b"12345"


def test_locmem_replacing_a_value_makes_it_most_recent(
    fake_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    backend = _locmem(fake_clock, request, max_entries=3, max_bytes=None)
    for name in ("a", "b", "c"):
        backend.set(name, b"1", ttl=None)
    backend.set("a", b"2", ttl=None)
    backend.set("d", b"1", ttl=None)
    assert backend.get("b") is None
    assert backend.get("a") == b"2"


def test_locmem_unbounded_view_does_not_count_against_a_bounded_one(
    fake_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    unbounded = _locmem(fake_clock, request, max_bytes=None)
    bounded = LocMemBackend(unbounded.location, clock=fake_clock, max_bytes=10)
    for n in range(5):
        unbounded.set(f"u{n}", b"x", ttl=None)  # counted as 0 bytes: the view has no bound
    bounded.set("b", b"0123456789", ttl=None)
    assert [unbounded.get(f"u{n}") for n in range(5)] == [b"x"] * 5
    assert bounded.get("b") == b"0123456789"


def test_locmem_expired_entries_are_freed_when_read(
    fake_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    backend = _locmem(fake_clock, request)
    backend.set("k", b"v", ttl=1)
    backend.set("j", b"v", ttl=1)
    fake_clock.advance(1)  # expires exactly now
    assert backend.get("k") is None
    assert len(backend) == 1  # the read dropped it
    assert backend.get_many(["j"]) == {}
    assert len(backend) == 0


def test_locmem_cas_refuses_an_oversized_value_and_keeps_the_old(
    fake_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    backend = _locmem(fake_clock, request, max_bytes=10)
    backend.set("k", b"old", ttl=None)
    found = backend.gets("k")
    assert found is not None
    with pytest.raises(BackendError, match="max_bytes"):
        backend.cas("k", b"0123456789X", found[1], ttl=None)
    assert backend.get("k") == b"old"
    assert backend.cas("k", b"0123456789", found[1], ttl=None) is True  # exactly max_bytes fits
    assert backend.get("k") == b"0123456789"


def test_locmem_defaults() -> None:
    backend = LocMemBackend()
    assert backend.location == ""
    assert backend.max_entries == 1000
    assert backend.max_bytes == 64 * 1024 * 1024
    assert LocMemBackend.from_url("locmem://a/bX/").location == "a/bX"  # only the trailing slash goes


def test_locmem_blocking_acquire_waits_for_release(
    fake_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    backend = _locmem(fake_clock, request)
    holder = backend.lock("L", ttl=60)
    assert holder.acquire(blocking=False)
    for timeout in (-1, 0.9):  # no deadline, and one under a second
        got: list[bool] = []
        waiter = threading.Thread(
            target=lambda t=timeout, out=got: out.append(backend.lock("L", ttl=60).acquire(timeout=t))
        )
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive(), "a blocking acquire returned while the lock was held"
        holder.release()
        waiter.join(5)
        assert got == [True]
        holder = backend.lock("L", ttl=60)
        fake_clock.advance(61)  # the waiter's lock expires, so the next holder can take it
        assert holder.acquire(blocking=False)
    holder.release()


def test_locmem_sizes_str_and_bytes_subclasses_by_length(
    fake_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    class Tag(bytes):
        pass

    class Name(str):
        pass

    backend = _locmem(fake_clock, request, max_bytes=6)
    backend.set("b", Tag(b"abc"), ttl=None)  # 3 bytes each, not sys.getsizeof's 36 or more
    backend.set("s", Name("xyz"), ttl=None)
    assert backend.get("b") == b"abc"
    assert backend.get("s") == "xyz"


def test_locmem_lru_survives_deletes_and_queue_compaction(
    fake_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    backend = _locmem(fake_clock, request, max_entries=3, max_bytes=None)
    backend.set("once", b"1", ttl=None)
    backend.delete("once")
    backend.set("once", b"1", ttl=None)  # its old place in the queue is a ghost now
    backend.set("twice", b"1", ttl=None)
    for _ in range(2):
        backend.delete("twice")
        backend.set("twice", b"1", ttl=None)  # two ghosts of one key
    for n in range(70):  # churn: enough ghosts to compact the queue
        backend.set(f"t{n}", b"x", ttl=None)
        backend.delete(f"t{n}")
    assert len(backend._store.order) < 70  # compacted: the queue does not grow with churn
    backend.set("a", b"1", ttl=None)  # full: once, twice, a
    backend.set("b", b"1", ttl=None)  # once is the least recently used: it goes
    assert backend.get("once") is None
    backend.set("c", b"1", ttl=None)  # then twice
    assert backend.get("twice") is None
    for n in range(10):  # keep cycling: every queued key is a live one or a counted ghost
        backend.set(f"n{n}", b"1", ttl=None)
    assert len(backend) == 3
    assert [backend.get(f"n{n}") for n in (7, 8, 9)] == [b"1"] * 3


def test_locmem_overwrite_replaces_the_expiry(fake_clock: FakeClock, request: pytest.FixtureRequest) -> None:
    backend = _locmem(fake_clock, request)
    backend.set("k", b"1", ttl=1)
    backend.set("k", b"2", ttl=None)  # an overwrite in place: the new expiry too
    backend.set("j", b"1", ttl=None)
    backend.set("j", b"2", ttl=1)
    fake_clock.advance(2)
    assert backend.get("k") == b"2"
    assert backend.get("j") is None


def test_locmem_overwrite_that_grows_evicts(fake_clock: FakeClock, request: pytest.FixtureRequest) -> None:
    backend = _locmem(fake_clock, request, max_bytes=10)
    backend.set("a", b"12345", ttl=None)
    backend.set("b", b"1234", ttl=None)
    backend.set("b", b"123456", ttl=None)  # 11 bytes in all: a goes
    assert backend.get("a") is None
    assert backend.get("b") == b"123456"


def test_locmem_set_many_overwrite_refreshes_lru_order(
    fake_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    backend = _locmem(fake_clock, request, max_entries=3, max_bytes=None)
    for name in ("a", "b", "c"):
        backend.set(name, b"1", ttl=None)
    backend.set_many({"a": b"2"}, ttl=None)
    backend.set("d", b"1", ttl=None)
    assert backend.get("b") is None
    assert backend.get("a") == b"2"


def test_locmem_evicts_normally_after_clear(fake_clock: FakeClock, request: pytest.FixtureRequest) -> None:
    backend = _locmem(fake_clock, request, max_entries=3, max_bytes=None)
    for name in ("a", "b", "c"):
        backend.set(name, b"1", ttl=None)
    backend.clear()
    for name in ("d", "e", "f", "g"):
        backend.set(name, b"1", ttl=None)
    assert backend.get("d") is None
    assert [backend.get(name) for name in ("e", "f", "g")] == [b"1"] * 3
