"""Memcached benchmark: cachekit's memcached backend and ``Cache`` against raw pymemcache and Django.

Run from the repository root (memcached must be installed)::

    pip install -e '.[memcached,bench]'
    python -m benchmarks.bench_memcached [number]

The benchmark starts its own ``memcached`` on a free loopback port, pinned to
the last CPU with ``taskset`` while this process pins itself to CPU 0 (the
equivalent of ``taskset -c 0 python -m benchmarks.bench_memcached``), so the
client and the server do not fight for one core. With a single CPU both share it.

Systems, all on the same server in the same run, order rotated each round:

* ``raw pymemcache Client``: the floor; bytes in and out, sets wait for the
  reply (``noreply=False``), no key checks beyond pymemcache's own.
* ``cachekit backend``: :class:`~cachekit.backends.memcached.MemcachedBackend`
  with bytes (namespace generations, key mapping, thread-safe pool).
* ``cachekit Cache``: what users hold: key prefix, version, pickle, stats.
* ``django PyMemcacheCache``: Django's backend (``HashClient`` even for one server).
* ``cachelib MemcachedCache``: cachelib's cache over a pymemcache ``Client`` that
  pickles (``pickle_serde``), as cachelib's own clients do; ``get_many`` of 100
  keys against ``cachekit Cache`` is issue 21's row (goal: at most 1.05x).

Scenarios: ``get`` hit and ``set`` of a 100-byte value, and ``get_many`` of
100 keys. A second part compares a 3-node pool against a raw ``HashClient``.
The last column is cachekit's backend time divided by the system's: the
acceptance bar is at most 1.15 for ``get``/``set`` and 1.2 for ``get_many``
against the raw client. The one-server scenarios are timed twice, as wall time
and as this process's CPU time (the client's own overhead, steadier on a shared
machine), and shown once more against ``cachekit Cache``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

from benchmarks._harness import Result
from benchmarks._harness import measure
from benchmarks._harness import report
from benchmarks.bench_redis import client_cpu
from cachekit import Cache
from cachekit.backends.memcached import MemcachedBackend
from tests import servers

VALUE = "x" * 100
RAW = pickle.dumps(VALUE, pickle.HIGHEST_PROTOCOL)
KEYS = [f"key{i}" for i in range(100)]


@contextlib.contextmanager
def pinned_servers(count: int) -> Iterator[list[servers.ServerProcess]]:
    """Start ``count`` memcached servers on the last CPU; pin this process to CPU 0."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    started: list[servers.ServerProcess] = []
    try:
        for _ in range(count):
            port = servers.free_port()
            argv = servers.memcached_argv(port)
            if len(cpus) > 1:
                argv = ["taskset", "-c", str(cpus[-1]), *argv]
            workdir = servers._workdir("memcached-bench")
            started.append(servers.ServerProcess("memcached", port, argv, workdir).start())
        if len(cpus) > 1:
            os.sched_setaffinity(0, {cpus[0]})
        yield started
    finally:
        for server in started:
            server.stop()


def _django_cache(location: str) -> Any:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            CACHES={
                "default": {
                    "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
                    "LOCATION": location,
                    "KEY_PREFIX": "dj",
                }
            },
        )
        django.setup()
    from django.core.cache import caches

    return caches["default"]


