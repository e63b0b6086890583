"""Both Redis backends send keys the same way: a key with lone surrogates is stored, sync and async.

hiredis encodes ``str`` arguments as strict UTF-8; the backends send such keys as
UTF-8 with the surrogates kept (``_rules.wire_key``), so the sync and the async
backend read each other's keys. The async backend used to leave this to
redis.asyncio's own encoding, which happens to agree; now both map keys by one rule.
"""

from __future__ import annotations

import asyncio

from cachekit.backends.redis import RedisBackend
from cachekit.backends.redis._rules import wire_key
from cachekit.backends.redis._rules import wire_keys
from cachekit.backends.redis.asyncio import AsyncRedisBackend

KEYS = ["\ud800", "a\udfffb", "\udc80" * 100, "plain", "café"]


def test_wire_keys_is_wire_key_of_each() -> None:
    assert list(wire_keys(KEYS)) == [wire_key(key) for key in KEYS]
    ascii_keys = ["a", "b:c"]
    assert wire_keys(ascii_keys) is ascii_keys  # the common batch is sent as it is


def test_the_async_backend_stores_what_the_sync_one_reads(redis_url: str) -> None:
    sync = RedisBackend.from_url(redis_url)

    async def run() -> tuple[object, ...]:
        backend = AsyncRedisBackend.from_url(redis_url)
        try:
            await backend.set_many({key: key.encode("utf-8", "surrogatepass") for key in KEYS}, 60)
            await backend.set("\udc81", b"1", None)
            many = await backend.get_many([*KEYS, "missing"])
            added = await backend.add("\udc82", b"a", 60)
            counted = await backend.incr("\udc81", 2)
            touched = await backend.touch("\udc81", 60)
            deleted = await backend.delete("\ud800")
            await backend.delete_many(["a\udfffb"])
            return many, added, counted, touched, deleted
        finally:
            await backend.close()

    try:
        many, added, counted, touched, deleted = asyncio.run(run())
        assert many == {key: key.encode("utf-8", "surrogatepass") for key in KEYS}
        assert (added, counted, touched, deleted) == (True, 3, True, True)
        assert sync.get("\udc81") == b"3"
        assert sync.get("\udc82") == b"a"
        assert sync.get_many(KEYS) == {key: key.encode("utf-8", "surrogatepass") for key in KEYS[2:]}
    finally:
        sync.clear()
        sync.close()
