"""Purge latency through every layer, and the purge queue's drain rate (issue 18).

Run from the repository root (redis-server, varnishd and varnish-modules installed)::

    python -m benchmarks.bench_purge [count]

Starts its own ``redis-server`` and ``varnishd`` (``tests/edge/cachekit.vcl``) on
free loopback ports. Times ``count`` (default 500) calls of
:meth:`cachekit.edge.Purges.invalidate_tags` and of :meth:`~cachekit.edge.Purges.purge`
(our cache on Redis, then one Varnish), prints p50/p99/worst; then stops Varnish,
queues ``count`` distinct tag purges (each tries Varnish, is refused a connection
and waits on Redis), starts Varnish again and times one ``deliver_queued`` of them
all. Servers are stopped by PID at the end.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

from cachekit import from_url
from cachekit.edge import Purges
from cachekit.edge import VarnishPurger
from tests import servers
from tests.edge.conftest import start_varnish


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0.0


def timed(call: Callable[[int], object], count: int) -> list[float]:
    samples = []
    for i in range(count):
        began = time.perf_counter()
        call(i)
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def line(name: str, samples: list[float]) -> str:
    return (
        f"{name:<34} {len(samples):>5}  p50 {percentile(samples, 0.5):6.2f} ms  "
        f"p99 {percentile(samples, 0.99):6.2f} ms  max {max(samples):6.2f} ms"
    )


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    logging.getLogger("cachekit.edge").setLevel(logging.ERROR)  # one "queued" warning per purge otherwise
    redis = servers.start_redis()
    varnish = start_varnish(servers.free_port())
    try:
        cache = from_url(f"redis://{redis.address}/0", key_prefix="bench-purge")
        purges = Purges(cache, [VarnishPurger([varnish.address])], backoff=0.0, max_backoff=0.0)
        for i in range(20):  # warm connections and scripts
            purges.invalidate_tags(f"warm{i}")
        print(
            line("invalidate_tags (Redis + Varnish)", timed(lambda i: purges.invalidate_tags(f"t{i}"), count))
        )
        print(line("purge URL (Redis + Varnish)", timed(lambda i: purges.purge(f"http://site/p{i}"), count)))
        varnish.stop()
        queued = timed(lambda i: purges.invalidate_tags(f"q{i}"), count)
        print(line("invalidate_tags, Varnish down", queued))
        waiting = len(purges.queue)
        varnish.start()
        began = time.perf_counter()
        report = purges.deliver_queued(limit=count)
        took = time.perf_counter() - began
        print(
            f"deliver_queued: {len(report.delivered)} of {waiting} delivered in {took * 1000:.0f} ms "
            f"({len(report.delivered) / took:.0f}/s); {len(purges.queue)} left"
        )
    finally:
        varnish.stop()
        redis.stop()


if __name__ == "__main__":
    main()
