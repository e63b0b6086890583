"""An empty ``Host`` header (or none at all) must not share a page with the host the server names.

The hole: the page cache fell back to ``SERVER_NAME:SERVER_PORT`` (ASGI: the
scope's ``server``) whenever ``Host`` was *falsy*, but Werkzeug builds URLs
from an empty ``Host`` as it is (``http:///next``). (Starlette falls back to the
scope's ``server`` as the ASGI shell does, so ASGI keeps that fallback.) Behind a server
that sets ``SERVER_NAME`` from its configuration (Apache's ``ServerName`` under
mod_wsgi) one ``Host:`` request stored broken links for every visitor. The WSGI
shell's memo also keyed ``HTTP_HOST or SERVER_NAME``, so a request without
``Host`` on a non-default port and one with ``Host`` but no port shared a key.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.pages.shells import Shell
from tests.pages.shells import environ_for


def _werkzeug_links(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    from werkzeug.wsgi import get_host

    start_response("200 OK", [("Content-Type", "text/html")])
    return [f'<a href="http://{get_host(environ)}/next">'.encode()]


@pytest.mark.parametrize(
    "attack",
    [
        {"HTTP_HOST": ""},  # "Host:" with no value
        {"SERVER_PORT": "8080"},  # no Host at all, the server on 8080 (HTTP/1.0)
    ],
    ids=["empty-host", "no-host-other-port"],
)
def test_a_missing_or_empty_host_does_not_poison_the_wsgi_page_cache(attack: dict[str, str]) -> None:
    pytest.importorskip("werkzeug")
    shell = Shell("wsgi", _werkzeug_links, timeout=60)
    try:
        environ = environ_for(host="example.com", **attack)
        if "SERVER_PORT" in attack:
            del environ["HTTP_HOST"]
        shell(environ)
        victim = environ_for(host="example.com", SERVER_PORT=attack.get("SERVER_PORT", "80"))
        assert shell(victim)[2] == b'<a href="http://example.com/next">'
    finally:
        shell.close()