def single_server_systems(address: str) -> dict[str, dict[str, Callable[[], object]]]:
    """Build the scenarios on one server."""
    from cachelib import MemcachedCache
    from pymemcache.client.base import Client
    from pymemcache.serde import pickle_serde

    host, port = address.rsplit(":", 1)
    raw = Client((host, int(port)), default_noreply=False)
    cachelib = MemcachedCache(
        Client((host, int(port)), default_noreply=False, serde=pickle_serde), key_prefix="cl:"
    )
    backend = MemcachedBackend.from_url(f"memcached://{address}")
    cache = Cache(MemcachedBackend.from_url(f"memcached://{address}"), key_prefix="bench", version=1)
    django = _django_cache(address)

    raw.set("hit", RAW)
    backend.set("hit", RAW, None)
    cache.set("hit", VALUE, None)
    django.set("hit", VALUE, None)
    raw.set_many({k: RAW for k in KEYS})
    backend.set_many({k: RAW for k in KEYS}, None)
    cache.set_many({k: VALUE for k in KEYS}, None)
    django.set_many({k: VALUE for k in KEYS}, None)
    cachelib.set("hit", VALUE, 0)
    cachelib.set_many({k: VALUE for k in KEYS}, 0)
    assert len(raw.get_many(KEYS)) == len(backend.get_many(KEYS)) == len(cache.get_many(KEYS)) == 100
    assert len(django.get_many(KEYS)) == 100
    assert cachelib.get_many(*KEYS) == [VALUE] * 100  # cachelib returns a list

    return {
        "get hit (100 B)": {
            "cachekit backend": lambda: backend.get("hit"),
            "raw pymemcache Client": lambda: raw.get("hit"),
            "cachekit Cache": lambda: cache.get("hit"),
            "django PyMemcacheCache": lambda: django.get("hit"),
            "cachelib MemcachedCache": lambda: cachelib.get("hit"),
        },
        "set (100 B)": {
            "cachekit backend": lambda: backend.set("k", RAW, 300),
            "raw pymemcache Client": lambda: raw.set("k", RAW, 300, noreply=False),
            "cachekit Cache": lambda: cache.set("k", VALUE, 300),
            "django PyMemcacheCache": lambda: django.set("k", VALUE, 300),
            "cachelib MemcachedCache": lambda: cachelib.set("k", VALUE, 300),
        },
        "get_many (100 keys)": {
            "cachekit backend": lambda: backend.get_many(KEYS),
            "raw pymemcache Client": lambda: raw.get_many(KEYS),
            "cachekit Cache": lambda: cache.get_many(KEYS),
            "django PyMemcacheCache": lambda: django.get_many(KEYS),
            "cachelib MemcachedCache": lambda: cachelib.get_many(*KEYS),
        },
    }


def pool_systems(addresses: list[str]) -> dict[str, dict[str, Callable[[], object]]]:
    """Build the scenarios on a 3-node pool."""
    from pymemcache.client.hash import HashClient

    raw = HashClient(addresses, use_pooling=True, default_noreply=False)
    backend = MemcachedBackend.from_url("memcached://" + ",".join(addresses))
    raw.set("hit", RAW)
    backend.set("hit", RAW, None)
    raw.set_many({k: RAW for k in KEYS})
    backend.set_many({k: RAW for k in KEYS}, None)
    return {
        "pool get hit (100 B)": {
            "cachekit backend": lambda: backend.get("hit"),
            "raw pymemcache HashClient": lambda: raw.get("hit"),
        },
        "pool set (100 B)": {
            "cachekit backend": lambda: backend.set("k", RAW, 300),
            "raw pymemcache HashClient": lambda: raw.set("k", RAW, 300, noreply=False),
        },
        "pool get_many (100 keys)": {
            "cachekit backend": lambda: backend.get_many(KEYS),
            "raw pymemcache HashClient": lambda: raw.get_many(KEYS),
        },
    }


def run(number: int = 1000, rounds: int = 21) -> tuple[list[Result], list[Result], list[Result]]:
    single: list[Result] = []
    cpu: list[Result] = []
    pool: list[Result] = []
    with pinned_servers(4) as started:
        scenarios = single_server_systems(started[0].address)
        for scenario, systems in scenarios.items():
            n = max(number // 10, 10) if "get_many" in scenario else number
            single += measure(scenario, list(systems.items()), number=n, rounds=rounds)
            cpu += client_cpu(scenario, list(systems.items()), number=n, rounds=rounds)
        for scenario, systems in pool_systems([s.address for s in started[1:]]).items():
            n = max(number // 10, 10) if "get_many" in scenario else number
            pool += measure(scenario, list(systems.items()), number=n, rounds=rounds)
    return single, cpu, pool


def main() -> None:
    number = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    single, cpu, pool = run(number)
    print(report(single, "cachekit backend", "memcached, one server: time per operation, medians"))
    print(report(cpu, "cachekit backend", "memcached, one server: client CPU time per operation, medians"))
    print(report(single, "cachekit Cache", "memcached, one server: cachekit Cache against each, wall"))
    print(report(cpu, "cachekit Cache", "memcached, one server: cachekit Cache against each, client CPU"))
    print(report(pool, "cachekit backend", "memcached, 3-node pool: time per operation, medians"))


if __name__ == "__main__":
    main()
