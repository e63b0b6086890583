"""ASGI header names with ``_`` where ``-`` belongs must not slip past the page cache.

asgiref's ``WsgiToAsgi`` (which runs a WSGI app, Flask with ``ProxyFix`` say,
under an ASGI server) turns every ASGI header into a CGI-style environ key by
upper-casing it and replacing ``-`` with ``_``, so ``x_forwarded_host`` *is*
``X-Forwarded-Host`` to the app, and ``accept_language`` is ``Accept-Language``.
The ASGI page cache must read the headers the same way, or an attacker poisons
the page every other visitor gets. (Django's own ASGI handler drops such names.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cachekit import aio
from middleware import AsgiCacheMiddleware
from tests.asgi import call_asgi
from tests.asgi import make_scope


def _bridged_app(vary: str | None) -> Any:
    """A WSGI app behind werkzeug's ``ProxyFix``, run as ASGI by asgiref's ``WsgiToAsgi``."""
    from asgiref.wsgi import WsgiToAsgi
    from werkzeug.middleware.proxy_fix import ProxyFix

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        language = environ.get("HTTP_ACCEPT_LANGUAGE", "en")
        headers = [("Content-Type", "text/html")] + ([("Vary", vary)] if vary else [])
        start_response("200 OK", headers)
        return [f'<a href="http://{environ["HTTP_HOST"]}/next">{language}</a>'.encode()]

    return WsgiToAsgi(ProxyFix(app, x_host=1))


@pytest.mark.parametrize(
    ("vary", "attack", "leak"),
    [
        (None, ("x_forwarded_host", "evil.example"), b"evil.example"),
        (None, ("X_Forwarded_Host", "evil.example"), b"evil.example"),
        ("Accept-Language", ("accept_language", "xx-evil"), b"xx-evil"),
    ],
    ids=["x_forwarded_host", "X_Forwarded_Host", "accept_language"],
)
def test_underscore_header_names_cannot_poison_the_asgi_page_cache(
    vary: str | None, attack: tuple[str, str], leak: bytes
) -> None:
    pytest.importorskip("werkzeug")

    async def main() -> None:
        cache = aio.from_url("locmem://security-review-underscore")
        cached = AsgiCacheMiddleware(_bridged_app(vary), cache=cache, timeout=60)
        try:
            poisoned = await call_asgi(cached, make_scope("/", headers=[attack]))
            assert leak in poisoned.body  # the app did read the header: the attack is real
            victim = await call_asgi(cached, make_scope("/"))
            assert leak not in victim.body
            assert b'href="http://testserver/next">en<' in victim.body
        finally:
            await cache.clear()
            await cache.close()

    asyncio.run(main())
