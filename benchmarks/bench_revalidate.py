"""Background revalidation under gunicorn: request latency while a slow page expires, renders per expiry.

Run from the repository root (redis-server and gunicorn must be installed)::

    python -m benchmarks.bench_revalidate [seconds per mode] [requests per second]

One ``redis-server`` on a free loopback port holds the pages of a gunicorn app
(``--preload``, 4 processes x 8 threads, ``gthread``) whose one page takes
``RENDER_SECONDS`` (0.5 s) to render, is fresh for ``FRESH_SECONDS`` (2 s) and
may be served stale for 30 s more (``CacheMiddleware``, ``stale_while_revalidate=30``).
Each render appends its start and end time to a Redis list, so renders are
counted across the four processes. Client threads send paced ``GET``\\s on
keep-alive connections (``RATE`` a second in all, so the machine is loaded but
not saturated: the latency measured is the cache's, not a queue's), for
``SECONDS`` each in two modes:

* ``background``: ``background_revalidate=True`` (the default): the request that
  finds the page stale is answered from the stale copy and the render runs on
  the worker process's background thread pool;
* ``inline``: ``background_revalidate=False``: that request renders the page.

"During expiries" are the requests that started within 50 ms of a render
(from its start to its end): the ones a stale page's re-render could delay. An
expiry is a group of renders starting less than a second apart (renders of
one page are ``FRESH_SECONDS`` apart); more than one render in a group is a
duplicate. The acceptance figure (issue 18): in ``background`` mode, p99 during
expiries at most 20 ms and one render per expiry.
"""

from __future__ import annotations

import http.client
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tests import servers

RENDER_SECONDS = 0.5
FRESH_SECONDS = 2
STALE_SECONDS = 30
SECONDS = 9.0
RATE = 400.0
CLIENTS = 16
PROCESSES = 4
THREADS = 8
RENDERS_KEY = "bench-revalidate-renders"
WINDOW = 0.05


def make_app() -> Callable[..., Iterable[bytes]]:
    """The gunicorn app (``benchmarks.bench_revalidate:make_app()``), configured from the environment."""
    import redis

    import cachekit
    from middleware import CacheMiddleware

    url = os.environ["CACHEKIT_URL"]
    log = redis.Redis.from_url(url)
    prefix = os.environ["REVALIDATE_PREFIX"]
    render_seconds = float(os.environ.get("REVALIDATE_RENDER_SECONDS", RENDER_SECONDS))

    def page(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.time()
        time.sleep(render_seconds)  # the slow query
        log.rpush(prefix + RENDERS_KEY, f"{started:.6f} {time.time():.6f} {os.getpid()}")
        body = f"<p>rendered at {started:.3f} by {os.getpid()}</p>".encode()
        start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(body)))])
        return [body]

    return CacheMiddleware(
        page,
        cache=cachekit.from_url(url, key_prefix=prefix),
        timeout=float(os.environ.get("REVALIDATE_FRESH_SECONDS", FRESH_SECONDS)),
        stale_while_revalidate=STALE_SECONDS,
        background_revalidate=os.environ.get("REVALIDATE_BACKGROUND", "1") == "1",
    )


@dataclass
class Sample:
    """One request: when it started (wall clock, as the renders are logged), how long, its status."""

    started: float
    seconds: float
    status: int


def _client(port: int, until: float, interval: float, out: list[Sample], errors: list[str]) -> None:
    conn = http.client.HTTPConnection(servers.HOST, port, timeout=10)
    next_at = time.perf_counter()
    while True:
        now = time.perf_counter()
        if now >= until:
            break
        if next_at > now:
            time.sleep(next_at - now)
        started, t0 = time.time(), time.perf_counter()
        try:
            conn.request("GET", "/page")
            response = conn.getresponse()
            response.read()
            out.append(Sample(started, time.perf_counter() - t0, response.status))
        except (OSError, http.client.HTTPException) as exc:
            errors.append(repr(exc))
            conn.close()
            conn = http.client.HTTPConnection(servers.HOST, port, timeout=10)
        # Paced from the schedule, but no burst to catch up after a slow answer.
        next_at = max(next_at + interval, time.perf_counter() - interval)
    conn.close()


