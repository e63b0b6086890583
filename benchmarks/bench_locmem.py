"""Local-memory cache benchmark: cachekit's locmem ``Cache`` against in-process peers.

Run from the repository root::

    pip install -e '.[bench]'
    python -m benchmarks.bench_locmem

Compares, in one run with the order of systems rotated each round, ``get`` hit,
``get`` miss and ``set`` of a 100-byte string and a 50-field dict, through
``Cache`` with a key prefix and stats on, against a plain ``dict`` (the floor),
``cachetools.TTLCache`` under a lock, cachelib's ``SimpleCache``, Django's
``LocMemCache`` and dogpile.cache's ``memory`` backend (no lock, no copy) and
``memory_pickle``. The last column is cachekit's time divided by the peer's:
below 1 means cachekit is faster.

Then ``get`` hits over 1,000 and over 1,000,000 stored keys (random order, the
same loop), with the ladder of indirections a hit walks (a dict read with the
stored key objects, with a built key, then our entry object, the backend, the
front) and how much each grows from 1,000 to 1,000,000 keys; then the memory
each stored entry adds (``tracemalloc``, 100,000 entries of one shared value,
the same key strings for every system).
"""

from __future__ import annotations

import itertools
import random
import sys
import threading
import tracemalloc
from collections.abc import Callable
from typing import Any

from benchmarks._harness import Result
from benchmarks._harness import measure
from benchmarks._harness import report
from cachekit import from_url

STRING = "x" * 100
RECORD = {f"field{i}": i for i in range(50)}
# The "50-field dict with lists": not flat, so it cannot be copied shallowly.
NESTED = {f"field{i}": [i, f"v{i}", i / 2] if i % 2 else i for i in range(50)}


def _django_cache() -> Any:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            CACHES={
                "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "KEY_PREFIX": "bench"}
            },
        )
        django.setup()
    from django.core.cache import caches

    return caches["default"]


def systems_for(value: Any) -> dict[str, dict[str, Callable[[], object]]]:
    """Build get-hit, get-miss and set callables for every system storing ``value``."""
    import cachelib
    import cachetools

    ours = from_url("locmem://bench?max_entries=1000&key_prefix=bench")
    ours.set("hit", value, timeout=3600)
    # The same cache with latency sampling off: the difference is what sampling costs.
    unsampled = from_url("locmem://bench?max_entries=1000&key_prefix=bench&latency_sample_every=0")
    plain: dict[str, Any] = {"hit": value}
    ttl: cachetools.TTLCache[str, Any] = cachetools.TTLCache(maxsize=1000, ttl=3600)
    ttl_lock = threading.Lock()
    ttl["hit"] = value
    simple = cachelib.SimpleCache(threshold=1000, default_timeout=3600)
    simple.set("hit", value)
    django = _django_cache()
    django.set("hit", value, 3600)
    from dogpile.cache import make_region

    dogpile = make_region().configure("dogpile.cache.memory", expiration_time=3600)
    dogpile.set("hit", value)
    dogpile_pickle = make_region().configure("dogpile.cache.memory_pickle", expiration_time=3600)
    dogpile_pickle.set("hit", value)

    def ttl_get(key: str) -> Any:
        with ttl_lock:
            return ttl.get(key)

    def ttl_set() -> None:
        with ttl_lock:
            ttl["k"] = value

    return {
        "get hit": {
            "cachekit locmem": lambda: ours.get("hit"),
            "cachekit, no latency sampling": lambda: unsampled.get("hit"),
            "dict": lambda: plain.get("hit"),
            "cachetools TTLCache+lock": lambda: ttl_get("hit"),
            "cachelib SimpleCache": lambda: simple.get("hit"),
            "django LocMemCache": lambda: django.get("hit"),
            "dogpile memory": lambda: dogpile.get("hit"),
            "dogpile memory_pickle": lambda: dogpile_pickle.get("hit"),
        },
        "get miss": {
            "cachekit locmem": lambda: ours.get("miss"),
            "dict": lambda: plain.get("miss"),
            "cachetools TTLCache+lock": lambda: ttl_get("miss"),
            "cachelib SimpleCache": lambda: simple.get("miss"),
            "django LocMemCache": lambda: django.get("miss"),
            "dogpile memory": lambda: dogpile.get("miss"),
        },
        "set": {
            "cachekit locmem": lambda: ours.set("k", value),
            "cachekit, no latency sampling": lambda: unsampled.set("k", value),
            "dict": lambda: plain.__setitem__("k", value),
            "cachetools TTLCache+lock": ttl_set,
            "cachelib SimpleCache": lambda: simple.set("k", value),
            "django LocMemCache": lambda: django.set("k", value),
            "dogpile memory": lambda: dogpile.set("k", value),
            "dogpile memory_pickle": lambda: dogpile_pickle.set("k", value),
        },
    }


