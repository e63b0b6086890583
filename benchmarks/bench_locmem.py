"""Local-memory cache benchmark: cachekit's locmem ``Cache`` against in-process peers.

Run from the repository root::

    pip install -e '.[bench]'
    python -m benchmarks.bench_locmem

Compares, in one run with the order of systems rotated each round, ``get`` hit,
``get`` miss and ``set`` of a 100-byte string and a 50-field dict, through
``Cache`` with a key prefix and stats on, against a plain ``dict`` (the floor),
``cachetools.TTLCache`` under a lock, cachelib's ``SimpleCache`` and Django's
``LocMemCache``. The last column is cachekit's time divided by the peer's:
below 1 means cachekit is faster.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from benchmarks._harness import Result
from benchmarks._harness import measure
from benchmarks._harness import report
from cachekit import from_url

STRING = "x" * 100
RECORD = {f"field{i}": i for i in range(50)}


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
        },
        "get miss": {
            "cachekit locmem": lambda: ours.get("miss"),
            "dict": lambda: plain.get("miss"),
            "cachetools TTLCache+lock": lambda: ttl_get("miss"),
            "cachelib SimpleCache": lambda: simple.get("miss"),
            "django LocMemCache": lambda: django.get("miss"),
        },
        "set": {
            "cachekit locmem": lambda: ours.set("k", value),
            "cachekit, no latency sampling": lambda: unsampled.set("k", value),
            "dict": lambda: plain.__setitem__("k", value),
            "cachetools TTLCache+lock": ttl_set,
            "cachelib SimpleCache": lambda: simple.set("k", value),
            "django LocMemCache": lambda: django.set("k", value),
        },
    }


def run(number: int = 20000, rounds: int = 7) -> list[Result]:
    results: list[Result] = []
    for label, value in (("100-byte str", STRING), ("50-field dict", RECORD)):
        for operation, systems in systems_for(value).items():
            results += measure(f"{operation} ({label})", list(systems.items()), number=number, rounds=rounds)
    return results


def main() -> None:
    number = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    print(report(run(number), "cachekit locmem", "locmem: time per operation, medians"))


if __name__ == "__main__":
    main()
