"""Run one page-cache case through either shell: WSGI (``PageCache``) or ASGI (``AsyncPageCache``).

A case is written once as a WSGI app and WSGI-style requests. For the ASGI
shell the app is bridged (:func:`asgi_app`: it runs the WSGI app and sends
its answer as ASGI messages) and each request becomes a scope with the same
headers, so both shells see the same facts and must give the same answer.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

import cachekit
from cachekit import Cache
from cachekit import aio
from cachekit.aio import AsyncCache
from cachekit.aio_views import AsyncPageCache
from cachekit.backends.aio_locmem import AsyncLocMemBackend
from cachekit.backends.locmem import LocMemBackend
from cachekit.views import PageCache
from tests import wsgi
from tests.asgi import call_asgi
from tests.asgi import make_scope

SHELLS = ["wsgi", "asgi"]

Headers = list[tuple[str, str]]
Answer = tuple[str, Headers, bytes]
WsgiApp = Callable[..., Iterable[bytes]]


def _status_line(code: int) -> str:
    from http import HTTPStatus

    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Unknown"


def environ_for(
    path: str = "/page",
    *,
    method: str = "GET",
    query: str = "",
    host: str = "example.com",
    scheme: str = "http",
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A request as a WSGI environ (the ASGI shell converts it with :func:`scope_for`)."""
    target = f"{path}?{query}" if query else path
    return wsgi.make_environ(target, method, headers, host=host, scheme=scheme, **extra)


def scope_for(environ: Mapping[str, Any]) -> dict[str, Any]:
    """The ASGI scope of the same request: same method, target, host, scheme and headers."""
    headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_") and key != "HTTP_HOST":
            headers.append((key[5:].replace("_", "-").lower(), value))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            headers.append((key.replace("_", "-").lower(), value))
    query = environ.get("QUERY_STRING", "")
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "/")
    scope = make_scope(
        f"{path}?{query}" if query else path,
        environ["REQUEST_METHOD"],
        headers,
        host=environ.get("HTTP_HOST", "testserver"),
        scheme=environ.get("wsgi.url_scheme", "http"),
    )
    for key in ("session", "root_path"):
        if f"scope.{key}" in environ:
            scope[key] = environ[f"scope.{key}"]
    return scope


def asgi_app(app: WsgiApp) -> Callable[..., Any]:
    """Bridge a WSGI app to ASGI: run it, send its status, headers and each body chunk."""

    async def bridged(scope: dict[str, Any], receive: Any, send: Any) -> None:
        environ = wsgi.make_environ(
            scope["path"] + (("?" + scope["query_string"].decode()) if scope["query_string"] else ""),
            scope["method"],
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k != b"host"],
            host=dict(scope["headers"]).get(b"host", b"testserver").decode(),
            scheme=scope["scheme"],
        )
        if "session" in scope:
            environ["cachekit.session"] = scope["session"]
        started: list[tuple[str, Headers]] = []

        def start_response(status: str, headers: Headers, exc_info: Any = None) -> Callable[[bytes], None]:
            started.append((status, headers))
            return lambda data: None

        result = app(environ, start_response)
        try:
            chunks = list(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = started[-1]
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        await send({"type": "http.response.start", "status": int(status[:3]), "headers": raw})
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return bridged


class Shell:
    """One page cache under test, called with WSGI environs whatever the shell."""

    def __init__(
        self,
        kind: str,
        app: WsgiApp,
        *,
        clock: Any = None,
        timeout: Any = 60,
        url: str | None = None,
        cache_options: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        self.kind = kind
        self.app = app
        self.name = f"pages-{uuid.uuid4().hex[:12]}"
        extra = {"key_prefix": self.name, **(cache_options or {})} if url else dict(cache_options or {})
        if clock is not None:
            extra["clock"] = clock
        if kind == "wsgi":
            if url is None:
                backend = LocMemBackend(self.name, clock=clock) if clock else LocMemBackend(self.name)
                self.cache: Any = Cache(backend, **extra)
            else:
                self.cache = cachekit.from_url(url, **extra)
            self.engine: Any = PageCache(timeout, cache=self.cache, **options)
            self._runner: asyncio.Runner | None = None
        else:
            self._runner = asyncio.Runner()
            self.cache = self._runner.run(self._async_cache(url or f"locmem://{self.name}", extra))
            self.engine = AsyncPageCache(timeout, cache=self.cache, **options)
            self._asgi = asgi_app(app)

    async def _async_cache(self, url: str, extra: dict[str, Any]) -> Any:
        clock = extra.pop("clock", None)
        if url.startswith("locmem://") and clock is not None:
            # The backend on the same fake clock, so entries expire as in the WSGI shell.
            return AsyncCache(AsyncLocMemBackend(url[len("locmem://") :], clock=clock), clock=clock, **extra)
        cache = aio.from_url(url, **extra)
        return cache.replace(clock=clock) if clock is not None else cache

    def __call__(self, environ: dict[str, Any]) -> Answer:
        """Answer one request: ``(status line, headers, body)``."""
        if self._runner is None:

            def wrapped(env: dict[str, Any], start_response: Any) -> Iterable[bytes]:
                return self.engine(self.app, env, start_response)

            return wsgi.call_app(wrapped, environ)
        scope = scope_for(environ)
        body = environ["wsgi.input"].read() if isinstance(environ.get("wsgi.input"), io.BytesIO) else b""

        async def engine_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await self.engine(self._asgi, scope, receive, send)

        response = self._runner.run(call_asgi(engine_app, scope, body))
        return _status_line(response.status), response.headers, response.body

    def purge(self, url: str) -> bool:
        if self._runner is None:
            return bool(self.engine.purge(url))
        return bool(self._runner.run(self.engine.purge(url)))

    def invalidate_tags(self, *tags: str) -> None:
        if self._runner is None:
            self.cache.invalidate_tags(*tags)
        else:
            self._runner.run(self.cache.invalidate_tags(*tags))

    def close(self) -> None:
        if self._runner is None:
            self.cache.clear()
            return
        self._runner.run(self.cache.clear())
        self._runner.run(self.cache.close())
        self._runner.close()
