"""The near cache on memcached (issue 17): invalidation through a Redis channel, or a local TTL.

Real memcached and redis servers (``tests/servers.py``); the cross-process test starts a
second real process with ``multiprocessing`` (spawn).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from cachekit import Cache
from cachekit.backends.memcached import MemcachedBackend
from cachekit.backends.memcached._near import AsyncNearMemcachedBackend
from cachekit.backends.memcached._near import NearMemcachedBackend
from cachekit.exceptions import ConfigurationError
from tests import servers

ROUNDS = 50


def _until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0005)
    return True


def _near(location: str, channel: str | None, **options: Any) -> NearMemcachedBackend:
    options.setdefault("near_cache", 100)
    backend = NearMemcachedBackend.from_url(f"memcached://{location}", near_cache_channel=channel, **options)
    assert backend.near.wait_ready(5.0)
    return backend


def _held(backend: NearMemcachedBackend, key: str, value: bytes) -> bool:
    return _until(lambda: backend.get(key) == value and backend.near.lookup(key) == value)


def _reader(location: str, channel: str, commands: Any, replies: Any) -> None:
    """Process B: keeps ``k`` in near memory, reports when each channel message arrived."""
    backend = _near(location, channel, near_cache_ttl=60.0)
    near = backend.near
    arrivals: list[float] = []
    original = near._on_published

    def record(payload: bytes) -> None:
        original(payload)
        arrivals.append(time.monotonic())

    near._on_published = record  # type: ignore[method-assign]
    replies.put("ready")
    while (expected := commands.get()) is not None:
        seen = len(arrivals)
        assert _held(backend, "k", expected)
        replies.put("warm")
        sent_at, version = commands.get()
        assert _until(lambda seen=seen: len(arrivals) > seen)
        replies.put((backend.get("k"), version, arrivals[seen] - sent_at))
    backend.close()


def test_a_write_in_one_process_is_never_read_stale_in_another(
    memcached_server: servers.ServerProcess, redis_server: servers.ServerProcess
) -> None:
    """A writes through its near backend; once the message reached B, B reads the new value."""
    channel = f"redis://{redis_server.address}/0"
    writer = _near(memcached_server.address, channel)
    writer.set("k", b"0", None)
    ctx = multiprocessing.get_context("spawn")
    commands, replies = ctx.Queue(), ctx.Queue()
    reader = ctx.Process(
        target=_reader, args=(memcached_server.address, channel, commands, replies), daemon=True
    )
    reader.start()
    delays: list[float] = []
    try:
        assert replies.get(timeout=30) == "ready"
        for version in range(1, ROUNDS + 1):
            commands.put(str(version - 1).encode())
            assert replies.get(timeout=10) == "warm"
            sent_at = time.monotonic()
            writer.set("k", str(version).encode(), None)
            commands.put((sent_at, version))
            value, seen_version, delay = replies.get(timeout=10)
            assert (value, seen_version) == (str(version).encode(), version)
            delays.append(delay)
        commands.put(None)
        reader.join(timeout=10)
        assert reader.exitcode == 0
    finally:
        if reader.is_alive():
            reader.kill()
        writer.close()
    delays.sort()
    p50, p99 = statistics.median(delays) * 1e6, delays[int(len(delays) * 0.99) - 1] * 1e6
    label = f"memcached near cache, channel message at B from A's set, {ROUNDS} writes"
    print(f"\n{label}: p50 {p50:.0f} us, p99 {p99:.0f} us")


def test_own_writes_are_seen_at_once(memcached_server: servers.ServerProcess) -> None:
    backend = _near(memcached_server.address, None, near_cache_ttl=60.0)
    backend.set("k", b"1", None)
    assert _held(backend, "k", b"1")
    for write, expected in (
        (lambda: backend.set("k", b"2", None), b"2"),
        (lambda: backend.set_many({"k": b"3"}, 60), b"3"),
        (lambda: backend.incr("k", 1), b"4"),
        (lambda: backend.cas("k", b"5", backend.gets("k")[1], None), b"5"),  # type: ignore[index]
        (lambda: backend.delete("k"), None),
        (lambda: backend.add("k", b"6", None), b"6"),
        (lambda: backend.delete_many(["k"]), None),
    ):
        backend.get("k")
        backend.get("k")
        write()
        assert backend.get("k") == expected
    backend.set("k", b"7", None)
    assert _held(backend, "k", b"7")
    backend.clear()
    assert backend.get("k") is None
    backend.close()


def test_without_a_channel_a_local_copy_lives_at_most_near_cache_ttl(
    memcached_server: servers.ServerProcess,
) -> None:
    """The weaker guarantee: another client's write is seen once the local copy's TTL has run out."""
    backend = _near(memcached_server.address, None, near_cache_ttl=0.3)
    other = MemcachedBackend.from_url(f"memcached://{memcached_server.address}")
    other.set("k", b"old", None)
    assert _held(backend, "k", b"old")
    filled = time.monotonic()
    other.set("k", b"new", None)  # memcached tells nobody
    assert backend.get("k") in (b"old", b"new")  # old while the local copy lives
    assert _until(lambda: backend.get("k") == b"new", timeout=5.0)
    assert time.monotonic() - filled < 5.0
    assert backend.near.ready  # no listener to lose
    backend.close()
    other.close()


def test_a_lost_channel_flushes_before_serving_again(
    memcached_server: servers.ServerProcess, redis_server: servers.ServerProcess
) -> None:
    channel = f"redis://{redis_server.address}/0"
    backend = _near(memcached_server.address, channel, near_cache_ttl=60.0)
    near = backend.near
    other = MemcachedBackend.from_url(f"memcached://{memcached_server.address}")
    backend.set("k", b"1", None)
    assert _held(backend, "k", b"1")
    flushes = near.flushes
    redis.Redis.from_url(channel).client_kill_filter(_type="pubsub")
    other.set("k", b"2", None)  # while nobody listens (and unannounced: a plain client)
    assert _until(lambda: near.flushes > flushes)
    assert backend.get("k") == b"2"
    assert near.wait_ready(5.0)
    assert _held(backend, "k", b"2")
    writer = _near(memcached_server.address, channel)
    seen = near.invalidations
    writer.set("k", b"3", None)
    assert _until(lambda: near.invalidations > seen)
    assert backend.get("k") == b"3"
    writer.clear()  # a flush is announced too
    assert _until(lambda: backend.near.lookup("k") is None)
    for closing in (backend, writer, other):
        closing.close()


def test_a_cache_on_it_counts_near_hits(memcached_server: servers.ServerProcess) -> None:
    cache = Cache(_near(memcached_server.address, None, near_cache_ttl=60.0))
    cache.set("a", "value")
    assert _until(lambda: cache.get("a") == "value" and cache.stats()["near_hits"] > 0)
    assert cache.get("a") is cache.get("a")  # decoded once, kept beside its bytes
    assert cache.backend.gets(cache.make_key("a")) is not None  # tokens from memcached
    cache.backend.close()


@pytest.mark.parametrize(
    "options",
    [
        {"near_cache": 0},
        {"near_cache": 10, "near_cache_ttl": 0},
        {"near_cache": 10, "near_cache_bytes": 0},
        {"near_cache": 10, "near_cache_channel": "memcached://127.0.0.1:11211"},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        NearMemcachedBackend.from_url("memcached://127.0.0.1:11211", **options)


def test_the_option_in_urls_and_settings(
    memcached_server: servers.ServerProcess, redis_server: servers.ServerProcess
) -> None:
    from urllib.parse import quote

    import cachekit
    from cachekit.backends.aio_memcached import AsyncMemcachedBackend

    channel = f"redis://{redis_server.address}/0"
    cache = cachekit.from_url(
        f"memcached://{memcached_server.address}?near_cache=10&near_cache_ttl=2.5"
        f"&near_cache_channel={quote(channel, safe='')}"
    )
    assert type(cache.backend) is NearMemcachedBackend
    assert (cache.backend.near.max_entries, cache.backend.near_ttl) == (10, 2.5)
    assert cache.backend.near.wait_ready(5.0)
    assert redis.Redis.from_url(channel).info("clients")["connected_clients"] >= 2  # publisher + listener
    cache.backend.close()
    assert type(MemcachedBackend.from_url(f"memcached://{memcached_server.address}")) is MemcachedBackend
    with pytest.raises(ConfigurationError):
        MemcachedBackend.from_url(f"memcached://{memcached_server.address}", near_cache_ttl=1.0)
    async_backend = AsyncMemcachedBackend.from_url(f"memcached://{memcached_server.address}", near_cache=10)
    assert type(async_backend) is AsyncNearMemcachedBackend
    assert (
        type(AsyncMemcachedBackend(servers=[memcached_server.address], near_cache=10))
        is AsyncNearMemcachedBackend
    )
    assert (
        type(AsyncMemcachedBackend.from_url(f"memcached://{memcached_server.address}"))
        is AsyncMemcachedBackend
    )


def test_the_async_backend_answers_near_hits_on_the_loop(
    memcached_server: servers.ServerProcess, redis_server: servers.ServerProcess
) -> None:
    """Near hits never enter the thread pool; another process's announced write is seen."""
    from cachekit.backends.aio_memcached import AsyncMemcachedBackend

    channel = f"redis://{redis_server.address}/0"
    writer = _near(memcached_server.address, channel)

    async def scenario() -> None:
        backend = AsyncMemcachedBackend.from_url(
            f"memcached://{memcached_server.address}", near_cache=10, near_cache_channel=channel
        )
        near = backend.near  # type: ignore[attr-defined]
        assert near.wait_ready(5.0)
        announced = near.invalidations
        await backend.set("k", b"1", None)
        # The write's own announcement comes back on the channel and drops "k" locally; let it
        # arrive before the read that fills, or it may drop the filled copy (a loaded machine).
        assert _until(lambda: near.invalidations > announced)
        assert await backend.get("k") == b"1"  # a miss: read in the pool, kept locally
        pooled: list[Any] = []
        run = backend._run

        async def counting(function: Any, *args: Any) -> Any:
            pooled.append(function)
            return await run(function, *args)

        backend._run = counting  # type: ignore[method-assign]
        hits = near.hits
        assert await backend.get("k") == b"1"
        assert await backend.get_many(["k"]) == {"k": b"1"}
        assert (near.hits, pooled) == (hits + 2, [])
        seen = near.invalidations
        writer.set("k", b"2", None)  # another process's write, announced on the channel
        assert _until(lambda: near.invalidations > seen)
        assert await backend.get("k") == b"2"
        await backend.delete("k")  # own write: seen at once
        assert await backend.get("k") is None
        await backend.close()

    asyncio.run(scenario())
    writer.close()


def test_a_read_in_flight_during_a_channel_message_does_not_fill(
    memcached_server: servers.ServerProcess, redis_server: servers.ServerProcess, monkeypatch: Any
) -> None:
    """The reply left memcached before another process's write was announced: it is not kept."""
    channel = f"redis://{redis_server.address}/0"
    backend = _near(memcached_server.address, channel, near_cache_ttl=60.0)
    writer = _near(memcached_server.address, channel)
    near = backend.near
    writer.set("k", b"old", None)
    original = MemcachedBackend.get

    def slow_reply(self: MemcachedBackend, key: str) -> bytes | None:
        result = original(self, key)  # holds b"old"
        if self is backend:
            seen = near.invalidations
            writer.set("k", b"new", None)
            assert _until(lambda: near.invalidations > seen)  # the message won the race
        return result

    monkeypatch.setattr(MemcachedBackend, "get", slow_reply)
    assert backend.get("k") == b"old"  # the value as it was when read
    monkeypatch.setattr(MemcachedBackend, "get", original)
    assert backend.get("k") == b"new"  # not the in-flight b"old" from local memory
    backend.close()
    writer.close()
