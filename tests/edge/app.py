"""The app tests/edge serves under gunicorn behind Varnish: cached pages on Redis, purge endpoints.

Pages (``/page/<name>``) say how many times they were rendered, declare the tags
``page-<name>`` and ``all`` in ``xkey`` (exposed to Varnish, which strips it), and
are cached for 60 s by our cache and by Varnish, with a 30 s stale window. The
``/admin/...`` endpoints are called on gunicorn directly (never through Varnish):
they purge through :class:`cachekit.edge.Purges`, deliver the queue, and count renders.

Environment: ``EDGE_REDIS_URL`` (our cache) and ``EDGE_VARNISH`` (``host:port`` list).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

from cachekit import from_url
from cachekit.edge import Purges
from cachekit.edge import VarnishPurger
from cachekit.views import cache_page

cache = from_url(os.environ["EDGE_REDIS_URL"], key_prefix="edge")
purges = Purges(
    cache, [VarnishPurger(os.environ["EDGE_VARNISH"].split(","), timeout=2.0)], backoff=0.1, max_backoff=0.5
)
RENDERS = "renders:"


@cache_page(
    60,
    cache=cache,
    surrogate_key_headers=["xkey"],
    expose_surrogate_keys=True,
    stale_while_revalidate=30,
)
def page(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    name = path.rsplit("/", 1)[-1]
    cache.add(RENDERS + path, 0, timeout=None)
    count = cache.incr(RENDERS + path)
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain"),
            ("Cache-Control", "public, max-age=60"),
            ("xkey", f"page-{name} all"),
        ],
    )
    return [f"{path} render {count}".encode()]


def _json(start_response: Any, data: Any, status: str = "200 OK") -> list[bytes]:
    body = json.dumps(data).encode()
    start_response(status, [("Content-Type", "application/json"), ("Cache-Control", "no-store")])
    return [body]


def _report(report: Any) -> dict[str, Any]:
    return {
        "cached": report.cached,
        "delivered": report.delivered,
        "queued": report.queued,
        "failed": report.failed,
    }


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if not path.startswith("/admin/"):
        return page(environ, start_response)
    query = {key: values[0] for key, values in parse_qs(environ.get("QUERY_STRING", "")).items()}
    soft = query.get("soft") == "1"
    if path == "/admin/purge-tag":
        return _json(start_response, _report(purges.invalidate_tags(query["tag"], soft=soft)))
    if path == "/admin/purge-url":
        return _json(start_response, _report(purges.purge(query["url"], soft=soft)))
    if path == "/admin/ban-prefix":
        return _json(start_response, _report(purges.purge_prefix(query["prefix"])))
    if path == "/admin/deliver":
        return _json(start_response, _report(purges.deliver_queued()))
    if path == "/admin/queue":
        return _json(start_response, [[item.target, item.attempts] for item in purges.queue.items()])
    if path == "/admin/renders":
        return _json(start_response, cache.get(RENDERS + query["path"], 0))
    return _json(start_response, "not found", "404 Not Found")
