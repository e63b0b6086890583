"""Redis benchmark: cachekit's Redis backend and ``Cache`` against raw redis-py and peer caches.

Run from the repository root (redis-server must be installed)::

    pip install -e '.[redis,bench]' django-redis
    python -m benchmarks.bench_redis [number]

The benchmark starts its own ``redis-server`` on a free loopback port, pinned to
the last CPU with ``taskset`` while this process pins itself to CPU 0 (the
equivalent of ``taskset -c 0 python -m benchmarks.bench_redis`` with the server
elsewhere), so client and server do not fight for one core. With a single CPU
both share it.

Systems, all on the same server in the same run, order rotated each round:

* ``raw redis-py``: the floor; ``redis.Redis`` with hiredis, bytes in and out.
  Its ``set_many`` is redis-py's own pipeline of 100 ``SET ... PX``.
* ``cachekit backend``: :class:`~cachekit.backends.redis.RedisBackend` with bytes.
* ``cachekit Cache``: what users hold: key prefix, version, pickle, stats.
* ``django RedisCache``, ``django-redis``, ``cachelib RedisCache``: the peers, each
  pickling its values as ``cachekit Cache`` does.

Scenarios: ``get`` hit and ``set`` (with a timeout) of a 100-byte value,
``cas`` of it (the compare-and-set script a session write sends, against raw
redis-py's ``EVALSHA`` of the same script; no peer has one),
``get_many`` and ``set_many`` (with a timeout) of 100 keys. The last column is
cachekit's backend time divided by the system's. Two tables: wall time per
operation (what an application sees) and this process's CPU time per
operation (the client's own overhead, steadier when other processes share
the machine). The acceptance bars against
raw redis-py: ``get``/``set`` at most 1.1x, ``get_many`` at most 1.3x,
``set_many`` no slower than the pipeline (half of it is the aim). The same
tables once more against ``cachekit Cache`` give issue 21's row: ``get_many``
of 100 keys through ``Cache`` at most 1.2x raw ``MGET``. The ``get_many ladder``
rows add to raw redis-py's ``MGET`` what ``Cache.get_many`` does beyond it (the
100 prefixed keys built, the values decoded, the result dict), one step per row;
its ``cachekit backend`` row is ``get_values``, the read ``Cache`` makes.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import statistics
import sys
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any

from benchmarks._harness import Result
from benchmarks._harness import measure
from benchmarks._harness import report
from cachekit import Cache
from cachekit.backends.redis import RedisBackend
from cachekit.backends.redis import _rules
from cachekit.serializers import PickleSerializer
from tests import servers

VALUE = "x" * 100
RAW = pickle.dumps(VALUE, pickle.HIGHEST_PROTOCOL)
KEYS = [f"key{i}" for i in range(100)]
TIMEOUT = 300


@contextlib.contextmanager
def pinned_server() -> Iterator[servers.ServerProcess]:
    """Start redis-server on the last CPU; pin this process to CPU 0."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    port = servers.free_port()
    workdir = servers._workdir("redis-bench")
    argv = servers.redis_server_argv(port, workdir)
    if len(cpus) > 1:
        argv = ["taskset", "-c", str(cpus[-1]), *argv]
    server = servers.ServerProcess("redis-server", port, argv, workdir).start()
    try:
        if len(cpus) > 1:
            os.sched_setaffinity(0, {cpus[0]})
        yield server
    finally:
        server.stop()


def _django_caches(url: str) -> tuple[Any, Any]:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            CACHES={
                "default": {
                    "BACKEND": "django.core.cache.backends.redis.RedisCache",
                    "LOCATION": url,
                    "KEY_PREFIX": "dj",
                },
                "django_redis": {
                    "BACKEND": "django_redis.cache.RedisCache",
                    "LOCATION": url,
                    "KEY_PREFIX": "djr",
                },
            },
        )
        django.setup()
    from django.core.cache import caches

    return caches["default"], caches["django_redis"]


