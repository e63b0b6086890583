"""Page-cache and stampede benchmark: cachekit against Django, Flask-Caching and dogpile.cache.

Run from the repository root (in-process only, no servers, so no ``taskset`` needed)::

    pip install -e '.[bench]' flask flask-caching dogpile.cache
    python -m benchmarks.bench_views            # everything
    python -m benchmarks.bench_views redis      # the page hit on Redis only

**Page-cache hit.** Time per request of a cache hit on a ~2 KB HTML page,
called in-process as WSGI with the same environ, through

* ``@cache_page`` on cachekit's locmem cache (a plain WSGI function),
* Django's ``cache_page`` decorator and, separately, its ``UpdateCacheMiddleware`` +
  ``FetchFromCacheMiddleware`` pair, both on ``LocMemCache`` through Django's ``WSGIHandler``,
* Flask-Caching's ``@cached`` on ``SimpleCache`` through Flask's WSGI app,

next to rendering the page uncached (the same WSGI function without the
decorator). The order of systems rotates each round; medians are reported.

**Page-cache hit on Redis** (``redis-server`` installed; issue 21). The same page
on one ``redis-server`` this benchmark starts on a free loopback port (pinned to
the last CPU, this process to CPU 0, as ``bench_redis`` does), through

* ``@cache_page`` on a plain WSGI function, and ``CacheMiddleware`` around the
  Flask app below (the same app as Flask-Caching's, one route uncached),
* Flask-Caching's ``@cached`` on ``RedisCache`` (one ``GET`` per hit),

as wall time and as this process's CPU time per request, each with the
ratio to Flask-Caching (goal: <= 0.6). The Redis commands of one hit of
each, from ``INFO commandstats``, are printed first (ours: one ``MGET``).

**Stampede.** 32 threads ask at once for one key whose computation takes
200 ms: cold (no value), then stale (an expired value exists). Reported per
system: computations per 32 requests, and the median/max latency of the
requests that did not compute. Systems: cachekit ``get_or_set`` (with
``stale_while_revalidate`` in the stale case), dogpile.cache
``get_or_create`` on its memory backend, Django ``get_or_set`` on ``LocMemCache``.
"""

from __future__ import annotations

import html
import io
import statistics
import sys
import threading
import time
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

from benchmarks._harness import Result
from benchmarks._harness import measure
from benchmarks._harness import report
from cachekit import Cache
from cachekit.backends.locmem import LocMemBackend
from cachekit.views import cache_page

COMPUTE_SECONDS = 0.2
THREADS = 32

ITEMS = [{"id": i, "title": f"Item number {i} & friends", "price": i * 3.25} for i in range(30)]


def render() -> bytes:
    """The page: a small list rendered with escaping, about 2 KB."""
    rows = "".join(
        f'<li><a href="/items/{item["id"]}">{html.escape(str(item["title"]))}</a> {item["price"]:.2f}</li>'
        for item in ITEMS
    )
    return (
        f"<!doctype html><html><head><title>Items</title></head><body><ul>{rows}</ul></body></html>".encode()
    )


PAGE_SIZE = len(render())


def plain_view(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = render()
    start_response(
        "200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]


def environ_for(path: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "localhost",
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def _start_response(
    status: str, headers: list[tuple[str, str]], exc_info: Any = None
) -> Callable[[bytes], None]:
    return _write


def _write(data: bytes) -> None:
    pass


def requester(app: Callable[..., Iterable[bytes]], path: str) -> Callable[[], bytes]:
    """One request as a WSGI server makes it: fresh environ, drain the body, close."""
    base = environ_for(path)

    def request() -> bytes:
        result = app(dict(base), _start_response)
        try:
            return b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    return request


# -- Django: configured once; this module is also its URLconf -------------------------------

urlpatterns: list[Any] = []


def _django_setup() -> None:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only-secret-key-0123456789abcdef",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        DATABASES={},
        USE_TZ=True,
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "bench"}},
        CACHE_MIDDLEWARE_SECONDS=600,
    )
    django.setup()
    from django.http import HttpResponse
    from django.urls import path
    from django.views.decorators.cache import cache_page as django_cache_page

    def page(request: Any) -> HttpResponse:
        return HttpResponse(render(), content_type="text/html; charset=utf-8")

    urlpatterns[:] = [path("decorated", django_cache_page(600)(page)), path("plain", page)]


