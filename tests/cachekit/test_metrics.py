"""Metrics export: the Prometheus collector and the WSGI endpoint report real counters."""

from __future__ import annotations

import json

import pytest

from cachekit import Cache
from cachekit.backends.locmem import LocMemBackend
from cachekit.metrics import CacheCollector
from cachekit.metrics import metrics_app
from cachekit.metrics import render_text


def _traffic() -> list[Cache]:
    pages = Cache(LocMemBackend("metrics-pages"), name="pages")
    pages.set("a", 1)
    pages.get("a")
    pages.get("a")
    pages.get("missing")
    return [pages]


def test_text_format() -> None:
    caches = _traffic()
    text = render_text(lambda: caches)
    assert "# TYPE cachekit_hits_total counter" in text
    assert 'cachekit_hits_total{cache="pages"} 2' in text
    assert 'cachekit_misses_total{cache="pages"} 1' in text
    assert 'cachekit_sets_total{cache="pages"} 1' in text


def test_wsgi_endpoint_text_and_json() -> None:
    caches = _traffic()
    app = metrics_app(lambda: caches)
    seen: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> None:
        seen.append(status)

    body = b"".join(app({"QUERY_STRING": "format=json"}, start_response))
    assert json.loads(body)["pages"]["hits"] == 2
    body = b"".join(app({"QUERY_STRING": ""}, start_response))
    assert b'cachekit_misses_total{cache="pages"} 1' in body
    assert seen == ["200 OK", "200 OK"]


def test_prometheus_collector() -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    caches = _traffic()
    registry = prometheus_client.CollectorRegistry()
    registry.register(CacheCollector(lambda: caches))
    assert registry.get_sample_value("cachekit_hits_total", {"cache": "pages"}) == 2
    assert registry.get_sample_value("cachekit_errors_total", {"cache": "pages"}) == 0
    output = prometheus_client.generate_latest(registry).decode()
    assert 'cachekit_misses_total{cache="pages"} 1.0' in output


def test_latency_is_sampled_one_call_in_n() -> None:
    cache = Cache(LocMemBackend("latency"), name="lat", latency_sample_every=4)
    cache.set("k", 1)
    for _ in range(40):
        cache.get("k")
    histogram = cache.latency()["get"]
    assert histogram.samples == 10
    assert sum(histogram.counts) == 10
    assert histogram.percentile(0.5) is not None
    summary = histogram.summary()
    assert summary["samples"] == 10
    assert summary["p99_us"] is not None


def test_latency_sampling_can_be_off() -> None:
    cache = Cache(LocMemBackend("latency-off"), latency_sample_every=0)
    for _ in range(100):
        cache.get("k")
    assert cache.latency() == {}


def test_prometheus_exports_latency_and_stale_serves() -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    cache = Cache(LocMemBackend("latency-prom"), name="prom", latency_sample_every=1)
    cache.set("k", 1)
    cache.get("k")
    registry = prometheus_client.CollectorRegistry()
    registry.register(CacheCollector(lambda: [cache]))
    labels = {"cache": "prom", "operation": "get"}
    assert registry.get_sample_value("cachekit_backend_latency_seconds_count", labels) == 1
    assert registry.get_sample_value("cachekit_stale_serves_total", {"cache": "prom"}) == 0
