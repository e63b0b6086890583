"""Every answer the WSGI shell sends carries a header list of its own.

PEP 3333 lets a middleware outside the page cache append to the list it is handed (many add
``Set-Cookie`` that way), so a list the shell keeps between requests, such as the one of its fixed
504 answer, must never be the one it hands out.
"""

from __future__ import annotations

import uuid
from typing import Any

import cachekit
from cachekit.backends.locmem import LocMemBackend
from cachekit.pages.wsgi import PageCache
from tests import wsgi
from tests.conftest import FakeClock


def test_a_middleware_adding_headers_to_a_504_in_place_does_not_change_the_next_504() -> None:
    clock = FakeClock()
    renders = 0

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        nonlocal renders
        renders += 1
        if renders > 1:
            raise ConnectionError("origin down")
        start_response("200 OK", [("Cache-Control", "max-age=10, must-revalidate")])
        return [b"v1"]

    backend = LocMemBackend(f"copies-{uuid.uuid4().hex[:8]}", clock=clock)
    engine = PageCache(60, cache=cachekit.Cache(backend, clock=clock), stale_if_error=100)
    sent: list[list[tuple[str, str]]] = []

    def site(environ: dict[str, Any], start_response: Any) -> Any:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers.append(("Set-Cookie", f"sid={environ['HTTP_X_USER']}"))
            sent.append(list(headers))
            return start_response(status, headers, exc_info)

        return engine(app, environ, start)

    wsgi.call_app(site, wsgi.make_environ("/p", "GET", {"X-User": "alice"}))
    clock.advance(50)
    later = [wsgi.make_environ("/p", "GET", {"X-User": user}) for user in ("alice", "bob")]
    statuses = [wsgi.call_app(site, environ)[0] for environ in later]

    assert [status[:3] for status in statuses] == ["504", "504"]
    assert [value for name, value in sent[-1] if name == "Set-Cookie"] == ["sid=bob"]
