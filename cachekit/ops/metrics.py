"""Expose cache counters to monitoring: a Prometheus collector and a WSGI endpoint.

The counters are those of :meth:`cachekit.Cache.stats`, which every cache keeps
anyway, so exporting them costs nothing on the request path::

    from prometheus_client import REGISTRY
    from cachekit.metrics import CacheCollector  # or cachekit.ops.metrics

    REGISTRY.register(CacheCollector())          # every cache in cachekit.caches

Without ``prometheus-client`` installed, :func:`metrics_app` still serves the
same numbers in Prometheus' text format (or JSON with ``?format=json``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import Any

from cachekit.cache import Cache
from cachekit.config import caches as registry
from cachekit.ops.latency import BOUNDS_US

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

#: Counter name in ``Cache.stats()`` -> (metric suffix, help text).
COUNTERS = {
    "hits": ("hits", "Reads that found a value."),
    "misses": ("misses", "Reads that found nothing (including reads during outages)."),
    "sets": ("sets", "Values stored."),
    "deletes": ("deletes", "Delete operations."),
    "errors": ("errors", "Backend failures turned into misses or no-ops, or raised."),
    "lock_waits": ("lock_waits", "get_or_set calls that waited for another caller's computation."),
    "stale_serves": (
        "stale_serves",
        "Stale values or pages served while one caller refreshed, or after an error.",
    ),
    "bad_signatures": (
        "bad_signatures",
        "Stored values refused (read as misses) because their signature matched no signing key.",
    ),
    "breaker_trips": ("breaker_trips", "Times a backend's circuit breaker opened."),
    "breaker_rejections": (
        "breaker_rejections",
        "Backend calls failed fast by an open circuit breaker, without touching the server.",
    ),
    "near_hits": ("near_hits", "Reads answered from the near cache's local memory (0 without one)."),
    "near_misses": ("near_misses", "Near-cache reads that went to Redis."),
    "near_invalidations": ("near_invalidations", "Keys dropped from the near cache by Redis invalidations."),
    "near_flushes": (
        "near_flushes",
        "Times the near cache emptied itself: invalidation stream lost, restart, FLUSHDB.",
    ),
}
#: Gauge name in ``Cache.stats()`` -> (metric name, help text).
GAUGES = {
    "breaker_open": ("breaker_open", "Circuit breakers of the cache's backend open now (0: all closed)."),
    "near_ready": ("near_ready", "1 while the near cache receives invalidations and may serve; else 0."),
}

CacheSource = Callable[[], Iterable[Cache]]


def _built_caches() -> list[Cache]:
    return registry.all()


def samples(source: CacheSource = _built_caches) -> Iterator[tuple[str, str, float]]:
    """Yield ``(metric name, cache label, value)`` for every counter and gauge of every cache."""
    for cache in source():
        stats = cache.stats()
        label = cache.name or "unnamed"
        for key, (suffix, _help) in COUNTERS.items():
            yield f"cachekit_{suffix}_total", label, float(stats.get(key, 0))
        for key, (name, _help) in GAUGES.items():
            yield f"cachekit_{name}", label, float(stats.get(key, 0))


class CacheCollector:
    """A ``prometheus_client`` collector for cachekit caches.

    :param source: returns the caches to export; default: every cache built
        through :data:`cachekit.caches`.
    """

    def __init__(self, source: CacheSource = _built_caches) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        """Yield one counter family per statistic, labelled by cache name."""
        from prometheus_client.core import CounterMetricFamily

        families = {
            key: CounterMetricFamily(f"cachekit_{suffix}", help_text, labels=["cache"])
            for key, (suffix, help_text) in COUNTERS.items()
        }
        from prometheus_client.core import GaugeMetricFamily
        from prometheus_client.core import HistogramMetricFamily

        gauges = {
            key: GaugeMetricFamily(f"cachekit_{name}", help_text, labels=["cache"])
            for key, (name, help_text) in GAUGES.items()
        }

        latency = HistogramMetricFamily(
            "cachekit_backend_latency_seconds",
            "Sampled duration of backend calls (one in latency_sample_every).",
            labels=["cache", "operation"],
        )
        for cache in self.source():
            stats = cache.stats()
            label = cache.name or "unnamed"
            for key, family in families.items():
                family.add_metric([label], float(stats.get(key, 0)))
            for key, gauge in gauges.items():
                gauge.add_metric([label], float(stats.get(key, 0)))
            for operation, histogram in sorted(cache.latency().items()):
                cumulative, buckets = 0, []
                for bound, count in zip(BOUNDS_US, histogram.counts, strict=False):
                    cumulative += count
                    buckets.append((repr(bound / 1e6), float(cumulative)))
                buckets.append(("+Inf", float(histogram.samples)))
                latency.add_metric([label, operation], buckets, histogram.total_us / 1e6)
        yield from families.values()
        yield from gauges.values()
        yield latency


def render_text(source: CacheSource = _built_caches) -> str:
    """Return the counters in Prometheus' text exposition format."""
    lines: list[str] = []
    seen: set[str] = set()
    rows = sorted(samples(source))
    for name, label, value in rows:
        if name not in seen:
            seen.add(name)
            key = name.removeprefix("cachekit_").removesuffix("_total")
            kind, (_suffix, help_text) = (
                ("gauge", GAUGES[key]) if key in GAUGES else ("counter", COUNTERS[key])
            )
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
        escaped = label.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{name}{{cache="{escaped}"}} {value:g}')
    return "\n".join(lines) + "\n"


def metrics_app(source: CacheSource = _built_caches) -> WSGIApplication:
    """Return a WSGI app serving the counters (text format; ``?format=json`` for JSON).

    Mount it on an internal path only: the numbers are harmless but not public.
    """

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if "format=json" in environ.get("QUERY_STRING", ""):
            data = {cache.name or "unnamed": cache.stats() for cache in source()}
            body = json.dumps(data, sort_keys=True).encode()
            content_type = "application/json"
        else:
            body = render_text(source).encode()
            content_type = "text/plain; version=0.0.4; charset=utf-8"
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    return app
