"""Near-cache benchmark (issue 17): a near hit against a local-memory hit and a Redis GET, same run.

Run from the repository root (redis-server must be installed)::

    python -m benchmarks.bench_near [number]

Starts its own ``redis-server`` on a free loopback port (pinned apart from this process
as in :mod:`benchmarks.bench_redis`). Reports, on one server in one run:

* ``get`` hit of a 100-byte value on the backend and through ``Cache`` (pickle, key
  prefix, stats): Redis with ``near_cache``, plain local memory, plain Redis;
* a page-cache hit (``@cache_page`` on the same three caches, the 2 KB page of ``bench_views``);
* bytes of Python heap per near-cached entry (100-byte values, 10,000 entries), on the
  backend and read through ``Cache.get`` (which keeps the decoded value beside the bytes);
* memcached with ``near_cache`` (invalidated through a channel on the same Redis) against
  plain memcached, through ``Cache.get``;
* invalidation delivery: from another client's ``SET`` sent until this process's
  listener has dropped the key (p50/p99 of 500 writes).

The issue's bars: a near hit at most 2x a local-memory hit and at least 20x faster
than a Redis GET.
"""

from __future__ import annotations

import pickle
import statistics
import sys
import time
import tracemalloc

import redis

from benchmarks._harness import measure
from benchmarks._harness import report
from benchmarks.bench_memcached import pinned_servers
from benchmarks.bench_redis import pinned_server
from benchmarks.bench_views import plain_view
from benchmarks.bench_views import requester
from cachekit import Cache
from cachekit.backends.locmem import LocMemBackend
from cachekit.backends.memcached import MemcachedBackend
from cachekit.backends.redis import RedisBackend
from cachekit.pages import cache_page

VALUE = "x" * 100
RAW = pickle.dumps(VALUE, pickle.HIGHEST_PROTOCOL)


def _bytes_per_entry(url: str, entries: int = 10_000) -> float:
    backend = RedisBackend.from_url(url, near_cache=entries)
    assert backend.near.wait_ready(5.0)  # type: ignore[attr-defined]
    keys = [f"mem{i}" for i in range(entries)]
    backend.set_many(dict.fromkeys(keys, RAW), None)
    backend.get_many(keys[:1])  # connect first so the pool is not counted
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for start in range(0, entries, 1000):
        backend.get_many(keys[start : start + 1000])
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    hits = backend.near_stats()["near_hits"]  # type: ignore[attr-defined]
    assert all(backend.get(key) == RAW for key in keys)  # every entry is held locally
    assert backend.near_stats()["near_hits"] == hits + entries  # type: ignore[attr-defined]
    backend.close()
    return (after - before) / entries


def _bytes_per_cache_entry(url: str, entries: int = 10_000) -> float:
    """As :func:`_bytes_per_entry`, read through ``Cache.get``: the decoded values kept too."""
    backend = RedisBackend.from_url(url, near_cache=entries)
    assert backend.near.wait_ready(5.0)  # type: ignore[attr-defined]
    cache = Cache(backend, key_prefix="mem", version=1)
    keys = [f"c{i}" for i in range(entries)]
    cache.set_many(dict.fromkeys(keys, VALUE), None)
    cache.get(keys[0])  # connect first so the pool is not counted
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(2):  # the first read fills local memory, the second keeps the decoded value
        for key in keys:
            cache.get(key)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(backend.near_memo()) == entries  # type: ignore[attr-defined]
    backend.close()
    return (after - before) / entries


