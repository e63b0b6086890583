"""A ``GET`` with a body ("fat GET") must not store a page built from that body for everyone.

The hole: pages were keyed on the URL and ``Vary`` only, while apps may read a
``GET`` body (FastAPI and Django allow it; search APIs do it). One ``GET /search``
with the body ``evil`` stored "results for evil" as ``/search`` for every
visitor. A ``GET`` or ``HEAD`` that carries a body (``Content-Length`` other
than 0, or ``Transfer-Encoding``) now bypasses the cache, as an untrusted
forwarded header does.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest

from cachekit import aio
from middleware import AsgiCacheMiddleware
from tests.asgi import call_asgi
from tests.asgi import make_scope
from tests.pages.shells import Shell
from tests.pages.shells import environ_for


def _search(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        query = environ["wsgi.input"].read(length)
    else:  # a de-chunked body: read to the end where the server says that is safe
        query = environ["wsgi.input"].read() if environ.get("wsgi.input_terminated") else b""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"results for " + (query or b"nothing")]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_get_body_cannot_poison_the_wsgi_page_cache(framing: str) -> None:
    shell = Shell("wsgi", _search, timeout=60)
    try:
        attack = environ_for("/search")
        assert (attack["REQUEST_METHOD"], attack["PATH_INFO"]) == ("GET", "/search")
        attack["wsgi.input"] = io.BytesIO(b"evil")
        attack["CONTENT_LENGTH"] = "4"
        if framing == "chunked":
            attack["HTTP_TRANSFER_ENCODING"] = "chunked"  # servers de-chunk; the length may be absent
            del attack["CONTENT_LENGTH"]
            attack["wsgi.input_terminated"] = True
        shell(attack)
        assert shell(environ_for("/search"))[2] == b"results for nothing"
        assert shell(environ_for("/search", CONTENT_LENGTH="0"))[2] == b"results for nothing"
    finally:
        shell.close()


def test_a_get_body_cannot_poison_the_asgi_page_cache() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        query = b""
        while True:
            message = await receive()
            query += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"results for " + (query or b"nothing")})

    async def main() -> None:
        cache = aio.from_url("locmem://security-review-fat-get")
        cached = AsgiCacheMiddleware(app, cache=cache, timeout=60)
        try:
            attack = make_scope("/search", headers={"Content-Length": "4"})
            assert (await call_asgi(cached, attack, b"evil")).body == b"results for evil"
            assert (await call_asgi(cached, make_scope("/search"))).body == b"results for nothing"
        finally:
            await cache.clear()
            await cache.close()

    asyncio.run(main())
