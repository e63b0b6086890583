"""Local memory keeps a dict or list one level deep as C-level copies (``_Nested``) instead of a pickle.

The copy must be exactly what unpickling would give: the same types, the same
values (NaN, -0.0), the same sharing. Each case checks both which way the
value was kept (so a case meant for the pickle fallback cannot silently take
the fast path) and that what comes back pickles to the same bytes as a
pickle round trip of the value: pickle's bytes spell out every type, every
float's bits and every shared reference.
"""

from __future__ import annotations

import array
import asyncio
import enum
import math
import pickle
import sys
import threading
from collections import OrderedDict
from collections import defaultdict
from typing import Any

import pytest

from cachekit import Cache
from cachekit.aio import AsyncCache
from cachekit.backends.aio_locmem import AsyncLocMemBackend
from cachekit.backends.locmem import LocMemBackend
from cachekit.exceptions import SerializationError
from cachekit.fronts._core import _Copied
from cachekit.fronts._core import _Nested
from cachekit.fronts._core import _Pickled
from cachekit.serializers import JSONSerializer


class Color(enum.IntEnum):
    RED = 1


class Name(str):
    """A str subclass: pickle restores it as itself."""


def _shared() -> dict[str, Any]:
    inner = [1, 2]
    return {"a": inner, "b": inner}


def _cycle() -> dict[str, Any]:
    value: dict[str, Any] = {"a": []}
    value["a"].append(value)
    return value


NESTED = {f"field{i}": [i, f"v{i}", i / 2] if i % 2 else i for i in range(50)}

FAST = [
    pytest.param(NESTED, id="bench-nested"),
    pytest.param(
        {"l": [1, "a", b"b", None, True, 2.5, 3j], "d": {"k": 1, 2: "v"}, "s": {1, "x"}}, id="kinds"
    ),
    pytest.param([[1, 2], "a", {"k": [1]}.get("k"), {3}, {"x": None}], id="outer-list"),
    pytest.param({"nan": [math.nan, -0.0, math.inf], "n": 1}, id="nan-negative-zero"),
    pytest.param({"a": [], "b": {}, "c": set()}, id="empty-inner"),
    pytest.param({"t": [(1, (2, 3))], "n": 1}, id="nested-tuples-in-list"),
    pytest.param({"a": [("x", 1)], "f": {frozenset({1})}, "t": ((1, 2), (3, (4,)))}, id="immutable-items"),
    pytest.param({(1, "a"): [1], frozenset({2}): {"k": (3,)}}, id="tuple-and-frozenset-keys"),
    pytest.param({"s": "shared", "l": ["shared", "shared"], "t": [(1,), (1,)]}, id="shared-atoms"),
]

PICKLED = [
    pytest.param({"b": [bytearray(b"x")]}, id="bytearray-in-list"),
    pytest.param({"b": bytearray(b"x"), "l": [1]}, id="bytearray-value"),
    pytest.param({"d": {"k": bytearray(b"x")}}, id="bytearray-in-dict"),
    pytest.param({"a": [array.array("i", [1, 2])]}, id="array-in-list"),
    pytest.param([array.array("b", [1]), [1]], id="array-in-outer-list"),
    pytest.param(OrderedDict(a=[1]), id="ordereddict-outer"),
    pytest.param({"o": OrderedDict(a=1)}, id="ordereddict-inner"),
    pytest.param({"d": defaultdict(list, a=[1])}, id="defaultdict-inner"),
    pytest.param({"e": [Color.RED], "n": [1]}, id="intenum-member"),
    pytest.param({"s": [Name("x")]}, id="str-subclass-member"),
    pytest.param({Name("k"): [1]}, id="str-subclass-key"),
    pytest.param({(1, Name("k")): [1]}, id="str-subclass-in-tuple-key"),
    pytest.param({"t": (1, [2]), "l": [1]}, id="list-inside-tuple-value"),
    pytest.param(_shared(), id="shared-inner-list"),
    pytest.param({"t": [(1, [2])]}, id="list-inside-tuple"),
    pytest.param({"a": [[1]]}, id="two-levels-deep"),
    pytest.param(
        {"s": {1, 2}, "f": frozenset({3}), "t": ((1, 2), (3, (4, [5])))}, id="sets-and-nested-tuples"
    ),
    pytest.param(_cycle(), id="cycle"),
]


def _kept(cache: Cache, backend: LocMemBackend, key: str) -> Any:
    return backend.get(cache.make_key(key))


def _fingerprint(value: Any) -> bytes:
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


@pytest.fixture
def store() -> tuple[Cache, LocMemBackend]:
    backend = LocMemBackend("nested-copies")
    backend.clear()
    return Cache(backend, key_prefix="p"), backend


@pytest.mark.parametrize("value", FAST)
def test_nested_values_are_copied_without_pickle(store: tuple[Cache, LocMemBackend], value: Any) -> None:
    cache, backend = store
    expected = _fingerprint(pickle.loads(_fingerprint(value)))
    cache.set("k", value)
    kept = _kept(cache, backend, "k")
    assert type(kept) is _Copied
    assert type(kept.data) is _Nested
    first, second = cache.get("k"), cache.get("k")
    assert _fingerprint(first) == _fingerprint(second) == expected
    assert cache.get_many(["k"]) == {"k": first}


