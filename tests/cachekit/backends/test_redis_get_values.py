"""Redis ``get_many`` by position: ``get_values``, the MGET sent on the pool, and the fronts that read it.

``Cache.get_many`` over a Redis backend reads ``get_values`` (the values in key order,
``None`` for a miss) and names them by position; the backend sends that ``MGET`` on a
pooled connection itself when the client is plain redis-py (``direct_pool``). These
tests pin what must not change with it: misses, duplicates, undecodable values, empty
values, the near cache, subclasses and ready-made clients that read their own way,
lost connections, and one ``MGET`` per call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from cachekit import Cache
from cachekit.aio import AsyncCache
from cachekit.backends.redis import RedisBackend
from cachekit.backends.redis import _rules
from cachekit.backends.redis._rules import direct_pool
from cachekit.backends.redis.asyncio import AsyncRedisBackend
from cachekit.exceptions import BackendUnavailableError
from tests import servers

# The session server's other users keep to db 0; these tests flush it.
DB = 6
KEYS = [f"k{i}" for i in range(100)]


@pytest.fixture
def raw(redis_server: servers.ServerProcess) -> Iterator[redis.Redis]:
    with servers.redis_db(redis_server, DB) as client:
        yield client


@pytest.fixture
def url(redis_server: servers.ServerProcess, raw: redis.Redis) -> str:
    return f"redis://{redis_server.address}/{DB}"


@pytest.fixture
def backend(url: str) -> Iterator[RedisBackend]:
    backend = RedisBackend.from_url(url)
    yield backend
    backend.close()


def test_get_values_is_get_many_by_position(backend: RedisBackend) -> None:
    backend.set_many({"a": b"1", "c": b"", "\udcff": b"3"}, None)
    keys = ["a", "b", "c", "\udcff", "a"]
    assert backend.get_values(keys) == [b"1", None, b"", b"3", b"1"]
    assert backend.get_many(keys) == {"a": b"1", "c": b"", "\udcff": b"3"}
    assert backend.get_values([]) == []


def test_the_backends_own_client_is_read_through_its_pool(backend: RedisBackend) -> None:
    assert backend._direct is backend.client.connection_pool


def test_without_hiredis_the_connection_packs_the_command(
    backend: RedisBackend, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_rules, "_pack_command", None)
    backend.set_many({"a": b"1", "\udcff": b"2"}, None)
    assert servers.redis_commands(raw, lambda: backend.get_values(["a", "x", "\udcff"])) == {"mget": 1}
    assert backend.get_values(["a", "x", "\udcff"]) == [b"1", None, b"2"]


def test_clients_that_run_commands_their_own_way_keep_their_mget(
    redis_server: servers.ServerProcess, raw: redis.Redis
) -> None:
    class Logged(redis.Redis):
        pass

    pinned = redis.Redis(servers.HOST, redis_server.port, db=DB, single_connection_client=True)
    logged = Logged(servers.HOST, redis_server.port, db=DB)
    raw.mset({"a": b"1", "b": b"2"})
    try:
        for client in (pinned, logged):
            assert direct_pool(client, redis.Redis) is None
            backend = RedisBackend(client=client)
            assert backend.get_values(["a", "x", "b"]) == [b"1", None, b"2"]  # connected now
            assert servers.redis_commands(raw, lambda b=backend: b.get_values(["a", "x", "b"])) == {"mget": 1}
    finally:
        pinned.close()
        logged.close()
    assert direct_pool(aioredis.Redis(single_connection_client=True), aioredis.Redis) is None
    assert direct_pool(aioredis.Redis(), redis.Redis) is None  # the other side's class


def test_a_subclass_with_its_own_get_many_answers_get_values_from_it(url: str) -> None:
    class Fixed(RedisBackend):
        def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
            return {"a": b"mine"}

    class AsyncFixed(AsyncRedisBackend):
        async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
            return {"a": b"mine"}

    backend = Fixed.from_url(url)
    backend.set("b", b"theirs", None)
    assert backend.get_values(["a", "b"]) == [b"mine", None]
    assert Cache(backend, key_prefix="").get_many(["a", "b"]) == {}  # b"mine" is not a pickle
    assert asyncio.run(AsyncFixed.from_url(url).get_values(["a", "b"])) == [b"mine", None]
    backend.close()


def test_cache_get_many_is_one_mget_and_keeps_every_rule(url: str, raw: redis.Redis) -> None:
    cache = Cache(RedisBackend.from_url(url), key_prefix="p", version=1)
    cache.set_many({key: key * 3 for key in KEYS})
    raw.set("p:1:empty", b"")
    raw.set("p:1:junk", b"\x80\x05not a pickle")
    asked = [*KEYS, "missing", "empty", "junk", "k1"]
    reads = servers.redis_commands(raw, lambda: cache.get_many(asked))
    assert reads == {"mget": 1}
    cache.reset_stats()
    assert cache.get_many(asked) == {key: key * 3 for key in KEYS}
    assert (cache.stats()["hits"], cache.stats()["misses"]) == (100, 3)
    assert cache.get_many(KEYS[:3]) == {"k0": "k0k0k0", "k1": "k1k1k1", "k2": "k2k2k2"}
    with pytest.raises(TypeError, match="Cache keys must be str, got int 5"):
        cache.get_many(["a", 5])  # type: ignore[list-item]
    cache.close()


def test_async_cache_get_many_keeps_the_same_rules(url: str, raw: redis.Redis) -> None:
    async def run() -> tuple[dict[str, Any], dict[str, int | float]]:
        cache = AsyncCache(AsyncRedisBackend.from_url(url), key_prefix="p", version=1)
        await cache.set_many({key: key * 3 for key in KEYS})
        raw.set("p:1:junk", b"\x80\x05not a pickle")
        found = await cache.get_many([*KEYS, "missing", "junk", "k1"])
        stats = cache.stats()
        await cache.close()
        return found, stats

    found, stats = asyncio.run(run())
    assert found == {key: key * 3 for key in KEYS}
    assert (stats["hits"], stats["misses"]) == (100, 2)


def test_a_dropped_connection_is_replaced_and_the_read_still_answers(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    backend.set_many({"a": b"1", "b": b"2"}, None)
    assert backend.get_values(["a", "b"]) == [b"1", b"2"]  # a pooled connection now exists
    assert raw.client_kill_filter(_type="normal", skipme=True) >= 1
    assert backend.get_values(["a", "b"]) == [b"1", b"2"]
    assert backend.get_many(["a", "b"]) == {"a": b"1", "b": b"2"}


def test_an_outage_is_misses_under_ignore(raw: redis.Redis) -> None:
    port = servers.free_port()
    cache = Cache(RedisBackend(port=port, socket_connect_timeout=0.2, retries=0), key_prefix="p")
    assert cache.get_many(["a", "b"]) == {}
    assert (cache.stats()["misses"], cache.stats()["errors"]) == (2, 1)
    with pytest.raises(BackendUnavailableError):
        RedisBackend(port=port, socket_connect_timeout=0.2, retries=0).get_values(["a"])


def test_cache_get_many_reads_through_the_near_cache(url: str) -> None:
    backend = RedisBackend.from_url(url, near_cache=100)
    assert backend.near.wait_ready(5.0)  # type: ignore[attr-defined]
    cache = Cache(backend, key_prefix="p")
    cache.set_many({"a": 1, "b": "two"})
    # Read through, kept locally once the invalidations of our own writes have come back.
    deadline = time.monotonic() + 5.0
    while cache.stats()["near_hits"] < 2 and time.monotonic() < deadline:
        assert cache.get_many(["a", "b", "c"]) == {"a": 1, "b": "two"}
        time.sleep(0.001)
    before = cache.stats()["near_hits"]
    assert before >= 2
    assert cache.get_many(["a", "b", "c"]) == {"a": 1, "b": "two"}
    assert cache.stats()["near_hits"] == before + 2
    cache.close()
