"""Cache.get_many's one-pass path keeps every rule of the per-key one (sync and async fronts).

The pass builds the stored keys for the whole batch and lets the serializer decode
all values at once; keys that are not ``str``, versions, duplicates, custom
serializers, signed values, local objects and undecodable bytes take or fall back
to the per-key rules.
"""

from __future__ import annotations

import asyncio
import pickle
import zlib
from collections.abc import Sequence
from typing import Any

import pytest

from cachekit import Cache
from cachekit.aio import AsyncCache
from cachekit.backends.aio_locmem import AsyncLocMemBackend
from cachekit.backends.locmem import LocMemBackend
from cachekit.serializers import JSONSerializer
from cachekit.serializers import PickleSerializer
from cachekit.signing import SignedSerializer
from tests.bytes_backend import BytesBackend


class AsyncBytesBackend:
    """:class:`BytesBackend` with coroutine reads and writes, for the async front."""

    stores_objects = False

    def __init__(self) -> None:
        self.sync = BytesBackend()

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self.sync.set(key, value, ttl)

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return self.sync.get_many(keys)


def test_duplicates_are_asked_once_and_counted_once() -> None:
    backend = BytesBackend()
    cache = Cache(backend, key_prefix="p", version=1)
    cache.set("a", 1)
    assert cache.get_many(iter(["a", "b", "a"])) == {"a": 1}
    assert backend.asked == [["p:1:a", "p:1:b"]]
    assert (cache.stats()["hits"], cache.stats()["misses"]) == (1, 1)


def test_a_key_that_is_not_a_str_is_named() -> None:
    cache = Cache(BytesBackend(), key_prefix="p")
    with pytest.raises(TypeError, match="Cache keys must be str, got int 5"):
        cache.get_many(["a", 5])  # type: ignore[list-item]


def test_an_explicit_version_and_a_key_function_are_used() -> None:
    backend = BytesBackend()
    cache = Cache(backend, key_prefix="p", version=1)
    cache.set("a", "v2", version=2)
    assert cache.get_many(["a"], version=2) == {"a": "v2"}
    assert backend.asked[-1] == ["p:2:a"]
    keyed = Cache(backend, key_prefix="p", key_function=lambda key, prefix, version: f"{prefix}/{key}")
    keyed.set("b", "x")
    assert keyed.get_many(["b"]) == {"b": "x"}
    assert backend.asked[-1] == ["p/b"]


def test_digits_compressed_and_custom_serializers_decode_in_the_pass() -> None:
    backend = BytesBackend()
    cache = Cache(backend, key_prefix="p", version=1)
    cache.set_many({"n": 42, "s": "x" * 100})
    backend.data["p:1:z"] = b"Z" + zlib.compress(pickle.dumps([1], 2))
    assert cache.get_many(["n", "s", "z"]) == {"n": 42, "s": "x" * 100, "z": [1]}
    as_json = Cache(BytesBackend(), key_prefix="j", serializer=JSONSerializer())
    as_json.set_many({"a": {"b": [1, 2]}, "n": 7})
    assert as_json.get_many(["a", "n"]) == {"a": {"b": [1, 2]}, "n": 7}


def test_one_undecodable_value_costs_only_its_key() -> None:
    backend = BytesBackend()
    cache = Cache(backend, key_prefix="p", version=1)
    cache.set_many({"a": "A", "c": "C"})
    backend.data["p:1:b"] = b"\x80\x05broken"
    assert cache.get_many(["a", "b", "c"]) == {"a": "A", "c": "C"}
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["errors"]) == (2, 1, 1)


def test_signed_values_are_checked_in_get_many() -> None:
    backend = BytesBackend()
    signed = SignedSerializer(PickleSerializer(), [b"k" * 32])
    cache = Cache(backend, key_prefix="p", version=1, serializer=signed)
    cache.set_many({"a": "A", "b": "B"})
    backend.data["p:1:b"] = pickle.dumps("forged", 5)  # unsigned bytes put in by someone else
    assert cache.get_many(["a", "b"]) == {"a": "A"}


def test_local_memory_values_stay_copies() -> None:
    cache = Cache(LocMemBackend(), key_prefix="p")
    cache.set("a", [1, 2])
    first = cache.get_many(["a"])["a"]
    first.append(3)
    assert cache.get_many(["a"]) == {"a": [1, 2]}


def test_the_async_front_takes_the_same_pass() -> None:
    async def run() -> tuple[dict[str, Any], dict[str, Any], list[list[str]]]:
        backend = AsyncBytesBackend()
        cache = AsyncCache(backend, key_prefix="p", version=1)  # type: ignore[arg-type]
        await cache.set("a", {"x": 1})
        await cache.set("b", 2)
        backend.sync.data["p:1:c"] = b"\x80\x05broken"
        found = await cache.get_many(["a", "b", "c", "a"])
        local = AsyncCache(AsyncLocMemBackend(), key_prefix="p")
        await local.set("l", [1])
        (await local.get_many(["l"]))["l"].append(2)
        return found, await local.get_many(["l"]), backend.sync.asked

    found, local, asked = asyncio.run(run())
    assert found == {"a": {"x": 1}, "b": 2}
    assert local == {"l": [1]}
    assert asked == [["p:1:a", "p:1:b", "p:1:c"]]
