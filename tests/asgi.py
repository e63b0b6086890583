"""Call ASGI apps in-process: a scope builder, ``call_asgi`` and a cookie-keeping ``AsgiClient``.

The ASGI counterpart of ``tests/wsgi.py``. ``call_asgi`` runs the app once,
feeds it the request body, records every message it sends and checks the
HTTP message order (one ``http.response.start``, then body chunks, the last
with ``more_body`` false).
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

from sessions.cookies import read_cookie

Message = dict[str, Any]


def make_scope(
    path: str = "/",
    method: str = "GET",
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    *,
    host: str = "testserver",
    scheme: str = "http",
    **extra: Any,
) -> dict[str, Any]:
    """Build an HTTP scope for ``method path`` (``path`` may hold a query string)."""
    parts = urlsplit(path)
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers or [])
    raw = [(b"host", host.encode())] + [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs]
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": parts.path or "/",
        "raw_path": (parts.path or "/").encode(),
        "query_string": parts.query.encode(),
        "root_path": "",
        "headers": raw,
        "server": (host, 443 if scheme == "https" else 80),
        "client": ("127.0.0.1", 50000),
    }
    scope.update(extra)
    return scope


@dataclass
class AsgiResponse:
    """What an ASGI app sent."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    #: Every message, in order (to check streaming).
    messages: list[Message] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    @property
    def chunks(self) -> list[bytes]:
        return [m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"]


async def call_asgi(app: Any, scope: Mapping[str, Any], body: bytes = b"") -> AsgiResponse:
    """Run ``app`` for one HTTP request and return its response, checking the message order."""
    sent: list[Message] = []
    requested = False

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            assert not sent, f"response started twice: {sent!r}"
        else:
            assert sent, f"{message['type']} before http.response.start"
            assert sent[-1].get("more_body", True), "message after the last body chunk"
        sent.append(dict(message))

    await app(dict(scope), receive, send)
    assert sent, "the app sent no response"
    assert not sent[-1].get("more_body", False), "the body never ended"
    start = sent[0]
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start.get("headers", [])]
    content = b"".join(m.get("body", b"") for m in sent[1:])
    return AsgiResponse(start["status"], headers, content, sent)


class AsgiClient:
    """Calls an ASGI app like a browser: keeps the cookies it is sent (by name; a deleting one removes it)."""

    def __init__(self, app: Any, *, host: str = "testserver") -> None:
        self.app = app
        self.host = host
        self.cookies: dict[str, str] = {}

    async def request(
        self, method: str, path: str, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> AsgiResponse:
        pairs = dict(headers or {})
        if self.cookies and "Cookie" not in pairs:
            pairs["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        response = await call_asgi(self.app, make_scope(path, method, pairs, host=self.host), body)
        for line in response.header_values("set-cookie"):
            name = line.split("=", 1)[0]
            value = read_cookie(line.split(";", 1)[0], name)
            if "Max-Age=0" in line or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return response

    async def get(self, path: str, headers: Mapping[str, str] | None = None) -> AsgiResponse:
        return await self.request("GET", path, headers)

    async def post(self, path: str, headers: Mapping[str, str] | None = None) -> AsgiResponse:
        return await self.request("POST", path, headers)
