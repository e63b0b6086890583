"""Page latency through a Redis hang: the circuit breaker's figure (issue 14, item 10).

Run from the repository root (redis-server must be installed)::

    python -m benchmarks.bench_redis_hang [hang_seconds]

Starts its own ``redis-server`` on a free loopback port, puts ``CacheMiddleware``
(the site-wide page cache) on a Redis ``Cache`` in front of a small WSGI app,
warms a few pages, then stops the server with SIGSTOP for ``hang_seconds``
(default 30) while one client keeps requesting pages in-process. Prints, per
second of the hang, the number of pages served, their statuses and the p50, p99
and worst latency, then the totals after the first second, which the issue bars
at p99 <= 50 ms. The server is resumed (SIGCONT) and stopped by PID at the end.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from cachekit import Cache
from cachekit.backends.redis import RedisBackend
from middleware.cache import CacheMiddleware
from tests import servers
from tests.wsgi import call_app
from tests.wsgi import make_environ

SOCKET_TIMEOUT = 0.5  # the backend's default


def page_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    body = f"page {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Cache-Control", "max-age=60")])
    return [body]


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0.0


def main() -> None:
    hang = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    server = servers.start_redis()
    try:
        backend = RedisBackend(host="127.0.0.1", port=server.port, socket_timeout=SOCKET_TIMEOUT)
        cache = Cache(backend, key_prefix="hang", name="pages")
        app = CacheMiddleware(page_app, cache=cache, timeout=60)
        paths = [f"/p{i}" for i in range(20)]
        for path in paths:
            call_app(app, make_environ(path=path))
        os.kill(server.pid, signal.SIGSTOP)
        began = time.monotonic()
        per_second: dict[int, list[float]] = {}
        statuses: dict[int, Counter[str]] = {}
        count = 0
        try:
            while time.monotonic() - began < hang:
                path = paths[count % len(paths)]
                count += 1
                start = time.monotonic()
                status, _, _ = call_app(app, make_environ(path=path))
                took = time.monotonic() - start
                second = int(start - began)
                per_second.setdefault(second, []).append(took)
                statuses.setdefault(second, Counter())[status[:3]] += 1
        finally:
            os.kill(server.pid, signal.SIGCONT)
        print(f"Redis hung (SIGSTOP) for {hang:g} s; socket_timeout {SOCKET_TIMEOUT} s; breaker defaults")
        print(f"{'second':>6} {'pages':>7} {'statuses':<18} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        for second in sorted(per_second):
            samples = per_second[second]
            shown = ",".join(f"{code}x{n}" for code, n in sorted(statuses[second].items()))
            print(
                f"{second:>6} {len(samples):>7} {shown:<18} {percentile(samples, 0.5) * 1000:>8.3f} "
                f"{percentile(samples, 0.99) * 1000:>8.3f} {max(samples) * 1000:>8.1f}"
            )
        after = [t for second, samples in per_second.items() if second >= 1 for t in samples]
        codes = sum((statuses[s] for s in statuses if s >= 1), Counter())
        print(
            f"after the first second: {len(after)} pages, statuses {dict(codes)}, "
            f"p99 {percentile(after, 0.99) * 1000:.3f} ms, worst {max(after) * 1000:.1f} ms"
        )
        print(f"stats: {cache.stats()}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
