"""Async benchmark: ``AsyncCache`` against raw ``redis.asyncio``, and the memcached choice.

Run from the repository root (redis-server and memcached must be installed)::

    pip install -e '.[redis,memcached,bench]' aiomcache
    python -m benchmarks.bench_async [number]

The benchmark starts its own ``redis-server`` and ``memcached`` on free loopback
ports, pinned to the last CPU with ``taskset`` while this process (and the
memcached worker threads it starts later) runs on CPU 0, the equivalent of
``taskset -c 0 python -m benchmarks.bench_async`` with the servers elsewhere.

Every system runs on one event loop, in the same run, with the order rotated
each round; each figure is the median time per awaited operation. The last
column is the first system's (ours) time divided by the row's.

* **Redis** ``get`` hit and ``set`` of a 100-byte string: ``AsyncCache`` (key
  prefix, version, pickle, stats) and the bare ``AsyncRedisBackend`` against raw
  ``redis.asyncio`` with bytes. The acceptance bar: ``AsyncCache.get`` hit at
  most 1.2x raw ``redis.asyncio`` ``GET``.
* **memcached** ``get`` hit, one at a time and 50 at once (``asyncio.gather``):
  the thread-pool backend this package ships against aiomcache (when installed)
  and the sync backend called inline (the floor, which blocks the loop).
* **local memory** ``get`` hit: ``AsyncCache`` against the sync ``Cache``.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence

from benchmarks._harness import Result
from benchmarks._harness import report
from benchmarks.bench_memcached import pinned_servers
from benchmarks.bench_redis import pinned_server
from cachekit import Cache
from cachekit.aio import AsyncCache
from cachekit.backends.aio_locmem import AsyncLocMemBackend
from cachekit.backends.aio_memcached import AsyncMemcachedBackend
from cachekit.backends.aio_redis import AsyncRedisBackend
from cachekit.backends.locmem import LocMemBackend
from cachekit.backends.memcached import MemcachedBackend

VALUE = "x" * 100
RAW = VALUE.encode()
TIMEOUT = 300
CONCURRENCY = 50

Operation = Callable[[], Awaitable[object]]


async def _per_op(operation: Operation, number: int, clock: Callable[[], float]) -> float:
    start = clock()
    for _ in range(number):
        await operation()
    return (clock() - start) / number


async def measure_async(
    scenario: str,
    systems: Sequence[tuple[str, Operation]],
    *,
    number: int,
    rounds: int,
    clock: Callable[[], float] = time.perf_counter,
) -> list[Result]:
    """Time every system ``rounds`` times on this loop, rotating their order; keep medians."""
    samples: dict[str, list[float]] = {name: [] for name, _ in systems}
    for _name, operation in systems:  # warm up each once
        await _per_op(operation, max(number // 10, 1), clock)
    for round_no in range(rounds):
        shift = round_no % len(systems)
        for name, operation in [*systems[shift:], *systems[:shift]]:
            samples[name].append(await _per_op(operation, number, clock))
    return [Result(scenario, name, statistics.median(times)) for name, times in samples.items()]


def gathered(operation: Operation, count: int = CONCURRENCY) -> Operation:
    """``count`` concurrent calls of ``operation``; timed per call."""

    async def run() -> object:
        return await asyncio.gather(*(operation() for _ in range(count)))

    return run


async def redis_systems(
    address: str, stack: contextlib.AsyncExitStack
) -> dict[str, list[tuple[str, Operation]]]:
    import redis.asyncio as aioredis

    host, port = address.rsplit(":", 1)
    url = f"redis://{address}/0"
    raw = aioredis.Redis(host=host, port=int(port))
    stack.push_async_callback(raw.aclose)
    backend = AsyncRedisBackend.from_url(url)
    stack.push_async_callback(backend.close)
    cache = AsyncCache(AsyncRedisBackend.from_url(url), key_prefix="bench", version=1)
    stack.push_async_callback(cache.close)
    await raw.set("hit", RAW)
    await backend.set("hit", RAW, None)
    await cache.set("hit", VALUE, TIMEOUT)
    assert await cache.get("hit") == VALUE
    assert await cache.get_or_set("hit", lambda: "unused") == VALUE
    return {
        "redis get hit (100 B)": [
            ("cachekit AsyncCache", lambda: cache.get("hit")),
            ("raw redis.asyncio", lambda: raw.get("hit")),
            ("cachekit AsyncRedisBackend", lambda: backend.get("hit")),
        ],
        "redis get_or_set hit": [
            ("cachekit AsyncCache", lambda: cache.get_or_set("hit", lambda: "unused")),
            ("raw redis.asyncio", lambda: raw.get("hit")),
        ],
        "redis set (100 B, timeout)": [
            ("cachekit AsyncCache", lambda: cache.set("k", VALUE, TIMEOUT)),
            ("raw redis.asyncio", lambda: raw.set("k", RAW, px=TIMEOUT * 1000)),
            ("cachekit AsyncRedisBackend", lambda: backend.set("k", RAW, TIMEOUT)),
        ],
        f"redis get hit x{CONCURRENCY} gather": [
            ("cachekit AsyncCache", gathered(lambda: cache.get("hit"))),
            ("raw redis.asyncio", gathered(lambda: raw.get("hit"))),
        ],
    }


async def memcached_systems(
    address: str, stack: contextlib.AsyncExitStack
) -> dict[str, list[tuple[str, Operation]]]:
    url = f"memcached://{address}"
    pooled = AsyncMemcachedBackend.from_url(url)
    stack.push_async_callback(pooled.close)
    sync = MemcachedBackend.from_url(url)
    stack.callback(sync.close)

    async def inline() -> object:
        return sync.get("hit")  # blocks the loop: the floor, not an option

    await pooled.set("hit", RAW, None)
    assert await pooled.get("hit") == RAW
    one: list[tuple[str, Operation]] = [
        ("cachekit AsyncMemcachedBackend", lambda: pooled.get("hit")),
        ("sync backend inline (blocks)", inline),
    ]
    many: list[tuple[str, Operation]] = [
        ("cachekit AsyncMemcachedBackend", gathered(lambda: pooled.get("hit")))
    ]
    try:
        import aiomcache
    except ImportError:
        print("aiomcache is not installed: its rows are left out.", file=sys.stderr)
    else:
        host, port = address.rsplit(":", 1)
        peer = aiomcache.Client(host, int(port), pool_size=CONCURRENCY)
        stack.push_async_callback(peer.close)
        await peer.set(b"peer-hit", RAW)
        one.append(("aiomcache", lambda: peer.get(b"peer-hit")))
        many.append(("aiomcache", gathered(lambda: peer.get(b"peer-hit"))))
    return {"memcached get hit (100 B)": one, f"memcached get hit x{CONCURRENCY} gather": many}


async def locmem_systems() -> dict[str, list[tuple[str, Operation]]]:
    cache = AsyncCache(AsyncLocMemBackend("bench-async"), key_prefix="bench")
    sync = Cache(LocMemBackend("bench-sync"), key_prefix="bench")
    await cache.set("hit", VALUE)
    sync.set("hit", VALUE)

    async def sync_get() -> object:
        return sync.get("hit")

    return {
        "locmem get hit": [
            ("cachekit AsyncCache", lambda: cache.get("hit")),
            ("cachekit Cache (sync)", sync_get),
        ]
    }


@contextlib.contextmanager
def servers_pinned() -> Iterator[tuple[str, str]]:
    with pinned_server() as redis_server, pinned_servers(1) as memcached:
        yield redis_server.address, memcached[0].address


async def run(
    redis_address: str, memcached_address: str, number: int, rounds: int
) -> tuple[list[Result], list[Result]]:
    wall: list[Result] = []
    cpu: list[Result] = []
    async with contextlib.AsyncExitStack() as stack:
        scenarios = {
            **await redis_systems(redis_address, stack),
            **await memcached_systems(memcached_address, stack),
            **await locmem_systems(),
        }
        for scenario, systems in scenarios.items():
            n = number // CONCURRENCY if "gather" in scenario else number
            if "locmem" in scenario:
                n *= 20
            # Short rounds, many of them: load from other processes averages out in the median.
            wall += await measure_async(scenario, systems, number=max(n // 5, 1), rounds=rounds * 5)
            cpu += await measure_async(scenario, systems, number=n, rounds=rounds, clock=time.process_time)
    return wall, cpu


def ratio(results: Sequence[Result], scenario: str, ours: str, theirs: str) -> float:
    """``ours`` time over ``theirs`` in ``scenario``."""
    by_name = {r.system: r.seconds_per_op for r in results if r.scenario == scenario}
    return by_name[ours] / by_name[theirs]


def tables(results: Sequence[Result], title: str) -> str:
    """One table per scenario, each against its first system (ours)."""
    out = []
    for scenario in dict.fromkeys(r.scenario for r in results):
        rows = [r for r in results if r.scenario == scenario]
        out.append(report(rows, rows[0].system, f"{title}: {scenario}"))
    return "\n".join(out)


def main() -> None:
    number = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with servers_pinned() as (redis_address, memcached_address):
        wall, cpu = asyncio.run(run(redis_address, memcached_address, number, rounds=11))
    print(tables(wall, "wall time per operation, medians"))
    print(tables(cpu, "client CPU time per operation, medians"))
    scenario, ours, raw = "redis get hit (100 B)", "cachekit AsyncCache", "raw redis.asyncio"
    print(
        f"AsyncCache.get hit / raw redis.asyncio GET: wall {ratio(wall, scenario, ours, raw):.2f}x, "
        f"client CPU {ratio(cpu, scenario, ours, raw):.2f}x (target: at most 1.2x)"
    )


if __name__ == "__main__":
    main()
