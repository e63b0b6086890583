"""Page hits under gunicorn: one Flask app on Redis, cachekit's ``CacheMiddleware`` against Flask-Caching.

Run from the repository root (needs ``redis-server`` and ``wrk``: ``apt-get install -y
redis-server wrk``; without either it says so and stops)::

    pip install -e '.[redis,bench]' flask flask-caching gunicorn
    python -m benchmarks.bench_gunicorn [seconds per round] [rounds]

The same Flask app (one route rendering bench_views' ~2 KB page) is served by
gunicorn with 2 sync workers, once per system, all on one ``redis-server`` this
benchmark starts on free loopback ports:

* ``cachekit CacheMiddleware``: the app without Flask-Caching, wrapped in
  :class:`middleware.CacheMiddleware` on a Redis :class:`~cachekit.Cache`,
* ``flask-caching @cached``: the route under Flask-Caching's ``@cached`` on ``RedisCache``,
* ``uncached``: the route as it is, for scale.

Each round runs ``wrk`` (1 thread, 8 connections, a few seconds) against every
system, the order rotated each round, after a warm-up that fills each cache;
reported are the median requests/s and cachekit's ratio to Flask-Caching
(issue 21's goal: >= 1.3), and the median of the per-round ratios (steadier
when the machine's load drifts between rounds). The servers are stopped by PID. Loopback only.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from typing import Any

from tests import servers

SYSTEMS = {
    "cachekit CacheMiddleware (Redis)": "cachekit",
    "flask-caching @cached (RedisCache)": "flask-caching",
    "uncached (Flask)": "uncached",
}
OURS = "cachekit CacheMiddleware (Redis)"
PEER = "flask-caching @cached (RedisCache)"
CONNECTIONS = 8


def build_app(system: str, url: str, prefix: str) -> Callable[..., Iterable[bytes]]:
    """The WSGI app one gunicorn serves: the Flask app under ``system``'s page cache."""
    from flask import Flask

    from benchmarks.bench_views import render

    app = Flask("bench-gunicorn")

    def page() -> Any:
        return render(), 200, {"Content-Type": "text/html; charset=utf-8"}

    if system == "flask-caching":
        from flask_caching import Cache as FlaskCache

        flask_cache = FlaskCache(
            app,
            config={
                "CACHE_TYPE": "RedisCache",
                "CACHE_REDIS_URL": url,
                "CACHE_KEY_PREFIX": prefix,
                "CACHE_DEFAULT_TIMEOUT": 600,
            },
        )
        app.add_url_rule("/page", "page", flask_cache.cached(timeout=600)(page))
        return app
    app.add_url_rule("/page", "page", page)
    if system == "uncached":
        return app
    from cachekit import Cache
    from cachekit.backends.redis import RedisBackend
    from middleware.cache import CacheMiddleware

    cache = Cache(RedisBackend.from_url(url), key_prefix=prefix)
    return CacheMiddleware(app, cache=cache, timeout=600)


_app: Callable[..., Iterable[bytes]] | None = None


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """gunicorn's entry point: the app named by ``BENCH_SYSTEM``, built in each worker on first use."""
    global _app
    if _app is None:
        env = os.environ
        _app = build_app(env["BENCH_SYSTEM"], env["BENCH_REDIS_URL"], env["BENCH_PREFIX"])
    return _app(environ, start_response)


@contextlib.contextmanager
def gunicorn(system: str, redis_url: str) -> Iterator[str]:
    """Serve ``system`` with gunicorn (2 sync workers) on a free loopback port; stop it by PID."""
    port = servers.free_port()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    argv = [
        os.path.join(os.path.dirname(sys.executable), "gunicorn"),
        "-w", "2", "-k", "sync", "-b", f"{servers.HOST}:{port}", "--log-level", "warning",
        "benchmarks.bench_gunicorn:application",
    ]  # fmt: skip
    env = {
        **os.environ,
        "BENCH_SYSTEM": system,
        "BENCH_REDIS_URL": redis_url,
        "BENCH_PREFIX": f"bench-{system}-{uuid.uuid4().hex[:8]}",
        "PYTHONPATH": root,
    }
    process = servers.ServerProcess(f"gunicorn-{system}", port, argv, servers._workdir("gunicorn"), env=env)
    process.start(deadline=30.0)
    try:
        yield f"http://{process.address}/page"
    finally:
        process.stop()


def wrk(url: str, seconds: float) -> float:
    """Requests/s ``wrk`` measures on ``url`` over ``seconds`` (non-2xx answers are an error)."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors on {url}:\n{out}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"no Requests/sec in wrk's output:\n{out}")
    return float(found.group(1))


def run(seconds: float, rounds: int) -> dict[str, list[float]]:
    """Requests/s per system and round, the systems' order rotated each round."""
    from benchmarks.bench_views import PAGE_SIZE

    redis = servers.start_redis()
    try:
        redis_url = f"redis://{redis.address}/0"
        with contextlib.ExitStack() as stack:
            urls = {
                name: stack.enter_context(gunicorn(system, redis_url)) for name, system in SYSTEMS.items()
            }
            for name, url in urls.items():  # fill each cache, check the page, warm both workers
                for _ in range(4):
                    with urllib.request.urlopen(url, timeout=10) as response:
                        body = response.read()
                    assert len(body) == PAGE_SIZE, (name, len(body))
                wrk(url, 1)
            samples: dict[str, list[float]] = {name: [] for name in urls}
            names = list(urls)
            for round_no in range(rounds):
                shift = round_no % len(names)
                for name in [*names[shift:], *names[:shift]]:
                    samples[name].append(wrk(urls[name], seconds))
            return samples
    finally:
        redis.stop()


def main() -> None:
    missing = [tool for tool in ("wrk", "redis-server") if shutil.which(tool) is None]
    if missing:
        print(
            f"bench_gunicorn: skipped, {' and '.join(missing)} not installed "
            "(apt-get install -y wrk redis-server)"
        )
        return
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    samples = run(seconds, rounds)
    print(
        f"## gunicorn, 2 sync workers, wrk -t1 -c{CONNECTIONS}, {rounds} rounds of {seconds:g} s: requests/s"
    )
    print()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name, values in samples.items():
        spread = " ".join(f"{value:.0f}" for value in values)
        print(f"{name:<36} median {medians[name]:>8.0f}   rounds: {spread}")
    print()
    print(f"cachekit / flask-caching = {medians[OURS] / medians[PEER]:.3f} (goal >= 1.3)")
    # The machine's load drifts between rounds; within one round the systems ran back to back.
    per_round = statistics.median(
        ours / peer for ours, peer in zip(samples[OURS], samples[PEER], strict=True)
    )
    print(f"median of the per-round ratios = {per_round:.3f}")


if __name__ == "__main__":
    main()