def _delivery(url: str, writes: int = 500) -> tuple[float, float]:
    backend = RedisBackend.from_url(url, near_cache=100)
    near = backend.near  # type: ignore[attr-defined]
    assert near.wait_ready(5.0)
    other = redis.Redis.from_url(url)
    samples: list[float] = []
    for i in range(writes):
        other.set("d", str(i))
        while backend.get("d") != str(i).encode() or near.lookup("d") is None:
            pass  # now in local memory
        seen = near.invalidations
        start = time.perf_counter()
        other.set("d", b"x")
        while near.invalidations == seen:
            time.sleep(0)  # let the listener thread have the GIL, as an idle request thread would
        samples.append(time.perf_counter() - start)
    backend.close()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def run(number: int = 20_000, rounds: int = 15) -> None:
    with pinned_server() as server:
        url = f"redis://{server.address}/0"
        near = RedisBackend.from_url(url, near_cache=1000)
        assert near.near.wait_ready(5.0)  # type: ignore[attr-defined]
        plain = RedisBackend.from_url(url)
        local = LocMemBackend("bench-near", max_entries=1000)
        for backend in (near, plain, local):
            backend.set("hit", RAW, None)
        caches = {
            name: Cache(backend, key_prefix="bench", version=1)
            for name, backend in (("near", near), ("redis", plain), ("locmem", local))
        }
        for cache in caches.values():
            cache.set("hit", VALUE, None)
        for _ in range(3):  # fill local memory
            assert near.get("hit") == RAW
            assert caches["near"].get("hit") == VALUE
        results = measure(
            "backend get hit (100 B)",
            [
                ("redis + near_cache", lambda: near.get("hit")),
                ("locmem", lambda: local.get("hit")),
                ("redis (plain GET)", lambda: plain.get("hit")),
            ],
            number=number // 10,
            rounds=rounds,
        )
        results += measure(
            "Cache.get hit (100 B)",
            [
                ("redis + near_cache", lambda: caches["near"].get("hit")),
                ("locmem", lambda: caches["locmem"].get("hit")),
                ("redis (plain GET)", lambda: caches["redis"].get("hit")),
            ],
            number=number // 10,
            rounds=rounds,
        )
        pages = {
            name: requester(cache_page(600, cache=cache)(plain_view), f"/{name}")
            for name, cache in caches.items()
        }
        for request in pages.values():
            for _ in range(3):
                request()  # stored, then served from the cache (and, for near, from local memory)
        results += measure(
            "page-cache hit",
            [
                ("redis + near_cache", pages["near"]),
                ("locmem", pages["locmem"]),
                ("redis (plain GET)", pages["redis"]),
            ],
            number=number // 20,
            rounds=rounds,
        )
        print(report(results, "redis + near_cache", "near hit vs local memory vs Redis (same run)"))
        stats = near.near_stats()  # type: ignore[attr-defined]
        print(f"near counters after the run: {stats}")
        print(f"bytes per near entry (100 B values): {_bytes_per_entry(url):.0f}")
        per_cache_entry = _bytes_per_cache_entry(url)
        print(f"bytes per near entry read through Cache.get (decoded str kept): {per_cache_entry:.0f}")
        p50, p99 = _delivery(url)
        print(
            f"invalidation delivery, SET sent -> key dropped: p50 {p50 * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us"
        )
        near.close()
        plain.close()
        _memcached(url, number, rounds)


def _memcached(channel: str, number: int, rounds: int) -> None:
    """memcached with its near cache (invalidated through ``channel``) against plain memcached."""
    with pinned_servers(1) as (server,):
        location = f"memcached://{server.address}"
        near = MemcachedBackend.from_url(location, near_cache=1000, near_cache_channel=channel)
        assert near.near.wait_ready(5.0)  # type: ignore[attr-defined]
        plain = MemcachedBackend.from_url(location)
        caches = {"near": Cache(near, key_prefix="bench"), "plain": Cache(plain, key_prefix="bench")}
        caches["near"].set("hit", VALUE, None)
        for _ in range(3):
            assert caches["near"].get("hit") == VALUE
        results = measure(
            "Cache.get hit (100 B)",
            [
                ("memcached + near_cache", lambda: caches["near"].get("hit")),
                ("memcached (plain get)", lambda: caches["plain"].get("hit")),
            ],
            number=number // 10,
            rounds=rounds,
        )
        print(report(results, "memcached + near_cache", "memcached near hit vs memcached (same run)"))
        near.close()
        plain.close()


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