def _hits_over(count: int, number: int, rounds: int) -> list[Result]:
    """``get`` hits on ``count`` stored keys in a shuffled order: ours, cachelib, and the ladder
    of indirections a hit walks, each one step more than the last, to show where a large
    store's cache misses come from.

    - a dict read with the stored key objects themselves (the key's identity matches: its
      characters are never compared);
    - a dict read with the key built as ours is (``"bench:1:" + name``: a new string, so the
      stored key is read to compare it);
    - our store's dict read the same way, then its :class:`~cachekit.backends.locmem._Entry`
      (one more object per key), its expiry (a float, one more), and its reference bit set;
    - ``LocMemBackend.get`` (the same, plus its frame and the clock), then the ``Cache``.
    """
    import cachelib

    names = [f"key{i}" for i in range(count)]
    ours = from_url(f"locmem://bench-{count}?max_entries={count}&key_prefix=bench&max_bytes=none")
    simple = cachelib.SimpleCache(threshold=count + 1, default_timeout=3600)
    plain: dict[str, str] = {}
    for name in names:
        ours.set(name, STRING, timeout=3600)
        simple.set(name, STRING)
        plain[f"bench:{name}"] = STRING
    backend = ours.backend
    entries = backend._data  # the store's entry dict, read directly to time each indirection
    stored = {name: key for name, key in zip(names, plain, strict=True)}
    # Each system reads its own random order: one that followed another through the same keys
    # would find them in the CPU caches.
    orders = [random.Random(count + n).sample(names, min(count, 200_000)) for n in range(8)]
    ours_keys, backend_keys, entry_keys, expiry_keys, bit_keys, simple_keys, plain_keys = (
        itertools.cycle(order) for order in orders[:7]
    )
    stored_keys = itertools.cycle([stored[name] for name in orders[7]])

    def entry_value() -> object:
        return entries["bench:1:" + next(entry_keys)].value

    def entry_expiry() -> object:  # the expiry is a float object of its own
        entry = entries["bench:1:" + next(expiry_keys)]
        return entry.expires is not None and entry.expires > 0.0 and entry.value

    def entry_bit() -> object:  # the reference bit: a store of True, nothing allocated or freed
        entry = entries["bench:1:" + next(bit_keys)]
        if entry.expires is not None and entry.expires > 0.0:
            entry.used = True
        return entry.value

    systems: list[tuple[str, Callable[[], object]]] = [
        ("cachekit locmem", lambda: ours.get(next(ours_keys))),
        ("cachelib SimpleCache", lambda: simple.get(next(simple_keys))),
        ("dict, the stored key objects", lambda: plain.get(next(stored_keys))),
        ("dict, key built as ours", lambda: plain.get("bench:" + next(plain_keys))),
        ("our dict, then its Entry", entry_value),
        ("... and its expiry", entry_expiry),
        ("... and its reference bit", entry_bit),
        ("LocMemBackend.get", lambda: backend.get("bench:1:" + next(backend_keys))),
    ]
    results = measure(f"get hit, {count:,} keys", systems, number=number, rounds=rounds)
    ours.clear()
    simple.clear()
    return results


def growth(results: list[Result], small: int, large: int) -> dict[str, tuple[float, float]]:
    """Each system's time per hit over ``large`` keys against ``small``: ``(difference µs, ratio)``."""
    times = {(r.scenario, r.system): r.seconds_per_op for r in results}
    growths: dict[str, tuple[float, float]] = {}
    for (scenario, system), seconds in times.items():
        if scenario == f"get hit, {large:,} keys":
            base = times[(f"get hit, {small:,} keys", system)]
            growths[system] = ((seconds - base) * 1e6, seconds / base)
    return growths


