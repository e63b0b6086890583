"""The Cache-level conformance suite: Django's semantics through ``Cache`` on every backend.

Runs once plainly and once with a key prefix and version 2, like Django's
``prefix`` and ``v2`` cache aliases, so every rule holds whatever the key shape.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from decimal import Decimal

import pytest

from cachekit import Cache
from cachekit.exceptions import MissingKeyError
from cachekit.exceptions import SerializationError
from tests.conftest import BackendHarness


@pytest.fixture(params=["plain", "prefixed-v2"])
def cache(request: pytest.FixtureRequest, backend_harness: BackendHarness) -> Iterator[Cache]:
    if request.param == "plain":
        cache = backend_harness.make_cache()
    else:
        cache = backend_harness.make_cache(key_prefix="pfx", version=2)
    yield cache
    cache.clear()


@pytest.fixture
def harness(backend_harness: BackendHarness) -> BackendHarness:
    return backend_harness


class Point:
    """A picklable user object."""

    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and other.x == self.x

    def __hash__(self) -> int:
        return self.x


VALUES = [
    pytest.param("text", id="str"),
    pytest.param("ünïcødé ✓", id="unicode-str"),
    pytest.param(b"\x00\xffbytes", id="bytes"),
    pytest.param(42, id="int"),
    pytest.param(-7, id="negative-int"),
    pytest.param(2**70, id="big-int"),
    pytest.param(3.25, id="float"),
    pytest.param(True, id="bool"),
    pytest.param((1, "a", None), id="tuple"),
    pytest.param([1, [2, 3]], id="nested-list"),
    pytest.param({"a": {"b": [1, 2]}}, id="nested-dict"),
    pytest.param({"n": 1, "s": "x"}, id="flat-dict"),
    pytest.param({1, 2, 3}, id="set"),
    pytest.param(Decimal("1.10"), id="decimal"),
    pytest.param(datetime.datetime(2026, 1, 2, 3, 4, 5), id="datetime"),
    pytest.param(Point(3), id="object"),
]


@pytest.mark.parametrize("value", VALUES)
def test_value_round_trips_with_its_type(cache: Cache, value: object) -> None:
    cache.set("k", value)
    got = cache.get("k")
    assert got == value
    assert type(got) is type(value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="None"),
        pytest.param(0, id="zero"),
        pytest.param("", id="empty-str"),
        pytest.param(False, id="False"),
        pytest.param([], id="empty-list"),
        pytest.param({}, id="empty-dict"),
        pytest.param(b"", id="empty-bytes"),
    ],
)
def test_falsy_values_are_hits(cache: Cache, value: object) -> None:
    cache.set("k", value)
    sentinel = object()
    assert cache.get("k", sentinel) == value
    assert cache.get("k", sentinel) is not sentinel
    assert cache.has_key("k")


def test_miss_returns_default(cache: Cache) -> None:
    assert cache.get("absent") is None
    assert cache.get("absent", "fallback") == "fallback"


def test_stored_value_cannot_be_mutated_by_caller(cache: Cache) -> None:
    value = {"list": [1], "n": 1}
    cache.set("k", value)
    value["list"].append(2)
    value["n"] = 99
    read = cache.get("k")
    read["list"].append(3)
    assert cache.get("k") == {"list": [1], "n": 1}


def test_flat_dict_copy_is_private(cache: Cache) -> None:
    value = {"a": 1}
    cache.set("k", value)
    value["a"] = 2
    first = cache.get("k")
    first["a"] = 3
    assert cache.get("k") == {"a": 1}


def test_default_timeout_applies(harness: BackendHarness) -> None:
    cache = harness.make_cache(default_timeout=harness.short_ttl)
    cache.set("k", "v")
    assert cache.get("k") == "v"
    assert harness.eventually(lambda: cache.get("k") is None)


def test_timeout_none_never_expires(harness: BackendHarness) -> None:
    cache = harness.make_cache(default_timeout=harness.short_ttl)
    cache.set("k", "v", timeout=None)
    harness.expire()
    assert cache.get("k") == "v"


@pytest.mark.parametrize("timeout", [0, -1, -0.5, datetime.timedelta(0), datetime.timedelta(seconds=-3)])
def test_non_positive_timeout_deletes_existing(cache: Cache, timeout: object) -> None:
    cache.set("k", "old")
    cache.set("k", "new", timeout=timeout)  # type: ignore[arg-type]
    assert cache.get("k") is None


def test_non_positive_timeout_add_stores_nothing(cache: Cache) -> None:
    assert cache.add("k", "v", timeout=0) is False
    assert cache.get("k") is None


def test_timedelta_timeout(harness: BackendHarness) -> None:
    cache = harness.make_cache()
    cache.set("k", "v", timeout=datetime.timedelta(seconds=harness.short_ttl))
    assert cache.get("k") == "v"
    assert harness.eventually(lambda: cache.get("k") is None)


@pytest.mark.parametrize("timeout", ["60", [1], object(), True])
def test_bad_timeout_type_is_type_error(cache: Cache, timeout: object) -> None:
    with pytest.raises(TypeError, match="timeout"):
        cache.set("k", "v", timeout=timeout)  # type: ignore[arg-type]
    assert cache.get("k") is None


@pytest.mark.parametrize("key", [1, b"bytes", None, ("t",)])
def test_non_str_key_is_type_error(cache: Cache, key: object) -> None:
    with pytest.raises(TypeError, match="str"):
        cache.get(key)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="str"):
        cache.set(key, 1)  # type: ignore[arg-type]


def test_add_absent_present_expired(harness: BackendHarness) -> None:
    cache = harness.make_cache()
    assert cache.add("k", "one") is True
    assert cache.add("k", "two") is False
    assert cache.get("k") == "one"
    cache.set("e", "old", timeout=harness.short_ttl)
    assert harness.eventually(lambda: cache.get("e") is None)
    assert cache.add("e", "new") is True
    assert cache.get("e") == "new"


def test_delete_reports_presence(cache: Cache) -> None:
    cache.set("k", "v")
    assert cache.delete("k") is True
    assert cache.delete("k") is False
    assert "k" not in cache


def test_get_many_with_missing_keys(cache: Cache) -> None:
    cache.set_many({"a": 1, "b": None, "c": [3]})
    assert cache.get_many(["a", "b", "c", "d"]) == {"a": 1, "b": None, "c": [3]}


def test_set_many_returns_no_failures(cache: Cache) -> None:
    assert cache.set_many({"a": 1, "b": 2}) == []
    assert cache.get_many(["a", "b"]) == {"a": 1, "b": 2}


def test_set_many_non_positive_timeout_deletes(cache: Cache) -> None:
    cache.set_many({"a": 1, "b": 2})
    assert cache.set_many({"a": 3, "b": 4}, timeout=0) == []
    assert cache.get_many(["a", "b"]) == {}


def test_delete_many(cache: Cache) -> None:
    cache.set_many({"a": 1, "b": 2, "c": 3})
    cache.delete_many(["a", "c", "zz"])
    assert cache.get_many(["a", "b", "c"]) == {"b": 2}


def test_incr_decr(cache: Cache) -> None:
    cache.set("n", 10)
    assert cache.incr("n") == 11
    assert cache.incr("n", 5) == 16
    assert cache.decr("n", 6) == 10
    assert cache.get("n") == 10


def test_incr_missing_raises_value_error(cache: Cache) -> None:
    with pytest.raises(MissingKeyError) as info:
        cache.incr("absent")
    assert isinstance(info.value, ValueError)
    assert info.value.key == "absent"
    with pytest.raises(ValueError, match="absent"):
        cache.decr("absent")


def test_incr_after_expiry_raises(harness: BackendHarness) -> None:
    cache = harness.make_cache()
    cache.set("n", 1, timeout=harness.short_ttl)
    assert harness.eventually(lambda: cache.get("n") is None)
    with pytest.raises(MissingKeyError):
        cache.incr("n")


def test_incr_bool_delta_rejected(cache: Cache) -> None:
    cache.set("n", 1)
    with pytest.raises(TypeError):
        cache.incr("n", True)


def test_touch(harness: BackendHarness) -> None:
    cache = harness.make_cache()
    cache.set("k", "v", timeout=harness.short_ttl)
    assert cache.touch("k", 3600) is True
    harness.expire()
    assert cache.get("k") == "v"
    assert cache.touch("k", harness.short_ttl) is True
    assert harness.eventually(lambda: cache.get("k") is None)
    assert cache.touch("k") is False


def test_touch_non_positive_deletes(cache: Cache) -> None:
    cache.set("k", "v")
    assert cache.touch("k", 0) is True
    assert cache.get("k") is None


def test_has_key_and_in(cache: Cache) -> None:
    cache.set("k", None)
    assert cache.has_key("k")
    assert "k" in cache
    assert "other" not in cache


def test_get_or_set_value(cache: Cache) -> None:
    assert cache.get_or_set("k", "first") == "first"
    assert cache.get_or_set("k", "second") == "first"


def test_get_or_set_callable_called_once(cache: Cache) -> None:
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return 7

    assert cache.get_or_set("k", compute) == 7
    assert cache.get_or_set("k", compute) == 7
    assert calls == [1]


def test_get_or_set_none_result_is_cached(cache: Cache) -> None:
    calls: list[int] = []

    def compute() -> None:
        calls.append(1)

    assert cache.get_or_set("k", compute) is None
    assert cache.get_or_set("k", compute) is None
    assert calls == [1]


def test_get_or_set_threads_compute_once(cache: Cache) -> None:
    calls: list[int] = []
    gate = threading.Barrier(8)
    results: list[int] = []

    def compute() -> int:
        calls.append(1)
        threading.Event().wait(0.1)
        return 5

    def worker() -> None:
        gate.wait()
        results.append(cache.get_or_set("cold", compute))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [5] * 8
    assert len(calls) == 1


def test_versions_are_separate(cache: Cache) -> None:
    cache.set("k", "v1", version=1)
    cache.set("k", "v7", version=7)
    assert cache.get("k", version=1) == "v1"
    assert cache.get("k", version=7) == "v7"


def test_incr_version(cache: Cache) -> None:
    cache.set("k", "v")
    new = cache.incr_version("k")
    assert new == cache.version + 1
    assert cache.get("k") is None
    assert cache.get("k", version=new) == "v"
    assert cache.decr_version("k", version=new) == cache.version
    assert cache.get("k") == "v"


def test_incr_version_missing(cache: Cache) -> None:
    with pytest.raises(MissingKeyError):
        cache.incr_version("absent")


def test_clear_removes_this_caches_keys(cache: Cache) -> None:
    cache.set_many({"a": 1, "b": 2})
    cache.clear()
    assert cache.get_many(["a", "b"]) == {}


def test_clear_with_prefix_spares_other_prefix(harness: BackendHarness) -> None:
    mine = harness.make_cache(key_prefix="mine")
    theirs = harness.make_cache(key_prefix="theirs")
    mine.set("k", 1)
    theirs.set("k", 2)
    mine.clear()
    assert mine.get("k") is None
    assert theirs.get("k") == 2
    theirs.clear()


def test_prefixes_isolate_keys(harness: BackendHarness) -> None:
    a = harness.make_cache(key_prefix="a")
    b = harness.make_cache(key_prefix="b")
    a.set("k", "from a")
    assert b.get("k") is None
    a.clear()


def test_unserializable_value_names_key_and_type(cache: Cache) -> None:
    cache.set("k", "kept")
    with pytest.raises(SerializationError) as info:
        cache.set("k", threading.Lock())
    assert info.value.key == "k"
    assert "lock" in str(info.value).lower()
    assert cache.get("k") == "kept"


def test_unserializable_lambda(cache: Cache) -> None:
    with pytest.raises(SerializationError, match="'k'"):
        cache.set("k", {"f": lambda: None})


def test_large_value(cache: Cache, harness: BackendHarness) -> None:
    size = 900_000 if harness.name.startswith("memcached") else 1024 * 1024
    value = "x" * size
    cache.set("big", value)
    assert cache.get("big") == value


def test_unicode_and_long_keys(cache: Cache) -> None:
    keys = ["日本語", "emoji🙂", "spa ce", "x" * 500]
    for i, key in enumerate(keys):
        cache.set(key, i)
    assert cache.get_many(keys) == {key: i for i, key in enumerate(keys)}


def test_stats_count_hits_misses_sets_deletes(cache: Cache) -> None:
    cache.reset_stats()
    cache.set("k", 1)
    cache.get("k")
    cache.get("absent")
    cache.delete("k")
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["sets"], stats["deletes"]) == (1, 1, 1, 1)
    assert stats["hit_ratio"] == 0.5


def test_gets_cas(cache: Cache) -> None:
    cache.set("s", {"a": 1})
    found = cache.gets("s")
    assert found is not None
    value, token = found
    assert value == {"a": 1}
    assert cache.cas("s", {"a": 2}, token) is True
    assert cache.cas("s", {"a": 3}, token) is False
    assert cache.get("s") == {"a": 2}
    _, fresh = cache.gets("s") or (None, None)
    cache.delete("s")
    assert cache.cas("s", {"a": 4}, fresh) is False
    assert cache.get("s") is None