def django_apps() -> tuple[Callable[..., Iterable[bytes]], Callable[..., Iterable[bytes]]]:
    """Return (handler without middleware, handler with the cache middleware pair)."""
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler

    settings.MIDDLEWARE = []
    plain = WSGIHandler()
    settings.MIDDLEWARE = [
        "django.middleware.cache.UpdateCacheMiddleware",
        "django.middleware.cache.FetchFromCacheMiddleware",
    ]
    with_middleware = WSGIHandler()
    settings.MIDDLEWARE = []
    return plain, with_middleware


def flask_app() -> Callable[..., Iterable[bytes]]:
    from flask import Flask
    from flask_caching import Cache as FlaskCache

    app = Flask("bench")
    flask_cache = FlaskCache(app, config={"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 600})

    @app.route("/flask")
    @flask_cache.cached(timeout=600)
    def page() -> Any:
        return render(), 200, {"Content-Type": "text/html; charset=utf-8"}

    return app


def page_hit_results(number: int, rounds: int) -> list[Result]:
    _django_setup()
    django_plain, django_middleware = django_apps()
    ours = cache_page(600, cache=Cache(LocMemBackend("bench-views")))(plain_view)
    systems = [
        ("cachekit @cache_page (locmem)", requester(ours, "/ours")),
        ("django cache_page (LocMemCache)", requester(django_plain, "/decorated")),
        ("django CacheMiddleware (LocMemCache)", requester(django_middleware, "/plain")),
        ("flask-caching @cached (SimpleCache)", requester(flask_app(), "/flask")),
        ("render uncached (bare WSGI)", requester(plain_view, "/bare")),
    ]
    bodies = {name: request() for name, request in systems}  # fill every cache
    for name, request in systems:
        body = request()
        assert body == bodies[name], name
        assert len(body) == PAGE_SIZE, (name, len(body))
    return measure(f"page hit ({PAGE_SIZE} B)", systems, number=number, rounds=rounds)


# -- page hit on Redis ------------------------------------------------------------------------


def flask_redis_app(url: str) -> Any:
    """The Flask app on Redis: ``/flask`` under Flask-Caching's ``@cached``, ``/plain`` uncached."""
    from flask import Flask
    from flask_caching import Cache as FlaskCache

    app = Flask("bench-redis")
    flask_cache = FlaskCache(
        app,
        config={"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": url, "CACHE_DEFAULT_TIMEOUT": 600},
    )

    def page() -> Any:
        return render(), 200, {"Content-Type": "text/html; charset=utf-8"}

    app.add_url_rule("/flask", "cached", flask_cache.cached(timeout=600)(page))
    app.add_url_rule("/plain", "plain", page)
    return app


def redis_commands(url: str, request: Callable[[], bytes]) -> dict[str, int]:
    """The Redis commands one ``request()`` makes, by name (``INFO commandstats``)."""
    import redis

    raw = redis.Redis.from_url(url)
    try:
        raw.config_resetstat()
        request()
        stats = raw.info("commandstats")
    finally:
        raw.close()
    calls = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    for own in ("info", "config|resetstat"):
        calls.pop(own, None)
    return calls


def cpu_per_op(
    scenario: str, systems: list[tuple[str, Callable[[], object]]], number: int, rounds: int
) -> list[Result]:
    """As :func:`measure`, in this process's CPU time: the client's own cost, steadier on a busy machine."""
    samples: dict[str, list[float]] = {name: [] for name, _ in systems}
    for round_no in range(rounds):
        shift = round_no % len(systems)
        for name, operation in [*systems[shift:], *systems[:shift]]:
            start = time.process_time()
            for _ in range(number):
                operation()
            samples[name].append((time.process_time() - start) / number)
    return [Result(scenario, name, statistics.median(times)) for name, times in samples.items()]


REDIS_OURS = "cachekit @cache_page (Redis)"
REDIS_PEER = "flask-caching @cached (RedisCache)"


def redis_page_hit(number: int, rounds: int) -> str | None:
    """The Redis page-hit tables; ``None`` (and a message) when ``redis-server`` is missing."""
    import shutil

    if shutil.which("redis-server") is None:
        print("page hit on Redis: skipped, redis-server is not installed\n")
        return None
    from benchmarks.bench_redis import pinned_server
    from cachekit.backends.redis import RedisBackend
    from middleware.cache import CacheMiddleware

    with pinned_server() as server:
        url = f"redis://{server.address}/0"
        flask = flask_redis_app(url)
        systems = [
            (
                REDIS_OURS,
                requester(cache_page(600, cache=Cache(RedisBackend.from_url(url)))(plain_view), "/ours"),
            ),
            (
                "cachekit CacheMiddleware (Redis, Flask)",
                requester(
                    CacheMiddleware(flask, cache=Cache(RedisBackend.from_url(url)), timeout=600), "/plain"
                ),
            ),
            (REDIS_PEER, requester(flask, "/flask")),
        ]
        bodies = {name: request() for name, request in systems}  # fill every cache
        lines = ["## page hit on Redis: commands per hit (INFO commandstats)", ""]
        for name, request in systems:
            body = request()
            assert body == bodies[name], name
            assert len(body) == PAGE_SIZE, (name, len(body))
            lines.append(f"{name:<42} {redis_commands(url, request)}")
        scenario = f"page hit on Redis ({PAGE_SIZE} B)"
        wall = measure(scenario, systems, number=number, rounds=rounds)
        cpu = cpu_per_op(scenario, systems, number, rounds)
    lines.append("")
    for title, results in (("wall time", wall), ("client CPU time", cpu)):
        lines.append(report(results, REDIS_OURS, f"page hit on Redis: {title} per request, medians"))
        by_name = {r.system: r.seconds_per_op for r in results}
        for name in (REDIS_OURS, "cachekit CacheMiddleware (Redis, Flask)"):
            lines.append(
                f"{name} / flask-caching ({title}) = {by_name[name] / by_name[REDIS_PEER]:.3f} (goal <= 0.6)"
            )
        lines.append("")
    return "\n".join(lines)


# -- stampede -----------------------------------------------------------------------------------


def stampede(get: Callable[[Callable[[], str]], str]) -> tuple[int, list[float]]:
    """32 threads call ``get(compute)`` at once; return computations and non-computing latencies."""
    calls = [0]
    guard = threading.Lock()
    local = threading.local()

    def compute() -> str:
        with guard:
            calls[0] += 1
        local.computed = True
        time.sleep(COMPUTE_SECONDS)
        return "fresh"

    barrier = threading.Barrier(THREADS)
    latencies: list[float] = []

    def worker() -> None:
        barrier.wait()
        local.computed = False
        start = time.perf_counter()
        get(compute)
        elapsed = time.perf_counter() - start
        if not local.computed:
            with guard:
                latencies.append(elapsed)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return calls[0], latencies


def stampede_systems(round_no: int, stale: bool) -> list[tuple[str, Callable[[Callable[[], str]], str]]]:
    """Fresh caches for one round; when ``stale``, each already holds an expired value."""
    from django.core.cache import caches as django_caches
    from dogpile.cache import make_region

    key = f"k{round_no}{'s' if stale else 'c'}"
    ttl = 1
    ours = Cache(LocMemBackend(f"bench-stampede-{key}"))
    region = make_region().configure("dogpile.cache.memory", expiration_time=ttl)
    django = django_caches["default"]
    options: dict[str, Any] = {"stale_while_revalidate": 60} if stale else {}
    if stale:
        ours.get_or_set(key, lambda: "stale", ttl, **options)
        region.get_or_create(key, lambda: "stale")
        django.set(key, "stale", ttl)
        time.sleep(ttl + 0.1)  # a real expiry: dogpile and Django read the wall clock
    return [
        ("cachekit get_or_set", lambda compute: ours.get_or_set(key, compute, 60, **options)),
        ("dogpile.cache get_or_create", lambda compute: region.get_or_create(key, compute)),
        ("django get_or_set (LocMemCache)", lambda compute: django.get_or_set(key, compute, 60)),
    ]


def stampede_report(rounds: int) -> str:
    lines = [
        f"## stampede: {THREADS} threads, one key, {COMPUTE_SECONDS * 1000:.0f} ms computation",
        "",
        f"{'case':<7} {'system':<34} {'computations':>13} {'others: median':>15} {'max':>9}",
    ]
    for stale in (False, True):
        computations: dict[str, list[int]] = {}
        latencies: dict[str, list[float]] = {}
        for round_no in range(rounds):
            systems = stampede_systems(round_no, stale)
            shift = round_no % len(systems)
            for name, get in [*systems[shift:], *systems[:shift]]:
                calls, waited = stampede(get)
                computations.setdefault(name, []).append(calls)
                latencies.setdefault(name, []).extend(waited)
        for name, counts in computations.items():
            waited = latencies[name]
            median = f"{statistics.median(waited) * 1000:.2f}ms" if waited else "-"
            worst = f"{max(waited) * 1000:.2f}ms" if waited else "-"
            case = "stale" if stale else "cold"
            done = f"{statistics.median(counts):>6.0f} / {THREADS:<4}"
            lines.append(f"{case:<7} {name:<34} {done} {median:>15} {worst:>9}")
        lines.append("")
    return "\n".join(lines)


def page_expiry_renders(threads: int = 16, lifetime: int = 1, seconds: float = 3.5) -> tuple[int, float]:
    """Renders of one hot page per expiry: ``threads`` threads ask for it for ``seconds``.

    The page lives ``lifetime`` seconds and takes 20 ms to render; issue 13
    item 9 says it must be rendered once per expiry, as ``get_or_set`` is.
    Returns ``(renders, expiries)``.
    """
    renders = [0]

    def view(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        renders[0] += 1
        time.sleep(0.02)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hot"]

    cache = Cache(LocMemBackend(f"bench-expiry-{time.monotonic_ns()}"))
    request = requester(cache_page(lifetime, cache=cache)(view), "/hot")
    deadline = time.monotonic() + seconds

    def worker() -> None:
        while time.monotonic() < deadline:
            request()
            time.sleep(0.001)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    started = time.monotonic()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return renders[0], (time.monotonic() - started) / lifetime


def main() -> None:
    if sys.argv[1:2] == ["redis"]:  # python -m benchmarks.bench_views redis [number]: that table only
        print(redis_page_hit(int(sys.argv[2]) if len(sys.argv) > 2 else 1000, rounds=9) or "")
        return
    number = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    results = page_hit_results(number, rounds=7)
    print(report(results, "cachekit @cache_page (locmem)", "page-cache hit: time per request, medians"))
    by_name = {r.system: r.seconds_per_op for r in results}
    ours = by_name["cachekit @cache_page (locmem)"]
    peers = [name for name in by_name if not name.startswith(("cachekit", "render"))]
    fastest = min(peers, key=by_name.__getitem__)
    print(f"fastest peer: {fastest}; ours / fastest peer = {ours / by_name[fastest]:.3f} (goal <= 0.2)")
    print(f"render uncached / ours = {by_name['render uncached (bare WSGI)'] / ours:.2f}x (goal >= 3)\n")
    on_redis = redis_page_hit(max(number // 5, 200), rounds=9)
    if on_redis is not None:
        print(on_redis)
    renders, expiries = page_expiry_renders()
    print(
        f"## hot page, 16 threads, 1 s lifetime: {renders} renders in {expiries:.1f} lifetimes "
        f"= {renders / expiries:.2f} per expiry (goal: 1)\n"
    )
    print(stampede_report(rounds=3))


if __name__ == "__main__":
    main()
