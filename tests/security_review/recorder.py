"""A loopback HTTP server that records every request (the purgers' far end in these reviews)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests import servers


class Recorder(http.server.ThreadingHTTPServer):
    """Records each request's method, path and headers; answers 200.

    :param pages: answer with a small cacheable page tagged ``xkey: redteam`` (an origin)
        rather than an empty body (a purge API).
    """

    daemon_threads = True

    def __init__(self, *, pages: bool = False) -> None:
        super().__init__((servers.HOST, 0), _Recording)
        self.pages = pages
        self.seen: list[tuple[str, str, dict[str, str]]] = []

    @property
    def origin(self) -> str:
        return f"http://{servers.HOST}:{self.server_address[1]}"


class _Recording(http.server.BaseHTTPRequestHandler):
    server: Recorder

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.seen.append((self.command, self.path, dict(self.headers)))
        body = b"page " + self.path.encode() if self.server.pages else b""
        self.send_response(200)
        if self.server.pages:
            self.send_header("Cache-Control", "max-age=60")
            self.send_header("xkey", "redteam")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PURGE = do_BAN = _any  # noqa: N815

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serving(*recorders: Recorder) -> Iterator[None]:
    """Serve ``recorders`` on threads for the block, then shut them down."""
    threads = [threading.Thread(target=r.serve_forever, daemon=True) for r in recorders]
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
