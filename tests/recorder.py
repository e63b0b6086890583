"""A loopback HTTP server that records every request: the far end of the purgers in tests.

It stands in for Varnish, Fastly's or Cloudflare's API (an empty answer with a settable
status) or, with ``pages=True``, for an origin that serves small cacheable pages tagged
``xkey: redteam``.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests import servers


class Recorder(http.server.ThreadingHTTPServer):
    """Records each request as ``(method, path, headers, body)`` and each one's ``Host`` lines.

    :param pages: answer with a small cacheable page rather than an empty body.
    """

    daemon_threads = True

    def __init__(self, *, pages: bool = False) -> None:
        super().__init__((servers.HOST, 0), _Recording)
        self.pages = pages
        #: The status every answer carries; a test sets it to play a failing API.
        self.status = 200
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.hosts: list[list[str]] = []

    @property
    def address(self) -> str:
        return f"{servers.HOST}:{self.server_address[1]}"

    @property
    def origin(self) -> str:
        return f"http://{self.address}"


class _Recording(http.server.BaseHTTPRequestHandler):
    server: Recorder

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        received = self.rfile.read(length) if length else b""
        self.server.requests.append((self.command, self.path, dict(self.headers.items()), received))
        self.server.hosts.append(self.headers.get_all("Host") or [])
        body = b"page " + self.path.encode() if self.server.pages else b""
        self.send_response(self.server.status)
        if self.server.pages:
            self.send_header("Cache-Control", "max-age=60")
            self.send_header("xkey", "redteam")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    # http.server dispatches on do_<METHOD>: one recorder for every method the purgers use.
    do_GET = do_POST = do_DELETE = do_PURGE = do_BAN = _any  # noqa: N815

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serving(*recorders: Recorder) -> Iterator[None]:
    """Serve ``recorders`` on threads for the block, then shut them down."""
    threads = [threading.Thread(target=r.serve_forever, args=(0.02,), daemon=True) for r in recorders]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        for r in recorders:
            r.shutdown()
            r.server_close()
        for thread in threads:
            thread.join(5)
