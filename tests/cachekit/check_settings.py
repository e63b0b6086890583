"""Settings and apps for ``cachekit check`` run through the console script (tests/cachekit/test_check.py).

``unsafe_app`` puts werkzeug's ProxyFix inside the page cache; ``safe_app`` puts it
outside. ``CACHES`` names no BACKEND and a host:port LOCATION, which is local memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from werkzeug.middleware.proxy_fix import ProxyFix

from middleware.cache import CacheMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

CACHES = {"default": {"LOCATION": "10.0.0.5:6379"}}
SESSION_ENGINE = "cache"


def page(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


unsafe_app = CacheMiddleware(ProxyFix(page, x_host=1, x_proto=1))
safe_app = ProxyFix(CacheMiddleware(page), x_host=1, x_proto=1)