def systems(address: str) -> dict[str, dict[str, Callable[[], object]]]:
    """Build the scenarios on one server."""
    import redis
    from cachelib import RedisCache as CachelibRedisCache

    host, port = address.rsplit(":", 1)
    url = f"redis://{address}/0"
    raw = redis.Redis(host, int(port))
    backend = RedisBackend.from_url(url)
    cache = Cache(RedisBackend.from_url(url), key_prefix="bench", version=1)
    django, django_redis = _django_caches(url)
    cachelib = CachelibRedisCache(host, int(port), key_prefix="cl:")

    def raw_set_many() -> None:
        pipe = raw.pipeline(transaction=False)
        for key in KEYS:
            pipe.set(key, RAW, px=TIMEOUT * 1000)
        pipe.execute()

    raw.set("hit", RAW)
    backend.set("hit", RAW, None)
    raw_set_many()
    backend.set_many(dict.fromkeys(KEYS, RAW), TIMEOUT)
    peers: list[Any] = [cache, django, django_redis, cachelib]
    for peer in peers:
        peer.set("hit", VALUE, TIMEOUT)
        peer.set_many(dict.fromkeys(KEYS, VALUE), TIMEOUT)
        assert peer.get("hit") == VALUE
    for peer in peers[:3]:
        assert len(peer.get_many(KEYS)) == 100
    assert cachelib.get_many(*KEYS) == [VALUE] * 100  # cachelib returns a list
    assert len(backend.get_many(KEYS)) == len(raw.mget(KEYS)) == 100

    head = cache.key_head or ""
    stored_keys = [head + key for key in KEYS]
    loads_many = PickleSerializer().loads_many
    assert dict(zip(KEYS, loads_many(raw.mget(stored_keys)), strict=True)) == cache.get_many(KEYS)
    items_raw = dict.fromkeys(KEYS, RAW)
    items = dict.fromkeys(KEYS, VALUE)
    cas_script = raw.register_script(_rules._CAS)
    raw.set("cas", RAW)
    assert cas_script(keys=["cas"], args=[RAW, RAW, TIMEOUT * 1000]) == 1  # loaded now
    assert backend.cas("cas", RAW, RAW, TIMEOUT)
    cache.set("cas", VALUE, TIMEOUT)
    found = cache.gets("cas")
    assert found is not None
    cas_token = found[1]
    assert cache.cas("cas", VALUE, cas_token, TIMEOUT)  # the same bytes again: the token still holds
    return {
        "get hit (100 B)": {
            "cachekit backend": lambda: backend.get("hit"),
            "raw redis-py": lambda: raw.get("hit"),
            "cachekit Cache": lambda: cache.get("hit"),
            "django RedisCache": lambda: django.get("hit"),
            "django-redis": lambda: django_redis.get("hit"),
            "cachelib RedisCache": lambda: cachelib.get("hit"),
        },
        "set (100 B, timeout)": {
            "cachekit backend": lambda: backend.set("k", RAW, TIMEOUT),
            "raw redis-py": lambda: raw.set("k", RAW, px=TIMEOUT * 1000),
            "cachekit Cache": lambda: cache.set("k", VALUE, TIMEOUT),
            "django RedisCache": lambda: django.set("k", VALUE, TIMEOUT),
            "django-redis": lambda: django_redis.set("k", VALUE, TIMEOUT),
            "cachelib RedisCache": lambda: cachelib.set("k", VALUE, TIMEOUT),
        },
        # The compare-and-set a session request ends with: the same script, always matching.
        "cas (100 B, timeout)": {
            "cachekit backend": lambda: backend.cas("cas", RAW, RAW, TIMEOUT),
            "raw redis-py": lambda: raw.evalsha(cas_script.sha, 1, "cas", RAW, RAW, TIMEOUT * 1000),
            "cachekit Cache": lambda: cache.cas("cas", VALUE, cas_token, TIMEOUT),
        },
        "get_many (100 keys)": {
            "cachekit backend": lambda: backend.get_many(KEYS),
            "raw redis-py": lambda: raw.mget(KEYS),
            "cachekit Cache": lambda: cache.get_many(KEYS),
            "django RedisCache": lambda: django.get_many(KEYS),
            "django-redis": lambda: django_redis.get_many(KEYS),
            "cachelib RedisCache": lambda: cachelib.get_many(*KEYS),
        },
        # What Cache.get_many must do on top of one MGET, added a step at a time to raw
        # redis-py (reading the Cache's own keys): the floor the front is measured against.
        "get_many ladder (100 keys)": {
            "raw redis-py": lambda: raw.mget(stored_keys),
            "raw + keys built": lambda: raw.mget([head + key for key in KEYS]),
            "raw + keys + decode": lambda: loads_many(raw.mget([head + key for key in KEYS])),
            "raw + keys + decode + dict": lambda: dict(
                zip(KEYS, loads_many(raw.mget([head + key for key in KEYS])), strict=True)
            ),
            "cachekit backend": lambda: backend.get_values(stored_keys),
            "cachekit Cache": lambda: cache.get_many(KEYS),
        },
        "set_many (100 keys, timeout)": {
            "cachekit backend": lambda: backend.set_many(items_raw, TIMEOUT),
            "raw redis-py": raw_set_many,
            "cachekit Cache": lambda: cache.set_many(items, TIMEOUT),
            "django RedisCache": lambda: django.set_many(items, TIMEOUT),
            "django-redis": lambda: django_redis.set_many(items, TIMEOUT),
            "cachelib RedisCache": lambda: cachelib.set_many(items, TIMEOUT),
        },
    }


def client_cpu(
    scenario: str, scenario_systems: Sequence[tuple[str, Callable[[], object]]], *, number: int, rounds: int
) -> list[Result]:
    """Like :func:`measure`, but count this process's CPU time: the client's own overhead.

    The round trip is the same for every system; on a shared machine its wall
    time varies more than the client code does, so this isolates what differs.
    """
    samples: dict[str, list[float]] = {name: [] for name, _ in scenario_systems}
    for round_no in range(rounds):
        shift = round_no % len(scenario_systems)
        for name, operation in [*scenario_systems[shift:], *scenario_systems[:shift]]:
            start = time.process_time()
            for _ in range(number):
                operation()
            samples[name].append((time.process_time() - start) / number)
    return [Result(scenario, name, statistics.median(times)) for name, times in samples.items()]


def run(number: int = 5000, rounds: int = 15) -> tuple[list[Result], list[Result]]:
    wall: list[Result] = []
    cpu: list[Result] = []
    with pinned_server() as server:
        for scenario, scenario_systems in systems(server.address).items():
            n = number // 20 if "_many" in scenario else number
            # Short rounds, many of them: load from other processes averages out in the median.
            wall += measure(scenario, list(scenario_systems.items()), number=n // 5, rounds=rounds * 5)
            cpu += client_cpu(scenario, list(scenario_systems.items()), number=n, rounds=rounds)
    return wall, cpu


def main() -> None:
    number = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    wall, cpu = run(number)
    print(report(wall, "cachekit backend", "Redis, one server: wall time per operation, medians"))
    print(report(cpu, "cachekit backend", "Redis, one server: client CPU time per operation, medians"))
    print(report(wall, "cachekit Cache", "Redis, one server: cachekit Cache against each, wall"))
    print(report(cpu, "cachekit Cache", "Redis, one server: cachekit Cache against each, client CPU"))


if __name__ == "__main__":
    main()