@pytest.mark.parametrize("value", PICKLED)
def test_values_pickle_restores_differently_are_pickled(
    store: tuple[Cache, LocMemBackend], value: Any
) -> None:
    cache, backend = store
    expected = pickle.loads(_fingerprint(value))
    cache.set("k", value)
    assert type(_kept(cache, backend, "k")) is _Pickled
    got = cache.get("k")
    assert type(got) is type(expected)
    assert _fingerprint(got) == _fingerprint(expected)


def test_buffer_types_come_back_as_themselves(store: tuple[Cache, LocMemBackend]) -> None:
    cache, _ = store
    cache.set("k", {"b": [bytearray(b"x")], "a": [array.array("i", [7])]})
    got = cache.get("k")
    assert type(got["b"][0]) is bytearray
    assert got["b"][0] == bytearray(b"x")
    assert type(got["a"][0]) is array.array
    assert got["a"][0].tolist() == [7]


def test_memoryview_is_refused_as_pickle_refuses_it(store: tuple[Cache, LocMemBackend]) -> None:
    cache, _ = store
    with pytest.raises(SerializationError):
        cache.set("k", {"m": [memoryview(b"ab")]})
    assert cache.get("k") is None


def test_subclasses_and_shared_references_are_kept(store: tuple[Cache, LocMemBackend]) -> None:
    cache, _ = store
    cache.set("o", OrderedDict(a=[1]))
    cache.set("d", {"d": defaultdict(list, a=[1]), "e": [Color.RED, Name("x")]})
    cache.set("s", _shared())
    assert type(cache.get("o")) is OrderedDict
    got = cache.get("d")
    assert type(got["d"]) is defaultdict
    assert got["d"].default_factory is list
    assert type(got["e"][0]) is Color
    assert type(got["e"][1]) is Name
    shared = cache.get("s")
    assert shared["a"] is shared["b"]


def test_nan_and_negative_zero_keep_their_bits(store: tuple[Cache, LocMemBackend]) -> None:
    cache, _ = store
    cache.set("k", {"f": [math.nan, -0.0], "n": 1})
    nan, zero = cache.get("k")["f"]
    assert type(nan) is float
    assert math.isnan(nan)
    assert type(zero) is float
    assert math.copysign(1.0, zero) == -1.0


def test_copies_are_private_both_ways(store: tuple[Cache, LocMemBackend]) -> None:
    cache, _ = store
    value = {"l": [1], "d": {"k": 1}, "s": {1}, "n": 1}
    cache.set("k", value)
    value["l"].append(2)
    value["d"]["k"] = 2
    value["s"].add(2)
    value["n"] = 2
    first = cache.get("k")
    first["l"].append(3)
    first["d"]["x"] = 3
    first["s"].add(3)
    first["m"] = 3
    second = cache.get("k")
    assert second == {"l": [1], "d": {"k": 1}, "s": {1}, "n": 1}
    assert second["l"] is not first["l"]
    assert second["d"] is not first["d"]


def test_outer_list_copies_are_private(store: tuple[Cache, LocMemBackend]) -> None:
    cache, _ = store
    value: list[Any] = [[1], "a", {"k": 1}]
    cache.set("k", value)
    value[0].append(2)
    got = cache.get("k")
    got[0].append(3)
    got[2]["k"] = 3
    got.append("x")
    assert cache.get("k") == [[1], "a", {"k": 1}]


def test_concurrent_readers_get_their_own_copies(store: tuple[Cache, LocMemBackend]) -> None:
    cache, _ = store
    cache.set("k", NESTED)
    failures: list[Any] = []

    def read() -> None:
        for _ in range(300):
            got = cache.get("k")
            if got != NESTED:
                failures.append(got)
            got["field1"].append("mine")
            got["extra"] = 1

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert cache.get("k") == NESTED


def test_size_counts_the_inner_containers(store: tuple[Cache, LocMemBackend]) -> None:
    cache, backend = store
    cache.set("small", {"l": [1], "n": 1})
    cache.set("large", {"l": list(range(1000)), "n": 1})
    small = sys.getsizeof(_kept(cache, backend, "small"))
    large = sys.getsizeof(_kept(cache, backend, "large"))
    assert large > small + 1000 * 8


def test_a_json_cache_still_refuses_what_json_cannot_store() -> None:
    cache = Cache(LocMemBackend("nested-json"), serializer=JSONSerializer())
    with pytest.raises(SerializationError):
        cache.set("k", {"a": [object()]})
    cache.set("k", {"a": [1, "x"]})
    assert cache.get("k") == {"a": [1, "x"]}


def test_the_async_front_keeps_nested_copies_private_too() -> None:
    # AsyncCache shares the front's value rules (fronts/_core.py): the same private copy on each read.
    async def scenario() -> None:
        backend = AsyncLocMemBackend("nested-copies-async")
        await backend.clear()
        cache = AsyncCache(backend, key_prefix="p")
        value = {"a": [1, 2], "b": {"c": 3}, "n": 4}
        await cache.set("k", value)
        value["a"].append(99)  # the caller's own copy changes after the set
        got = await cache.get("k")
        assert got == {"a": [1, 2], "b": {"c": 3}, "n": 4}
        got["b"]["c"] = 0  # and the copy it read
        assert await cache.get("k") == {"a": [1, 2], "b": {"c": 3}, "n": 4}
        assert (await cache.get_many(["k"]))["k"] is not got
        await backend.clear()

    asyncio.run(scenario())