def gunicorn(
    port: int, env: dict[str, str], workdir: Any, processes: int = PROCESSES, threads: int = THREADS
) -> servers.ServerProcess:
    """Start the app under gunicorn (``--preload``, ``gthread``) on ``port``; stop it with ``.stop()``."""
    bin_dir = os.path.dirname(sys.executable)
    argv = [
        os.path.join(bin_dir, "gunicorn"), "--preload", "-w", str(processes), "-k", "gthread",
        "--threads", str(threads), "-b", f"{servers.HOST}:{port}", "--timeout", "60",
        "benchmarks.bench_revalidate:make_app()",
    ]  # fmt: skip
    process = servers.ServerProcess("gunicorn", port, argv, workdir, env=env)
    return process.start(deadline=30.0)


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class ModeResult:
    mode: str
    samples: list[Sample]
    during: list[Sample]
    renders: list[tuple[float, float, int]]
    expiries: int
    errors: list[str]
    seconds: float


def run_mode(mode: str, redis_url: str, seconds: float, rate: float) -> ModeResult:
    """Serve the page in ``mode`` under paced load for ``seconds``; collect latencies and renders."""
    import redis

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    prefix = f"rv{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "CACHEKIT_URL": redis_url,
        "REVALIDATE_PREFIX": prefix,
        "REVALIDATE_BACKGROUND": "1" if mode == "background" else "0",
        "PYTHONPATH": root,
    }
    port = servers.free_port()
    workdir = servers._workdir(f"gunicorn-{mode}")
    server = gunicorn(port, env, workdir)
    log = redis.Redis.from_url(redis_url)
    try:
        warm = http.client.HTTPConnection(servers.HOST, port, timeout=10)
        warm.request("GET", "/page")
        assert warm.getresponse().read()
        warm.close()
        samples: list[Sample] = []
        errors: list[str] = []
        begin = time.time()
        until = time.perf_counter() + seconds
        threads = [
            threading.Thread(target=_client, args=(port, until, CLIENTS / rate, samples, errors))
            for _ in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(seconds + 30)
        # Let a render the load started finish, so it is counted.
        time.sleep(RENDER_SECONDS + 0.2)
    finally:
        server.stop()
    raw = log.lrange(prefix + RENDERS_KEY, 0, -1)
    renders = []
    for item in raw:
        start, end, pid = item.decode().split()
        if float(start) >= begin:
            renders.append((float(start), float(end), int(pid)))
    renders.sort()
    expiries, last = 0, None
    for start, _, _ in renders:
        if last is None or start - last >= 1.0:
            expiries += 1
        last = start
    during = [
        sample
        for sample in samples
        if any(start - WINDOW <= sample.started <= end + WINDOW for start, end, _ in renders)
    ]
    return ModeResult(mode, samples, during, renders, expiries, errors, seconds)


def _ms(values: list[float], fraction: float) -> str:
    return f"{_percentile(values, fraction) * 1000:8.2f}"


def report(results: list[ModeResult]) -> str:
    lines = [
        f"## Background revalidation: a {RENDER_SECONDS} s page fresh for {FRESH_SECONDS} s, gunicorn "
        f"{PROCESSES} x {THREADS} gthread, Redis",
        "",
        f"{'mode':<11} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} | "
        f"{'during':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} | {'renders':>7} {'expiries':>8} "
        f"{'dup':>4} {'errors':>6} {'non-200':>7}",
    ]
    for r in results:
        every = [s.seconds for s in r.samples]
        during = [s.seconds for s in r.during]
        bad = sum(1 for s in r.samples if s.status != 200)
        cells = [
            f"{r.mode:<11} {len(every):>8} {len(every) / r.seconds:>7.0f}",
            f"{_ms(every, 0.5)} {_ms(every, 0.99)} {_ms(every, 1.0)} |",
            f"{len(during):>6} {_ms(during, 0.5)} {_ms(during, 0.99)} {_ms(during, 1.0)} |",
            f"{len(r.renders):>7} {r.expiries:>8} {len(r.renders) - r.expiries:>4}",
            f"{len(r.errors):>6} {bad:>7}",
        ]
        lines.append(" ".join(cells))
    for r in results:
        if r.mode == "background":
            p99 = _percentile([s.seconds for s in r.during], 0.99) * 1000
            one = len(r.renders) == r.expiries
            lines += [
                "",
                f"acceptance (background): p99 during expiries {p99:.2f} ms "
                f"({'<=' if p99 <= 20 else '>'} 20 ms), {len(r.renders)} renders for {r.expiries} expiries "
                f"({'one per expiry' if one else 'DUPLICATES'})",
            ]
    return "\n".join(lines)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else SECONDS
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else RATE
    redis_server = servers.start_redis()
    try:
        url = f"redis://{redis_server.address}/0"
        results = [run_mode(mode, url, seconds, rate) for mode in ("background", "inline")]
    finally:
        redis_server.stop()
    print(report(results))


if __name__ == "__main__":
    main()