def bytes_per_entry(count: int = 100_000) -> dict[str, float]:
    """Memory each entry adds, measured with ``tracemalloc``; keys built beforehand."""
    import cachetools

    from cachekit.backends.locmem import LocMemBackend

    keys = [f"bench:1:key{i}" for i in range(count)]
    short = [f"key{i}" for i in range(count)]

    def ours_backend() -> object:
        backend = LocMemBackend("bench-memory", max_entries=count, max_bytes=None)
        for key in keys:
            backend.set(key, STRING, 3600)
        return backend

    def ours_cache() -> object:  # counts the prefixed key string the cache builds, too
        cache = from_url(f"locmem://bench-memory-cache?max_entries={count}&max_bytes=none&key_prefix=bench")
        for key in short:
            cache.set(key, STRING, timeout=3600)
        return cache

    def ttl_cache() -> object:
        ttl: cachetools.TTLCache[str, str] = cachetools.TTLCache(maxsize=count, ttl=3600)
        for key in keys:
            ttl[key] = STRING
        return ttl

    def lru_cache() -> object:
        lru: cachetools.LRUCache[str, str] = cachetools.LRUCache(maxsize=count)
        for key in keys:
            lru[key] = STRING
        return lru

    sizes: dict[str, float] = {}
    for name, fill in (
        ("cachekit LocMemBackend", ours_backend),
        ("cachekit Cache (incl. its key strings)", ours_cache),
        ("cachetools TTLCache", ttl_cache),
        ("cachetools LRUCache", lru_cache),
    ):
        tracemalloc.start()
        before, _ = tracemalloc.get_traced_memory()
        held = fill()
        after, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        sizes[name] = (after - before) / count
        if hasattr(held, "clear"):
            held.clear()
        del held
    return sizes


def hit_ratios(keys: int = 100_000, capacity: int = 5_000, operations: int = 300_000) -> dict[str, float]:
    """Hit ratio of the store's CLOCK eviction against exact LRU (an OrderedDict), Zipf-like reads."""
    from collections import OrderedDict

    from cachekit.backends.locmem import LocMemBackend

    weights = [1 / (rank + 1) ** 0.9 for rank in range(keys)]
    stream = [f"k{n}" for n in random.Random(7).choices(range(keys), weights=weights, k=operations)]
    ours = LocMemBackend("bench-hit-ratio", max_entries=capacity, max_bytes=None)
    ours.clear()
    exact: OrderedDict[str, bool] = OrderedDict()
    ours_hits = exact_hits = 0
    for key in stream:  # read-through: a miss stores the key
        if ours.get(key) is not None:
            ours_hits += 1
        else:
            ours.set(key, b"v", None)
        if key in exact:
            exact_hits += 1
            exact.move_to_end(key)
        else:
            exact[key] = True
            if len(exact) > capacity:
                exact.popitem(last=False)
    ours.clear()
    return {"cachekit CLOCK": ours_hits / operations, "exact LRU": exact_hits / operations}


def run(number: int = 20000, rounds: int = 7) -> list[Result]:
    results: list[Result] = []
    for label, value in (("100-byte str", STRING), ("50-field dict", RECORD), ("50-field nested", NESTED)):
        for operation, systems in systems_for(value).items():
            results += measure(f"{operation} ({label})", list(systems.items()), number=number, rounds=rounds)
    for count in (1000, 1_000_000):
        results += _hits_over(count, number, rounds)
    return results


def main() -> None:
    number = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    results = run(number)
    print(report(results, "cachekit locmem", "locmem: time per operation, medians"))
    print("## a hit over 1,000,000 keys against one over 1,000 (each step adds one indirection)\n")
    for name, (extra, ratio) in growth(results, 1000, 1_000_000).items():
        print(f"{name:<40} {extra:>+7.3f} µs {ratio:>6.2f}x")
    print()
    print("## memory per entry (100,000 entries, 100-byte str, tracemalloc)\n")
    for name, size in bytes_per_entry().items():
        print(f"{name:<40} {size:>7.1f} B")
    print("\n## hit ratio (100,000 keys, Zipf 0.9, 5,000 entries, 300,000 reads)\n")
    for name, ratio in hit_ratios().items():
        print(f"{name:<40} {ratio:>7.4f}")


if __name__ == "__main__":
    main()
