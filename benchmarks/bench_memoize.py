"""``@memoize`` hit benchmark: what the function's generation (``cache_clear()``) costs a hit.

Run from the repository root (redis-server must be installed)::

    pip install -e '.[redis,bench]'
    python -m benchmarks.bench_memoize [number]

A hit of ``@memoize(60)`` on a one-argument function, against the same cache's
``get_or_set`` hit under a ready key (one read and nothing else: the floor a
memoized call with no generation would cost, less its key) and, on local
memory, ``cachetools.cached`` over a ``TTLCache`` under a lock. On local memory
and on one Redis server (started here, pinned to the last CPU while this
process pins itself to CPU 0, as :mod:`benchmarks.bench_redis` does), the
systems' order rotated each round; wall time and, on Redis, this process's CPU
time. The last column is ``@memoize``'s time divided by the system's.

A hit reads the generation and the entry in one ``get_many``, so on Redis it
should cost one round trip, as ``get_or_set`` does; its client CPU is an ``MGET``
of two keys where ``get_or_set`` sends a ``GET``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from benchmarks._harness import Result
from benchmarks._harness import measure
from benchmarks._harness import report
from benchmarks.bench_redis import client_cpu
from benchmarks.bench_redis import pinned_server
from cachekit import Cache
from cachekit import from_url
from cachekit.memoize import memoize


def _systems(cache: Cache, peers: bool) -> list[tuple[str, Callable[[], object]]]:
    @memoize(60, cache=cache)
    def memoized(x: int) -> int:
        return x

    cache.set("ready", 1, 60)
    memoized(1)
    systems: list[tuple[str, Callable[[], object]]] = [
        ("@memoize", lambda: memoized(1)),
        ("Cache.get_or_set", lambda: cache.get_or_set("ready", 1, 60)),  # a hit: the default unused
    ]
    if peers:
        import cachetools

        @cachetools.cached(cachetools.TTLCache(maxsize=1000, ttl=60), lock=threading.Lock())
        def peer(x: int) -> int:
            return x

        peer(1)
        systems.append(("cachetools.cached (TTLCache)", lambda: peer(1)))
    return systems


def run(number: int = 5000, rounds: int = 15) -> tuple[list[Result], list[Result], list[Result]]:
    """Measure local memory (wall) and Redis (wall and client CPU)."""
    local = measure("hit, local memory", _systems(from_url("locmem://bench-memoize"), True), number=number)
    with pinned_server() as server:
        cache: Any = from_url(f"redis://{server.address}/0")
        systems = _systems(cache, False)
        # Short rounds, many of them: load from other processes averages out in the median.
        wall = measure("hit, Redis", systems, number=number // 5, rounds=rounds * 5)
        cpu = client_cpu("hit, Redis", systems, number=number, rounds=rounds)
        cache.close()
    return local, wall, cpu


def main() -> None:
    number = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    local, wall, cpu = run(number)
    print(report(local, "@memoize", "@memoize hit, local memory: wall time per call, medians"))
    print(report(wall, "@memoize", "@memoize hit, one Redis server: wall time per call, medians"))
    print(report(cpu, "@memoize", "@memoize hit, one Redis server: client CPU time per call, medians"))


if __name__ == "__main__":
    main()
